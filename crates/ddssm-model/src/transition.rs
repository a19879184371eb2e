//! The transition density `p_ψ(z_t | z_{t−j:t−1}, u_{t−j:t})` for `t > j`, behind one trait so
//! that the DKF and the DDSSM are the same model with a different [`Transition`]:
//!
//! - [`GaussianTransition`] (App. H.5): a context producer over the `j` history slots and a
//!   Gaussian head; its ELBO term is the cross-entropy `E_q[−log p_ψ(z_t | c_t)]`.
//! - [`DiffusionTransition`] (App. D, E, H.1): the CSDI denoiser under EDM preconditioning; its
//!   ELBO term is Eq. 52 (`S_k` noise draws per target), plus the constant `M·C` of Eq. 33 when
//!   the bound is reported.
//!
//! Both evaluate every `(history, target)` pair of a batch of trajectories in one call, and both
//! can sample `z_t` given a history.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;
use ddssm_diffusion::{
    diffusion_loss, path_log_weight, sample, top_level_mean, Conditioning, Denoiser,
    DiffusionLossConfig, LatentShape, LevelSampling, NoiseSchedule, Sampler,
};
use ddssm_nets::{ContextProducer, CsdiDenoiser, Dense, GaussianHead, SideInfo, TemporalSide};
use ddssm_tensor_ops::{DiagGaussian, SeededNoise};

use crate::model::section;
use crate::{
    check_shape, DiffusionTransitionConfig, Error, Estimator, GaussianTransitionConfig,
    LatentScale, ModelConfig, Result,
};

/// The conditioning of `N` transitions `z_{t−j:t−1} → z_t`.
#[derive(Debug, Clone)]
pub struct TransitionInput {
    /// `[N, j, M]`: the history `z_{t−j:t−1}`.
    pub history: Tensor,
    /// `[N, j+1]`: the absolute (1-based) times `t−j, …, t`.
    pub times: Tensor,
    /// `[N, j+1, V]`: the covariates `u_{t−j:t}` (None when the model has none).
    pub covariates: Option<Tensor>,
}

/// The transition term of `N` targets.
#[derive(Debug, Clone)]
pub struct TransitionLoss {
    /// `[N]`: what training minimises — the Gaussian cross-entropy, or Eq. 52 (the weighted
    /// regression plus the forward KL).
    pub objective: Tensor,
    /// Nats to add to every target's `objective` to make it an upper bound on `−log p_ψ(z_t | c_t)`
    /// (`M·C` for the diffusion transition, 0 for the Gaussian one).
    pub constant: f64,
}

/// A transition density; see the module documentation.
pub trait Transition: std::fmt::Debug + Send + Sync {
    /// `"gaussian"` or `"diffusion"`.
    fn kind(&self) -> &'static str;

    /// The ELBO term of each target `z_t` (`[N, M]`, drawn from `posterior`, the encoder's
    /// `q(z_t | …)`) given `input`. `estimator` chooses between closed forms (where they exist)
    /// and single-sample estimates.
    fn loss(
        &self,
        input: &TransitionInput,
        target: &Tensor,
        posterior: &DiagGaussian,
        estimator: Estimator,
        noise: &mut SeededNoise,
    ) -> Result<TransitionLoss>;

    /// One draw `z_t ~ p_ψ(z_t | input)` per row: `[N, M]`, without gradient.
    fn sample(&self, input: &TransitionInput, noise: &mut SeededNoise) -> Result<Tensor>;

    /// The transition's predicted mean `E_ψ[z_t | input]` for each row (`[N, M]`), with its
    /// autograd graph (the caller detaches it where the gradient must not reach `ψ`): the
    /// Gaussian transition's mean, or the diffusion transition's denoiser at the top noise level
    /// with a zero input ([`ddssm_diffusion::top_level_mean`]). What the encoder's residual
    /// posterior adds to its head's mean ([`crate::EncoderResidual`]).
    fn predicted_mean(&self, input: &TransitionInput) -> Result<Tensor>;

    /// A log importance weight of `p_ψ(z_t | input)` for each row of `target` (`[N, M]`): `[N]`,
    /// detached, with `E[exp(·)] = p_ψ(z_t | input)`, so that an importance-weighted bound built on
    /// it stays a bound. The Gaussian transition's is its exact log-density; the diffusion
    /// transition's is one diffusion path's weight ([`ddssm_diffusion::path_log_weight`]), whose
    /// mean is minus Eq. (33)'s bound.
    fn log_weight(
        &self,
        input: &TransitionInput,
        target: &Tensor,
        noise: &mut SeededNoise,
    ) -> Result<Tensor>;

