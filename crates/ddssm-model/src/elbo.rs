//! The terms of the negative ELBO (Eq. 46, 53; App. I.3), per sequence, in nats, and
//! [`Model::elbo`], which computes them for a batch.

use candle_core::{Tensor, D};
use ddssm_tensor_ops::{repeat_rows, SeededNoise};
use serde::{Deserialize, Serialize};

use crate::inference::per_trajectory;
use crate::transition_term::Scored;
use crate::{Batch, ElboOptions, Estimator, Model, Result};

/// Every term of Eq. 46 for each of `B` sequences (`[B]` tensors, averaged over the `S`
/// trajectories), in nats of the data in its own units: when the model standardises its
/// observations, `recon` includes the Jacobian `Σ_observed log s_d` of `x ↦ (x − m)/s`, so the
/// negative ELBO bounds `−log p(x)` of the data as given.
#[derive(Debug, Clone)]
pub struct ElboTerms {
    /// Eq. 50: `Σ_t −log p_θ(x_t | z_{t−j+1:t})` over the observed entries, in the data's units
    /// (with the standardisation's Jacobian).
    pub recon: Tensor,
    /// Eq. 47: `Σ_{t≤j} log q_φ(z_t | …)`, the negative entropy of the initial states.
    pub init_entropy: Tensor,
    /// Eq. 48: `−Σ_{t≤j} log p_η(z_t | z_{t−j:t−1}) + KL(q_Φ ‖ N(0, I))`.
    pub vhp: Tensor,
    /// `Σ_{t>j}` of the transition term: the Gaussian cross-entropy (DKF) or Eq. 52 (DDSSM),
    /// *without* the constant below.
    pub transition: Tensor,
    /// Eq. 51: `Σ_{t>j} log q_φ(z_t | …)`, the negative posterior entropy.
    pub entropy: Tensor,
    /// Nats per sequence that make `transition` a bound: `(T − j)·M·C` for the DDSSM (Eq. 33),
    /// 0 for the DKF.
    pub transition_constant: f64,
    /// `[S·B, T, M]`: the encoder's draws the terms were computed on (for
    /// [`ElboTerms::latent_log_volume`]).
    pub latent: Tensor,
    /// `[S, B]`: each trajectory's distortion (its `recon`, Jacobian included), before the
    /// average over `S` ([`ElboTerms::importance_weighted_objective`]).
    pub trajectory_distortion: Tensor,
    /// `[S, B]`: each trajectory's rate with the transition's constant, before the average over
    /// `S`: with [`ElboTerms::trajectory_distortion`], `−log w_s = D_s + R_s` is trajectory
    /// `s`'s negative log importance weight when the terms are single-sample estimates
    /// ([`Estimator::Sample`]).
    pub trajectory_rate: Tensor,
    /// `[S, B]`: the part of [`ElboTerms::trajectory_rate`] that is each trajectory's transition
    /// term (without the constant), for diagnosing the weights' noise.
    pub trajectory_transition: Tensor,
    /// The options of the call. With a transition draw scale below 1 the per-trajectory terms are
    /// not importance weights' logs (unless the gradient is split) and their gradient is not the
    /// ELBO's (either way); with the transition kept off hidden steps the values are the ELBO's
    /// and the gradient is not. The methods built on the weights refuse such terms.
    options: ElboOptions,
}

