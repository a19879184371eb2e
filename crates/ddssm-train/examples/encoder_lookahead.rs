//! Does a trained encoder read ahead? The mean of `q(z_t | z_{t−1}, h_t)` moves with the step's
//! own observation `x_t`; an encoder that is the smoothing posterior also moves with the later
//! observations `x_{t+1}, x_{t+2}, …` (they inform `z_t` through the dynamics), a filter does not
//! (issue 17; docs/results/bimodal.md, "λ and the loop's fixed point").
//!
//! ```text
//! cargo run --release -p ddssm-train --example encoder_lookahead -- CONFIG CHECKPOINT [SEQUENCES] [DELTA]
//! ```
//!
//! For the first `SEQUENCES` (default 256) test sequences of `CONFIG`'s data it draws one encoder
//! trajectory, holds it fixed, and moves one observation `x_{t+k}` by `±DELTA` data units (default
//! 0.2, the emission's noise) for every `t` of steps 8–23: the central difference of the mean of
//! `q(z_t | z_{t−1}, h_t)` is the encoder's gain on `x_{t+k}` (latent units per data unit),
//! averaged over sequences and steps, for `k = 0 … 3`. Printed with each gain's ratio to the gain
//! on `x_t`, which does not depend on the latent's scale: 0 for a filter; for the exact posterior
//! of the walk with transition width `w` and emission `σ` (λ-tempered), the one-step-ahead ratio is
//! `φλσ²/(w² + λσ²)` to first order (0.42 at `w` = 0.24, `σ` = 0.2, λ = 1.243).

use anyhow::{bail, Result};
use candle_core::{DType, Device, IndexOp, Tensor};
use ddssm_model::Model;
use ddssm_tensor_ops::SeededNoise;
use ddssm_train::experiment::ExperimentConfig;

mod common;

const USAGE: &str = "usage: encoder_lookahead CONFIG CHECKPOINT [SEQUENCES] [DELTA]";
/// The steps `t` whose posteriors are probed (0-based), clear of both ends of `T = 32`.
const STEPS: std::ops::Range<usize> = 8..24;
/// How far ahead of `t` the moved observation lies.
const AHEAD: usize = 4;

fn main() -> Result<()> {
    let args = common::start(USAGE, 2..=4)?;
    let cfg = ExperimentConfig::load(Some(std::path::Path::new(&args[0])))?;
    let dev = Device::Cpu;
    let model = Model::load(std::path::Path::new(&args[1]), &dev)?;
    let sequences: usize = common::arg_or(&args, 2, 256, "SEQUENCES")?;
    let delta: f64 = common::arg_or(&args, 3, 0.2, "DELTA")?;
    let (d, m) = (model.config().obs_dim, model.config().latent_dim);
    if (d, m) != (1, 1) {
        bail!("the probe is for the bimodal walk's models (one observed, one latent dimension); this one has D = {d}, M = {m}");
    }
    let t_len = cfg.data.sim.t;
    if sequences == 0 || delta <= 0.0 || t_len < STEPS.end + AHEAD {
        bail!(
            "SEQUENCES ≥ 1, DELTA > 0 and T ≥ {} required\n{USAGE}",
            STEPS.end + AHEAD
        );
    }
    let root = SeededNoise::new(cfg.seed);
    let (_, test) = cfg
        .data
        .sim
        .simulate(sequences, &mut root.fork("data/test"))?;
    let x = test.to_tensor(DType::F32, &dev)?;
    // The encoder reads standardised observations; the moves are in data units.
    let (scaled, scale) = match model.standardization() {
        Some(s) => (s.apply(&x)?, 1.0 / s.std[0]),
        None => (x.clone(), 1.0),
    };
    let encoder = model.encoder();
    let prior = model.residual_prior();
    let inputs = encoder.prepare(&scaled, None, None, None)?.detach();
    let mut noise = root.fork("encoder-lookahead");
    let z = encoder.sample_no_grad(&inputs, 1, &mut noise, prior)?.z;
    // The posterior means at every step for observations `x`, along the fixed trajectory.
    let means = |x: &Tensor| -> Result<Vec<Vec<f32>>> {
        let inputs = encoder.prepare(x, None, None, None)?.detach();
        Ok(encoder
            .posteriors(&inputs, &z, prior)?
            .mean()
            .i((.., .., 0))?
            .to_vec2::<f32>()?)
    };
    let moved = |t: usize, by: f64| -> Result<Tensor> {
        let step = Tensor::zeros_like(&scaled)?.slice_assign(
            &[0..sequences, t..t + 1, 0..1],
            &(Tensor::ones((sequences, 1, 1), DType::F32, &dev)? * (by * scale))?,
        )?;
        Ok((&scaled + step)?)
    };
    println!("gain of the mean of q(z_t | z_(t-1), h_t) on x_(t+k), steps {STEPS:?}, {sequences} sequences, ±{delta} data units");
    println!("| k | gain (latent units per data unit) | ratio to k = 0 |");
    println!("|---|---|---|");
    let mut own = None;
    for k in 0..AHEAD {
        let mut total = 0.0;
        for t in STEPS {
            let (up, down) = (
                means(&moved(t + k, delta)?)?,
                means(&moved(t + k, -delta)?)?,
            );
            for b in 0..sequences {
                total += (up[b][t] - down[b][t]) as f64 / (2.0 * delta);
            }
        }
        let gain = total / (sequences * STEPS.len()) as f64;
        let base = *own.get_or_insert(gain);
        println!("| {k} | {gain:.4} | {:.3} |", gain / base);
    }
    Ok(())
}