    /// The scale `s` the transition divides the latent by before modelling it (1 unless a
    /// diffusion transition learns it; [`crate::LatentScale`]).
    fn latent_scale(&self) -> Result<f64> {
        Ok(1.0)
    }

    /// The noise schedule of a diffusion transition (`None` for a Gaussian one).
    fn schedule(&self) -> Option<&NoiseSchedule> {
        None
    }

    /// Switches the sampler `sample` uses (the diffusion transition only; the parameters are
    /// untouched). The default refuses: a Gaussian transition has no sampler to choose.
    fn set_sampler(&mut self, sampler: Sampler) -> Result<()> {
        Err(Error::InvalidConfig {
            field: "transition.sampler".into(),
            value: format!("{sampler:?}"),
            allowed: format!("a diffusion transition (this one is {})", self.kind()),
        })
    }

    /// Switches how Eq. 52 draws its noise levels (the diffusion transition only; an estimator's
    /// choice, the parameters are untouched). The default refuses, as [`Self::set_sampler`].
    fn set_level_sampling(&mut self, levels: LevelSampling) -> Result<()> {
        Err(Error::InvalidConfig {
            field: "transition.loss.levels".into(),
            value: format!("{levels:?}"),
            allowed: format!("a diffusion transition (this one is {})", self.kind()),
        })
    }
}

fn check_input(input: &TransitionInput, j: usize, m: usize, v: usize) -> Result<usize> {
    let n = input.history.dim(0)?;
    check_shape(
        input.history.dims() == [n, j, m],
        "transition history",
        format!("[N, {j}, {m}]"),
        input.history.dims(),
    )?;
    check_shape(
        input.times.dims() == [n, j + 1],
        "transition times",
        format!("[{n}, {}]", j + 1),
        input.times.dims(),
    )?;
    if let Some(u) = &input.covariates {
        check_shape(
            u.dims() == [n, j + 1, v],
            "transition covariates",
            format!("[{n}, {}, {v}]", j + 1),
            u.dims(),
        )?;
    }
    Ok(n)
}

/// The DKF's Gaussian transition (App. H.5).
#[derive(Debug, Clone)]
pub struct GaussianTransition {
    latent_dim: usize,
    order: usize,
    covariate_dim: usize,
    history_projection: Dense,
    side: TemporalSide,
    context: ContextProducer,
    head: GaussianHead,
}

impl GaussianTransition {
    /// Builds the transition of `model` (whose transition section is `config`) under `vb`.
    pub fn new(
        model: &ModelConfig,
        config: &GaussianTransitionConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (m, j, h, v) = (
            model.latent_dim,
            model.order,
            model.h_seq,
            model.covariate_dim,
        );
        // Slot i (time t−j+i) sees its own covariates and the target's, u_t: together u_{t−j:t}
        // (docs/paper-notes.md). No masks: the history is never padded (App. H.5).
        let side = section(
            "transition.side",
            TemporalSide::new(&config.side, 2 * v, 0, vb.pp("side")),
        )?;
        let context = section(
            "transition.context",
            ContextProducer::new(&config.context, h, j, side.dim(), 0, vb.pp("context")),
        )?;
        let head = section(
            "transition",
            GaussianHead::new(&config.head, context.output_dim(), m, vb.pp("head")),
        )?;
        Ok(Self {
            latent_dim: m,
            order: j,
            covariate_dim: v,
            history_projection: Dense::new(m, h, vb.pp("history_projection"))?,
            side,
            context,
            head,
        })
    }

    /// `p_ψ(z_t | input)` for every row: `[N, M]`.
    pub fn distribution(&self, input: &TransitionInput) -> Result<DiagGaussian> {
        let (j, v) = (self.order, self.covariate_dim);
        let n = check_input(input, j, self.latent_dim, v)?;
        let x = self
            .history_projection
            .forward(&input.history)?
            .transpose(1, 2)?
            .contiguous()?;
        let covariates = match &input.covariates {
            Some(u) => {
                let target = u.narrow(1, j, 1)?.broadcast_as((n, j, v))?;
                Some(Tensor::cat(&[u.narrow(1, 0, j)?, target], D::Minus1)?)
            }
            None => None,
        };
        let times = input.times.narrow(1, 0, j)?.contiguous()?;
        let side = SideInfo {
            temporal: self
                .side
                .build(n, j, Some(&times), covariates.as_ref(), None)?,
            static_: None,
        };
        Ok(self.head.forward(&self.context.forward(&x, &side)?)?)
    }
}

