//! The training configuration: Table 3's tuned values for each model, Table 4's fixed ones.

use ddssm_model::{ElboOptions, Estimator};
use serde::{Deserialize, Serialize};

use crate::{
    AdamWConfig, Alternation, Error, GroupBounds, LambdaSchedule, LambdaShape, LrDecay, Result,
};

/// One learning rate per parameter group (App. I.1, Table 3). A rate of 0 freezes its group (not
/// in the paper): the optimiser leaves those parameters and their moments untouched, e.g. to refit
/// the encoder alone to a trained model (`TrainOptions::init`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearningRates {
    /// φ: the encoder (`enc_lr`).
    pub encoder: f64,
    /// θ: the decoder (`dec_lr`).
    pub decoder: f64,
    /// ψ: the transition (`trans_lr`).
    pub transition: f64,
    /// η, Φ: the VHP (`zinit_lr`).
    pub zinit: f64,
}

impl LearningRates {
    /// The rates in the optimiser's group order (encoder, decoder, transition, zinit).
    pub fn in_group_order(&self) -> [f64; 4] {
        [self.encoder, self.decoder, self.transition, self.zinit]
    }
}

/// What each training step minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// The negative ELBO `D + λR` averaged over the `S` trajectories (App. I.2; the paper's).
    #[default]
    Elbo,
    /// The importance-weighted bound over the `S` trajectories of each sequence
    /// ([`ddssm_model::ElboTerms::importance_weighted_objective`]; not in the paper): needs the
    /// single-sample terms (`estimator = "sample"`), `S ≥ 2` and the untempered entropy.
    Iwae,
}

impl Objective {
    fn is_elbo(&self) -> bool {
        *self == Objective::Elbo
    }
}

