//! Times one training step (ELBO + backward) of the paper's DKF or DDSSM on random data:
//! `cargo run --release -p ddssm-model --example step_timing -- [dkf|ddssm] [batch] [T] [S] [reps]`.
//! A quick probe; the benchmarks of record are `cargo xtask bench` (issue 8).

mod common;

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::{Batch, ElboOptions, Model};
use ddssm_tensor_ops::SeededNoise;

fn main() -> Result<()> {
    let args = common::Args::read();
    let arg = |i: usize, default: usize| args.count(i, default);
    let config = args.config();
    let (b, t, s, reps) = (arg(2, 128), arg(3, 32), arg(4, 2), arg(5, 5));
    let dev = Device::Cpu;
    let model = Model::new(&config, 0, DType::F32, &dev)?;
    let mut noise = SeededNoise::new(1);
    let x = noise.randn((b, t, 1), DType::F32, &dev)?;
    let options = ElboOptions {
        samples: s,
        ..ElboOptions::default()
    };
    let mut times = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let terms = model.elbo(&Batch::new(x.clone()), &options, &mut noise)?;
        let _grads = terms.objective(1.0)?.backward()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{} B={b} T={t} S={s}: median {:.3} s per step (min {:.3}, max {:.3}, {reps} runs)",
        config.transition.kind(),
        times[reps / 2],
        times[0],
        times[reps - 1]
    );
    Ok(())
}
