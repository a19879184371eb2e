//! `cargo xtask bench`: the performance figures of record (issue 8), as one JSON object.
//!
//! - `ddssm_train`, `dkf_train`: one training step (ELBO with S trajectories and S_k diffusion
//!   draws, backward, AdamW) at the paper's configurations (Table 3: batch 128 / 512, S = 2,
//!   S_k = 5 / 1, T = 32), on the bimodal walk's standardised training data; median, min and max
//!   of `runs` timed steps after one warm-up step, and the peak resident memory of the block
//!   (the paper configs process the batch in micro-batches of 64: `TrainConfig::micro_batch`).
//! - `ddssm_sampler`: the one-step predictive `p(x_32 | x_{1:31})` (encoder over 31 steps,
//!   K = 128 ancestral steps, emission), samples per second; median of `runs` calls.
//! - `ddssm_sampler_dpm20`: the same with DPM-Solver++(2M) on 20 levels (20 network calls), the
//!   few-step sampler measured equal to ancestral on the trained DDSSMs and the `ddssm` command's
//!   default.
//! - `scaling_t`, `scaling_batch`: DDSSM step time for T = 16 … 256 (batch 32) and for batch
//!   32 … 512 (T = 32), with the cost per sequence-step so linearity can be read off.
//! - With `--peer`, the PyTorch peer (`../shared/peer/torch_ref/bench.py`) runs in the same
//!   command with the same thread count and sampler size; its JSON is embedded and the ratios
//!   printed (`> 1` means ddssm is faster).
//! - With `--pairs N`, ours and the peer alternate N times (ours, peer, ours, …; scaling skipped):
//!   each round's three figures and ratios are kept (`pairs`), and `paired_ratios` gives each
//!   ratio's median, min and max over the rounds — so a load swing hits both sides of a pair
//!   and one lucky run cannot make the figure.
//!
//! Thread count, load average before and after, the CPU and the git commit are recorded: compare
//! only figures taken in one run on an otherwise idle machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use ddssm_eval::BimodalRandomWalk;
use ddssm_model::{Model, ModelConfig, Standardization};
use ddssm_tensor_ops::{host, SeededNoise};
use ddssm_train::timing::{predictive_samples_per_second, time_training_steps, WARMUP_STEPS};
use ddssm_train::TrainConfig;
use serde_json::{json, Value};

/// The command's options.
#[derive(Debug, Clone)]
pub struct Args {
    /// Timed repetitions per figure (at least 5 for figures of record).
    pub runs: usize,
    /// Sequences for the sampler figure (each gets `sampler_samples` draws).
    pub sampler_examples: usize,
    /// Draws per sequence for the sampler figure.
    pub sampler_samples: usize,
    /// Skip the T and batch scaling series.
    pub skip_scaling: bool,
    /// Small sizes everywhere: checks that the harness works, measures nothing of record.
    pub quick: bool,
    /// Also run the PyTorch peer.
    pub peer: bool,
    /// Alternate ours and the peer this many times (0: one run of each, with `peer`).
    pub pairs: usize,
    /// The peer's Python interpreter.
    pub python: PathBuf,
    /// Also write the JSON here.
    pub out: Option<PathBuf>,
    /// Run only this block (`ddssm_train`, `dkf_train`, `ddssm_sampler`, `scaling`).
    pub only: Option<String>,
    /// Overrides both training figures' `micro_batch` (the paper configs' 64).
    pub micro_batch: Option<usize>,
    /// Device.
    pub device: Device,
}

/// Median, min and max of a sample of timings.
fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    };
    json!({ "median": median, "min": v[0], "max": v[n - 1], "runs": n })
}

fn median(v: &Value) -> f64 {
    v["median"].as_f64().unwrap_or(f64::NAN)
}

fn loadavg() -> Value {
    host::load_average().map_or(Value::Null, |v| json!(v))
}

/// The few-step sampler of the `ddssm_sampler_dpm20` figure: the `ddssm` command's default
/// (DPM-Solver++(2M) on 20 levels), so the figure is the throughput at that default.
const FEW_STEP_SAMPLER: ddssm_diffusion::Sampler = ddssm_train::series::FORECAST_SAMPLER;

