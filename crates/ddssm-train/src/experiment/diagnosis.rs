//! Why a trained model's one-step predictive is as wide as it is, and how far its bound is from
//! the truth, on the Section 4 test split: the width decomposition of
//! [`ddssm_eval::diagnosis::width_diagnosis`] and the negative ELBO split into bound slack and
//! model misfit by the importance-weighted bound ([`ddssm_eval::iwae_per_sequence`]) against the
//! exact `−log p(x)`, and how far ahead the encoder reads ([`ddssm_eval::encoder_lookahead`]).
//! `cargo xtask diagnose` is the command around [`diagnose`].

use std::collections::BTreeMap;

use candle_core::DType;
use ddssm_eval::diagnosis::{width_diagnosis, WidthDiagnosis};
use ddssm_eval::{
    encoder_lookahead, iwae_per_sequence, negative_elbo_per_sequence, Lookahead, MeanSem, Series,
};
use ddssm_model::Model;
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use super::{invalid, ExperimentConfig, Splits};
use crate::Result;

/// How much of the test split [`diagnose`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosisOptions {
    /// Test sequences of the width decomposition.
    pub sequences: usize,
    /// Draws of each part per sequence.
    pub draws: usize,
    /// Test sequences of the likelihood split (0: none).
    pub iwae_sequences: usize,
    /// Importance weights per sequence (IWAE-k for k = 1, 16 and this).
    pub iwae_draws: usize,
}

/// What [`diagnose`] found, per model name (its report and files: `diagnosis_report.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The options it ran with (`iwae_sequences` at most the test split's size).
    #[serde(flatten)]
    pub options: DiagnosisOptions,
    /// The width decomposition of each model.
    pub models: BTreeMap<String, WidthDiagnosis>,
    /// The likelihood split of each model (empty when `iwae_sequences` is 0).
    pub likelihood: BTreeMap<String, LikelihoodSplit>,
    /// How far ahead each model's encoder reads ([`ddssm_eval::encoder_lookahead`] on the
    /// width decomposition's sequences, steps [`LOOKAHEAD_STEPS`], the emission's noise as the
    /// move; empty for sequences too short, and in a diagnosis written before it was measured).
    #[serde(default)]
    pub lookahead: BTreeMap<String, Lookahead>,
}

/// The steps whose posteriors [`diagnose`] probes for the encoder's lookahead (0-based), clear of
/// both ends of the paper's `T = 32`, with [`LOOKAHEAD_AHEAD`] observations at and after each.
pub const LOOKAHEAD_STEPS: std::ops::Range<usize> = 8..24;
/// How many observations, from `x_t` on, the lookahead probe moves.
pub const LOOKAHEAD_AHEAD: usize = 4;

/// Diagnoses each named model of the experiment `cfg` on its test split (`data`), every draw
/// from a fork of the experiment's seed named after the model.
///
/// `options.sequences` must lie in `1 ..= cfg.data.test` and `options.draws` be at least 4 (a
/// side's pooled variance needs draws on both sides); `options.iwae_sequences` is clamped to the
/// test split.
pub fn diagnose(
    cfg: &ExperimentConfig,
    data: &Splits,
    models: &[(&str, &Model)],
    options: &DiagnosisOptions,
) -> Result<Diagnosis> {
    if options.sequences == 0 || options.sequences > cfg.data.test {
        return Err(invalid(
            "sequences",
            options.sequences,
            &format!("1 ..= {} (the run's data.test)", cfg.data.test),
        ));
    }
    if options.draws < 4 {
        return Err(invalid("draws", options.draws, "at least 4"));
    }
    let root = SeededNoise::new(cfg.seed);
    let options = &DiagnosisOptions {
        iwae_sequences: options.iwae_sequences.min(cfg.data.test),
        ..*options
    };
    let mut out = Diagnosis {
        options: *options,
        models: BTreeMap::new(),
        likelihood: BTreeMap::new(),
        lookahead: BTreeMap::new(),
    };
    for (name, model) in models {
        let mut noise = root.fork(&format!("{name}/diagnosis"));
        let d = width_diagnosis(
            model,
            &cfg.data.sim,
            &data.test,
            options.sequences,
            options.draws,
            cfg.evaluation.max_chains.max(options.draws),
            &mut noise,
        )?;
        out.models.insert(name.to_string(), d);
        if LOOKAHEAD_STEPS.end + LOOKAHEAD_AHEAD <= cfg.data.sim.t + 1 {
            let x = data
                .test
                .first(options.sequences)
                .to_tensor(DType::F32, model.device())?;
            let look = encoder_lookahead(
                model,
                &x,
                LOOKAHEAD_STEPS,
                LOOKAHEAD_AHEAD,
                cfg.data.sim.obs_noise_std,
                &mut root.fork(&format!("{name}/lookahead")),
            )?;
            tracing::info!("{name}: encoder lookahead {:?}", look.gains);
            out.lookahead.insert(name.to_string(), look);
        }
        if options.iwae_sequences > 0 {
            let mut noise = root.fork(&format!("{name}/iwae"));
            let split = likelihood_split(
                model,
                cfg,
                &data.test,
                options.iwae_sequences,
                options.iwae_draws,
                &mut noise,
            )?;
            tracing::info!("{name}: likelihood split {split:?}");
            out.likelihood.insert(name.to_string(), split);
        }
    }
    Ok(out)
}

