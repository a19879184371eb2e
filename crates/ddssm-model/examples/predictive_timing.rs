//! Times the one-step predictive sampler (encoder over `T − 1` steps, the transition's sampler,
//! the emission) of a fresh paper model: `cargo run --release -p ddssm-model --example
//! predictive_timing -- [ddssm|dkf] [sequences] [samples] [reps]`. Prints samples per second
//! (median of `reps` runs) — a quick probe; `cargo xtask bench` is the benchmark of record.

mod common;

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::{Batch, Model};
use ddssm_tensor_ops::SeededNoise;

fn main() -> Result<()> {
    let args = common::Args::read();
    let arg = |i: usize, default: usize| args.count(i, default);
    let config = args.config();
    let (b, n, reps) = (arg(2, 16), arg(3, 1024), arg(4, 3));
    let dev = Device::Cpu;
    let model = Model::new(&config, 0, DType::F32, &dev)?;
    let mut noise = SeededNoise::new(1);
    let x = noise.randn((b, 31, 1), DType::F32, &dev)?;
    let mut rates = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let draws = model.one_step_predictive(&Batch::new(x.clone()), n, &mut noise)?;
        assert_eq!(draws.dims(), [n, b, 1]);
        rates.push((b * n) as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{}: {b} sequences × {n} samples: median {:.0} samples/s (min {:.0}, max {:.0}, {reps} runs)",
        config.transition.kind(),
        rates[reps / 2],
        rates[0],
        rates[reps - 1]
    );
    Ok(())
}