/// Standardised bimodal training sequences, `[n, t, 1]`.
fn data(n: usize, t: usize, device: &Device) -> Result<Tensor> {
    let walk = BimodalRandomWalk {
        t,
        ..BimodalRandomWalk::default()
    };
    let (_, x) = walk.simulate(n, &mut SeededNoise::new(0).fork("bench/data"))?;
    let raw = x.to_tensor(DType::F32, device)?;
    Ok(Standardization::fit(&raw, None)?.apply(&raw)?)
}

/// [`time_training_steps`] as the benchmark's JSON: median, min and max, the sizes, the peak
/// memory.
fn time_steps(
    model_config: &ModelConfig,
    train_config: &TrainConfig,
    x: &Tensor,
    runs: usize,
    device: &Device,
) -> Result<Value> {
    let timed = time_training_steps(model_config, train_config, x, runs, device)?;
    let batch = train_config.batch_size;
    let mut v = stats(timed.seconds);
    v["warmup_steps"] = json!(WARMUP_STEPS);
    v["batch"] = json!(batch);
    v["T"] = json!(x.dim(1)?);
    v["S"] = json!(train_config.samples);
    v["micro_batch"] = json!(train_config.micro_batch);
    v["S_k"] = json!(match &model_config.transition {
        ddssm_model::TransitionConfig::Diffusion(d) => d.loss.s_k,
        ddssm_model::TransitionConfig::Gaussian(_) => 0,
    });
    // Without a working reset the process-wide peak is all there is: run one block alone
    // (`--only`) and read `process_peak_rss_mib`.
    v["peak_rss_mib"] = json!(timed.peak_rss_mib);
    Ok(v)
}

/// Samples per second of the one-step predictive with the paper's ancestral sampler (K = 128),
/// or with `sampler` instead (the few-step figure).
fn time_sampler(
    args: &Args,
    device: &Device,
    sampler: Option<ddssm_diffusion::Sampler>,
) -> Result<Value> {
    let model_config = ModelConfig::paper_ddssm();
    let mut model = Model::new(&model_config, 0, DType::F32, device)?;
    if let Some(sampler) = sampler {
        model.set_sampler(sampler)?;
    }
    let walk = BimodalRandomWalk::default();
    let (_, x) = walk.simulate(
        args.sampler_examples,
        &mut SeededNoise::new(0).fork("bench/sampler"),
    )?;
    let raw = x.to_tensor(DType::F32, device)?;
    model.set_standardization(Some(Standardization::fit(&raw, None)?))?;
    let prefix = raw.narrow(1, 0, walk.t - 1)?;
    let n = args.sampler_samples;
    // The experiment's chunking (configs/bimodal.toml, evaluation.max_chains).
    let max_chains = ddssm_train::experiment::ExperimentConfig::paper()
        .evaluation
        .max_chains;
    let rates = predictive_samples_per_second(
        &model,
        &prefix,
        n,
        max_chains,
        args.runs,
        &mut SeededNoise::new(1),
    )?;
    let mut v = stats(rates);
    v["examples"] = json!(args.sampler_examples);
    v["samples_per_example"] = json!(n);
    v["unit"] = json!("samples per second");
    v["K"] = json!(match &model_config.transition {
        ddssm_model::TransitionConfig::Diffusion(d) => d.schedule.num_steps,
        ddssm_model::TransitionConfig::Gaussian(_) => 0,
    });
    v["sampler"] = json!(sampler.map_or("ancestral (paper)".to_string(), |s| format!("{s:?}")));
    Ok(v)
}

/// Step time of the DDSSM against T (batch 32) and against the batch size (T = 32).
fn scaling(args: &Args, device: &Device) -> Result<(Value, Value)> {
    let model_config = ModelConfig::paper_ddssm();
    let mut train_config = TrainConfig::paper_ddssm();
    let (ts, batches): (&[usize], &[usize]) = if args.quick {
        (&[8, 16], &[4, 8])
    } else {
        (&[16, 32, 64, 128, 256], &[32, 64, 128, 256, 512])
    };
    let mut by_t = Vec::new();
    train_config.batch_size = if args.quick { 4 } else { 32 };
    for &t in ts {
        let x = data(train_config.batch_size, t, device)?;
        let v = time_steps(&model_config, &train_config, &x, args.runs, device)?;
        tracing::info!("bench: DDSSM step at T = {t}: {:.3} s", median(&v));
        let per = median(&v) / (t * train_config.batch_size) as f64;
        by_t.push(json!({ "T": t, "step": v, "seconds_per_sequence_step": per }));
    }
    let mut by_batch = Vec::new();
    let t = if args.quick { 8 } else { 32 };
    for &b in batches {
        train_config.batch_size = b;
        let x = data(b, t, device)?;
        let v = time_steps(&model_config, &train_config, &x, args.runs, device)?;
        tracing::info!("bench: DDSSM step at batch {b}: {:.3} s", median(&v));
        let per = median(&v) / (t * b) as f64;
        by_batch.push(json!({ "batch": b, "step": v, "seconds_per_sequence_step": per }));
    }
    Ok((json!(by_t), json!(by_batch)))
}

