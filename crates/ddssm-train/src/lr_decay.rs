//! Decay of the learning rates over a run. Not part of the paper: its runs keep every group's
//! rate constant (App. I.1, Table 3), which is the default here; a decay is an ablation of the
//! fidelity work (docs/paper-notes.md).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How every group's learning rate is scaled at each optimiser step.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrDecay {
    /// The configured rates throughout (the paper).
    #[default]
    Constant,
    /// The configured rates until step `start`, then half a cosine down to `floor` × the rates
    /// at the last step: `f = (step − start) / (steps − 1 − start)`,
    /// `scale = floor + (1 − floor)·½(1 + cos(π f))`. The curve is drawn over the run's `steps`,
    /// so a resumed run asked for more steps decays from where it stands towards its new end.
    Cosine {
        /// The rates' fraction at the last step, in [0, 1].
        floor: f64,
        /// The first step of the decay (0: from the start).
        #[serde(default)]
        start: usize,
    },
}

impl LrDecay {
    /// True for [`LrDecay::Constant`] (kept out of serialised configs, so a paper run's config
    /// and checkpoints read as before the option existed).
    pub fn is_constant(&self) -> bool {
        matches!(self, LrDecay::Constant)
    }

    /// The factor on every learning rate at optimiser step `step` (0-based) of a run of `steps`.
    pub fn scale(&self, step: usize, steps: usize) -> f64 {
        match *self {
            LrDecay::Constant => 1.0,
            LrDecay::Cosine { floor, start } => {
                if step <= start {
                    return 1.0;
                }
                let span = steps.saturating_sub(1).saturating_sub(start).max(1);
                let f = ((step - start) as f64 / span as f64).min(1.0);
                floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * f).cos())
            }
        }
    }

    /// Whether this decay over a run of `steps` and `other` over a run of `other_steps` give every
    /// optimiser step before `step` the same factor: then a checkpoint written at `step` under one
    /// is also where a run under the other would stand, and the run may continue under `other`
    /// (e.g. a finished constant-rate run extended with a decay tail that starts at or after its
    /// last step).
    pub fn agrees_before(
        &self,
        steps: usize,
        other: &Self,
        other_steps: usize,
        step: usize,
    ) -> bool {
        (0..step).all(|s| self.scale(s, steps) == other.scale(s, other_steps))
    }

    /// The same decay for a run shortened or lengthened from `from` to `to` steps: the decay
    /// starts at the same fraction of the run (`start · to / from`, rounded down), so a smoke run
    /// of a config that decays late still decays (and validates).
    pub fn rescaled(&self, from: usize, to: usize) -> Self {
        match *self {
            LrDecay::Constant => LrDecay::Constant,
            LrDecay::Cosine { floor, start } => LrDecay::Cosine {
                floor,
                start: rescale_step(start, from, to),
            },
        }
    }

    /// Checks the fields against a run of `steps` (named as in a [`crate::TrainConfig`]:
    /// `lr_decay.floor`).
    pub fn validate(&self, steps: usize) -> Result<()> {
        if let LrDecay::Cosine { floor, start } = *self {
            if !(floor.is_finite() && (0.0..=1.0).contains(&floor)) {
                return Err(Error::InvalidConfig {
                    field: "lr_decay.floor".into(),
                    value: floor.to_string(),
                    allowed: "a number in [0, 1]".into(),
                });
            }
            if start >= steps {
                return Err(Error::InvalidConfig {
                    field: "lr_decay.start".into(),
                    value: start.to_string(),
                    allowed: format!("a step below `steps` ({steps})"),
                });
            }
        }
        Ok(())
    }
}

