//! The model owns its units: every entry takes and returns the data's own units through the
//! stored standardisation, and the ELBO carries its Jacobian.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ddssm_model::{Batch, ElboOptions, Model, Standardization, TransitionConfig};
use ddssm_tensor_ops::SeededNoise;

fn dev() -> Device {
    Device::Cpu
}

/// The model owns its units: with a standardisation `(m, s)` every entry takes and returns the
/// data's own units. Data rescaled as `1000·x + 5`, given to the same model with the matching
/// standardisation `(1000·m + 5, 1000·s)`, gives forecasts and reconstructions rescaled the same
/// way and the same ELBO terms except the reconstruction, which moves by exactly the Jacobian,
/// `ln 1000` per observed entry. And a standardised model on raw data is the plain model on the
/// standardised data plus `Σ_observed ln s_d`. (f64: agreement to 1e-9 relative.)
#[test]
fn the_model_owns_its_units() -> Result<()> {
    let config = common::general_config(TransitionConfig::Gaussian(Default::default()));
    let s = Standardization {
        mean: vec![0.5, -1.0, 2.0],
        std: vec![2.0, 0.5, 3.0],
    };
    let scaled = Standardization {
        mean: s.mean.iter().map(|m| 1000.0 * m + 5.0).collect(),
        std: s.std.iter().map(|v| 1000.0 * v).collect(),
    };
    let with = |st: Option<Standardization>| -> Result<Model> {
        let mut m = Model::new(&config, 8, DType::F64, &dev())?;
        m.set_standardization(st)?;
        Ok(m)
    };
    let (a, b, plain) = (with(Some(s.clone()))?, with(Some(scaled))?, with(None)?);
    let mut data = common::batch(&config, 3, 6, 9)?;
    data.x = data.x.to_dtype(DType::F64)?;
    data.covariates = data
        .covariates
        .map(|u| u.to_dtype(DType::F64))
        .transpose()?;
    data.statics = data.statics.map(|u| u.to_dtype(DType::F64)).transpose()?;
    let mask: Vec<f64> = (0..3 * 6 * 3)
        .map(|i| if i % 5 == 2 { 0.0 } else { 1.0 })
        .collect();
    data.mask = Some(Tensor::from_vec(mask.clone(), (3, 6, 3), &dev())?);
    let big = Batch {
        x: data.x.affine(1000.0, 5.0)?,
        ..data.clone()
    };
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * (1.0 + y.abs());
    let opts = ElboOptions::default();
    let ta = a.elbo(&data, &opts, &mut SeededNoise::new(4))?;
    let tb = b.elbo(&big, &opts, &mut SeededNoise::new(4))?;
    for (x, y) in [
        (&ta.init_entropy, &tb.init_entropy),
        (&ta.vhp, &tb.vhp),
        (&ta.transition, &tb.transition),
        (&ta.entropy, &tb.entropy),
    ] {
        for (x, y) in common::scalars(x)?.iter().zip(common::scalars(y)?) {
            assert!(close(*x, y), "{x} vs {y}");
        }
    }
    for (seq, (ra, rb)) in common::scalars(&ta.recon)?
        .iter()
        .zip(common::scalars(&tb.recon)?)
        .enumerate()
    {
        let observed = mask[seq * 18..(seq + 1) * 18].iter().sum::<f64>();
        assert!(close(rb - ra, observed * 1000f64.ln()), "{seq}: {ra} {rb}");
    }
    // The plain model on standardised data, plus the Jacobian.
    let standardised = Batch {
        x: s.apply(&data.x)?,
        ..data.clone()
    };
    let tp = plain.elbo(&standardised, &opts, &mut SeededNoise::new(4))?;
    let log_s: Vec<f64> = s.std.iter().map(|v| v.ln()).collect();
    for (seq, (ra, rp)) in common::scalars(&ta.recon)?
        .iter()
        .zip(common::scalars(&tp.recon)?)
        .enumerate()
    {
        let jacobian: f64 = (0..18).map(|i| mask[seq * 18 + i] * log_s[i % 3]).sum();
        assert!(
            close(*ra, rp + jacobian),
            "{seq}: {ra} vs {rp} + {jacobian}"
        );
    }
    // Forecasts and reconstructions come back in the data's units.
    let history = |x: &Batch| -> Result<Batch> {
        Ok(Batch {
            x: x.x.narrow(1, 0, 4)?,
            mask: None,
            ..x.clone()
        })
    };
    let fa = a.forecast(&history(&data)?, 2, 5, &mut SeededNoise::new(6))?;
    let fb = b.forecast(&history(&big)?, 2, 5, &mut SeededNoise::new(6))?;
    let ra = a.reconstruct(&data, 3, &mut SeededNoise::new(7))?;
    let rb = b.reconstruct(&big, 3, &mut SeededNoise::new(7))?;
    for (x, y) in [
        (&fa.samples, &fb.samples),
        (&fa.mean, &fb.mean),
        (&ra.mean, &rb.mean),
        (&ra.samples, &rb.samples),
    ] {
        for (x, y) in common::scalars(x)?.iter().zip(common::scalars(y)?) {
            assert!(close(1000.0 * x + 5.0, y), "{x} → {y}");
        }
    }
    Ok(())
}

