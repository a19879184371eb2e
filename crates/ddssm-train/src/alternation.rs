//! Block-coordinate training of the ELBO: the encoder alone, then the generative model alone, in
//! turn. Not part of the paper, whose runs update every group at every step (App. I.1); an
//! ablation of the fidelity work (docs/paper-notes.md, "Alternating the encoder and the model").
//!
//! The ELBO is one objective in two blocks of parameters: the encoder's φ, and the generative
//! model's θ (decoder), ψ (transition) and η, Φ (VHP). Updating both at once lets each fit the
//! other where it stands; refitting one block with the other frozen, in turn, is coordinate ascent
//! on the same bound — the shape of variational EM, with gradient steps for both halves.

use serde::{Deserialize, Serialize};

use crate::{Error, LearningRates, Result};

/// After `start` joint steps, cycles of `encoder_steps` steps that train the encoder alone (at
/// `encoder_rate_factor` × its rate) and `model_steps` steps that train the decoder, transition
/// and VHP alone, until the run ends (or until `end`, after which every group trains again). A
/// frozen group's parameters and optimiser moments stay as they are; the moments of a group carry
/// over from its last phase (one optimiser for the run, so that a checkpoint resumes exactly). λ's schedule and the learning-rate decay run on over every
/// step, whichever block trains.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alternation {
    /// The first step (0-based) of the first encoder phase; every group trains before it.
    #[serde(default)]
    pub start: usize,
    /// The first step after the alternation: from it every group trains again until the run
    /// ends (left out: the alternation runs to the end), e.g. a joint decayed tail after rounds
    /// at constant rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<usize>,
    /// Steps of each encoder phase: the encoder trains, everything else is frozen.
    pub encoder_steps: usize,
    /// Steps of each model phase: the decoder, transition and VHP train, the encoder is frozen.
    pub model_steps: usize,
    /// The encoder's learning rate in its phases, as a multiple of `learning_rates.encoder`
    /// (1 by default, and then left out of a written config).
    #[serde(
        default = "crate::config::one",
        skip_serializing_if = "crate::config::is_one"
    )]
    pub encoder_rate_factor: f64,
}

/// Which block of parameters a step trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Every group (before the alternation starts, or without one).
    Joint,
    /// The encoder alone.
    Encoder,
    /// The decoder, transition and VHP alone.
    Model,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Joint => "every group",
            Phase::Encoder => "encoder alone",
            Phase::Model => "model alone",
        })
    }
}

impl Alternation {
    /// The block that step `step` (0-based) trains.
    pub fn phase(&self, step: usize) -> Phase {
        if step < self.start || self.end.is_some_and(|end| step >= end) {
            return Phase::Joint;
        }
        let cycle = self.encoder_steps + self.model_steps;
        if (step - self.start) % cycle.max(1) < self.encoder_steps {
            Phase::Encoder
        } else {
            Phase::Model
        }
    }

    /// The factors on the four groups' learning rates at step `step`, in the optimiser's group
    /// order (encoder, decoder, transition, zinit): 0 freezes a group.
    pub fn factors(&self, step: usize) -> [f64; 4] {
        match self.phase(step) {
            Phase::Joint => [1.0; 4],
            Phase::Encoder => [self.encoder_rate_factor, 0.0, 0.0, 0.0],
            Phase::Model => [0.0, 1.0, 1.0, 1.0],
        }
    }

    /// The same alternation for a run shortened or lengthened from `from` to `to` steps: the
    /// start, the end and both phases at the same fractions of the run (rounded down; each phase
    /// at least one step, the end after the start), so a smoke run of a config still alternates.
    pub fn rescaled(&self, from: usize, to: usize) -> Self {
        let at = |s: usize| crate::lr_decay::rescale_step(s, from, to);
        Alternation {
            start: at(self.start),
            end: self.end.map(|end| at(end).max(at(self.start) + 1)),
            encoder_steps: at(self.encoder_steps).max(1),
            model_steps: at(self.model_steps).max(1),
            ..*self
        }
    }

