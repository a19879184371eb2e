//! The variational hierarchical prior over the initial states (App. G, H.6; Eq. 45, 48).
//!
//! `p_η(z_{1:j}) = ∫ Π_{t=1}^{j} p_η(z_t | z_{t−j:t−1}) N(z_{−j+1:0}; 0, I) dz_{−j+1:0}`, with the
//! auxiliary posterior `q_Φ(z_{−j+1:0} | z_{1:j})`. For encoder samples `z_{1:j}` the VHP term of
//! Eq. 48 is `−Σ_{t≤j} log p_η(z_t | z_{t−j:t−1}) + KL(q_Φ ‖ N(0, I))` with one draw of the
//! auxiliary latents; the `j` prior factors are evaluated in one batched call.
//!
//! Both networks are small context producers of length `j` (Table 1, "Initialization Context":
//! identity time mixer, Conv(k = 2) feature mixer). Their side information is time embeddings and
//! covariates; the prior's histories are never padded (the `j` auxiliary latents cover every slot),
//! so it carries no padding mask (docs/paper-notes.md).

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;
use ddssm_nets::{ContextProducer, Dense, GaussianHead, SideInfo, TemporalSide};
use ddssm_tensor_ops::{history_windows, DiagGaussian, SeededNoise, WindowKind};

use crate::encoder::{per_row, slot_times};
use crate::model::section;
use crate::{check_shape, ModelConfig, Result};

/// The VHP's two networks; see the module documentation.
#[derive(Debug, Clone)]
pub struct Vhp {
    latent_dim: usize,
    order: usize,
    covariate_dim: usize,
    prior_projection: Dense,
    prior_side: TemporalSide,
    prior_context: ContextProducer,
    prior_head: GaussianHead,
    posterior_projection: Dense,
    posterior_side: TemporalSide,
    posterior_context: ContextProducer,
    posterior_head: GaussianHead,
}

