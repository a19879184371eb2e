//! How well a trained transition's [`Transition::predicted_mean`] (what the encoder's residual
//! posterior adds to its head's mean; for the diffusion transition the denoiser at the top level
//! with a zero input) matches the mean of the transition's own samples, on a grid of histories.
//!
//! ```text
//! cargo run --release -p ddssm-model --example transition_mean -- CHECKPOINT [LO HI POINTS]
//! ```
//!
//! For a model of latent dimension 1 and order 1 (the bimodal experiment's): for each `z_{t−1}`
//! of `POINTS` values from `LO` to `HI` (latent units; default −2 … 2, 11 points) it prints the
//! predicted mean, the mean of 2000 draws from the configured sampler with its standard error,
//! their median and standard deviation. Time 32 (slots 31, 32); no covariates.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use ddssm_model::{Model, Transition, TransitionInput};
use ddssm_tensor_ops::SeededNoise;

const DRAWS: usize = 2000;

fn values(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

fn main() -> Result<()> {
    ddssm_tensor_ops::configure_threads(None).map_err(anyhow::Error::msg)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: transition_mean CHECKPOINT [LO HI POINTS]";
    let (path, lo, hi, points) = match args.as_slice() {
        [p] => (p.clone(), -2.0, 2.0, 11),
        [p, lo, hi, n] => (
            p.clone(),
            lo.parse::<f64>().context("LO: a number")?,
            hi.parse::<f64>().context("HI: a number")?,
            n.parse::<usize>().context("POINTS: a positive integer")?,
        ),
        _ => bail!("{usage}"),
    };
    if points < 2 || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        bail!("need HI > LO and at least 2 points\n{usage}");
    }
    let model = Model::load(std::path::Path::new(&path), &Device::Cpu)?;
    let config = model.config();
    if config.latent_dim != 1 || config.order != 1 || config.covariate_dim != 0 {
        bail!("{path}: a model of latent dimension 1, order 1 and no covariates is needed");
    }
    let transition: &dyn Transition = model.transition();
    let dtype = model.dtype();
    let input = |z: f64, n: usize| -> Result<TransitionInput> {
        Ok(TransitionInput {
            history: Tensor::full(z, (n, 1, 1), &Device::Cpu)?.to_dtype(dtype)?,
            times: Tensor::new(&[[31.0f64, 32.0]], &Device::Cpu)?
                .to_dtype(dtype)?
                .broadcast_as((n, 2))?
                .contiguous()?,
            covariates: None,
        })
    };
    println!("| z_(t−1) | predicted mean | mean of {DRAWS} draws | median | SD |");
    println!("|---|---|---|---|---|");
    for i in 0..points {
        let z = lo + (hi - lo) * i as f64 / (points - 1) as f64;
        let predicted = values(&transition.predicted_mean(&input(z, 1)?)?)?[0];
        let mut draws = values(&transition.sample(&input(z, DRAWS)?, &mut SeededNoise::new(3))?)?;
        let n = DRAWS as f64;
        let mean = draws.iter().sum::<f64>() / n;
        let sd = (draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        draws.sort_by(f64::total_cmp);
        println!(
            "| {z:.2} | {predicted:.3} | {mean:.3} ± {:.3} | {:.3} | {sd:.3} |",
            sd / n.sqrt(),
            draws[DRAWS / 2]
        );
    }
    Ok(())
}