/// Everything about one training run except the model and the data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimiser steps (Table 4: 3000 for the final runs, 1500 when tuning).
    pub steps: usize,
    /// Sequences per batch.
    pub batch_size: usize,
    /// Sequences per forward/backward pass: a batch larger than this is processed in chunks
    /// whose gradients are summed before the one optimiser step (gradient accumulation). The
    /// update is the same estimator of the same objective; peak memory scales with this instead
    /// of `batch_size`. 0 = the whole batch at once.
    #[serde(default)]
    pub micro_batch: usize,
    /// `S`: encoder trajectories per sequence.
    pub samples: usize,
    /// Closed-form or sampled entropy / cross-entropy terms.
    #[serde(default)]
    pub estimator: Estimator,
    /// Learning rates per group.
    pub learning_rates: LearningRates,
    /// AdamW's other hyperparameters.
    #[serde(default)]
    pub optimizer: AdamWConfig,
    /// The λ annealing of App. I.2.
    pub lambda: LambdaSchedule,
    /// Decay of every learning rate over the run (not in the paper: constant by default, and then
    /// left out of a written config).
    #[serde(default, skip_serializing_if = "LrDecay::is_constant")]
    pub lr_decay: LrDecay,
    /// Train the encoder and the generative model in turn instead of together after a start
    /// ([`Alternation`]; not in the paper: off by default, and then left out of a written config;
    /// docs/paper-notes.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternation: Option<Alternation>,
    /// `γ`: the weight of the encoder's negative entropies in the rate
    /// ([`ddssm_model::ElboTerms::tempered_objective`]; not in the paper: 1 by default, and then
    /// left out of a written config). Below 1 it tempers the posterior (docs/paper-notes.md).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub entropy_weight: f64,
    /// With `entropy_weight < 1`, pay back the tempered objective's pull toward a smaller latent
    /// ([`ddssm_model::ElboTerms::scale_pinned_objective`]), so that only the posterior's spread
    /// relative to the latent's scale is tempered (not in the paper: false by default, and then
    /// left out of a written config; docs/paper-notes.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pin_latent_scale: bool,
    /// Standard deviation of the noise added to the observations the encoder sees during
    /// training, in the model's standardised units ([`ddssm_model::ElboOptions`]'s
    /// `encoder_input_noise`; not in the paper: 0 by default, and then left out of a written
    /// config; docs/paper-notes.md). Validation and evaluation always give the encoder the
    /// observations as they are.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub encoder_input_noise: f64,
    /// Probability of hiding each observed entry from the encoder during training
    /// ([`ddssm_model::ElboOptions`]'s `encoder_mask_rate`; not in the paper: 0 by default, and
    /// then left out of a written config; docs/paper-notes.md). Validation and evaluation always
    /// show the encoder every observed entry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub encoder_mask_rate: f64,
    /// The first step (0-based) whose ELBO hides entries at `encoder_mask_rate`; before it the
    /// encoder sees every observed entry (0 by default, and then left out of a written config).
    /// A run can be resumed under a mask that starts at or after its checkpoint's step
    /// ([`TrainConfig::mask_agrees_before`]).
    #[serde(default, skip_serializing_if = "is_zero_step")]
    pub encoder_mask_start: usize,
    /// With `encoder_mask_rate > 0`: leave the hidden entries out of the reconstruction too
    /// ([`ddssm_model::ElboOptions`]'s `encoder_mask_unscored`: the ELBO of the entries kept;
    /// false by default, and then left out of a written config).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encoder_mask_unscored: bool,
    /// With `encoder_mask_rate > 0`: the transition's parameters learn only from the pairs whose
    /// steps the encoder saw whole ([`ddssm_model::ElboOptions`]'s `encoder_mask_transition_kept`;
    /// not the ELBO's gradient; false by default, and then left out of a written config).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encoder_mask_transition_kept: bool,
    /// `α` in `(0, 1]`: the transition term scores the encoder's draws pulled toward their means
    /// by this factor ([`ddssm_model::ElboOptions`]'s `transition_draw_scale`; not in the paper
    /// and not the ELBO below 1: 1 by default, and then left out of a written config;
    /// docs/paper-notes.md). Validation and evaluation always score the ELBO itself.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub transition_draw_scale: f64,
    /// With `transition_draw_scale < 1`, only the transition's parameters learn from the pulled
    /// draws; the encoder is scored at full spread ([`ddssm_model::ElboOptions`]'s
    /// `split_transition_gradient`: the terms' values stay the ELBO's; a second transition
    /// evaluation per step). Not in the paper: false by default, and then left out of a written
    /// config (docs/paper-notes.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split_transition_gradient: bool,
    /// What a step minimises (not in the paper: the ELBO by default, and then left out of a
    /// written config; docs/paper-notes.md).
    #[serde(default, skip_serializing_if = "Objective::is_elbo")]
    pub objective: Objective,
    /// Clip each step's gradient to at most this L2 norm over all parameters together (scaled
    /// down as a whole, as PyTorch's `clip_grad_norm_`), before the optimiser's moments see it.
    /// Not in the paper: off by default, and then left out of a written config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grad_norm: Option<f64>,
    /// Instead of `max_grad_norm`: clip each parameter group's gradient (encoder, decoder,
    /// transition, zinit: App. I.1's groups) to its own bound on its own; a group left out is not
    /// clipped (`[train.max_group_grad_norms]` `transition = 190.0`). Not in the paper: off by
    /// default, and then left out of a written config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_group_grad_norms: Option<GroupBounds>,
    /// Seed of the batch order and of every draw in the ELBO.
    pub seed: u64,
    /// Validate every this many steps (0: only at the end).
    pub validate_every: usize,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
}

impl TrainConfig {
    /// The options of the ELBO evaluations of training step `step` (0-based): those of
    /// [`TrainConfig::elbo_options`], with the encoder's mask only from `encoder_mask_start` on.
    pub fn elbo_options_at(&self, step: usize) -> ElboOptions {
        let masked = step >= self.encoder_mask_start;
        ElboOptions {
            encoder_mask_rate: if masked { self.encoder_mask_rate } else { 0.0 },
            ..self.elbo_options()
        }
    }

