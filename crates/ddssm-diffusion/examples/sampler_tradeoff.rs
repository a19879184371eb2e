//! JSD against network calls for every sampler, driven by the exact denoiser of a sharp
//! two-mode mixture (`0.3 N(−2, 0.3²) + 0.7 N(1.5, 0.5²)`), so the only error is the sampler's.
//!
//! ```text
//! cargo run --release -p ddssm-diffusion --example sampler_tradeoff
//! ```

use anyhow::Result;
use ddssm_diffusion::{
    sample, GaussianMixtureDenoiser, LatentShape, NoiseScheduleConfig, ReverseVariance, Sampler,
};
use ddssm_tensor_ops::SeededNoise;

fn main() -> Result<()> {
    let schedule = NoiseScheduleConfig::default().build()?;
    let target = GaussianMixtureDenoiser::new(&[0.3, 0.7], &[-2.0, 1.5], &[0.3, 0.5])?;
    let (n, bins) = (20_000, 40);
    println!(
        "N = {n} draws, {bins} bins on [-4, 4]; JSD noise floor of exact draws ≈ {:.1e}",
        (bins as f64 - 1.0) / (8.0 * n as f64)
    );
    println!(
        "{:<36} {:>6} {:>10} {:>10}",
        "sampler", "calls", "JSD", "left mode"
    );
    let mut samplers = vec![
        Sampler::Ancestral {
            variance: ReverseVariance::Beta,
        },
        Sampler::Ancestral {
            variance: ReverseVariance::BetaTilde,
        },
    ];
    for steps in [6, 8, 12, 16, 24, 32, 48, 64] {
        samplers.extend([
            Sampler::Ddim { steps },
            Sampler::EdmHeun { steps },
            Sampler::DpmSolver2M { steps },
        ]);
    }
    for (i, s) in samplers.iter().enumerate() {
        let z = sample(
            &target,
            &schedule,
            s,
            &(),
            &LatentShape::cpu_f32(n, 1),
            &mut SeededNoise::new(i as u64),
        )?;
        let z: Vec<f64> = z
            .flatten_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1()?;
        let left = z.iter().filter(|x| **x < -0.4).count() as f64 / n as f64;
        println!(
            "{:<36} {:>6} {:>10.2e} {:>10.4}",
            format!("{s:?}"),
            s.network_calls(&schedule),
            target.histogram_jsd(&z, -4.0, 4.0, bins),
            left
        );
    }
    println!("exact left-mode share: {:.4}", target.cdf(-0.4));
    Ok(())
}