/// `−log p(x)` per test sequence three ways (nats, mean ± SE over the same sequences): the
/// negative ELBO, the importance-weighted bounds, and the exact value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LikelihoodSplit {
    /// The negative ELBO (closed-form terms, 4 trajectories).
    pub negative_elbo: MeanSem,
    /// `(k, −IWAE-k)`.
    pub negative_iwae: Vec<(usize, MeanSem)>,
    /// The exact `−log p(x)` (Gaussian-sum filter).
    pub exact: MeanSem,
    /// `−IWAE-k_max − exact`, paired per sequence: the model's misfit (at most; IWAE-k is still
    /// a bound).
    pub misfit: MeanSem,
    /// `−ELBO − (−IWAE-k_max)`, paired: the slack the encoder leaves that `k_max` weights
    /// recover.
    pub slack: MeanSem,
}

/// The split of `model`'s bound on the first `n` sequences of `test` (the bimodal walk of
/// `cfg`), `draws` importance weights per sequence.
pub fn likelihood_split(
    model: &Model,
    cfg: &ExperimentConfig,
    test: &Series,
    n: usize,
    draws: usize,
    noise: &mut SeededNoise,
) -> Result<LikelihoodSplit> {
    let t = test.t;
    let sub = test.first(n);
    let x = sub.to_tensor(DType::F32, model.device())?;
    let elbo = negative_elbo_per_sequence(model, &x, 4, noise)?;
    let mut ks: Vec<usize> = vec![1, 16, draws];
    ks.retain(|k| draws.is_multiple_of(*k));
    ks.dedup();
    // Chunks of 2048 chains per worker: the DKF needs about 1.6 MB per chain of T = 32.
    let chunk = (2048 / draws).max(1);
    let iwae = iwae_per_sequence(model, &x, &ks, draws, chunk, noise)?;
    let exact: Vec<f64> = (0..n)
        .map(|i| {
            cfg.data
                .sim
                .exact_predictive(&sub.values[i * t..(i + 1) * t], 0.0)
                .map(|f| -f.log_likelihood)
        })
        .collect::<ddssm_eval::Result<_>>()?;
    let best: Vec<f64> = iwae.last().expect("k_max").iter().map(|v| -v).collect();
    let diff = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
    Ok(LikelihoodSplit {
        negative_elbo: MeanSem::of(&elbo),
        negative_iwae: ks
            .iter()
            .zip(&iwae)
            .map(|(k, v)| (*k, MeanSem::of(&v.iter().map(|x| -x).collect::<Vec<_>>())))
            .collect(),
        exact: MeanSem::of(&exact),
        misfit: MeanSem::of(&diff(&best, &exact)),
        slack: MeanSem::of(&diff(&elbo, &best)),
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Options outside their ranges are refused, naming the option and what it accepts, before
    /// any model is touched.
    #[test]
    fn options_out_of_range_are_refused_with_their_name() {
        let cfg = ExperimentConfig::paper().quick();
        let data = Splits::new(&cfg, &Device::Cpu).unwrap();
        let ok = DiagnosisOptions {
            sequences: 1,
            draws: 4,
            iwae_sequences: cfg.data.test + 5,
            iwae_draws: 2,
        };
        let found = diagnose(&cfg, &data, &[], &ok).unwrap();
        assert_eq!(found.options.iwae_sequences, cfg.data.test);
        for (bad, field) in [
            (DiagnosisOptions { sequences: 0, ..ok }, "sequences"),
            (
                DiagnosisOptions {
                    sequences: cfg.data.test + 1,
                    ..ok
                },
                "sequences",
            ),
            (DiagnosisOptions { draws: 3, ..ok }, "draws"),
        ] {
            let e = diagnose(&cfg, &data, &[], &bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {field} = ")), "{e}");
        }
    }

    /// A model's diagnosis carries its encoder's lookahead on the paper's T = 32, probed with the
    /// emission's noise as the move, and a sequence too short for the probe leaves it out.
    #[test]
    fn the_diagnosis_measures_the_encoders_lookahead() -> Result<()> {
        let cfg = ExperimentConfig::paper().quick();
        let data = Splits::new(&cfg, &Device::Cpu)?;
        let mut model = Model::new(&cfg.ddssm.model, 1, DType::F32, &Device::Cpu)?;
        model.set_standardization(Some(data.standardization.clone()))?;
        let options = DiagnosisOptions {
            sequences: 2,
            draws: 4,
            iwae_sequences: 0,
            iwae_draws: 2,
        };
        let found = diagnose(&cfg, &data, &[("ddssm", &model)], &options)?;
        let look = &found.lookahead["ddssm"];
        assert_eq!((look.sequences, look.steps), (2, (8, 24)));
        assert_eq!(look.delta, cfg.data.sim.obs_noise_std);
        assert_eq!(look.gains.len(), LOOKAHEAD_AHEAD);
        assert!(look.gains.iter().all(|g| g.is_finite()) && look.gains[0] != 0.0);

        let mut short = cfg.clone();
        short.data.sim.t = 20;
        let data = Splits::new(&short, &Device::Cpu)?;
        let found = diagnose(&short, &data, &[("ddssm", &model)], &options)?;
        assert!(found.lookahead.is_empty() && found.models.contains_key("ddssm"));
        Ok(())
    }
}