    /// This run's config (a checkpoint's, written at `step`) with what a continuation under
    /// `new` may change taken from `new`: `steps`, and `lr_decay`, the encoder's mask and the
    /// alternation where they give every step already taken what this config gave it
    /// ([`crate::LrDecay::agrees_before`], [`TrainConfig::mask_agrees_before`],
    /// [`TrainConfig::alternation_agrees_before`]). A resume is allowed when the result equals
    /// `new`.
    pub fn continued_under(&self, new: &TrainConfig, step: usize) -> TrainConfig {
        let decay_agrees = self
            .lr_decay
            .agrees_before(self.steps, &new.lr_decay, new.steps, step);
        let mask = if self.mask_agrees_before(new, step) {
            new
        } else {
            self
        };
        TrainConfig {
            steps: new.steps,
            lr_decay: if decay_agrees {
                new.lr_decay
            } else {
                self.lr_decay
            },
            encoder_mask_rate: mask.encoder_mask_rate,
            encoder_mask_start: mask.encoder_mask_start,
            encoder_mask_unscored: mask.encoder_mask_unscored,
            encoder_mask_transition_kept: mask.encoder_mask_transition_kept,
            alternation: if self.alternation_agrees_before(new, step) {
                new.alternation
            } else {
                self.alternation
            },
            ..*self
        }
    }

    /// Whether `other`'s alternation trains the same groups at the same rate factors as `self`'s
    /// at every step before `step` (then a checkpoint written at `step` under one can be resumed
    /// under the other): e.g. a joint run continued under an alternation that starts at or after
    /// `step`, or an alternation whose `end` moves while it lies ahead.
    pub fn alternation_agrees_before(&self, other: &TrainConfig, step: usize) -> bool {
        let factors = |c: &TrainConfig, s| c.alternation.map_or([1.0; 4], |a| a.factors(s));
        (0..step).all(|s| factors(self, s) == factors(other, s))
    }

    /// Whether `other` hides entries from the encoder at the same rate as `self` at every step
    /// before `step` (then a checkpoint written at `step` under one can be resumed under the
    /// other).
    pub fn mask_agrees_before(&self, other: &TrainConfig, step: usize) -> bool {
        let never = |c: &TrainConfig| c.encoder_mask_rate == 0.0 || c.encoder_mask_start >= step;
        (never(self) && never(other))
            || (self.encoder_mask_rate == other.encoder_mask_rate
                && self.encoder_mask_unscored == other.encoder_mask_unscored
                && self.encoder_mask_transition_kept == other.encoder_mask_transition_kept
                && self.encoder_mask_start.min(step) == other.encoder_mask_start.min(step))
    }

    /// The options of every ELBO evaluation of a training step, with the encoder's mask at
    /// `encoder_mask_rate` whatever `encoder_mask_start` says ([`TrainConfig::elbo_options_at`]
    /// applies it).
    pub fn elbo_options(&self) -> ElboOptions {
        ElboOptions {
            samples: self.samples,
            estimator: self.estimator,
            encoder_input_noise: self.encoder_input_noise,
            encoder_mask_rate: self.encoder_mask_rate,
            encoder_mask_unscored: self.encoder_mask_unscored,
            encoder_mask_transition_kept: self.encoder_mask_transition_kept,
            transition_draw_scale: self.transition_draw_scale,
            split_transition_gradient: self.split_transition_gradient,
        }
    }

    /// The paper's tuned DDSSM run (Table 3; 3000 steps, Table 4).
    pub fn paper_ddssm() -> Self {
        Self {
            steps: 3000,
            batch_size: 128,
            micro_batch: 64,
            samples: 2,
            estimator: Estimator::Analytic,
            learning_rates: LearningRates {
                encoder: 0.000864,
                decoder: 0.000300,
                transition: 0.00941,
                zinit: 0.000801,
            },
            optimizer: AdamWConfig::default(),
            lambda: LambdaSchedule {
                lambda_schedule: LambdaShape::Cosine,
                lambda_start: 0.0,
                lambda_end: 1.243,
                lambda_warmup_steps: 889,
            },
            lr_decay: LrDecay::Constant,
            alternation: None,
            entropy_weight: 1.0,
            pin_latent_scale: false,
            encoder_input_noise: 0.0,
            encoder_mask_rate: 0.0,
            encoder_mask_start: 0,
            encoder_mask_unscored: false,
            encoder_mask_transition_kept: false,
            transition_draw_scale: 1.0,
            split_transition_gradient: false,
            objective: Objective::Elbo,
            max_grad_norm: None,
            max_group_grad_norms: None,
            seed: 0,
            validate_every: 250,
            checkpoint_every: 500,
        }
    }

