//! Unit tests of the training loop's gradient accumulation.

use super::*;
use candle_core::{DType, Device};
use ddssm_model::{ElboOptions, ModelConfig};

fn setup() -> (Model, Batch, TrainConfig) {
    let model = Model::new(&ModelConfig::paper_dkf(), 3, DType::F64, &Device::Cpu).unwrap();
    let x = SeededNoise::new(4)
        .randn((6, 5, 1), DType::F64, &Device::Cpu)
        .unwrap();
    let config = TrainConfig {
        batch_size: 6,
        samples: 1,
        ..TrainConfig::paper_dkf()
    };
    (model, Batch::new(x), config)
}

fn flat(model: &Model, g: &GradStore) -> Vec<f64> {
    let mut out = Vec::new();
    for (_, v) in model.named_parameters() {
        if let Some(t) = g.get(v.as_tensor()) {
            out.extend(t.flatten_all().unwrap().to_vec1::<f64>().unwrap());
        }
    }
    out
}

/// Chunks of 4 + 2 sequences: the accumulated gradient is the share-weighted sum of the
/// chunks' gradients, each chunk drawing from its own fork of the step's noise; the reported
/// objective and terms are the batch means.
#[test]
fn micro_batches_sum_share_weighted_gradients() -> Result<()> {
    let (model, data, mut config) = setup();
    config.micro_batch = 4;
    let idx: Vec<u32> = (0..6).collect();
    let Accumulated {
        grads,
        objective,
        terms: summary,
        effective_sample_size,
    } = accumulated_gradients(&model, &data, &idx, &config, 0.7, 2)?;
    assert_eq!(
        effective_sample_size, None,
        "the ELBO objective has no weights"
    );
    let mut expected: Option<Vec<f64>> = None;
    let (mut obj, mut recon) = (0.0, 0.0);
    for (k, chunk) in [&idx[..4], &idx[4..]].into_iter().enumerate() {
        let share = chunk.len() as f64 / 6.0;
        let mut noise = step_noise(config.seed, 2).fork(&format!("micro{k}"));
        let options = ElboOptions {
            samples: 1,
            estimator: config.estimator,
            ..ElboOptions::default()
        };
        let terms = model.elbo(&select(&data, chunk)?, &options, &mut noise)?;
        recon += share * terms.summary()?.recon;
        let o = terms.objective(0.7)?.affine(share, 0.0)?;
        obj += o.to_scalar::<f64>()?;
        let g = flat(&model, &o.backward()?);
        expected = Some(match expected {
            None => g,
            Some(e) => e.iter().zip(&g).map(|(a, b)| a + b).collect(),
        });
    }
    let got = flat(&model, &grads);
    let expected = expected.unwrap();
    assert_eq!(got.len(), expected.len());
    for (a, b) in got.iter().zip(&expected) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }
    assert!((objective - obj).abs() < 1e-12 * obj.abs().max(1.0));
    // The returned gradients hold no graph: each micro-batch's forward pass is freed before
    // the next one runs (peak memory follows micro_batch, not batch_size).
    for (name, var) in model.named_parameters() {
        if let Some(g) = grads.get(var.as_tensor()) {
            assert!(
                !g.track_op(),
                "the gradient of {name} still references its graph"
            );
        }
    }
    assert!((summary.recon - recon).abs() < 1e-12 * recon.abs().max(1.0));
    Ok(())
}

/// Micro-batches on several worker threads give bit-for-bit the result of one thread: each
/// chunk has its own noise and the sums run in chunk order. (Other tests of this binary may
/// run while the worker count is raised; by this very property their results are unchanged.)
#[test]
fn worker_threads_do_not_change_the_gradient() -> Result<()> {
    let (model, data, mut config) = setup();
    config.micro_batch = 2;
    let idx: Vec<u32> = (0..6).collect();
    ddssm_tensor_ops::set_workers(1);
    let a = accumulated_gradients(&model, &data, &idx, &config, 0.7, 3)?;
    ddssm_tensor_ops::set_workers(3);
    let parallel = accumulated_gradients(&model, &data, &idx, &config, 0.7, 3);
    ddssm_tensor_ops::set_workers(1);
    let b = parallel?;
    assert_eq!(flat(&model, &a.grads), flat(&model, &b.grads));
    assert_eq!(a.objective, b.objective);
    assert_eq!(a.terms.negative_elbo, b.terms.negative_elbo);
    Ok(())
}

/// One chunk (micro_batch 0, or ≥ the batch) is the plain full-batch step.
#[test]
fn one_chunk_is_the_whole_batch() -> Result<()> {
    let (model, data, mut config) = setup();
    let idx: Vec<u32> = (0..6).collect();
    config.micro_batch = 0;
    let a = accumulated_gradients(&model, &data, &idx, &config, 0.7, 1)?;
    config.micro_batch = 64;
    let b = accumulated_gradients(&model, &data, &idx, &config, 0.7, 1)?;
    assert_eq!(flat(&model, &a.grads), flat(&model, &b.grads));
    assert_eq!(a.objective, b.objective);
    Ok(())
}

/// The trainer's advice on passes and workers: idle CPU workers get the micro-batch that keeps
/// them busy; a GPU with several passes gets the one-pass advice; a fitting split gets none.
#[test]
fn pass_advice_names_idle_workers_and_gpu_passes() {
    let mut config = TrainConfig::paper_ddssm();
    assert_eq!(pass_advice(&config, 2, true), None);
    let idle = pass_advice(&config, 16, true).unwrap();
    assert!(
        idle.starts_with("2 of the 16 worker threads busy"),
        "{idle}"
    );
    assert!(
        idle.contains("micro_batch = 8 would keep 16 busy"),
        "{idle}"
    );
    assert!(pass_advice(&config, 2, false)
        .unwrap()
        .contains("micro_batch = 0"));
    config.micro_batch = 0;
    assert_eq!(pass_advice(&config, 1, true), None);
    assert!(pass_advice(&config, 2, true)
        .unwrap()
        .starts_with("1 of the 2"));
    assert_eq!(pass_advice(&config, 2, false), None);
    // Fewer sequences than workers: as many busy as there are sequences.
    config.batch_size = 2;
    let few = pass_advice(&config, 4, true).unwrap();
    assert!(few.contains("micro_batch = 1 would keep 2 busy"), "{few}");
    config.batch_size = 1;
    assert_eq!(pass_advice(&config, 4, true), None);
}
