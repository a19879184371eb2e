//! The encoder `q_φ(z_{1:T} | x_{1:T}, u_{1:T}) = Π_t q_φ(z_t | z_{t−j:t−1}, h_t, u_{t−j:t})`
//! (Eq. 3, 19–21; App. H.4, Algorithm 2).
//!
//! Two stages:
//! 1. [`Encoder::prepare`], once per sequence: the future summary `h_{1:T}` of `x` (with its
//!    observation mask and the static covariates), projected to `H_seq`; the side information of
//!    every step (role mask, padding mask, time embeddings, covariates) and the static part.
//! 2. [`Encoder::sample`], autoregressive in `t` over `S·B` chains: the context producer sees
//!    `[h_t, z_{t−j}, …, z_{t−1}]` (summary at slot 0, the history left-padded with zero vectors at
//!    slots `1…j`), the Gaussian head gives `q(z_t | …)`, and `z_t = μ + σ ε`. This is the only
//!    part of the model that is sequential in `t`.
//!
//! With `encoder.residual` set (not in the paper; [`EncoderResidual`]) every mean at `t > j` is the
//! transition's predicted mean on the same history plus the head's output, so [`Encoder::sample`]
//! and [`Encoder::posteriors`] take the transition as their `prior` argument
//! ([`crate::Model::residual_prior`] gives the right one for a model).
//!
//! [`Encoder::posteriors`] evaluates `q(z_t | z_{t−j:t−1}, h_t, u)` for a *given* trajectory at all
//! `t` in one batched call (teacher forcing); on the trajectory that [`Encoder::sample`] drew it
//! returns the same Gaussians.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;
use ddssm_nets::{
    ContextProducer, ContextWeights, Dense, FutureSummary, GaussianHead, SideInfo, TemporalSide,
};
use ddssm_tensor_ops::{history_windows, repeat_rows, DiagGaussian, SeededNoise, WindowKind};

use crate::model::section;
use crate::residual::Residual;
use crate::{
    check_shape, EncoderConfig, EncoderResidual, ModelConfig, Result, Transition, TransitionInput,
};

/// The encoder's networks; see the module documentation.
#[derive(Debug, Clone)]
pub struct Encoder {
    latent_dim: usize,
    order: usize,
    covariate_dim: usize,
    static_dim: usize,
    h_seq: usize,
    summary: FutureSummary,
    summary_projection: Dense,
    history_projection: Dense,
    side: TemporalSide,
    static_projection: Option<Dense>,
    context: ContextProducer,
    head: GaussianHead,
    /// `EncoderConfig::history_skip`: `z_{t−j:t−1}` (flattened, `j·M`) → `M`, added to the mean.
    history_skip: Option<Dense>,
    /// `EncoderConfig::residual`.
    residual: EncoderResidual,
}

/// What the encoder computes once per sequence (batch `B`), before any sampling.
#[derive(Debug, Clone)]
pub struct EncoderInputs {
    /// `[B, T, H_seq]`: the projected future summaries.
    summary: Tensor,
    /// `[B, T, j+1, E]`: the temporal side information of every step's slots.
    temporal: Option<Tensor>,
    /// `[B, H_seq, 1]`: the projected static covariates.
    static_: Option<Tensor>,
    /// `[B, T, j+1, V]`: every step's transition covariates `u_{t−j:t}`, kept only for a residual
    /// posterior of a model with covariates.
    transition_covariates: Option<Tensor>,
}

impl EncoderInputs {
    /// Batch size `B`.
    pub fn batch(&self) -> usize {
        self.summary.dims()[0]
    }

    /// Sequence length `T`.
    pub fn len(&self) -> usize {
        self.summary.dims()[1]
    }

    /// Whether the sequences are empty (`T = 0`; never true for prepared inputs).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same inputs cut from the autograd graph (for inference).
    pub fn detach(&self) -> Self {
        Self {
            summary: self.summary.detach(),
            temporal: self.temporal.as_ref().map(Tensor::detach),
            static_: self.static_.as_ref().map(Tensor::detach),
            transition_covariates: self.transition_covariates.as_ref().map(Tensor::detach),
        }
    }