/// Step `step` of a run of `from` steps moved to the same fraction of a run of `to` steps (rounded
/// down): where `--quick` puts a configured start.
pub(crate) fn rescale_step(step: usize, from: usize, to: usize) -> usize {
    (step as u128 * to as u128 / from.max(1) as u128) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_one_and_cosine_runs_from_one_to_the_floor() {
        assert_eq!(LrDecay::Constant.scale(0, 10), 1.0);
        assert_eq!(LrDecay::Constant.scale(9, 10), 1.0);
        let d = LrDecay::Cosine {
            floor: 0.1,
            start: 100,
        };
        assert_eq!(d.scale(0, 1101), 1.0);
        assert_eq!(d.scale(100, 1101), 1.0);
        assert!((d.scale(600, 1101) - 0.55).abs() < 1e-12, "midpoint");
        assert!((d.scale(1100, 1101) - 0.1).abs() < 1e-12, "last step");
        let values: Vec<f64> = (0..1101).map(|s| d.scale(s, 1101)).collect();
        assert!(values.windows(2).all(|w| w[1] <= w[0]), "monotone");
    }

    #[test]
    fn a_decay_agrees_with_another_only_over_steps_they_scale_alike() {
        let tail = LrDecay::Cosine {
            floor: 0.05,
            start: 3000,
        };
        // Steps 0 ..= 3000 of the tail run at the full rate: a constant-rate run's checkpoint at
        // step 3000 (steps 0 … 2999 taken) or 3001 fits it, one at 3002 does not.
        assert!(LrDecay::Constant.agrees_before(3000, &tail, 9000, 3000));
        assert!(LrDecay::Constant.agrees_before(3000, &tail, 9000, 3001));
        assert!(!LrDecay::Constant.agrees_before(6000, &tail, 9000, 3002));
        assert!(tail.agrees_before(9000, &LrDecay::Constant, 3000, 3000));
        // Another floor changes nothing before the decay starts, everything after.
        let other = LrDecay::Cosine {
            floor: 0.5,
            start: 3000,
        };
        assert!(tail.agrees_before(9000, &other, 9000, 3001));
        assert!(!tail.agrees_before(9000, &other, 9000, 3002));
        assert!(LrDecay::Constant.agrees_before(10, &LrDecay::Constant, 20, 10));
    }

    #[test]
    fn rescaling_keeps_the_start_at_the_same_fraction_of_the_run() {
        let d = LrDecay::Cosine {
            floor: 0.05,
            start: 3000,
        };
        let short = d.rescaled(6000, 10);
        assert_eq!(
            short,
            LrDecay::Cosine {
                floor: 0.05,
                start: 5
            }
        );
        assert!(d.validate(10).is_err() && short.validate(10).is_ok());
        assert_eq!(
            d.rescaled(6000, 9000),
            LrDecay::Cosine {
                floor: 0.05,
                start: 4500
            }
        );
        assert_eq!(LrDecay::Constant.rescaled(6000, 10), LrDecay::Constant);
    }

    #[test]
    fn bad_fields_are_named_and_constant_is_left_out_of_toml() {
        let d = LrDecay::Cosine {
            floor: 1.5,
            start: 0,
        };
        assert!(d
            .validate(10)
            .unwrap_err()
            .to_string()
            .contains("lr_decay.floor"));
        let d = LrDecay::Cosine {
            floor: 0.5,
            start: 10,
        };
        assert!(d
            .validate(10)
            .unwrap_err()
            .to_string()
            .contains("lr_decay.start"));
        assert!(LrDecay::Constant.validate(1).is_ok());
        let written = serde_json::to_string(&crate::TrainConfig::paper_ddssm()).unwrap();
        assert!(!written.contains("lr_decay"), "{written}");
        let parsed: LrDecay = toml::from_str("kind = \"cosine\"\nfloor = 0.05\n").unwrap();
        assert_eq!(
            parsed,
            LrDecay::Cosine {
                floor: 0.05,
                start: 0
            }
        );
        let err = toml::from_str::<LrDecay>("kind = \"cosin\"\nfloor = 0.05\n").unwrap_err();
        assert!(err.to_string().contains("constant"), "{err}");
    }
}