    /// Checks the fields against a run of `steps` with rates `rates` (named as in a
    /// [`crate::TrainConfig`]: `alternation.start`): each phase must train something.
    pub fn validate(&self, steps: usize, rates: &LearningRates) -> Result<()> {
        let check = |ok: bool, field: &str, value: String, allowed: String| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidConfig {
                    field: format!("alternation.{field}"),
                    value,
                    allowed,
                })
            }
        };
        check(
            self.start < steps,
            "start",
            self.start.to_string(),
            format!("a step below `steps` ({steps}); 0 alternates from the first step"),
        )?;
        if let Some(end) = self.end {
            check(
                end > self.start && end <= steps,
                "end",
                end.to_string(),
                format!(
                    "a step above `start` ({}) and at most `steps` ({steps}); left out, the \
                     alternation runs to the end",
                    self.start
                ),
            )?;
        }
        for (field, v) in [
            ("encoder_steps", self.encoder_steps),
            ("model_steps", self.model_steps),
        ] {
            check(v >= 1, field, v.to_string(), "an integer ≥ 1".into())?;
        }
        let f = self.encoder_rate_factor;
        check(
            f.is_finite() && f > 0.0,
            "encoder_rate_factor",
            f.to_string(),
            "a finite number > 0".into(),
        )?;
        check(
            rates.encoder > 0.0,
            "encoder_steps",
            format!("{} (with learning_rates.encoder = 0)", self.encoder_steps),
            "an alternation needs learning_rates.encoder > 0: its encoder phases would train \
             nothing"
                .into(),
        )?;
        check(
            [rates.decoder, rates.transition, rates.zinit]
                .iter()
                .any(|&r| r > 0.0),
            "model_steps",
            format!(
                "{} (with the decoder's, transition's and zinit's rates all 0)",
                self.model_steps
            ),
            "an alternation needs a learning rate > 0 for the decoder, transition or zinit: its \
             model phases would train nothing"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> LearningRates {
        LearningRates {
            encoder: 1e-3,
            decoder: 1e-3,
            transition: 1e-2,
            zinit: 1e-3,
        }
    }

    #[test]
    fn phases_follow_the_start_and_cycle() {
        let a = Alternation {
            start: 3,
            end: None,
            encoder_steps: 2,
            model_steps: 1,
            encoder_rate_factor: 4.0,
        };
        let phases: Vec<Phase> = (0..10).map(|s| a.phase(s)).collect();
        use Phase::*;
        assert_eq!(
            phases,
            [Joint, Joint, Joint, Encoder, Encoder, Model, Encoder, Encoder, Model, Encoder]
        );
        assert_eq!(a.factors(0), [1.0; 4]);
        // With an end every group trains again from it.
        let ended = Alternation { end: Some(8), ..a };
        let phases: Vec<Phase> = (0..10).map(|s| ended.phase(s)).collect();
        assert_eq!(
            phases,
            [Joint, Joint, Joint, Encoder, Encoder, Model, Encoder, Encoder, Joint, Joint]
        );
        assert_eq!(a.factors(3), [4.0, 0.0, 0.0, 0.0]);
        assert_eq!(a.factors(5), [0.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn a_configs_rate_factors_are_the_decay_times_the_phase() {
        let config = crate::TrainConfig {
            steps: 100,
            lr_decay: crate::LrDecay::Cosine {
                floor: 0.5,
                start: 0,
            },
            alternation: Some(Alternation {
                start: 10,
                end: None,
                encoder_steps: 10,
                model_steps: 10,
                encoder_rate_factor: 4.0,
            }),
            ..crate::TrainConfig::paper_ddssm()
        };
        config.validate().unwrap();
        for step in [0, 15, 25, 99] {
            let decay = config.lr_decay.scale(step, config.steps);
            let blocks = config.alternation.unwrap().factors(step);
            assert_eq!(config.rate_factors(step), blocks.map(|b| b * decay));
        }
        assert_eq!(
            config.rate_factors(25)[0],
            0.0,
            "encoder frozen in a model phase"
        );
        assert!(
            config.rate_factors(15)[0] > 1.0,
            "encoder at 4 × a decayed rate"
        );
    }

    #[test]
    fn rescaling_keeps_fractions_and_at_least_one_step_per_phase() {
        let a = Alternation {
            start: 3000,
            end: Some(7500),
            encoder_steps: 3000,
            model_steps: 1500,
            encoder_rate_factor: 1.0,
        };
        let short = a.rescaled(9000, 10);
        assert_eq!(
            (short.start, short.encoder_steps, short.model_steps),
            (3, 3, 1)
        );
        let tiny = a.rescaled(90000, 10);
        assert_eq!(
            (tiny.start, tiny.encoder_steps, tiny.model_steps),
            (0, 1, 1)
        );
        assert!(short.validate(10, &rates()).is_ok());
        assert_eq!((short.end, tiny.end), (Some(8), Some(1)));
    }

    #[test]
    fn every_refusal_names_its_field() {
        let ok = Alternation {
            start: 0,
            end: None,
            encoder_steps: 5,
            model_steps: 5,
            encoder_rate_factor: 1.0,
        };
        assert!(ok.validate(20, &rates()).is_ok());
        let cases = [
            (
                Alternation { start: 20, ..ok },
                rates(),
                "alternation.start",
            ),
            (
                Alternation {
                    start: 5,
                    end: Some(5),
                    ..ok
                },
                rates(),
                "alternation.end",
            ),
            (
                Alternation {
                    end: Some(21),
                    ..ok
                },
                rates(),
                "alternation.end",
            ),
            (
                Alternation {
                    encoder_steps: 0,
                    ..ok
                },
                rates(),
                "alternation.encoder_steps",
            ),
            (
                Alternation {
                    model_steps: 0,
                    ..ok
                },
                rates(),
                "alternation.model_steps",
            ),
            (
                Alternation {
                    encoder_rate_factor: 0.0,
                    ..ok
                },
                rates(),
                "alternation.encoder_rate_factor",
            ),
            (
                ok,
                LearningRates {
                    encoder: 0.0,
                    ..rates()
                },
                "alternation.encoder_steps",
            ),
            (
                ok,
                LearningRates {
                    decoder: 0.0,
                    transition: 0.0,
                    zinit: 0.0,
                    ..rates()
                },
                "alternation.model_steps",
            ),
        ];
        for (a, r, field) in cases {
            let err = a.validate(20, &r).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
