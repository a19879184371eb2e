//! End-to-end gradient check: the gradient of the whole λ-weighted ELBO objective (App. I.4) with
//! respect to every parameter tensor of both paper models, against central finite differences in
//! f64. The noise stream is reset for every evaluation, so the objective is a deterministic
//! function of the parameters and the check is exact up to O(h²) truncation and rounding.
//!
//! Parameters that start at exactly zero (the denoiser's last projection, as in CSDI, and the
//! biases) are first set to seeded random values: at zero, the denoiser's last layer blocks every
//! gradient into the denoiser, and the check would compare 0 with 0 for all of it. Every
//! parameter tensor must then get a non-zero gradient, and each is probed at two entries: one
//! chosen from the seed and the one with the largest analytic gradient.
//!
//! Tolerance, derived: central differences with h = 1e-6 in f64 err by truncation
//! `h²/6 · |f'''|` (≲ 1e-12 · |f'''|, covered by a relative 1e-6 · |fd| for |f'''| ≲ 1e6) and by
//! rounding `≈ N ε |f| / h`, where `ε = 1.1e-16`, `|f|` is the objective's size (measured) and
//! `N = 1e3` bounds the growth of rounding over the objective's operations. So
//! `|fd − autograd| ≤ 1e-6 · |fd| + 1e3 · ε · |f| / h`.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ddssm_model::{Batch, ElboOptions, Model, ModelConfig};
use ddssm_tensor_ops::SeededNoise;

fn check(config: &ModelConfig) -> Result<()> {
    let dev = Device::Cpu;
    let model = Model::new(config, 1, DType::F64, &dev)?;
    let mut init = SeededNoise::new(21);
    let mut randomised = 0;
    for (_, var) in model.named_parameters() {
        let zero = var.as_tensor().abs()?.sum_all()?.to_scalar::<f64>()? == 0.0;
        if zero {
            var.set(
                &init
                    .randn(var.shape().dims(), DType::F64, &dev)?
                    .affine(0.3, 0.0)?,
            )?;
            randomised += 1;
        }
    }
    assert!(randomised > 0);
    let batch = Batch::new(SeededNoise::new(5).randn((3, 6, 1), DType::F64, &dev)?);
    let options = ElboOptions::default();
    let lambda = 0.7;
    let objective = |m: &Model| -> Result<Tensor> {
        let terms = m.elbo(&batch, &options, &mut SeededNoise::new(9))?;
        Ok(terms.objective(lambda)?)
    };
    let value = objective(&model)?.to_scalar::<f64>()?;
    let grads = objective(&model)?.backward()?;
    let h = 1e-6;
    let floor = 1e3 * f64::EPSILON * value.abs() / h;
    let mut pick = SeededNoise::new(11);
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, var) in model.named_parameters() {
        let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        let analytic = match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1::<f64>()?,
            None => vec![0.0; base.len()],
        };
        let largest = (0..analytic.len())
            .max_by(|&a, &b| analytic[a].abs().total_cmp(&analytic[b].abs()))
            .unwrap_or(0);
        if analytic[largest] == 0.0 {
            failures.push(format!("{name}: no gradient at all"));
            continue;
        }
        for i in [pick.permutation(base.len())[0], largest] {
            let at = |delta: f64| -> Result<f64> {
                let mut p = base.clone();
                p[i] += delta;
                var.set(&Tensor::from_vec(p, var.shape(), &dev)?)?;
                Ok(objective(&model)?.to_scalar::<f64>()?)
            };
            let fd = (at(h)? - at(-h)?) / (2.0 * h);
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &dev)?)?;
            checked += 1;
            if (fd - analytic[i]).abs() > 1e-6 * fd.abs() + floor {
                failures.push(format!(
                    "{name}[{i}]: finite difference {fd:e}, autograd {:e}",
                    analytic[i]
                ));
            }
        }
    }
    assert!(checked > 200, "only {checked} entries");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn dkf_gradients_match_finite_differences() -> Result<()> {
    check(&ModelConfig::paper_dkf())
}

#[test]
fn ddssm_gradients_match_finite_differences() -> Result<()> {
    check(&ModelConfig::paper_ddssm())
}