/// Missing targets do not leak: entries whose mask is 0 may hold anything (0, 1e6, NaN) and the
/// ELBO terms, reconstructions and forecasts (history with the same mask) are bit for bit the
/// same, for both transitions. A model that read a masked entry anywhere (encoder input,
/// reconstruction term, standardisation) would change or turn NaN.
#[test]
fn masked_values_change_nothing() -> Result<()> {
    for transition in [
        TransitionConfig::Gaussian(Default::default()),
        TransitionConfig::Diffusion(Default::default()),
    ] {
        let config = common::general_config(transition);
        let mut model = Model::new(&config, 3, DType::F32, &dev())?;
        model.set_standardization(Some(Standardization {
            mean: vec![0.5, -1.0, 2.0],
            std: vec![2.0, 0.5, 3.0],
        }))?;
        let data = common::batch(&config, 3, 6, 11)?;
        let mask: Vec<f32> = (0..3 * 6 * 3)
            .map(|i| if i % 4 == 1 { 0.0 } else { 1.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (3, 6, 3), &dev())?;
        let with_masked = |fill: f32| -> Result<Batch> {
            let fill = Tensor::full(fill, (3, 6, 3), &dev())?;
            Ok(Batch {
                x: mask.ne(0f32)?.where_cond(&data.x, &fill)?,
                mask: Some(mask.clone()),
                ..data.clone()
            })
        };
        let run = |batch: &Batch| -> Result<Vec<Vec<f32>>> {
            let terms = model.elbo(batch, &ElboOptions::default(), &mut SeededNoise::new(5))?;
            let history = batch.rows(0, 3)?;
            let history = Batch {
                x: history.x.narrow(1, 0, 4)?,
                mask: history.mask.map(|m| m.narrow(1, 0, 4)).transpose()?,
                ..history
            };
            let forecast = model.forecast(&history, 2, 4, &mut SeededNoise::new(6))?;
            let recon = model.reconstruct(batch, 2, &mut SeededNoise::new(7))?;
            [terms.negative_elbo()?, recon.mean, forecast.samples]
                .iter()
                .map(|t| Ok(t.flatten_all()?.to_vec1::<f32>()?))
                .collect()
        };
        let reference = run(&with_masked(0.0)?)?;
        assert!(reference.iter().flatten().all(|v| v.is_finite()));
        for fill in [1e6, f32::NAN] {
            let other = run(&with_masked(fill)?)?;
            for (a, b) in reference.iter().zip(&other) {
                let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "a masked value of {fill} changed the output");
            }
        }
    }
    Ok(())
}

/// The one-step predictive taken apart ([`Model::one_step_parts`]) draws the same predictive as
/// [`Model::one_step_predictive`] (the same noise stream gives the same samples, bit for bit), its
/// encoder part is the reconstruction's emission mean at the last observed step (f64: 1e-9
/// relative), and the fixed-history part has its shapes and finite positive emission widths.
#[test]
fn one_step_parts_take_the_predictive_apart() -> Result<()> {
    for transition in [
        TransitionConfig::Gaussian(Default::default()),
        TransitionConfig::Diffusion(Default::default()),
    ] {
        let config = common::general_config(transition);
        let mut model = Model::new(&config, 3, DType::F64, &dev())?;
        model.set_standardization(Some(Standardization {
            mean: vec![0.5, -1.0, 2.0],
            std: vec![2.0, 0.5, 3.0],
        }))?;
        let mut data = common::batch(&config, 2, 6, 5)?;
        data.x = data.x.narrow(1, 0, 5)?.to_dtype(DType::F64)?;
        data.covariates = data
            .covariates
            .map(|u| u.to_dtype(DType::F64))
            .transpose()?;
        data.statics = data.statics.map(|u| u.to_dtype(DType::F64)).transpose()?;
        let n = 6;
        let parts = model.one_step_parts(&data, n, &mut SeededNoise::new(11))?;
        let direct = model.one_step_predictive(&data, n, &mut SeededNoise::new(11))?;
        assert_eq!(
            common::scalars(&parts.samples)?,
            common::scalars(&direct)?,
            "{}",
            config.transition.kind()
        );
        let rec = model.reconstruct(&data, n, &mut SeededNoise::new(11))?;
        let last = rec.mean.narrow(2, 4, 1)?.squeeze(2)?;
        for (x, y) in common::scalars(&parts.mean_last)?
            .iter()
            .zip(common::scalars(&last)?)
        {
            assert!((x - y).abs() <= 1e-9 * (1.0 + y.abs()), "{x} vs {y}");
        }
        assert_eq!(parts.z_next_fixed.dims(), [n, 2, config.latent_dim]);
        assert_eq!(parts.std_next_fixed.dims(), [n, 2, config.obs_dim]);
        assert!(common::scalars(&parts.std_next_fixed)?
            .iter()
            .all(|s| *s > 0.0 && s.is_finite()));
    }
    Ok(())
}