    /// `times` copies along the batch axis (copy `s` of sequence `b` at row `s·B + b`), for `S`
    /// trajectories per sequence.
    pub fn repeat(&self, times: usize) -> Result<Self> {
        let rep = |t: &Tensor| -> Result<Tensor> { Ok(repeat_rows(t, times)?) };
        Ok(Self {
            summary: rep(&self.summary)?,
            temporal: self.temporal.as_ref().map(rep).transpose()?,
            static_: self.static_.as_ref().map(rep).transpose()?,
            transition_covariates: self.transition_covariates.as_ref().map(rep).transpose()?,
        })
    }
}

/// `S` latent trajectories per sequence and the Gaussian each step was drawn from; row `s·B + b`
/// is trajectory `s` of sequence `b`.
#[derive(Debug, Clone)]
pub struct Trajectories {
    /// `[S·B, T, M]`: the sampled `z_{1:T}`.
    pub z: Tensor,
    /// `[S·B, T, M]`: `q(z_t | z_{t−j:t−1}, h_t, u)` at every step.
    pub posterior: DiagGaussian,
}

/// `[T, len]`: 1 where slot `i` of step `t` (0-based) holds a real time index, i.e. where
/// `t + first + i ≥ len` — the left-padding rule of `history_windows`.
pub(crate) fn padding_mask(t_len: usize, len: usize, first: usize) -> Vec<f32> {
    let mut mask = Vec::with_capacity(t_len * len);
    for t in 0..t_len {
        for i in 0..len {
            mask.push(if t + first + i >= len { 1.0 } else { 0.0 });
        }
    }
    mask
}

/// `[T, len]` absolute (1-based) time indices `t + first + i − len + 1` of the slots.
pub(crate) fn slot_times(t_len: usize, len: usize, first: usize) -> Vec<f32> {
    let mut times = Vec::with_capacity(t_len * len);
    for t in 0..t_len {
        for i in 0..len {
            times.push((t + first + i) as f32 - len as f32 + 1.0);
        }
    }
    times
}

/// Broadcasts a `[T, …]` tensor built once to `[B·T, …]`.
pub(crate) fn per_row(table: &Tensor, batch: usize) -> Result<Tensor> {
    let mut dims = table.dims().to_vec();
    let t = dims[0];
    dims.insert(0, batch);
    let mut flat = dims[1..].to_vec();
    flat[0] = batch * t;
    Ok(table
        .unsqueeze(0)?
        .broadcast_as(dims)?
        .contiguous()?
        .reshape(flat)?)
}

