//! Where a training step's time goes: forward and backward of the encoder sampling, the decoder
//! and the transition term, timed separately, and for comparison the encoder's chain without a
//! graph and its teacher-forced evaluation in one batched call (medians of `reps` runs):
//! `cargo run --release -p ddssm-model --example step_breakdown -- [dkf|ddssm] [batch] [T] [S] [reps]`.

mod common;

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ddssm_model::{Estimator, Model};
use ddssm_tensor_ops::SeededNoise;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = common::Args::read();
    let arg = |i: usize, default: usize| args.count(i, default);
    let config = args.config();
    let (b, t, s, reps) = (arg(2, 128), arg(3, 32), arg(4, 2), arg(5, 5));
    let dev = Device::Cpu;
    let model = Model::new(&config, 0, DType::F32, &dev)?;
    let mut noise = SeededNoise::new(1);
    let x = noise.randn((b, t, 1), DType::F32, &dev)?;
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("encoder prepare+sample fwd", vec![]),
        ("encoder bwd", vec![]),
        ("decoder fwd", vec![]),
        ("decoder bwd", vec![]),
        ("transition fwd", vec![]),
        ("transition bwd", vec![]),
        ("encoder sample no-grad fwd", vec![]),
        ("encoder posteriors fwd", vec![]),
        ("encoder posteriors bwd", vec![]),
    ];
    let time = |f: &mut dyn FnMut() -> Result<Tensor>| -> Result<(Tensor, f64)> {
        let start = Instant::now();
        let out = f()?;
        Ok((out, start.elapsed().as_secs_f64()))
    };
    // Seconds of the backward pass from the sum of `out`.
    let backward = |out: &Tensor| -> Result<f64> {
        let start = Instant::now();
        out.sum_all()?.backward()?;
        Ok(start.elapsed().as_secs_f64())
    };
    for _ in 0..reps {
        let (traj_z, t_enc) = time(&mut || {
            let inputs = model.encoder().prepare(&x, None, None, None)?;
            Ok(model
                .encoder()
                .sample(&inputs, s, &mut noise, model.residual_prior())?
                .z)
        })?;
        rows[0].1.push(t_enc);
        rows[1].1.push(backward(&traj_z)?);
        let z = traj_z.detach();
        let zv = candle_core::Var::from_tensor(&z)?;
        let (px, t) = time(&mut || {
            Ok(model
                .decoder()
                .forward(zv.as_tensor(), None, None)?
                .mean()
                .clone())
        })?;
        rows[2].1.push(t);
        rows[3].1.push(backward(&px)?);
        let (loss, t) = time(&mut || {
            let (input, target) = model.transition_pairs(zv.as_tensor(), None)?;
            let post = ddssm_tensor_ops::DiagGaussian::new(target.clone(), target.zeros_like()?)?;
            Ok(model
                .transition()
                .loss(&input, &target, &post, Estimator::Analytic, &mut noise)?
                .objective)
        })?;
        rows[4].1.push(t);
        rows[5].1.push(backward(&loss)?);
        let inputs = model.encoder().prepare(&x, None, None, None)?.detach();
        let (_, t) = time(&mut || {
            Ok(model
                .encoder()
                .sample_no_grad(&inputs, s, &mut noise, model.residual_prior())?
                .z)
        })?;
        rows[6].1.push(t);
        let (q, t) = time(&mut || {
            let rep = model.encoder().prepare(&x, None, None, None)?.repeat(s)?;
            Ok(model
                .encoder()
                .posteriors(&rep, zv.as_tensor(), model.residual_prior())?
                .mean()
                .clone())
        })?;
        rows[7].1.push(t);
        rows[8].1.push(backward(&q)?);
    }
    println!(
        "{} B={b} T={t} S={s} (medians of {reps}):",
        config.transition.kind()
    );
    for (name, v) in rows {
        println!("  {name:28} {:8.1} ms", 1e3 * median(v));
    }
    Ok(())
}