impl Transition for GaussianTransition {
    fn kind(&self) -> &'static str {
        "gaussian"
    }

    fn loss(
        &self,
        input: &TransitionInput,
        target: &Tensor,
        posterior: &DiagGaussian,
        estimator: Estimator,
        _noise: &mut SeededNoise,
    ) -> Result<TransitionLoss> {
        let p = self.distribution(input)?;
        let objective = match estimator {
            // E_q[−log p] = KL(q ‖ p) + H(q), in closed form given the history.
            Estimator::Analytic => (posterior.kl(&p)? + posterior.entropy()?)?,
            Estimator::Sample => p.log_prob(target)?.neg()?,
        };
        Ok(TransitionLoss {
            objective,
            constant: 0.0,
        })
    }

    fn sample(&self, input: &TransitionInput, noise: &mut SeededNoise) -> Result<Tensor> {
        Ok(self.distribution(input)?.sample(noise)?.detach())
    }

    fn predicted_mean(&self, input: &TransitionInput) -> Result<Tensor> {
        Ok(self.distribution(input)?.mean().clone())
    }

    fn log_weight(
        &self,
        input: &TransitionInput,
        target: &Tensor,
        _noise: &mut SeededNoise,
    ) -> Result<Tensor> {
        Ok(self.distribution(input)?.log_prob(target)?.detach())
    }
}

/// The conditioning the denoiser sees: the clean history and its side information (built once per
/// batch, then tiled for the `S_k` noise draws or reused across the `K` sampling steps).
#[derive(Debug, Clone)]
pub struct DenoiserCond {
    history: Tensor,
    side: SideInfo,
}

impl Conditioning for DenoiserCond {
    fn repeat_batch(&self, times: usize) -> ddssm_diffusion::Result<Self> {
        Ok(Self {
            history: self.history.repeat_batch(times)?,
            side: self
                .side
                .repeat_batch(times)
                .map_err(|e| ddssm_diffusion::Error::Network(Box::new(e)))?,
        })
    }
}

/// [`CsdiDenoiser`] seen through the diffusion crate's [`Denoiser`] interface.
#[derive(Debug, Clone, Copy)]
struct ConditionedDenoiser<'a>(&'a CsdiDenoiser);

impl Denoiser for ConditionedDenoiser<'_> {
    type Cond = DenoiserCond;

    fn forward(
        &self,
        x_in: &Tensor,
        c_noise: &Tensor,
        cond: &DenoiserCond,
    ) -> ddssm_diffusion::Result<Tensor> {
        self.0
            .forward_with_side(&cond.history, x_in, c_noise, &cond.side)
            .map_err(|e| ddssm_diffusion::Error::Network(Box::new(e)))
    }
}

/// The DDSSM's diffusion transition; see the module documentation.
#[derive(Debug, Clone)]
pub struct DiffusionTransition {
    latent_dim: usize,
    order: usize,
    covariate_dim: usize,
    net: CsdiDenoiser,
    schedule: NoiseSchedule,
    loss: DiffusionLossConfig,
    sampler: Sampler,
    /// `[1]`: `log s` of a learned latent scale ([`LatentScale::Learned`]); `None` for the
    /// paper's fixed one.
    log_scale: Option<Tensor>,
}

impl DiffusionTransition {
    /// Builds the transition of `model` (whose transition section is `config`) under `vb`.
    pub fn new(
        model: &ModelConfig,
        config: &DiffusionTransitionConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        let net = section(
            "transition.denoiser",
            CsdiDenoiser::new(
                &config.denoiser,
                model.latent_dim,
                model.order,
                model.covariate_dim,
                vb.pp("denoiser"),
            ),
        )?;
        Ok(Self {
            latent_dim: model.latent_dim,
            order: model.order,
            covariate_dim: model.covariate_dim,
            net,
            schedule: config.schedule.build()?,
            loss: config.loss,
            sampler: config.sampler,
            log_scale: match config.latent_scale {
                LatentScale::Fixed => None,
                LatentScale::Learned => {
                    Some(vb.get_with_hints(1, "log_scale", candle_nn::Init::Const(0.0))?)
                }
            },
        })
    }

    /// `z / s`: the latent as the diffusion sees it.
    fn scaled(&self, z: &Tensor) -> Result<Tensor> {
        Ok(match &self.log_scale {
            Some(ls) => z.broadcast_mul(&ls.neg()?.exp()?)?,
            None => z.clone(),
        })
    }

    /// `M·log s` for each of `n` targets (`[n]`): the change of variables from `z / s` to `z`,
    /// `−log p(z) = −log p̃(z / s) + M·log s`.
    fn log_jacobian(&self, n: usize) -> Result<Option<Tensor>> {
        self.log_scale
            .as_ref()
            .map(|ls| Ok((ls * self.latent_dim as f64)?.broadcast_as(n)?))
            .transpose()
    }

