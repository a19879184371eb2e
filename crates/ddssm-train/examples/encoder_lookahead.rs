//! Does a trained encoder read ahead? The mean of `q(z_t | z_{t−1}, h_t)` moves with the step's
//! own observation `x_t`; an encoder that is the smoothing posterior also moves with the later
//! observations `x_{t+1}, x_{t+2}, …` (they inform `z_t` through the dynamics), a filter does not
//! (issue 17; docs/results/bimodal.md, "λ and the loop's fixed point").
//!
//! ```text
//! cargo run --release -p ddssm-train --example encoder_lookahead -- CONFIG CHECKPOINT [SEQUENCES] [DELTA]
//! ```
//!
//! For the first `SEQUENCES` (default 256) test sequences of `CONFIG`'s data,
//! [`ddssm_eval::encoder_lookahead`] (what `cargo xtask diagnose` reports too) draws one encoder
//! trajectory, holds it fixed, and moves one observation `x_{t+k}` by `±DELTA` data units (default
//! 0.2, the emission's noise) for every `t` of steps 8–23: the central difference of the mean of
//! `q(z_t | z_{t−1}, h_t)` is the encoder's gain on `x_{t+k}` (latent units per data unit),
//! averaged over sequences and steps, for `k = 0 … 3`. Printed with each gain's ratio to the gain
//! on `x_t`, which does not depend on the latent's scale: 0 for a filter; for the exact posterior
//! of the walk with transition width `w` and emission `σ` (λ-tempered), the one-step-ahead ratio is
//! `φλσ²/(w² + λσ²)` to first order (0.42 at `w` = 0.24, `σ` = 0.2, λ = 1.243).

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use ddssm_eval::encoder_lookahead;
use ddssm_model::Model;
use ddssm_tensor_ops::SeededNoise;
use ddssm_train::experiment::{
    ExperimentConfig, LOOKAHEAD_AHEAD as AHEAD, LOOKAHEAD_STEPS as STEPS,
};

mod common;

const USAGE: &str = "usage: encoder_lookahead CONFIG CHECKPOINT [SEQUENCES] [DELTA]";

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
    if sequences == 0 {
        bail!("SEQUENCES ≥ 1 required\n{USAGE}");
    }
    let root = SeededNoise::new(cfg.seed);
    let (_, test) = cfg
        .data
        .sim
        .simulate(sequences, &mut root.fork("data/test"))?;
    let x = test.to_tensor(DType::F32, &dev)?;
    let look = encoder_lookahead(
        &model,
        &x,
        STEPS,
        AHEAD,
        delta,
        &mut root.fork("encoder-lookahead"),
    )?;
    println!("gain of the mean of q(z_t | z_(t-1), h_t) on x_(t+k), steps {STEPS:?}, {sequences} sequences, ±{delta} data units");
    println!("| k | gain (latent units per data unit) | ratio to k = 0 |");
    println!("|---|---|---|");
    for (k, gain) in look.gains.iter().enumerate() {
        println!("| {k} | {gain:.4} | {:.3} |", look.ratio(k));
    }
    Ok(())
}