impl Vhp {
    /// Builds both networks of `config` under `vb` (`prior.*`, `posterior.*`).
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let (m, j, h, v) = (
            config.latent_dim,
            config.order,
            config.h_seq,
            config.covariate_dim,
        );
        let c = &config.vhp;
        let (pvb, qvb) = (vb.pp("prior"), vb.pp("posterior"));
        let prior_side = section("vhp.side", TemporalSide::new(&c.side, v, 0, pvb.pp("side")))?;
        let prior_context = section(
            "vhp.prior",
            ContextProducer::new(&c.prior, h, j, prior_side.dim(), 0, pvb.pp("context")),
        )?;
        let prior_head = section(
            "vhp",
            GaussianHead::new(&c.head, prior_context.output_dim(), m, pvb.pp("head")),
        )?;
        let posterior_side = section("vhp.side", TemporalSide::new(&c.side, v, 0, qvb.pp("side")))?;
        let posterior_context = section(
            "vhp.posterior",
            ContextProducer::new(
                &c.posterior,
                h,
                j,
                posterior_side.dim(),
                0,
                qvb.pp("context"),
            ),
        )?;
        let posterior_head = section(
            "vhp",
            GaussianHead::new(
                &c.head,
                posterior_context.output_dim(),
                m * j,
                qvb.pp("head"),
            ),
        )?;
        Ok(Self {
            latent_dim: m,
            order: j,
            covariate_dim: v,
            prior_projection: Dense::new(m, h, pvb.pp("history_projection"))?,
            prior_side,
            prior_context,
            prior_head,
            posterior_projection: Dense::new(m, h, qvb.pp("input_projection"))?,
            posterior_side,
            posterior_context,
            posterior_head,
        })
    }

    fn check(&self, what: &'static str, t: &Tensor, n: usize, width: usize) -> Result<()> {
        let j = self.order;
        check_shape(
            t.dims() == [n, j, width],
            what,
            format!("[{n}, {j}, {width}]"),
            t.dims(),
        )
    }

    /// `q_Φ(z_{−j+1:0} | z_{1:j})` for `z_init` `[N, j, M]` (covariates `u_{1:j}`: `[N, j, V]`),
    /// a Gaussian over `[N, j·M]` (auxiliary latent `i` at columns `i·M … i·M + M − 1`).
    pub fn posterior(&self, z_init: &Tensor, covariates: Option<&Tensor>) -> Result<DiagGaussian> {
        let (m, j) = (self.latent_dim, self.order);
        let n = z_init.dim(0)?;
        self.check("VHP initial states", z_init, n, m)?;
        if let Some(u) = covariates {
            self.check("VHP covariates", u, n, self.covariate_dim)?;
        }
        let x = self
            .posterior_projection
            .forward(z_init)?
            .transpose(1, 2)?
            .contiguous()?;
        let times = Tensor::from_vec(slot_times(1, j, j), (1, j), z_init.device())?
            .to_dtype(z_init.dtype())?;
        let side = SideInfo {
            temporal: self.posterior_side.build(
                n,
                j,
                Some(&per_row(&times, n)?),
                covariates,
                None,
            )?,
            static_: None,
        };
        Ok(self
            .posterior_head
            .forward(&self.posterior_context.forward(&x, &side)?)?)
    }

    /// `p_η(z_t | z_{t−j:t−1})` for `t = 1 … j` at once, given the auxiliary latents `aux`
    /// (`[N, j, M]`, times `−j+1 … 0`) and `z_init` (`[N, j, M]`, times `1 … j`): a Gaussian over
    /// `[N, j, M]`. Covariates at non-positive times are zero.
    pub fn prior(
        &self,
        aux: &Tensor,
        z_init: &Tensor,
        covariates: Option<&Tensor>,
    ) -> Result<DiagGaussian> {
        let (m, j) = (self.latent_dim, self.order);
        let n = z_init.dim(0)?;
        self.check("VHP auxiliary latents", aux, n, m)?;
        self.check("VHP initial states", z_init, n, m)?;
        // full[k] holds time k − j + 1; the history of target t (1-based) starts at k = t − 1.
        let full = Tensor::cat(&[aux, z_init], 1)?;
        let windows = (0..j)
            .map(|t| full.narrow(1, t, j))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let history = Tensor::stack(&windows, 1)?.reshape((n * j, j, m))?;
        let x = self
            .prior_projection
            .forward(&history)?
            .transpose(1, 2)?
            .contiguous()?;
        let times = Tensor::from_vec(slot_times(j, j, 0), (j, j), z_init.device())?
            .to_dtype(z_init.dtype())?;
        let covariates = match covariates {
            Some(u) => {
                self.check("VHP covariates", u, n, self.covariate_dim)?;
                Some(
                    history_windows(u, j, WindowKind::Previous)?
                        .values
                        .reshape((n * j, j, self.covariate_dim))?,
                )
            }
            None => None,
        };
        let side = SideInfo {
            temporal: self.prior_side.build(
                n * j,
                j,
                Some(&per_row(&times, n)?),
                covariates.as_ref(),
                None,
            )?,
            static_: None,
        };
        let p = self
            .prior_head
            .forward(&self.prior_context.forward(&x, &side)?)?;
        Ok(DiagGaussian::new(
            p.mean().reshape((n, j, m))?,
            p.logvar().reshape((n, j, m))?,
        )?)
    }

    /// The VHP term of Eq. 48 for each row of `z_init` (`[N, j, M]`): `[N]`. Draws the auxiliary
    /// latents (`[N, j·M]`) from `noise`.
    pub fn loss(
        &self,
        z_init: &Tensor,
        covariates: Option<&Tensor>,
        noise: &mut SeededNoise,
    ) -> Result<Tensor> {
        let (n, j, m) = z_init.dims3()?;
        let q = self.posterior(z_init, covariates)?;
        let aux = q.sample(noise)?.reshape((n, j, m))?;
        let p = self.prior(&aux, z_init, covariates)?;
        let nll = p
            .log_prob_elementwise(z_init)?
            .sum(D::Minus1)?
            .sum(D::Minus1)?
            .neg()?;
        Ok((nll + q.kl_standard()?)?)
    }

    /// Draws `z_{1:j}` from the prior: `z_{−j+1:0} ~ N(0, I)`, then `z_t ~ p_η(z_t | z_{t−j:t−1})`
    /// for `t = 1 … j` in turn. `like` fixes dtype and device; returns `[n, j, M]`.
    pub fn sample(
        &self,
        n: usize,
        covariates: Option<&Tensor>,
        like: &Tensor,
        noise: &mut SeededNoise,
    ) -> Result<Tensor> {
        let (m, j) = (self.latent_dim, self.order);
        let aux = noise.randn((n, j, m), like.dtype(), like.device())?;
        // Fill z_{1:j} one step at a time; step t only reads slots < t of the (partly zero)
        // z_init, so the later zeros never influence it.
        let mut z_init = Tensor::zeros((n, j, m), like.dtype(), like.device())?;
        for t in 0..j {
            let p = self.prior(&aux, &z_init, covariates)?;
            let step = DiagGaussian::new(
                p.mean().narrow(1, t, 1)?.squeeze(1)?,
                p.logvar().narrow(1, t, 1)?.squeeze(1)?,
            )?;
            let z_t = step.sample(noise)?.detach().unsqueeze(1)?;
            let mut parts = Vec::with_capacity(3);
            if t > 0 {
                parts.push(z_init.narrow(1, 0, t)?);
            }
            parts.push(z_t);
            if t + 1 < j {
                parts.push(z_init.narrow(1, t + 1, j - t - 1)?);
            }
            z_init = Tensor::cat(&parts, 1)?;
        }
        Ok(z_init)
    }
}