impl Encoder {
    /// Builds the encoder of `config` under `vb` (tensor names `summary.*`, `context.*`, …).
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let EncoderConfig {
            summary,
            context,
            side,
            head,
            history_skip,
            residual,
        } = &config.encoder;
        let (m, j, h) = (config.latent_dim, config.order, config.h_seq);
        let summary_net = section(
            "encoder",
            FutureSummary::new(summary, config.obs_dim, config.static_dim, vb.pp("summary")),
        )?;
        // Two mask channels per slot: the role (0 = summary, 1 = history) and the padding
        // (1 = a real state or the summary, 0 = a left-padded zero vector).
        let side = section(
            "encoder.side",
            TemporalSide::new(side, config.covariate_dim, 2, vb.pp("side")),
        )?;
        let static_projection = if config.static_dim > 0 {
            Some(Dense::new(
                config.static_dim,
                h,
                vb.pp("static_projection"),
            )?)
        } else {
            None
        };
        let context = section(
            "encoder.context",
            ContextProducer::new(
                context,
                h,
                j + 1,
                side.dim(),
                usize::from(config.static_dim > 0),
                vb.pp("context"),
            ),
        )?;
        let head = section(
            "encoder",
            GaussianHead::new(head, context.output_dim(), m, vb.pp("head")),
        )?;
        Ok(Self {
            latent_dim: m,
            order: j,
            covariate_dim: config.covariate_dim,
            static_dim: config.static_dim,
            h_seq: h,
            summary: summary_net,
            summary_projection: Dense::new(summary.hidden, h, vb.pp("summary_projection"))?,
            history_projection: Dense::new(m, h, vb.pp("history_projection"))?,
            side,
            static_projection,
            context,
            head,
            history_skip: if *history_skip {
                Some(Dense::zero_no_bias(j * m, m, vb.pp("history_skip"))?)
            } else {
                None
            },
            residual: *residual,
        })
    }

    /// The Gaussian head on `context`, plus the history skip (where configured) of `history`
    /// (`[R, j, M]`).
    fn head(&self, context: &Tensor, history: &Tensor) -> Result<DiagGaussian> {
        let q = self.head.forward(context)?;
        match &self.history_skip {
            None => Ok(q),
            Some(skip) => {
                let (r, j, m) = history.dims3()?;
                let shift = skip.forward(&history.reshape((r, j * m))?)?;
                Ok(DiagGaussian::new((q.mean() + shift)?, q.logvar().clone())?)
            }
        }
    }

    /// Stage 1, once per sequence: `x` `[B, T, D]` (entries where `mask` is 0 must be finite; they
    /// are ignored), `mask` `[B, T, D]` (1 = observed), `covariates` `[B, T, V]`, `statics`
    /// `[B, P]`.
    pub fn prepare(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        covariates: Option<&Tensor>,
        statics: Option<&Tensor>,
    ) -> Result<EncoderInputs> {
        let (b, t_len, _) = x.dims3()?;
        let j = self.order;
        let summary = self
            .summary_projection
            .forward(&self.summary.forward(x, mask, statics)?)?;

        // Slot 0 is step t itself (the summary), slots 1..j are t−j..t−1.
        let mut times = Vec::with_capacity(t_len * (j + 1));
        let mut masks = Vec::with_capacity(t_len * (j + 1) * 2);
        let hist_times = slot_times(t_len, j, 0);
        let hist_valid = padding_mask(t_len, j, 0);
        for t in 0..t_len {
            times.push((t + 1) as f32);
            masks.extend([0.0, 1.0]);
            for i in 0..j {
                times.push(hist_times[t * j + i]);
                masks.extend([1.0, hist_valid[t * j + i]]);
            }
        }
        let (dev, dtype) = (x.device(), x.dtype());
        let times = Tensor::from_vec(times, (t_len, j + 1), dev)?.to_dtype(dtype)?;
        let masks = Tensor::from_vec(masks, (t_len, j + 1, 2), dev)?.to_dtype(dtype)?;
        let mut transition_covariates = None;
        let covariates = match covariates {
            Some(u) => {
                check_shape(
                    u.dims() == [b, t_len, self.covariate_dim],
                    "covariates",
                    format!("[{b}, {t_len}, {}]", self.covariate_dim),
                    u.dims(),
                )?;
                if !self.residual.is_none() {
                    transition_covariates =
                        Some(history_windows(u, j + 1, WindowKind::Current)?.values);
                }
                let hist = history_windows(u, j, WindowKind::Previous)?.values;
                let slots = Tensor::cat(&[u.unsqueeze(2)?, hist], 2)?;
                Some(slots.reshape((b * t_len, j + 1, self.covariate_dim))?)
            }
            None => None,
        };
        let temporal = self
            .side
            .build(
                b * t_len,
                j + 1,
                Some(&per_row(&times, b)?),
                covariates.as_ref(),
                Some(&per_row(&masks, b)?),
            )?
            .map(|s| {
                let e = s.dim(D::Minus1)?;
                s.reshape((b, t_len, j + 1, e))
            })
            .transpose()?;
        let static_ = self.project_statics(statics, b)?;
        Ok(EncoderInputs {
            summary,
            temporal,
            static_,
            transition_covariates,
        })
    }

    fn project_statics(&self, statics: Option<&Tensor>, b: usize) -> Result<Option<Tensor>> {
        match (&self.static_projection, statics) {
            (Some(proj), Some(s)) => {
                check_shape(
                    s.dims() == [b, self.static_dim],
                    "static covariates",
                    format!("[{b}, {}]", self.static_dim),
                    s.dims(),
                )?;
                Ok(Some(proj.forward(s)?.unsqueeze(2)?))
            }
            (Some(_), None) => Err(crate::Error::InvalidData(format!(
                "the model expects {} static covariates per sequence, none were given",
                self.static_dim
            ))),
            (None, _) => Ok(None),
        }
    }

    /// `q(z_t | history, h_t)` for `R` rows: `summary` `[R, H_seq]`, `history` `[R, j, M]`.
    fn posterior(
        &self,
        summary: &Tensor,
        history: &Tensor,
        side: &SideInfo,
    ) -> Result<DiagGaussian> {
        let hist = self.history_projection.forward(history)?;
        let input = Tensor::cat(&[summary.unsqueeze(1)?, hist], 1)?
            .transpose(1, 2)?
            .contiguous()?;
        let context = self.context.forward(&input, side)?;
        self.head(&context, history)
    }

    /// The context producer's work on step `t`'s summary slot (slot 0), for the `B` sequences of
    /// `inputs`: the slot depends on the sequence only, not on the sampled history, because the
    /// time mixers are causal, so it is computed once per sequence instead of once per chain
    /// ([`ContextProducer::prefix`]); only where [`Encoder::shares_summary_slot`].
    fn summary_slot(
        &self,
        weights: &ContextWeights,
        inputs: &EncoderInputs,
        t: usize,
    ) -> Result<ddssm_nets::ContextPrefix> {
        let summary = inputs
            .summary
            .narrow(1, t, 1)?
            .transpose(1, 2)?
            .contiguous()?;
        let side = SideInfo {
            temporal: inputs
                .temporal
                .as_ref()
                .map(|s| s.narrow(1, t, 1)?.squeeze(1)?.narrow(1, 0, 1)?.contiguous())
                .transpose()?,
            static_: inputs.static_.clone(),
        };
        Ok(self.context.prefix(weights, &summary, &side)?)
    }

    /// Whether the summary slot can be computed once per sequence: the model has history slots
    /// and the context producer can continue a prefix (not a GRU time mixer).
    fn shares_summary_slot(&self) -> bool {
        self.order > 0 && self.context.supports_prefix()
    }

    /// `q(z_t | history, h_t)` for `R = S·B` rows whose summary slot `prefix` holds for the `B`
    /// sequences: `history` `[R, j, M]`, `side` the history slots' side information.
    fn posterior_after(
        &self,
        weights: &ContextWeights,
        prefix: &ddssm_nets::ContextPrefix,
        samples: usize,
        history: &Tensor,
        side: &SideInfo,
    ) -> Result<DiagGaussian> {
        let input = self
            .history_projection
            .forward(history)?
            .transpose(1, 2)?
            .contiguous()?;
        let context = self
            .context
            .forward_with_prefix(weights, prefix, samples, &input, side)?;
        self.head(&context, history)
    }

    /// Stage 2 (Algorithm 2): `samples` trajectories per sequence, drawing one `ε_t` of shape
    /// `[S·B, M]` per step from `noise`. `prior`: the transition where the encoder is a residual
    /// posterior ([`crate::Model::residual_prior`]), else `None`.
    pub fn sample(
        &self,
        inputs: &EncoderInputs,
        samples: usize,
        noise: &mut SeededNoise,
        prior: Option<&dyn Transition>,
    ) -> Result<Trajectories> {
        let residual = Residual::of(self.residual, self.order, prior)?;
        self.sample_repeated(inputs, samples, noise, residual.as_ref(), true)
    }

    /// [`Encoder::sample`] for inference: the same draws, but every step's result is detached,
    /// so no autograd graph spans the `T` steps (memory stays at one step's activations instead
    /// of `T`, which matters at thousands of chains).
    pub fn sample_no_grad(
        &self,
        inputs: &EncoderInputs,
        samples: usize,
        noise: &mut SeededNoise,
        prior: Option<&dyn Transition>,
    ) -> Result<Trajectories> {
        let residual = Residual::of(self.residual, self.order, prior)?.map(Residual::detached);
        self.sample_repeated(&inputs.detach(), samples, noise, residual.as_ref(), false)
    }

    /// [`Encoder::sample`] of `samples` chains per sequence; with `track = false` each step's
    /// outputs are detached.
    fn sample_repeated(
        &self,
        base: &EncoderInputs,
        samples: usize,
        noise: &mut SeededNoise,
        residual: Option<&Residual<'_>>,
        track: bool,
    ) -> Result<Trajectories> {
        let inputs = base.repeat(samples)?;
        let times = residual
            .map(|r| r.times(inputs.len(), &inputs.summary))
            .transpose()?;
        // The context producer's weights cut once for the `T` steps (each cut is a graph node).
        let shared = self
            .shares_summary_slot()
            .then(|| self.context.weights())
            .transpose()?;
        let (n, t_len) = (inputs.batch(), inputs.len());
        let (m, j) = (self.latent_dim, self.order);
        let (dtype, dev) = (inputs.summary.dtype(), inputs.summary.device().clone());
        let zero = Tensor::zeros((n, m), dtype, &dev)?;
        let mut zs: Vec<Tensor> = Vec::with_capacity(t_len);
        let mut means = Vec::with_capacity(t_len);
        let mut logvars = Vec::with_capacity(t_len);
        for t in 0..t_len {
            let history: Vec<Tensor> = (0..j)
                .map(|i| {
                    let idx = t as isize - j as isize + i as isize;
                    if idx < 0 {
                        zero.clone()
                    } else {
                        zs[idx as usize].clone()
                    }
                })
                .collect();
            let history = Tensor::stack(&history, 1)?;
            let temporal = inputs
                .temporal
                .as_ref()
                .map(|s| s.narrow(1, t, 1)?.squeeze(1));
            let q = if let Some(weights) = &shared {
                // The history slots only, after the summary slot computed per sequence.
                let prefix = self.summary_slot(weights, base, t)?;
                let side = SideInfo {
                    temporal: temporal
                        .map(|s| s?.narrow(1, 1, j)?.contiguous())
                        .transpose()?,
                    static_: inputs.static_.clone(),
                };
                self.posterior_after(weights, &prefix, samples, &history, &side)?
            } else {
                let side = SideInfo {
                    temporal: temporal.map(|s| s?.contiguous()).transpose()?,
                    static_: inputs.static_.clone(),
                };
                let summary = inputs.summary.narrow(1, t, 1)?.squeeze(1)?;
                self.posterior(&summary, &history, &side)?
            };
            let q = match (residual, &times) {
                (Some(r), Some(times)) if t >= j => {
                    let input = TransitionInput {
                        history: history.clone(),
                        times: times
                            .narrow(0, t, 1)?
                            .broadcast_as((n, j + 1))?
                            .contiguous()?,
                        covariates: inputs
                            .transition_covariates
                            .as_ref()
                            .map(|u| u.narrow(1, t, 1)?.squeeze(1))
                            .transpose()?,
                    };
                    r.shift(&q, &input)?
                }
                _ => q,
            };
            let eps = noise.randn((n, m), dtype, &dev)?;
            let keep = |t: Tensor| if track { t } else { t.detach() };
            zs.push(keep(q.sample_with(&eps)?));
            means.push(keep(q.mean().clone()));
            logvars.push(keep(q.logvar().clone()));
        }
        Ok(Trajectories {
            z: Tensor::stack(&zs, 1)?,
            posterior: DiagGaussian::new(Tensor::stack(&means, 1)?, Tensor::stack(&logvars, 1)?)?,
        })
    }

    /// `q(z_t | z_{t−j:t−1}, h_t, u)` for every `t` of a given trajectory `z` (`[N, T, M]`, with
    /// `inputs` repeated to `N` rows), in one batched call: `[N, T, M]`. `prior` as for
    /// [`Encoder::sample`].
    pub fn posteriors(
        &self,
        inputs: &EncoderInputs,
        z: &Tensor,
        prior: Option<&dyn Transition>,
    ) -> Result<DiagGaussian> {
        let residual = Residual::of(self.residual, self.order, prior)?;
        let (n, t_len) = (inputs.batch(), inputs.len());
        let (m, j, h) = (self.latent_dim, self.order, self.h_seq);
        check_shape(
            z.dims() == [n, t_len, m],
            "encoder trajectory",
            format!("[{n}, {t_len}, {m}]"),
            z.dims(),
        )?;
        let history = history_windows(z, j, WindowKind::Previous)?
            .values
            .reshape((n * t_len, j, m))?;
        let summary = inputs.summary.reshape((n * t_len, h))?;
        let side = SideInfo {
            temporal: inputs
                .temporal
                .as_ref()
                .map(|s| {
                    let e = s.dim(D::Minus1)?;
                    s.reshape((n * t_len, j + 1, e))
                })
                .transpose()?,
            static_: inputs
                .static_
                .as_ref()
                .map(|s| {
                    s.unsqueeze(1)?
                        .broadcast_as((n, t_len, h, 1))?
                        .reshape((n * t_len, h, 1))
                })
                .transpose()?,
        };
        let q = self.posterior(&summary, &history, &side)?;
        let q = DiagGaussian::new(
            q.mean().reshape((n, t_len, m))?,
            q.logvar().reshape((n, t_len, m))?,
        )?;
        match residual {
            Some(r) => r.shift_steps(q, &history, inputs.transition_covariates.as_ref(), z),
            None => Ok(q),
        }
    }

    /// The latent dimension `M`.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }
}
