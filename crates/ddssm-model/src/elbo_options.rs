//! [`ElboOptions`]: how one ELBO evaluation draws and scores (the paper's ELBO by default; the
//! training-only options beside it are documented in docs/paper-notes.md).

use serde::{Deserialize, Serialize};

use crate::{Estimator, Result};

/// Options of one ELBO evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElboOptions {
    /// `S`: latent trajectories drawn per sequence (App. I.3; Table 3 tunes it in 1–4).
    pub samples: usize,
    /// Closed-form or single-sample estimates where both exist.
    pub estimator: Estimator,
    /// Standard deviation of Gaussian noise added to the observations the *encoder* sees, in the
    /// model's standardised units (fractions of each dimension's standard deviation); the
    /// reconstruction term still scores the observations as given. Not in the paper: 0 by
    /// default. Any `q` gives a lower bound, so the terms still bound `log p(x)`; a handicapped
    /// encoder makes the bound looser wherever the posterior needs the current observation's
    /// exact value, which presses the model toward dynamics that pin the state by themselves
    /// (docs/paper-notes.md, "Noise on the encoder's view").
    #[serde(default)]
    pub encoder_input_noise: f64,
    /// Probability in `[0, 1)` with which each observed entry is hidden from the *encoder*
    /// (independently per sequence, step and dimension; its future summary then sees the entry as
    /// missing), while the reconstruction still scores every observed entry. Not in the paper: 0
    /// by default. Any `q` gives a lower bound, and one that cannot see `x_t` must place `z_t` from
    /// `z_{t−1}` and the later observations, so the option asks the encoder for the lookahead a
    /// smoothing posterior has and a filter lacks (docs/paper-notes.md, "Hiding observations
    /// from the encoder").
    #[serde(default)]
    pub encoder_mask_rate: f64,
    /// With `encoder_mask_rate > 0`, leave the hidden entries out of the reconstruction term (and
    /// the standardisation's Jacobian) too: the terms are then the ELBO of the entries kept, a
    /// bound on *their* marginal likelihood — training on randomly thinned data — instead of a
    /// bound on `log p(x)` with a handicapped `q`. Not in the paper: off by default
    /// (docs/paper-notes.md, "Hiding observations from the encoder").
    #[serde(default)]
    pub encoder_mask_unscored: bool,
    /// With `encoder_mask_rate > 0`, the transition's parameters learn only from the pairs
    /// `z_{t−j:t−1} → z_t` whose steps the encoder saw whole, while the encoder learns from every
    /// pair (the term split by parameter as with `split_transition_gradient`, whose `α` it
    /// honours; the terms' values stay the ELBO's). The transition is then not fitted to the
    /// draws of steps the encoder could not see. Not in the paper and not the ELBO's gradient:
    /// off by default (docs/paper-notes.md, "Hiding observations from the encoder").
    #[serde(default)]
    pub encoder_mask_transition_kept: bool,
    /// `α` in `(0, 1]`: the transition term (Eq. 52, or the DKF's Gaussian cross-entropy) scores
    /// the encoder's draws pulled toward their means, `z̄ + α·(z − z̄)` (for the closed-form
    /// cross-entropy, the posterior with its variance times `α²`), instead of the draws
    /// themselves. Not in the paper and not the ELBO unless `α = 1`, the default: below 1 the
    /// transition is fitted to less of the posterior's spread, as in "hard" EM
    /// (docs/paper-notes.md, "Pulling the transition's targets toward the posterior mean").
    #[serde(default = "one")]
    pub transition_draw_scale: f64,
    /// Split the transition term's gradient by parameter: the transition's parameters learn from
    /// the draws pulled by `transition_draw_scale` (the encoder held), while the encoder's draws
    /// are scored at their full spread by the transition as it stands (its parameters held). The
    /// terms' values are then the ELBO's, and at `α = 1` so is the gradient; it costs a second
    /// evaluation of the transition term, differentiated inside the call. Not in the paper: off
    /// by default (docs/paper-notes.md, "Pulling only the transition's targets").
    #[serde(default)]
    pub split_transition_gradient: bool,
}

fn one() -> f64 {
    1.0
}

impl ElboOptions {
    /// Checks every field, naming the first bad one and what it allows.
    pub fn validate(&self) -> Result<()> {
        crate::check_config(
            self.samples >= 1,
            "samples (S)",
            self.samples,
            "an integer ≥ 1",
        )?;
        crate::check_config(
            self.encoder_input_noise >= 0.0 && self.encoder_input_noise.is_finite(),
            "encoder_input_noise",
            self.encoder_input_noise,
            "a finite number ≥ 0 (standard deviations of the standardised data; 0: off)",
        )?;
        crate::check_config(
            (0.0..1.0).contains(&self.encoder_mask_rate),
            "encoder_mask_rate",
            self.encoder_mask_rate,
            "in [0, 1) (the probability of hiding an observed entry from the encoder; 0: off)",
        )?;
        crate::check_config(
            self.transition_draw_scale > 0.0 && self.transition_draw_scale <= 1.0,
            "transition_draw_scale",
            self.transition_draw_scale,
            "in (0, 1] (1: the ELBO's own draws)",
        )
    }

    /// How the ELBO these options compute differs from the model's own ELBO (the one validation
    /// and evaluation report, with these options at their defaults), in words for a training
    /// log; `None` where it is that ELBO's estimate. Options that change only the gradient
    /// (`split_transition_gradient`, and with it `transition_draw_scale`) or how it is estimated
    /// (`samples`, `estimator`) do not count.
    pub fn objective_differs(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.encoder_input_noise > 0.0 {
            parts.push(format!(
                "encoder input noised (σ {})",
                self.encoder_input_noise
            ));
        }
        if self.encoder_mask_rate > 0.0 {
            let hidden = format!(
                "{} of entries hidden from the encoder",
                self.encoder_mask_rate
            );
            parts.push(if self.encoder_mask_unscored {
                format!("{hidden} and unscored")
            } else {
                hidden
            });
        }
        if self.values_pulled() {
            parts.push(format!(
                "transition draws scaled by {}",
                self.transition_draw_scale
            ));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// Whether the transition term's values score pulled draws: a draw scale below 1 without the
    /// split (split, the draws are pulled for the transition's gradient only and the values stay
    /// the ELBO's).
    pub(crate) fn values_pulled(&self) -> bool {
        self.transition_draw_scale != 1.0 && !self.split_transition_gradient
    }

    /// Whether the transition's parameters learn only from the pairs the encoder saw whole:
    /// `encoder_mask_transition_kept` with a mask in effect.
    pub(crate) fn transition_kept(&self) -> bool {
        self.encoder_mask_transition_kept && self.encoder_mask_rate > 0.0
    }
}

impl Default for ElboOptions {
    fn default() -> Self {
        Self {
            samples: 2,
            estimator: Estimator::Analytic,
            encoder_input_noise: 0.0,
            encoder_mask_rate: 0.0,
            encoder_mask_unscored: false,
            encoder_mask_transition_kept: false,
            transition_draw_scale: 1.0,
            split_transition_gradient: false,
        }
    }
}