impl ElboTerms {
    /// Assembles the terms from per-trajectory ones (`[S·B]` each, trajectory-major: row
    /// `s·B + b` is trajectory `s` of sequence `b`); `jacobian` (`[B]`) is added to the
    /// distortion when the model standardises its observations.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_trajectories(
        (s, b): (usize, usize),
        recon: Tensor,
        jacobian: Option<Tensor>,
        init_entropy: Tensor,
        vhp: Tensor,
        transition: Tensor,
        entropy: Tensor,
        transition_constant: f64,
        latent: Tensor,
        options: &ElboOptions,
    ) -> Result<Self> {
        let per_trajectory = |t: &Tensor| -> Result<Tensor> { Ok(t.reshape((s, b))?) };
        let per_sequence = |t: &Tensor| -> Result<Tensor> { Ok(per_trajectory(t)?.mean(0)?) };
        // The mean takes the Jacobian after averaging, as before the per-trajectory terms
        // existed, so the reported terms keep their bits.
        let (mean_recon, mut distortion) = (per_sequence(&recon)?, per_trajectory(&recon)?);
        let mean_recon = match jacobian {
            Some(j) => {
                distortion = distortion.broadcast_add(&j)?;
                (mean_recon + j)?
            }
            None => mean_recon,
        };
        let rate = ((((&init_entropy + &vhp)? + &transition)? + &entropy)?
            .affine(1.0, transition_constant))?;
        Ok(Self {
            recon: mean_recon,
            init_entropy: per_sequence(&init_entropy)?,
            vhp: per_sequence(&vhp)?,
            transition: per_sequence(&transition)?,
            entropy: per_sequence(&entropy)?,
            transition_constant,
            latent,
            trajectory_distortion: distortion,
            trajectory_rate: per_trajectory(&rate)?,
            trajectory_transition: per_trajectory(&transition)?,
            options: *options,
        })
    }

    /// The distortion `D` of App. I.2: the reconstruction term. `[B]`.
    pub fn distortion(&self) -> Tensor {
        self.recon.clone()
    }

    /// The rate `R` of App. I.2: initial entropy + VHP + transition + posterior entropy. `[B]`.
    pub fn rate(&self) -> Result<Tensor> {
        Ok((((&self.init_entropy + &self.vhp)? + &self.transition)? + &self.entropy)?)
    }

    /// The training objective `mean_B(D + λ·R)` (App. I.2), a scalar.
    pub fn objective(&self, lambda: f64) -> Result<Tensor> {
        self.tempered_objective(lambda, 1.0)
    }

    /// `mean_B(D + λ·R_γ)`, where `R_γ` is the rate with the encoder's two negative-entropy terms
    /// (Eq. 47, 51) weighted by `γ = entropy_weight` instead of 1: a tempered posterior, whose
    /// Gaussian variance shrinks in proportion to `γ` (not in the paper; `γ = 1` is
    /// [`ElboTerms::objective`] exactly). The reported bound ([`ElboTerms::negative_elbo`]) is
    /// unweighted whatever `γ` training uses.
    pub fn tempered_objective(&self, lambda: f64, entropy_weight: f64) -> Result<Tensor> {
        let rate = if entropy_weight == 1.0 {
            self.rate()?
        } else {
            let entropies = ((&self.init_entropy + &self.entropy)? * entropy_weight)?;
            ((&self.vhp + &self.transition)? + entropies)?
        };
        Ok((&self.recon + (rate * lambda)?)?.mean_all()?)
    }

    /// `T·Σ_m log sd_m`, where `sd_m` is the standard deviation of latent dimension `m` over all
    /// the draws in [`ElboTerms::latent`] (every sequence, trajectory and step): the part of a
    /// sequence's terms that moves with the latent's scale. Stretching every latent by `a` adds
    /// `T·M·log a` to it — as to `vhp + transition` and to `−(init_entropy + entropy)`, which is
    /// why the ELBO itself has no preferred scale. A scalar.
    pub fn latent_log_volume(&self) -> Result<Tensor> {
        let (n, t_len, m) = self.latent.dims3()?;
        let rows = self.latent.reshape((n * t_len, m))?;
        let centred = rows.broadcast_sub(&rows.mean_keepdim(0)?)?;
        let variance = centred.sqr()?.mean(0)?;
        Ok((variance.log()?.sum_all()? * (0.5 * t_len as f64))?)
    }

    /// [`ElboTerms::tempered_objective`] made invariant to the latent's scale again: `mean_B(D +
    /// λ·(R_γ − (1 − γ)·V))` with `V` the [`ElboTerms::latent_log_volume`]. Weighting only the
    /// entropies by `γ < 1` rewards shrinking every latent by `a` with `(1 − γ)·T·M·log(1/a)`
    /// nats, so a tempered objective alone shrinks the latent until the transition's fixed noise
    /// levels set its width (docs/results/bimodal.md §1); the `V` term pays that back exactly, so
    /// only the posterior's spread relative to the latent's scale is tempered. At `γ = 1` it is
    /// [`ElboTerms::objective`] exactly.
    pub fn scale_pinned_objective(&self, lambda: f64, entropy_weight: f64) -> Result<Tensor> {
        let tempered = self.tempered_objective(lambda, entropy_weight)?;
        if entropy_weight == 1.0 {
            return Ok(tempered);
        }
        let pull = (self.latent_log_volume()? * (lambda * (1.0 - entropy_weight)))?;
        Ok(tempered.broadcast_sub(&pull.to_dtype(tempered.dtype())?)?)
    }

    /// The importance-weighted objective (IWAE, Burda et al. 2016; not in the paper):
    /// `−mean_B log (1/S) Σ_s exp(−(D_s + λ·R_s))` over the `S` trajectories of each sequence
    /// ([`ElboTerms::trajectory_distortion`], [`ElboTerms::trajectory_rate`]), a scalar. Its
    /// gradient weighs each trajectory's `D_s + λR_s` by its normalised weight `w̃_s` instead of
    /// `1/S`, so the transition and the emission are fitted to draws reweighted toward the
    /// posterior of the model itself rather than to the encoder's draws as they are (where the
    /// encoder already is that posterior the weights are equal and both gradients are
    /// `∇ log p(x)`, Fisher's identity: the objective acts only through the bound's slack). At `S = 1`
    /// it is [`ElboTerms::objective`] exactly (up to the transition's constant, which moves no
    /// gradient); with single-sample terms ([`Estimator::Sample`]) and `λ = 1` it is the IWAE-S
    /// bound on `−log p(x)` (with the diffusion transition's density replaced by Eq. 52's
    /// estimate, so not a strict bound).
    ///
    /// Fails when the terms were computed with `transition_draw_scale < 1`: the trajectories'
    /// transition terms then score pulled draws (or carry a split gradient), so neither the
    /// weights nor their gradient are the IWAE's.
    pub fn importance_weighted_objective(&self, lambda: f64) -> Result<Tensor> {
        self.require_weights(false)?;
        let s = self.trajectory_distortion.dim(0)?;
        let log_w = self.log_weights(lambda)?;
        // log Σ_s exp(log w_s) with the largest weight taken out (detached: it cancels).
        let top = log_w.max_keepdim(0)?.detach();
        let lse = (log_w.broadcast_sub(&top)?.exp()?.sum_keepdim(0)?.log()? + top)?;
        Ok(lse.affine(-1.0, (s as f64).ln())?.mean_all()?)
    }

    /// The effective sample size ([`crate::effective_sample_size`]) of each sequence's
    /// normalised importance weights at tempering `λ` (between 1 and `S`; `S` when every
    /// trajectory weighs the same), averaged over the batch: how many of the `S` trajectories
    /// the importance-weighted objective effectively trains on.
    ///
    /// Fails when the terms were computed with `transition_draw_scale < 1` without
    /// `split_transition_gradient` (the split reports the ELBO's values, so its weights stand).
    pub fn effective_sample_size(&self, lambda: f64) -> Result<f64> {
        self.require_weights(true)?;
        crate::effective_sample_size(&self.log_weights(lambda)?)
    }

    /// Refuses terms whose per-trajectory values (`values_only`) or values and gradient are not
    /// those of the ELBO's draws; names the option and what the method needs.
    fn require_weights(&self, values_only: bool) -> Result<()> {
        let options = &self.options;
        crate::check_config(
            values_only || !options.transition_kept(),
            "encoder_mask_transition_kept",
            true,
            "false: the importance-weighted objective needs the ELBO's own gradient",
        )?;
        crate::check_config(
            if values_only {
                !options.values_pulled()
            } else {
                options.transition_draw_scale == 1.0
            },
            "transition_draw_scale",
            options.transition_draw_scale,
            if values_only {
                "1, or split_transition_gradient = true: importance weights need the ELBO's \
                 own draws"
            } else {
                "1: the importance-weighted objective needs the ELBO's own draws and gradient"
            },
        )
    }

    /// `−(D_s + λ·R_s)` per trajectory, `[S, B]`: the λ-tempered log weights.
    fn log_weights(&self, lambda: f64) -> Result<Tensor> {
        Ok((&self.trajectory_distortion + (&self.trajectory_rate * lambda)?)?.neg()?)
    }

    /// The negative ELBO per sequence, `D + R + constant`: an upper bound on `−log p(x_{1:T})` in
    /// nats (unweighted, whatever λ training uses). `[B]`.
    pub fn negative_elbo(&self) -> Result<Tensor> {
        Ok(((&self.recon + self.rate()?)? + self.transition_constant)?)
    }

    /// Batch means of every term, for logging.
    pub fn summary(&self) -> Result<ElboSummary> {
        let mean = |t: &Tensor| -> Result<f64> {
            Ok(t.to_dtype(candle_core::DType::F64)?
                .mean_all()?
                .to_scalar::<f64>()?)
        };
        Ok(ElboSummary {
            recon: mean(&self.recon)?,
            init_entropy: mean(&self.init_entropy)?,
            vhp: mean(&self.vhp)?,
            transition: mean(&self.transition)? + self.transition_constant,
            entropy: mean(&self.entropy)?,
            negative_elbo: mean(&self.negative_elbo()?)?,
        })
    }
}

