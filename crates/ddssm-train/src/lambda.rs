//! Annealing of the rate weight λ in `D + λ·R` (App. I.2).
//!
//! λ moves from `lambda_start` to `lambda_end` over the first `lambda_warmup_steps` optimiser
//! steps and stays at `lambda_end` afterwards. With `f = min(step / warmup, 1)`:
//! - linear: `λ = start + (end − start)·f`;
//! - cosine: `λ = end + (start − end)·½(1 + cos(π f))` (the paper's runs; Table 3).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The shape of the annealing curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LambdaShape {
    /// Straight line from start to end.
    Linear,
    /// Half a cosine from start to end (flat at both ends).
    Cosine,
}

/// λ as a function of the optimiser step. The defaults are the paper's tuned DDSSM values
/// (Table 3: cosine, 889 warm-up steps, λ_end = 1.243, from λ_start = 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaSchedule {
    /// Linear or cosine.
    pub lambda_schedule: LambdaShape,
    /// λ at step 0.
    pub lambda_start: f64,
    /// λ from `lambda_warmup_steps` on.
    pub lambda_end: f64,
    /// Steps until λ reaches `lambda_end` (0: constant `lambda_end`).
    pub lambda_warmup_steps: usize,
}

impl Default for LambdaSchedule {
    fn default() -> Self {
        Self {
            lambda_schedule: LambdaShape::Cosine,
            lambda_start: 0.0,
            lambda_end: 1.243,
            lambda_warmup_steps: 889,
        }
    }
}

impl LambdaSchedule {
    /// Checks that both ends are finite and non-negative (fields named as in a
    /// [`crate::TrainConfig`]: `lambda.lambda_end`).
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("lambda.lambda_start", self.lambda_start),
            ("lambda.lambda_end", self.lambda_end),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::InvalidConfig {
                    field: field.into(),
                    value: v.to_string(),
                    allowed: "a finite number ≥ 0".into(),
                });
            }
        }
        Ok(())
    }

    /// λ at optimiser step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if self.lambda_warmup_steps == 0 {
            return self.lambda_end;
        }
        let f = (step as f64 / self.lambda_warmup_steps as f64).min(1.0);
        let (a, b) = (self.lambda_start, self.lambda_end);
        match self.lambda_schedule {
            LambdaShape::Linear => a + (b - a) * f,
            LambdaShape::Cosine => b + (a - b) * 0.5 * (1.0 + (std::f64::consts::PI * f).cos()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(shape: LambdaShape) -> LambdaSchedule {
        LambdaSchedule {
            lambda_schedule: shape,
            lambda_start: 0.2,
            lambda_end: 1.4,
            lambda_warmup_steps: 100,
        }
    }

    #[test]
    fn both_shapes_start_and_end_where_configured() {
        for shape in [LambdaShape::Linear, LambdaShape::Cosine] {
            let s = sched(shape);
            assert!((s.at(0) - 0.2).abs() < 1e-12);
            assert!((s.at(100) - 1.4).abs() < 1e-12);
            assert!((s.at(5000) - 1.4).abs() < 1e-12);
            assert!((s.at(50) - 0.8).abs() < 1e-12, "{shape:?} midpoint");
        }
    }

    #[test]
    fn cosine_is_flat_at_the_ends_and_monotone() {
        let s = sched(LambdaShape::Cosine);
        assert!(s.at(1) - s.at(0) < (s.at(51) - s.at(50)) / 10.0);
        let values: Vec<f64> = (0..=100).map(|k| s.at(k)).collect();
        assert!(values.windows(2).all(|w| w[1] >= w[0]));
        let l = sched(LambdaShape::Linear);
        assert!((l.at(25) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn zero_warmup_is_constant_and_bad_values_are_rejected() {
        let mut s = sched(LambdaShape::Linear);
        s.lambda_warmup_steps = 0;
        assert_eq!(s.at(0), 1.4);
        s.lambda_end = f64::NAN;
        assert!(s.validate().is_err());
        s.lambda_end = -1.0;
        assert!(s.validate().unwrap_err().to_string().contains("lambda_end"));
        assert!(LambdaSchedule::default().validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = toml::from_str::<LambdaSchedule>(
            "lambda_schedule = \"cosine\"\nlambda_start = 0.0\nlambda_end = 1.0\nlambda_warmup_steps = 5\nlambda_ende = 2.0\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("lambda_ende"), "{err}");
        let err = toml::from_str::<LambdaSchedule>(
            "lambda_schedule = \"cosin\"\nlambda_start = 0.0\nlambda_end = 1.0\nlambda_warmup_steps = 5\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("linear") && err.to_string().contains("cosine"),
            "{err}"
        );
    }
}
