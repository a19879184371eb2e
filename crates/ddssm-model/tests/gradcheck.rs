//! End-to-end gradient check: the gradient of the whole λ-weighted ELBO objective (App. I.4) with
//! respect to every parameter tensor of both paper models, against central finite differences in
//! f64. The noise stream is reset for every evaluation, so the objective is a deterministic
//! function of the parameters and the check is exact up to O(h²) truncation and rounding.
//!
//! Each tensor is probed at one entry chosen from the seed; the tolerance is
//! `1e-5 · (1 + |fd|)` (h = 1e-6, objective O(10²): truncation ~1e-10, rounding ~1e-16·10²/1e-6
//! ≈ 1e-8).

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ddssm_model::{Batch, ElboOptions, Model, ModelConfig};
use ddssm_tensor_ops::SeededNoise;

fn check(config: &ModelConfig) -> Result<()> {
    let dev = Device::Cpu;
    let model = Model::new(config, 1, DType::F64, &dev)?;
    let batch = Batch::new(SeededNoise::new(5).randn((3, 6, 1), DType::F64, &dev)?);
    let options = ElboOptions::default();
    let lambda = 0.7;
    let objective = |m: &Model| -> Result<Tensor> {
        let terms = m.elbo(&batch, &options, &mut SeededNoise::new(9))?;
        Ok(terms.objective(lambda)?)
    };
    let grads = objective(&model)?.backward()?;
    let mut pick = SeededNoise::new(11);
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, var) in model.named_parameters() {
        let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        let i = pick.permutation(base.len())[0];
        let analytic = match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1::<f64>()?[i],
            None => 0.0,
        };
        let h = 1e-6;
        let at = |delta: f64| -> Result<f64> {
            let mut p = base.clone();
            p[i] += delta;
            var.set(&Tensor::from_vec(p, var.shape(), &dev)?)?;
            Ok(objective(&model)?.to_scalar::<f64>()?)
        };
        let fd = (at(h)? - at(-h)?) / (2.0 * h);
        var.set(&Tensor::from_vec(base, var.shape(), &dev)?)?;
        checked += 1;
        if (fd - analytic).abs() > 1e-5 * (1.0 + fd.abs()) {
            failures.push(format!(
                "{name}[{i}]: finite difference {fd:e}, autograd {analytic:e}"
            ));
        }
    }
    assert!(checked > 100, "only {checked} parameters");
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