/// Batch means of the ELBO terms (nats per sequence); `transition` includes its constant, so the
/// five terms add up to `negative_elbo`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ElboSummary {
    /// Eq. 50.
    pub recon: f64,
    /// Eq. 47.
    pub init_entropy: f64,
    /// Eq. 48.
    pub vhp: f64,
    /// The transition term with its constant.
    pub transition: f64,
    /// Eq. 51.
    pub entropy: f64,
    /// The sum: the negative ELBO.
    pub negative_elbo: f64,
}

impl Model {
    /// The ELBO terms of `batch` (App. I.3–I.4), given in the data's own units (the model applies
    /// its standardisation; the terms are nats of the data as given): `S` encoder trajectories
    /// per sequence, the decoder, the VHP and the transition each in one batched call, averaged
    /// over `S`. Every random draw comes from `noise`, in this order: with
    /// `options.encoder_input_noise > 0` the noise on the encoder's view of `x` (`[B, T, D]`), with
    /// `options.encoder_mask_rate > 0` the uniform draws that hide entries from it (`[B, T, D]`), the
    /// encoder's `ε_t` (`[S·B, M]` per step), the VHP's auxiliary latents, the transition's draws
    /// (for the DDSSM, Eq. 52's `k` and `ε`).
    pub fn elbo(
        &self,
        batch: &Batch,
        options: &ElboOptions,
        noise: &mut SeededNoise,
    ) -> Result<ElboTerms> {
        let (raw, x) = self.observations(batch)?;
        options.validate()?;
        let (s, sd, alpha) = (
            options.samples,
            options.encoder_input_noise,
            options.transition_draw_scale,
        );
        let (b, t_len, _) = x.dims3()?;
        let j = self.config().order;
        let seen = if sd > 0.0 {
            (&x + (noise.randn_like(&x)? * sd)?)?
        } else {
            x.clone()
        };
        let hidden = options.encoder_mask_rate;
        let view_mask = if hidden > 0.0 {
            // 1 = the encoder sees the entry: kept with probability 1 − rate, and only if observed.
            let keep = noise
                .rand_uniform(x.shape().clone(), x.dtype(), x.device())?
                .ge(hidden)?
                .to_dtype(x.dtype())?;
            Some(match &batch.mask {
                Some(m) => (m * keep)?,
                None => keep,
            })
        } else {
            batch.mask.clone()
        };
        // `[S·B, T − j]`: the pairs the transition learns from, with
        // `encoder_mask_transition_kept` (1 where the encoder saw every step of the pair whole).
        let learn_from = match &view_mask {
            Some(view) if options.transition_kept() => {
                let observed = match &batch.mask {
                    Some(m) => m.clone(),
                    None => Tensor::ones_like(view)?,
                };
                let shown = (observed - view)?
                    .sum(D::Minus1)?
                    .eq(0.0)?
                    .to_dtype(x.dtype())?;
                Some(repeat_rows(&pairs_shown(&shown, j)?, s)?)
            }
            _ => None,
        };
        let traj = self.encoder().sample(
            &self.encoder_view(&seen, view_mask.as_ref(), batch)?,
            s,
            noise,
            self.residual_prior(),
        )?;
        let (covariates, statics) = per_trajectory(batch, t_len, s)?;

        // Eq. 50, over observed entries only (or only those the encoder saw).
        let scored = if options.encoder_mask_unscored {
            view_mask
        } else {
            batch.mask.clone()
        };
        let emission = self
            .decoder()
            .forward(&traj.z, covariates.as_ref(), statics.as_ref())?;
        let mut log_px = emission.log_prob_elementwise(&repeat_rows(&x, s)?)?;
        if let Some(mask) = &scored {
            log_px = (log_px * repeat_rows(mask, s)?)?;
        }
        let recon = log_px.sum(D::Minus1)?.sum(D::Minus1)?.neg()?;

        // Eq. 47 and 51: log q(z_t | …), per step.
        let log_q = match options.estimator {
            Estimator::Analytic => traj.posterior.entropy()?.neg()?,
            Estimator::Sample => traj.posterior.log_prob(&traj.z)?,
        };
        let init_entropy = log_q.narrow(1, 0, j)?.sum(1)?;
        let entropy = log_q.narrow(1, j, t_len - j)?.sum(1)?;

        // Eq. 48.
        let cov_init = covariates.as_ref().map(|u| u.narrow(1, 0, j)).transpose()?;
        let vhp = self
            .vhp()
            .loss(&traj.z.narrow(1, 0, j)?, cov_init.as_ref(), noise)?;

        // Eq. 52 (DDSSM) or the Gaussian cross-entropy (DKF), all t > j at once; with α < 1 on
        // the draws pulled toward their means (`ElboOptions::transition_draw_scale`), for every
        // parameter or (`split_transition_gradient`) for the transition's only.
        let draws = Scored::of(&traj);
        let (transition, constant) = if options.split_transition_gradient || learn_from.is_some() {
            self.split_transition_term(
                &draws,
                alpha,
                learn_from.as_ref(),
                covariates.as_ref(),
                options.estimator,
                noise,
            )?
        } else {
            self.transition_term(
                &draws.pulled(alpha)?,
                covariates.as_ref(),
                options.estimator,
                noise,
            )?
        };

        ElboTerms::from_trajectories(
            (s, b),
            recon,
            self.jacobian(&raw, scored.as_ref())?,
            init_entropy,
            vhp,
            transition,
            entropy,
            constant,
            traj.z,
            options,
        )
    }
}