/// Runs the peer's `bench.py` with matching sizes and returns its JSON.
fn run_peer(args: &Args, threads: usize) -> Result<Value> {
    let script = Path::new("../shared/peer/torch_ref/bench.py");
    if !script.exists() {
        bail!(
            "--peer: {} not found (run from the repository root, next to ../shared)",
            script.display()
        );
    }
    let steps = args.runs.max(5).to_string();
    let threads = threads.to_string();
    let examples = args.sampler_examples.to_string();
    let samples = args.sampler_samples.to_string();
    tracing::info!(
        "bench: running the PyTorch peer ({})",
        args.python.display()
    );
    let output = Command::new(&args.python)
        .arg(script)
        .args(["--threads", &threads, "--steps", &steps])
        .args(["--warmup", &WARMUP_STEPS.to_string()])
        .args(["--sample-examples", &examples, "--sample-n", &samples])
        .output()
        .with_context(|| {
            format!(
                "--peer: running {} (it needs `pip install torch numpy scipy`; \
                 --python names the interpreter)",
                args.python.display()
            )
        })?;
    if !output.status.success() {
        bail!(
            "--peer: bench.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    serde_json::from_slice(&output.stdout).context("--peer: bench.py printed no JSON")
}

/// Runs the benchmarks and prints (and optionally writes) the JSON.
pub fn run(args: &Args) -> Result<()> {
    let out = measure(args)?;
    let text = serde_json::to_string_pretty(&out)?;
    if let Some(path) = &args.out {
        ddssm_model::checkpoint::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{text}");
    Ok(())
}

/// How many times faster ddssm is than the peer on each figure (`> 1`: ddssm faster; null
/// where the peer has no such figure). `ours` holds [`measure`]'s blocks, `peer` bench.py's JSON.
fn speedups(ours: &Value, peer: &Value) -> Value {
    let ratio = |ours: f64, theirs: Option<f64>| theirs.map(|t| t / ours);
    json!({
        "ddssm_train_speedup": ratio(
            median(&ours["ddssm_train"]),
            peer["ddssm_train"]["median_step_s"].as_f64()
        ),
        "dkf_train_speedup": ratio(
            median(&ours["dkf_train"]),
            peer["dkf_train"]["median_step_s"].as_f64()
        ),
        "sampler_speedup": peer["ddssm_sampler"]["samples_per_s"]
            .as_f64()
            .map(|t| median(&ours["ddssm_sampler"]) / t),
    })
}

/// Each ratio's median, min and max over the rounds of `--pairs` (each round's `ratios`).
fn paired_summary(rounds: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    for key in [
        "ddssm_train_speedup",
        "dkf_train_speedup",
        "sampler_speedup",
    ] {
        let values: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r["ratios"][key].as_f64())
            .collect();
        out.insert(
            key.into(),
            if values.is_empty() {
                Value::Null
            } else {
                stats(values)
            },
        );
    }
    Value::Object(out)
}

/// `--pairs`: ours and the peer alternately, `args.pairs` times; returns the rounds (each with
/// `ours`, `peer`, `ratios`) and their [`paired_summary`].
fn paired(args: &Args, threads: usize) -> Result<(Value, Value)> {
    let ours_only = Args {
        pairs: 0,
        peer: false,
        skip_scaling: true,
        out: None,
        ..args.clone()
    };
    let mut rounds = Vec::with_capacity(args.pairs);
    for round in 1..=args.pairs {
        tracing::info!("bench: pair {round}/{}: ddssm", args.pairs);
        let ours = measure(&ours_only)?;
        tracing::info!("bench: pair {round}/{}: the peer", args.pairs);
        let peer = run_peer(args, threads)?;
        let ratios = speedups(&ours, &peer);
        tracing::info!("bench: pair {round}/{}: speedups {ratios}", args.pairs);
        rounds.push(json!({ "ours": ours, "peer": peer, "ratios": ratios }));
    }
    let summary = paired_summary(&rounds);
    Ok((json!(rounds), summary))
}

/// Runs the benchmarks; returns the JSON object described in the module docs.
pub fn measure(args: &Args) -> Result<Value> {
    if args.runs == 0 {
        bail!("--runs: expected an integer ≥ 1");
    }
    const BLOCKS: [&str; 4] = ["ddssm_train", "dkf_train", "ddssm_sampler", "scaling"];
    if let Some(only) = &args.only {
        if !BLOCKS.contains(&only.as_str()) {
            bail!("--only {only}: expected one of {}", BLOCKS.join(", "));
        }
    }
    let wanted = |name: &str| args.only.as_deref().is_none_or(|o| o == name);
    let device = &args.device;
    let threads = ddssm_tensor_ops::ThreadSettings::current().total();
    let mut out = json!({
        "git_commit": crate::BUILD_COMMIT.to_string(),
        "cpu": host::cpu_model(),
        "threads": threads,
        "device": format!("{device:?}"),
        "quick": args.quick,
        "loadavg_before": loadavg(),
    });
    if args.pairs > 0 {
        if args.only.is_some() {
            bail!("--pairs times every figure against the peer: it does not go with --only");
        }
        let (rounds, summary) = paired(args, threads)?;
        for (key, v) in summary.as_object().into_iter().flatten() {
            tracing::info!(
                "bench: {key} over {} pairs: median {:.2}, min {:.2}, max {:.2}",
                args.pairs,
                v["median"].as_f64().unwrap_or(f64::NAN),
                v["min"].as_f64().unwrap_or(f64::NAN),
                v["max"].as_f64().unwrap_or(f64::NAN)
            );
        }
        out["pairs"] = rounds;
        out["paired_ratios"] = summary;
        if args.quick {
            // bench.py has no small sizes: the ratios set our tiny sizes against its full ones.
            out["warning"] = json!(
                "--quick: ddssm ran tiny sizes, the peer its full ones; the ratios mean nothing"
            );
            tracing::warn!("bench: --quick with the peer: the ratios mean nothing");
        }
        out["loadavg_after"] = loadavg();
        return Ok(out);
    }
    for (name, model_config, mut train_config) in [
        (
            "ddssm_train",
            ModelConfig::paper_ddssm(),
            TrainConfig::paper_ddssm(),
        ),
        (
            "dkf_train",
            ModelConfig::paper_dkf(),
            TrainConfig::paper_dkf(),
        ),
    ] {
        if !wanted(name) {
            continue;
        }
        if args.quick {
            train_config.batch_size = 8;
        }
        if let Some(m) = args.micro_batch {
            train_config.micro_batch = m;
        }
        let t = if args.quick { 8 } else { 32 };
        let x = data(train_config.batch_size.max(64), t, device)?;
        let v = time_steps(&model_config, &train_config, &x, args.runs, device)?;
        tracing::info!("bench: {name}: median {:.3} s per step", median(&v));
        out[name] = v;
    }
    if wanted("ddssm_sampler") {
        out["ddssm_sampler"] = time_sampler(args, device, None)?;
        // The few-step sampler measured equal to ancestral on the trained DDSSM
        // (docs/results/bimodal/runs/paper-s0/sampler-tradeoff.md: −0.006 ± 0.003 jsd_exact).
        out["ddssm_sampler_dpm20"] = time_sampler(args, device, Some(FEW_STEP_SAMPLER))?;
        tracing::info!(
            "bench: sampler: median {:.0} samples/s (ancestral, K = 128), {:.0} (DPM-Solver++(2M), 20 calls)",
            median(&out["ddssm_sampler"]),
            median(&out["ddssm_sampler_dpm20"])
        );
    }
    if !args.skip_scaling && wanted("scaling") {
        let (by_t, by_batch) = scaling(args, device)?;
        out["scaling_t"] = by_t;
        out["scaling_batch"] = by_batch;
    }
    if args.peer && args.only.is_none() && args.pairs == 0 {
        let peer = run_peer(args, threads)?;
        out["ratios"] = speedups(&out, &peer);
        if args.quick {
            out["warning"] = json!(
                "--quick: ddssm ran tiny sizes, the peer its full ones; the ratios mean nothing"
            );
        }
        out["peer"] = peer;
    }
    out["loadavg_after"] = loadavg();
    out["process_peak_rss_mib"] = json!(host::peak_memory_mib());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(runs: usize) -> Args {
        Args {
            runs,
            sampler_examples: 3,
            sampler_samples: 4,
            skip_scaling: false,
            quick: true,
            peer: false,
            pairs: 0,
            python: "python3".into(),
            out: None,
            only: None,
            micro_batch: None,
            device: Device::Cpu,
        }
    }

    #[test]
    fn the_quick_benchmark_reports_every_figure() -> Result<()> {
        let out = measure(&quick(2))?;
        for key in [
            "ddssm_train",
            "dkf_train",
            "ddssm_sampler",
            "ddssm_sampler_dpm20",
        ] {
            let v = &out[key];
            assert_eq!(v["runs"], 2, "{key}");
            assert!(v["min"].as_f64().unwrap() > 0.0, "{key}");
            assert!(v["min"].as_f64() <= v["median"].as_f64(), "{key}");
            assert!(v["median"].as_f64() <= v["max"].as_f64(), "{key}");
        }
        assert_eq!(out["ddssm_sampler"]["examples"], 3);
        assert_eq!(out["scaling_t"].as_array().map(Vec::len), Some(2));
        assert_eq!(out["scaling_batch"].as_array().map(Vec::len), Some(2));
        assert_eq!(stats(vec![3.0, 1.0, 2.0, 10.0])["median"], 2.5);
        Ok(())
    }

    /// `--micro-batch` reaches the timed steps (the quick batch of 8 in passes of 4) and is
    /// recorded beside the figure.
    #[test]
    fn the_micro_batch_override_is_timed_and_recorded() -> Result<()> {
        let args = Args {
            only: Some("dkf_train".into()),
            micro_batch: Some(4),
            ..quick(1)
        };
        let out = measure(&args)?;
        assert_eq!(out["dkf_train"]["micro_batch"], 4);
        assert_eq!(out["dkf_train"]["batch"], 8);
        assert!(out.get("ddssm_train").is_none());
        Ok(())
    }

    /// The paired summary takes each ratio over the rounds; a figure the peer lacks is null.
    #[test]
    fn paired_ratios_are_summarised_per_figure() {
        let ours = json!({
            "ddssm_train": { "median": 0.2 },
            "dkf_train": { "median": 0.5 },
            "ddssm_sampler": { "median": 6000.0 },
        });
        let rounds: Vec<Value> = [0.6, 0.4, 0.8]
            .iter()
            .map(|&peer_step| {
                let peer = json!({
                    "ddssm_train": { "median_step_s": peer_step },
                    "dkf_train": { "median_step_s": 1.5 },
                    "ddssm_sampler": { "samples_per_s": 2000.0 },
                });
                json!({ "ratios": speedups(&ours, &peer) })
            })
            .collect();
        let s = paired_summary(&rounds);
        let close = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-12;
        assert!(close(&s["ddssm_train_speedup"]["median"], 3.0));
        assert!(close(&s["ddssm_train_speedup"]["min"], 2.0));
        assert!(close(&s["ddssm_train_speedup"]["max"], 4.0));
        assert!(close(&s["dkf_train_speedup"]["median"], 3.0));
        assert!(close(&s["sampler_speedup"]["median"], 3.0));
        assert_eq!(s["ddssm_train_speedup"]["runs"], 3);
        let missing = paired_summary(&[json!({ "ratios": speedups(&ours, &json!({})) })]);
        assert!(missing["dkf_train_speedup"].is_null());
    }

    #[test]
    fn pairs_with_only_is_refused() {
        let mut a = quick(1);
        a.pairs = 2;
        a.only = Some("dkf_train".into());
        let e = measure(&a).unwrap_err().to_string();
        assert!(e.contains("--pairs"), "{e}");
    }

    #[test]
    fn zero_runs_is_refused() {
        let e = measure(&quick(0)).unwrap_err().to_string();
        assert!(e.contains("--runs"), "{e}");
    }
}
