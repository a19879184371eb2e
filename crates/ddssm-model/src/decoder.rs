//! The decoder `p_θ(x_t | z_{t−j+1:t}, u_{t−j+1:t})` (App. H.3, Eq. 50): a diagonal Gaussian per
//! step, evaluated for all `t` of all trajectories in one batched call.
//!
//! Each step's window `z_{t−j+1:t}` (left-padded with zero vectors for `t < j`) is projected from
//! `M` to `H_seq` per slot; the side information holds the padding mask (embedded), time
//! embeddings and the window's covariates; static covariates are projected to `H_seq` as the static
//! side information and, through a second linear map, added straight to the context vector (the
//! residual static path); a Gaussian head gives `μ_θ, log σ²_θ ∈ R^D`.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;
use ddssm_nets::{ContextProducer, Dense, GaussianHead, SideInfo, TemporalSide};
use ddssm_tensor_ops::{history_windows, DiagGaussian, WindowKind};

use crate::encoder::{padding_mask, per_row, slot_times};
use crate::model::section;
use crate::{check_shape, DecoderConfig, ModelConfig, Result};

/// The decoder's networks; see the module documentation.
#[derive(Debug, Clone)]
pub struct Decoder {
    latent_dim: usize,
    obs_dim: usize,
    order: usize,
    covariate_dim: usize,
    static_dim: usize,
    h_seq: usize,
    history_projection: Dense,
    side: TemporalSide,
    static_projection: Option<Dense>,
    static_residual: Option<Dense>,
    context: ContextProducer,
    head: GaussianHead,
}

impl Decoder {
    /// Builds the decoder of `config` under `vb`.
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let DecoderConfig {
            context,
            side,
            head,
        } = &config.decoder;
        let (m, j, h, p) = (
            config.latent_dim,
            config.order,
            config.h_seq,
            config.static_dim,
        );
        let side = section(
            "decoder.side",
            TemporalSide::new(side, config.covariate_dim, 1, vb.pp("side")),
        )?;
        let context = section(
            "decoder.context",
            ContextProducer::new(
                context,
                h,
                j,
                side.dim(),
                usize::from(p > 0),
                vb.pp("context"),
            ),
        )?;
        let (static_projection, static_residual) = if p > 0 {
            (
                Some(Dense::new(p, h, vb.pp("static_projection"))?),
                Some(Dense::new(
                    p,
                    context.output_dim(),
                    vb.pp("static_residual"),
                )?),
            )
        } else {
            (None, None)
        };
        let head = section(
            "decoder",
            GaussianHead::new(head, context.output_dim(), config.obs_dim, vb.pp("head")),
        )?;
        Ok(Self {
            latent_dim: m,
            obs_dim: config.obs_dim,
            order: j,
            covariate_dim: config.covariate_dim,
            static_dim: p,
            h_seq: h,
            history_projection: Dense::new(m, h, vb.pp("history_projection"))?,
            side,
            static_projection,
            static_residual,
            context,
            head,
        })
    }

    /// The emission Gaussians `[N, T, D]` of trajectories `z` (`[N, T, M]`), with `covariates`
    /// `[N, T, V]` and `statics` `[N, P]` given per trajectory.
    pub fn forward(
        &self,
        z: &Tensor,
        covariates: Option<&Tensor>,
        statics: Option<&Tensor>,
    ) -> Result<DiagGaussian> {
        self.forward_from(z, covariates, statics, 0)
    }

    /// [`Decoder::forward`] for a stretch of trajectories that starts `offset` steps into the
    /// sequence: `z[:, 0]` is step `offset + 1`. Absolute times and padding masks follow the
    /// sequence; the first `j − 1` outputs lack the steps before the stretch (their windows are
    /// zero-filled there), so callers keep only outputs from index `j − 1` on when `offset > 0`.
    pub fn forward_from(
        &self,
        z: &Tensor,
        covariates: Option<&Tensor>,
        statics: Option<&Tensor>,
        offset: usize,
    ) -> Result<DiagGaussian> {
        let (n, t_len, m) = z.dims3()?;
        let (j, h) = (self.order, self.h_seq);
        check_shape(
            m == self.latent_dim,
            "decoder z",
            format!("[N, T, {}]", self.latent_dim),
            z.dims(),
        )?;
        let rows = n * t_len;
        let window = history_windows(z, j, WindowKind::Current)?
            .values
            .reshape((rows, j, m))?;
        let input = self
            .history_projection
            .forward(&window)?
            .transpose(1, 2)?
            .contiguous()?;
        let (dev, dtype) = (z.device(), z.dtype());
        let first = 1 + offset;
        let times =
            Tensor::from_vec(slot_times(t_len, j, first), (t_len, j), dev)?.to_dtype(dtype)?;
        let valid =
            Tensor::from_vec(padding_mask(t_len, j, first), (t_len, j, 1), dev)?.to_dtype(dtype)?;
        let covariates = match covariates {
            Some(u) => {
                check_shape(
                    u.dims() == [n, t_len, self.covariate_dim],
                    "decoder covariates",
                    format!("[{n}, {t_len}, {}]", self.covariate_dim),
                    u.dims(),
                )?;
                Some(
                    history_windows(u, j, WindowKind::Current)?
                        .values
                        .reshape((rows, j, self.covariate_dim))?,
                )
            }
            None => None,
        };
        let temporal = self.side.build(
            rows,
            j,
            Some(&per_row(&times, n)?),
            covariates.as_ref(),
            Some(&per_row(&valid, n)?),
        )?;
        let (static_, residual) = match (&self.static_projection, &self.static_residual, statics) {
            (Some(proj), Some(res), Some(s)) => {
                check_shape(
                    s.dims() == [n, self.static_dim],
                    "decoder static covariates",
                    format!("[{n}, {}]", self.static_dim),
                    s.dims(),
                )?;
                let st = proj
                    .forward(s)?
                    .unsqueeze(1)?
                    .broadcast_as((n, t_len, h))?
                    .reshape((rows, h, 1))?;
                let r = res.forward(s)?;
                let width = r.dim(D::Minus1)?;
                let r = r
                    .unsqueeze(1)?
                    .broadcast_as((n, t_len, width))?
                    .reshape((rows, width))?;
                (Some(st), Some(r))
            }
            (Some(_), _, None) => {
                return Err(crate::Error::InvalidData(format!(
                    "the model expects {} static covariates per sequence, none were given",
                    self.static_dim
                )))
            }
            _ => (None, None),
        };
        let side = SideInfo { temporal, static_ };
        let mut context = self.context.forward(&input, &side)?;
        if let Some(r) = residual {
            context = (context + r)?;
        }
        let p = self.head.forward(&context)?;
        Ok(DiagGaussian::new(
            p.mean().reshape((n, t_len, self.obs_dim))?,
            p.logvar().reshape((n, t_len, self.obs_dim))?,
        )?)
    }
}
