//! Every sampler, driven by the exact denoiser of a Gaussian mixture, must reproduce the mixture.
//! This tests the samplers independently of any training.

use ddssm_diffusion::{
    sample, top_level_mean, GaussianMixtureDenoiser, LatentShape, NoiseScheduleConfig,
    ReverseVariance, Sampler,
};
use ddssm_tensor_ops::SeededNoise;

const N: usize = 20_000;
const BINS: usize = 40;
const LO: f64 = -4.0;
const HI: f64 = 4.0;

fn target() -> GaussianMixtureDenoiser {
    GaussianMixtureDenoiser::new(&[0.3, 0.7], &[-2.0, 1.5], &[0.3, 0.5]).unwrap()
}

/// A tensor's entries as f64, flattened.
fn values(t: &candle_core::Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn jsd_of(samples: &[f64], t: &GaussianMixtureDenoiser) -> f64 {
    t.histogram_jsd(samples, LO, HI, BINS)
}

/// The JSD an exact sampler may show, plus a stated budget for discretisation error.
///
/// For N exact draws the histogram JSD is ≈ ⅛ Σ (p̂ − p)²/p, and N Σ (p̂ − p)²/p is ≈ χ² with
/// B − 1 degrees of freedom: expectation (B − 1)/(8N) = 2.4e-4 and standard deviation
/// √(2(B − 1))/(8N) = 5.5e-5. Sampling noise alone stays below the expectation plus 4 standard
/// deviations (4.7e-4) but for a chance of 3e-5. On top of that each sampler may carry a
/// discretisation error (K = 128 levels, or fewer for the few-step samplers) of 8e-4 nats: the
/// JSD of a mean shift of 0.08 standard deviations (δ²/8), far below anything visible in a
/// histogram of the model's predictive. A sampler with a wrong update misses by orders of
/// magnitude more.
fn tolerance() -> f64 {
    let b = BINS as f64 - 1.0;
    let n = N as f64;
    let expectation = b / (8.0 * n);
    let sd = (2.0 * b).sqrt() / (8.0 * n);
    let discretisation = 0.08f64.powi(2) / 8.0;
    expectation + 4.0 * sd + discretisation
}

fn check(sampler: Sampler, seed: u64) {
    let schedule = NoiseScheduleConfig::default().build().unwrap();
    let t = target();
    let mut noise = SeededNoise::new(seed);
    let z = sample(
        &t,
        &schedule,
        &sampler,
        &(),
        &LatentShape::cpu_f32(N, 1),
        &mut noise,
    )
    .unwrap();
    let z = values(&z);
    let j = jsd_of(&z, &t);
    // Mode weight: the left mode's share below the valley at −0.4 is 0.3 (to 1e-6); its
    // standard error for N draws is √(0.21/N) ≈ 0.0032; tolerance 4 standard errors.
    let left = z.iter().filter(|x| **x < -0.4).count() as f64 / N as f64;
    let expected_left = t.cdf(-0.4);
    eprintln!("{sampler:?}: JSD {j:.2e} (tolerance {:.2e}), left-mode share {left:.4} (exact {expected_left:.4})", tolerance());
    assert!(j < tolerance(), "{sampler:?}: JSD {j} ≥ {}", tolerance());
    assert!(
        (left - expected_left).abs() < 4.0 * (0.21 / N as f64).sqrt(),
        "{sampler:?}: left-mode share {left}"
    );
}

#[test]
fn ancestral_with_beta_reproduces_the_mixture() {
    check(
        Sampler::Ancestral {
            variance: ReverseVariance::Beta,
        },
        1,
    );
}

#[test]
fn ancestral_with_beta_tilde_reproduces_the_mixture() {
    check(
        Sampler::Ancestral {
            variance: ReverseVariance::BetaTilde,
        },
        2,
    );
}

// The deterministic samplers' discretisation error on this sharp mixture (modes of width 0.3–0.5,
// 3.5 apart) is what limits them; `cargo run --release -p ddssm-diffusion --example
// sampler_tradeoff` prints JSD against network calls. The levels below are the fewest at which
// each stays inside the sampling-noise tolerance.

#[test]
fn ddim_reproduces_the_mixture() {
    check(Sampler::Ddim { steps: 96 }, 3);
}

#[test]
fn edm_heun_reproduces_the_mixture_in_32_levels() {
    check(Sampler::EdmHeun { steps: 32 }, 4);
}

#[test]
fn dpm_solver_2m_reproduces_the_mixture_in_32_calls() {
    check(Sampler::DpmSolver2M { steps: 32 }, 5);
}

/// Second-order solvers must converge: the JSD falls as the number of levels grows.
#[test]
fn few_step_error_falls_with_the_number_of_levels() {
    let schedule = NoiseScheduleConfig::default().build().unwrap();
    let t = target();
    for make in [
        |s| Sampler::EdmHeun { steps: s },
        |s| Sampler::DpmSolver2M { steps: s },
    ] {
        let errors: Vec<f64> = [8, 16, 32]
            .iter()
            .map(|&steps| {
                let z = sample(
                    &t,
                    &schedule,
                    &make(steps),
                    &(),
                    &LatentShape::cpu_f32(N, 1),
                    &mut SeededNoise::new(9),
                )
                .unwrap();
                let z: Vec<f64> = z
                    .flatten_all()
                    .unwrap()
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                jsd_of(&z, &t)
            })
            .collect();
        assert!(
            errors[0] > 2.0 * errors[1] && errors[1] > errors[2],
            "{:?}: {errors:?}",
            make(0)
        );
    }
}

#[test]
fn same_seed_same_samples() {
    let schedule = NoiseScheduleConfig::default().build().unwrap();
    let shape = LatentShape::cpu_f32(64, 2);
    let draw = |seed| {
        sample(
            &target(),
            &schedule,
            &Sampler::default(),
            &(),
            &shape,
            &mut SeededNoise::new(seed),
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
    };
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5), draw(6));
}

/// `top_level_mean` is the exact denoiser's posterior mean at the top level for a zero input, and
/// that is the target's mean up to the shrinkage its documentation bounds.
#[test]
fn top_level_mean_is_the_targets_mean() {
    let schedule = NoiseScheduleConfig::default().build().unwrap();
    let t = target();
    let m = top_level_mean(&t, &schedule, &(), &LatentShape::cpu_f32(3, 2)).unwrap();
    assert_eq!(m.dims(), [3, 2]);
    let got = values(&m);
    let sigma_k = *schedule.sigma.last().unwrap();
    let exact = t.posterior_mean(0.0, sigma_k);
    let mean: f64 = t.weights().iter().zip(t.means()).map(|(w, m)| w * m).sum();
    // Shrinkage toward the zero input: relative order (m² + s²)/σ_K², with a factor 4 of room
    // for the responsibilities' shift (both of the same order).
    let second: f64 = t
        .weights()
        .iter()
        .zip(t.means().iter().zip(t.stds()))
        .map(|(w, (m, s))| w * (m * m + s * s))
        .sum();
    let bound =
        4.0 * second / (sigma_k * sigma_k) * t.means().iter().fold(0.0f64, |a, m| a.max(m.abs()));
    for g in got {
        // f32 arithmetic through the preconditioning: 1e-5 of room.
        assert!(
            (g - exact).abs() < 1e-5,
            "{g} vs exact posterior mean {exact}"
        );
        assert!(
            (g - mean).abs() < bound,
            "{g} vs mixture mean {mean} (bound {bound:.2e})"
        );
    }
    assert!(sigma_k > 100.0, "the default schedule's σ_K is {sigma_k}");
}