    /// The paper's tuned DKF run (Table 3). Its `zinit_lr` of 0.005 lies outside the table's own
    /// search range (1e-4 – 1e-3); it is used as printed (docs/paper-notes.md).
    pub fn paper_dkf() -> Self {
        Self {
            batch_size: 512,
            learning_rates: LearningRates {
                encoder: 0.00887,
                decoder: 0.00777,
                transition: 0.000099,
                zinit: 0.005,
            },
            lambda: LambdaSchedule {
                lambda_schedule: LambdaShape::Cosine,
                lambda_start: 0.0,
                lambda_end: 1.245,
                lambda_warmup_steps: 867,
            },
            ..Self::paper_ddssm()
        }
    }

    /// Checks every field; an error names it and the allowed values.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, field: &str, value: String, allowed: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidConfig {
                    field: field.into(),
                    value,
                    allowed: allowed.into(),
                })
            }
        };
        check(
            self.steps >= 1,
            "steps",
            self.steps.to_string(),
            "an integer ≥ 1",
        )?;
        check(
            self.batch_size >= 1,
            "batch_size",
            self.batch_size.to_string(),
            "an integer ≥ 1",
        )?;
        check(
            self.samples >= 1,
            "samples",
            self.samples.to_string(),
            "an integer ≥ 1",
        )?;
        let lr = self.learning_rates;
        for (field, v) in [
            ("learning_rates.encoder", lr.encoder),
            ("learning_rates.decoder", lr.decoder),
            ("learning_rates.transition", lr.transition),
            ("learning_rates.zinit", lr.zinit),
        ] {
            check(
                v.is_finite() && v >= 0.0,
                field,
                v.to_string(),
                "a finite number ≥ 0 (0 freezes the group)",
            )?;
        }
        check(
            lr.in_group_order().iter().any(|&v| v > 0.0),
            "learning_rates",
            "0 for every group".into(),
            "at least one learning rate > 0 (all four at 0 would train nothing)",
        )?;
        let o = self.optimizer;
        check(
            (0.0..1.0).contains(&o.beta1),
            "optimizer.beta1",
            o.beta1.to_string(),
            "in [0, 1)",
        )?;
        check(
            (0.0..1.0).contains(&o.beta2),
            "optimizer.beta2",
            o.beta2.to_string(),
            "in [0, 1)",
        )?;
        check(
            o.eps > 0.0 && o.eps.is_finite(),
            "optimizer.eps",
            o.eps.to_string(),
            "a finite number > 0",
        )?;
        check(
            o.weight_decay >= 0.0 && o.weight_decay.is_finite(),
            "optimizer.weight_decay",
            o.weight_decay.to_string(),
            "a finite number ≥ 0",
        )?;
        check(
            self.entropy_weight > 0.0 && self.entropy_weight <= 1.0,
            "entropy_weight",
            self.entropy_weight.to_string(),
            "in (0, 1] (1: the ELBO's own weight)",
        )?;
        check(
            !self.pin_latent_scale || self.entropy_weight < 1.0,
            "pin_latent_scale",
            self.pin_latent_scale.to_string(),
            "false unless entropy_weight < 1 (it pins what tempering moves; at 1 nothing moves)",
        )?;
        check(
            !self.split_transition_gradient || self.transition_draw_scale < 1.0,
            "split_transition_gradient",
            self.split_transition_gradient.to_string(),
            "false unless transition_draw_scale < 1 (at 1 the split gradient is the ELBO's, at \
             twice the transition's cost)",
        )?;
        // Every clipping bound, the whole gradient's or a group's, is a finite number > 0.
        let groups = self.max_group_grad_norms.unwrap_or_default();
        let bounds = GroupBounds::NAMES
            .iter()
            .zip(groups.in_group_order())
            .map(|(name, bound)| (format!("max_group_grad_norms.{name}"), bound));
        for (field, bound) in
            std::iter::once(("max_grad_norm".into(), self.max_grad_norm)).chain(bounds)
        {
            if let Some(max) = bound {
                check(
                    max > 0.0 && max.is_finite(),
                    &field,
                    max.to_string(),
                    "a finite number > 0 (leave it out for no clipping)",
                )?;
            }
        }
        if let Some(bounds) = &self.max_group_grad_norms {
            check(
                self.max_grad_norm.is_none(),
                "max_group_grad_norms",
                bounds.to_string(),
                "left out when max_grad_norm is set (the whole gradient's bound or each group's, \
                 not both)",
            )?;
            check(
                bounds.in_group_order().iter().any(Option::is_some),
                "max_group_grad_norms",
                bounds.to_string(),
                "a bound for at least one of encoder, decoder, transition, zinit (leave the \
                 table out for no clipping)",
            )?;
        }
        self.elbo_options().validate()?;
        if self.objective == Objective::Iwae {
            check(
                self.transition_draw_scale == 1.0,
                "transition_draw_scale",
                self.transition_draw_scale.to_string(),
                "1 with objective = \"iwae\" (importance weights need the draws' own transition \
                 terms)",
            )?;
            check(
                self.estimator == Estimator::Sample,
                "estimator",
                format!("{:?} (with objective = \"iwae\")", self.estimator).to_lowercase(),
                "\"sample\" with objective = \"iwae\" (importance weights need each \
                 trajectory's own log q(z), not the closed-form entropy)",
            )?;
            check(
                self.samples >= 2,
                "samples",
                self.samples.to_string(),
                "an integer ≥ 2 with objective = \"iwae\" (the trajectories it weighs)",
            )?;
            check(
                self.entropy_weight == 1.0,
                "entropy_weight",
                self.entropy_weight.to_string(),
                "1 with objective = \"iwae\" (a tempered entropy is not an importance weight)",
            )?;
        }
        for (set, field) in [
            (self.encoder_mask_unscored, "encoder_mask_unscored"),
            (
                self.encoder_mask_transition_kept,
                "encoder_mask_transition_kept",
            ),
        ] {
            check(
                !set || self.encoder_mask_rate > 0.0,
                field,
                "true".into(),
                "false unless encoder_mask_rate > 0 (no entry is hidden)",
            )?;
        }
        check(
            !(self.encoder_mask_transition_kept && self.objective == Objective::Iwae),
            "encoder_mask_transition_kept",
            "true (with objective = \"iwae\")".into(),
            "false with objective = \"iwae\" (the importance-weighted objective needs the \
             ELBO's own gradient)",
        )?;
        if self.encoder_mask_start > 0 {
            check(
                self.encoder_mask_rate > 0.0 && self.encoder_mask_start < self.steps,
                "encoder_mask_start",
                self.encoder_mask_start.to_string(),
                &format!(
                    "a step below steps = {} with encoder_mask_rate > 0 (left out: from the \
                     first step)",
                    self.steps
                ),
            )?;
        }
        self.lambda.validate()?;
        if let Some(alternation) = &self.alternation {
            alternation.validate(self.steps, &self.learning_rates)?;
        }
        self.lr_decay.validate(self.steps)
    }

    /// The factor on each group's learning rate at optimiser step `step` (0-based), in the
    /// optimiser's group order (encoder, decoder, transition, zinit): the decay's
    /// ([`LrDecay::scale`]) times the alternation's ([`Alternation::factors`]); 0 freezes a group
    /// for the step.
    pub fn rate_factors(&self, step: usize) -> [f64; 4] {
        let decay = self.lr_decay.scale(step, self.steps);
        let blocks = self.alternation.map_or([1.0; 4], |a| a.factors(step));
        blocks.map(|f| f * decay)
    }
}

pub(crate) fn one() -> f64 {
    1.0
}

pub(crate) fn is_one(v: &f64) -> bool {
    *v == 1.0
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_step(v: &usize) -> bool {
    *v == 0
}