    /// The noise schedule.
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    fn cond(&self, input: &TransitionInput) -> Result<(usize, DenoiserCond)> {
        let n = check_input(input, self.order, self.latent_dim, self.covariate_dim)?;
        let side = self
            .net
            .side_info(n, Some(&input.times), input.covariates.as_ref())?;
        Ok((
            n,
            DenoiserCond {
                history: self.scaled(&input.history)?,
                side,
            },
        ))
    }

    /// [`Self::cond`] and the shape of the `[N, M]` latents a sampler produces for it.
    fn cond_and_shape(&self, input: &TransitionInput) -> Result<(DenoiserCond, LatentShape)> {
        let (n, cond) = self.cond(input)?;
        let shape = LatentShape {
            n,
            m: self.latent_dim,
            dtype: input.history.dtype(),
            device: input.history.device().clone(),
        };
        Ok((cond, shape))
    }

    /// `s·z`: a latent the diffusion produced back in the model's units (the inverse of
    /// [`Self::scaled`]).
    fn unscaled(&self, z: &Tensor) -> Result<Tensor> {
        Ok(match &self.log_scale {
            Some(ls) => z.broadcast_mul(&ls.exp()?)?,
            None => z.clone(),
        })
    }

    /// One draw per row with an explicit sampler (e.g. a few-step one) instead of the configured
    /// one.
    pub fn sample_using(
        &self,
        input: &TransitionInput,
        sampler: &Sampler,
        noise: &mut SeededNoise,
    ) -> Result<Tensor> {
        let (cond, shape) = self.cond_and_shape(input)?;
        let draws = sample(
            &ConditionedDenoiser(&self.net),
            &self.schedule,
            sampler,
            &cond,
            &shape,
            noise,
        )?;
        Ok(self.unscaled(&draws)?.detach())
    }
}

impl Transition for DiffusionTransition {
    fn kind(&self) -> &'static str {
        "diffusion"
    }

    fn loss(
        &self,
        input: &TransitionInput,
        target: &Tensor,
        _posterior: &DiagGaussian,
        _estimator: Estimator,
        noise: &mut SeededNoise,
    ) -> Result<TransitionLoss> {
        let (n, cond) = self.cond(input)?;
        let loss = diffusion_loss(
            &ConditionedDenoiser(&self.net),
            &self.schedule,
            &self.scaled(target)?,
            &cond,
            &self.loss,
            noise,
        )?;
        let objective = loss.total()?;
        Ok(TransitionLoss {
            objective: match self.log_jacobian(n)? {
                Some(jacobian) => (objective + jacobian)?,
                None => objective,
            },
            constant: loss.constant,
        })
    }

    fn sample(&self, input: &TransitionInput, noise: &mut SeededNoise) -> Result<Tensor> {
        self.sample_using(input, &self.sampler, noise)
    }

    fn predicted_mean(&self, input: &TransitionInput) -> Result<Tensor> {
        let (cond, shape) = self.cond_and_shape(input)?;
        let mean = top_level_mean(
            &ConditionedDenoiser(&self.net),
            &self.schedule,
            &cond,
            &shape,
        )?;
        self.unscaled(&mean)
    }

    fn schedule(&self) -> Option<&NoiseSchedule> {
        Some(&self.schedule)
    }

    fn latent_scale(&self) -> Result<f64> {
        Ok(match &self.log_scale {
            Some(ls) => ls.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?[0].exp(),
            None => 1.0,
        })
    }

    fn log_weight(
        &self,
        input: &TransitionInput,
        target: &Tensor,
        noise: &mut SeededNoise,
    ) -> Result<Tensor> {
        let (n, cond) = self.cond(input)?;
        let weight = path_log_weight(
            &ConditionedDenoiser(&self.net),
            &self.schedule,
            &self.scaled(target)?,
            &cond,
            noise,
        )?;
        Ok(match self.log_jacobian(n)? {
            Some(jacobian) => (weight - jacobian)?.detach(),
            None => weight,
        })
    }

    fn set_sampler(&mut self, sampler: Sampler) -> Result<()> {
        let k = self.schedule.num_steps();
        let ok = match sampler {
            Sampler::Ancestral { .. } => true,
            Sampler::Ddim { steps }
            | Sampler::EdmHeun { steps }
            | Sampler::DpmSolver2M { steps } => (1..=k).contains(&steps),
        };
        crate::check_config(
            ok,
            "transition.sampler.steps",
            format!("{sampler:?}"),
            &format!("between 1 and K = {k} levels"),
        )?;
        self.sampler = sampler;
        Ok(())
    }

    fn set_level_sampling(&mut self, levels: LevelSampling) -> Result<()> {
        crate::config::validate_levels(&levels)?;
        self.loss.levels = levels;
        Ok(())
    }
}
