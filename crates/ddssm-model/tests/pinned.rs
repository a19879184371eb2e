//! Pinned numbers: ELBO terms and samples of both paper models for fixed seeds, recorded before
//! the performance work (commit f9cf8e2, plain candle ops). Every optimisation must reproduce
//! them up to f32 rounding: the tolerance is 1e-4 relative (f32 has ~6e-8 relative precision;
//! the terms sum O(10²) contributions and the fused ops round differently).
//!
//! `PIN_PRINT=1 cargo test -p ddssm-model --test pinned -- --nocapture` prints the current values.

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::{Batch, ElboOptions, Model, ModelConfig};
use ddssm_tensor_ops::SeededNoise;

fn numbers(config: &ModelConfig) -> Result<Vec<f64>> {
    let dev = Device::Cpu;
    let model = Model::new(config, 7, DType::F32, &dev)?;
    let x = SeededNoise::new(8).randn((3, 6, 1), DType::F32, &dev)?;
    let batch = Batch::new(x);
    let terms = model.elbo(&batch, &ElboOptions::default(), &mut SeededNoise::new(9))?;
    let mut out = Vec::new();
    for t in [
        &terms.recon,
        &terms.init_entropy,
        &terms.vhp,
        &terms.transition,
        &terms.entropy,
    ] {
        out.extend(t.to_dtype(DType::F64)?.to_vec1::<f64>()?);
    }
    let p = model.one_step_predictive(&batch, 2, &mut SeededNoise::new(10))?;
    out.extend(p.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
    Ok(out)
}

fn check(config: &ModelConfig, pinned: &[f64]) -> Result<()> {
    let got = numbers(config)?;
    if std::env::var_os("PIN_PRINT").is_some() {
        println!("{}: {got:?}", config.transition.kind());
    }
    assert_eq!(got.len(), pinned.len());
    for (i, (g, p)) in got.iter().zip(pinned).enumerate() {
        assert!(
            (g - p).abs() <= 1e-4 * p.abs().max(1.0),
            "value {i}: {g} now, {p} pinned"
        );
    }
    Ok(())
}

#[test]
fn dkf_numbers_are_pinned() -> Result<()> {
    check(&ModelConfig::paper_dkf(), &DKF)
}

#[test]
fn ddssm_numbers_are_pinned() -> Result<()> {
    check(&ModelConfig::paper_ddssm(), &DDSSM)
}

/// recon ×3, init_entropy ×3, vhp ×3, transition ×3, entropy ×3, predictive samples ×6.
const DKF: [f64; 21] = [
    9.706786155700684,
    12.090145111083984,
    7.59135627746582,
    -1.321797251701355,
    -1.321783423423767,
    -1.3217939138412476,
    1.1255797147750854,
    1.4523847103118896,
    1.043588638305664,
    7.0887017250061035,
    7.088775634765625,
    7.088672637939453,
    -6.604272842407227,
    -6.604480266571045,
    -6.604375839233398,
    -1.6140164136886597,
    0.12241590023040771,
    0.6317889094352722,
    -0.050458457320928574,
    -0.6433837413787842,
    -1.1254204511642456,
];
const DDSSM: [f64; 21] = [
    9.706786155700684,
    12.090145111083984,
    7.59135627746582,
    -1.321797251701355,
    -1.321783423423767,
    -1.3217939138412476,
    1.1255797147750854,
    1.4523847103118896,
    1.043588638305664,
    16.972261428833008,
    12.299825668334961,
    21.21872329711914,
    -6.604272842407227,
    -6.604480266571045,
    -6.604375839233398,
    0.45565927028656006,
    0.1205953061580658,
    0.32698363065719604,
    -1.2647985219955444,
    0.002791658043861389,
    -0.04049630090594292,
];