/// `[B, T − j]` from `shown` (`[B, T]`, 1 where the encoder saw the step whole): 1 for the pairs
/// `z_{t−j:t−1} → z_t` whose every step it saw.
fn pairs_shown(shown: &Tensor, j: usize) -> Result<Tensor> {
    let steps = shown.dim(1)? - j;
    let mut all = shown.narrow(1, j, steps)?;
    for back in 1..=j {
        all = (all * shown.narrow(1, j - back, steps)?)?;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn scalar(t: Tensor) -> f64 {
        t.to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// The terms of two sequences whose latents are `latent` stretched by `a`, moved exactly as
    /// the ELBO's terms move under that stretch (see [`ElboTerms::latent_log_volume`]).
    fn stretched(a: f64) -> ElboTerms {
        let dev = Device::Cpu;
        let (t_len, m) = (5usize, 2usize);
        let shift = (t_len * m) as f64 * a.ln();
        let v = |x: [f64; 2]| Tensor::new(&x, &dev).unwrap();
        let z: Vec<f64> = (0..2 * t_len * m)
            .map(|i| a * ((i as f64 * 0.7).sin() + 0.1 * i as f64))
            .collect();
        ElboTerms {
            recon: v([3.0, 4.0]),
            init_entropy: v([-1.0 - 0.2 * shift, -1.5 - 0.2 * shift]),
            vhp: v([2.0 + 0.2 * shift, 2.5 + 0.2 * shift]),
            transition: v([6.0 + 0.8 * shift, 7.0 + 0.8 * shift]),
            entropy: v([-5.0 - 0.8 * shift, -4.0 - 0.8 * shift]),
            transition_constant: 0.0,
            latent: Tensor::from_vec(z, (2, t_len, m), &dev).unwrap(),
            trajectory_distortion: v([3.0, 4.0]).reshape((1, 2)).unwrap(),
            trajectory_rate: v([2.0, 3.0]).reshape((1, 2)).unwrap(),
            trajectory_transition: v([1.0, 1.0]).reshape((1, 2)).unwrap(),
            options: ElboOptions::default(),
        }
    }

    /// Stretching the latent leaves the ELBO's objective and the scale-pinned tempered one
    /// unchanged, and moves the tempered one by exactly `λ(1 − γ)·T·M·log a` (its pull toward a
    /// smaller latent). f64 throughout, so the tolerance is rounding only.
    #[test]
    fn only_the_pinned_tempered_objective_is_blind_to_the_latent_scale() {
        let (lambda, gamma, a) = (0.8, 0.5, 0.1);
        let (base, small) = (stretched(1.0), stretched(a));
        let close = |x: f64, y: f64| (x - y).abs() < 1e-9 * (1.0 + x.abs());
        let volume =
            scalar(small.latent_log_volume().unwrap()) - scalar(base.latent_log_volume().unwrap());
        assert!(close(volume, 10.0 * a.ln()), "{volume}");
        assert!(close(
            scalar(small.objective(lambda).unwrap()),
            scalar(base.objective(lambda).unwrap())
        ));
        let pull = scalar(small.tempered_objective(lambda, gamma).unwrap())
            - scalar(base.tempered_objective(lambda, gamma).unwrap());
        assert!(
            close(pull, lambda * (1.0 - gamma) * 10.0 * a.ln()),
            "{pull}"
        );
        assert!(close(
            scalar(small.scale_pinned_objective(lambda, gamma).unwrap()),
            scalar(base.scale_pinned_objective(lambda, gamma).unwrap())
        ));
    }

    /// Terms of two sequences whose `S` trajectories have the given distortions and rates (the
    /// rest of the fields unused here).
    fn trajectories(d: &candle_core::Var, r: &candle_core::Var) -> ElboTerms {
        let dev = Device::Cpu;
        let zero = Tensor::zeros(2, candle_core::DType::F64, &dev).unwrap();
        ElboTerms {
            recon: d.mean(0).unwrap(),
            init_entropy: zero.clone(),
            vhp: zero.clone(),
            transition: r.mean(0).unwrap(),
            entropy: zero,
            transition_constant: 0.0,
            latent: Tensor::zeros((2, 3, 1), candle_core::DType::F64, &dev).unwrap(),
            trajectory_distortion: d.as_tensor().clone(),
            trajectory_rate: r.as_tensor().clone(),
            trajectory_transition: r.as_tensor().clone(),
            options: ElboOptions::default(),
        }
    }

    /// The importance-weighted objective against its definition: its value is
    /// `−mean_b log mean_s exp(−(D + λR))`, its gradient with respect to trajectory `s`'s
    /// distortion is that trajectory's normalised weight over `B`, and with one trajectory it is
    /// the ELBO's objective. f64, rounding only.
    #[test]
    fn importance_weighted_objective_weighs_trajectories_by_their_weights() {
        let dev = Device::Cpu;
        let lambda = 0.5;
        let (dv, rv) = (
            [[1.0, 40.0], [3.0, 41.0], [2.0, 39.5]],
            [[4.0, 2.0], [1.0, 2.0], [6.0, 1.0]],
        );
        let d = candle_core::Var::new(&dv, &dev).unwrap();
        let r = candle_core::Var::new(&rv, &dev).unwrap();
        let terms = trajectories(&d, &r);
        let objective = terms.importance_weighted_objective(lambda).unwrap();
        let grad = objective.backward().unwrap();
        let grad = grad.get(d.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
        let mut expect = 0.0;
        let mut ess = 0.0;
        for b in 0..2 {
            let w: Vec<f64> = (0..3)
                .map(|s| (-(dv[s][b] + lambda * rv[s][b])).exp())
                .collect();
            let total: f64 = w.iter().sum();
            expect -= (total / 3.0).ln() / 2.0;
            ess += 1.0 / w.iter().map(|x| (x / total).powi(2)).sum::<f64>() / 2.0;
            for s in 0..3 {
                let want = w[s] / total / 2.0;
                assert!(
                    (grad[s][b] - want).abs() < 1e-12,
                    "{s},{b}: {} vs {want}",
                    grad[s][b]
                );
            }
        }
        let got = scalar(objective);
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
        let got_ess = terms.effective_sample_size(lambda).unwrap();
        assert!((got_ess - ess).abs() < 1e-12, "{got_ess} vs {ess}");
        // Below the ELBO's average (Jensen), strictly, as the weights differ.
        assert!(got < scalar(terms.objective(lambda).unwrap()) - 1e-3);

        let d1 = candle_core::Var::new(&[dv[0]], &dev).unwrap();
        let r1 = candle_core::Var::new(&[rv[0]], &dev).unwrap();
        let one = trajectories(&d1, &r1);
        let (iw, elbo) = (
            scalar(one.importance_weighted_objective(lambda).unwrap()),
            scalar(one.objective(lambda).unwrap()),
        );
        assert!((iw - elbo).abs() < 1e-12, "{iw} vs {elbo}");
    }
}
