//! TPE against random search on a cheap objective shaped like the paper's search space: two
//! log-scaled learning rates with an optimum inside the range, an integer, and a categorical.
//!
//! Each of 40 seeds runs a 50-trial study (the paper's budget, 10 random start-up trials) with
//! TPE and, independently, 50 random trials; the statistic is the paired difference of the best
//! scores. The test asserts that TPE's mean best is lower by more than 3 standard errors of that
//! mean difference (fixed seeds, so the outcome is deterministic; the margin is what makes it
//! meaningful rather than luck).

use ddssm_tensor_ops::SeededNoise;
use ddssm_train::tpe::{Distribution, Params, Space, Tpe};
use serde_json::Value;

fn space() -> Space {
    [
        (
            "enc_lr",
            Distribution::Float {
                low: 5e-5,
                high: 1e-2,
                log: true,
            },
        ),
        (
            "dec_lr",
            Distribution::Float {
                low: 5e-5,
                high: 1e-2,
                log: true,
            },
        ),
        (
            "s_k",
            Distribution::Int {
                low: 1,
                high: 8,
                log: false,
            },
        ),
        (
            "schedule",
            Distribution::Categorical {
                choices: vec![Value::from("linear"), Value::from("cosine")],
            },
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn objective(p: &Params) -> f64 {
    let enc = p["enc_lr"].as_f64().unwrap().ln();
    let dec = p["dec_lr"].as_f64().unwrap().ln();
    let s_k = p["s_k"].as_f64().unwrap();
    let cosine = p["schedule"] == "cosine";
    (enc - 1e-3f64.ln()).powi(2)
        + 0.5 * (dec - 3e-4f64.ln()).powi(2)
        + 0.1 * (s_k - 5.0).powi(2)
        + if cosine { 0.0 } else { 0.5 }
}

fn best_of(tpe: &Tpe, seed: u64, trials: usize, random: bool) -> f64 {
    let space = space();
    let root = SeededNoise::new(seed);
    let mut history: Vec<(Params, f64)> = Vec::new();
    for i in 0..trials {
        let mut noise = root.fork(&format!("trial{i}"));
        let p = if random {
            tpe.random(&space, &mut noise)
        } else {
            tpe.propose(&space, &history, &mut noise)
        };
        let y = objective(&p);
        history.push((p, y));
    }
    history.iter().map(|h| h.1).fold(f64::INFINITY, f64::min)
}

#[test]
fn tpe_beats_random_search() {
    let tpe = Tpe::default();
    let seeds = 40;
    let diffs: Vec<f64> = (0..seeds)
        .map(|s| best_of(&tpe, s, 50, true) - best_of(&tpe, 1000 + s, 50, false))
        .collect();
    let n = diffs.len() as f64;
    let mean = diffs.iter().sum::<f64>() / n;
    let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let se = (var / n).sqrt();
    println!("random best − TPE best: {mean:.4} ± {se:.4} (SE, {seeds} seeds)");
    assert!(mean > 3.0 * se, "TPE not better: {mean} ± {se}");
}

#[test]
fn the_start_up_trials_are_random_search() {
    let tpe = Tpe::default();
    let space = space();
    let mut history = Vec::new();
    for i in 0..tpe.n_startup_trials {
        let noise = SeededNoise::new(5).fork(&format!("trial{i}"));
        let p = tpe.propose(&space, &history, &mut noise.clone());
        assert_eq!(p, tpe.random(&space, &mut noise.clone()));
        let y = objective(&p);
        history.push((p, y));
    }
}

#[test]
fn failed_trials_are_left_out() {
    let tpe = Tpe::default();
    let space = space();
    let mut history = Vec::new();
    for i in 0..15 {
        let p = tpe.random(&space, &mut SeededNoise::new(i));
        let y = objective(&p);
        history.push((p, y));
    }
    let mut with_failures = history.clone();
    let failed = tpe.random(&space, &mut SeededNoise::new(99));
    with_failures.insert(3, (failed, f64::NAN));
    let a = tpe.propose(&space, &history, &mut SeededNoise::new(7));
    let b = tpe.propose(&space, &with_failures, &mut SeededNoise::new(7));
    assert_eq!(a, b);
}
