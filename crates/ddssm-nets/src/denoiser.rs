//! The CSDI denoiser — the paper's "U-Net" of the diffusion transition (App. H.1).
//!
//! `Z ∈ R^{M×(j+1)}` holds the clean history `z_{t−j:t−1}` in its first `j` steps and the noisy
//! target in the last. The static mask `m_hist = (1, …, 1, 0)` splits it into two channels
//! (`Z ⊙ m_hist`, `Z ⊙ (1 − m_hist)`), a 1×1 projection + ReLU lifts them to `C` channels
//! (`[B, M, j+1, C]`, channels-last), the diffusion level is embedded (sinusoidal, 64 → two-layer
//! MLP with SiLU → 128, projected to `C` in every block), the residual blocks take side
//! information (covariates `u_{t−j:t}`, time embeddings, the embedded `m_hist`), and the output
//! projections (`C → C` + ReLU, then `C → 1`, zero-initialised as in CSDI so the network starts
//! at exactly zero) give one value per `(m, step)`, of which only the target step is kept: `[B, M]`.
//!
//! The noise level arrives as EDM's `c_noise = ¼ ln σ` (about −0.9 … 1.3 for the default
//! schedule) and is multiplied by `noise_embedding_scale` before the sinusoidal embedding, so that
//! the embedding's frequencies (periods 2π … 2π·10⁴) resolve neighbouring levels.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use ddssm_tensor_ops::sinusoidal_embedding;
use serde::{Deserialize, Serialize};

use crate::{
    check_config, check_shape, Dense, LevelEmbedding, ResidualStack, ResidualStackConfig, Result,
    SideInfo, TemporalSide, TemporalSideConfig,
};

/// Configuration; the defaults are the paper's (Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsdiDenoiserConfig {
    /// The residual stack (3 layers, 16 channels, Conv(k = 2) mixers).
    pub stack: ResidualStackConfig,
    /// Width of the sinusoidal diffusion-level embedding (64).
    pub diffusion_embedding_dim: usize,
    /// Width after the embedding MLP (128).
    pub diffusion_projection_dim: usize,
    /// Factor applied to `c_noise` before the embedding.
    pub noise_embedding_scale: f64,
    /// Temporal side information (time embeddings off, mask embedding 8).
    pub side: TemporalSideConfig,
}

impl Default for CsdiDenoiserConfig {
    fn default() -> Self {
        Self {
            stack: ResidualStackConfig::paper(3),
            diffusion_embedding_dim: 64,
            diffusion_projection_dim: 128,
            noise_embedding_scale: 100.0,
            side: TemporalSideConfig::default(),
        }
    }
}

/// The built denoiser for latent dimension `M`, Markov order `j` and `V` covariates.
#[derive(Debug, Clone)]
pub struct CsdiDenoiser {
    config: CsdiDenoiserConfig,
    latent_dim: usize,
    order: usize,
    input_projection: Dense,
    embedding_projection1: Dense,
    embedding_projection2: Dense,
    side: TemporalSide,
    /// `m_hist = (1, …, 1, 0)` as `[1, j+1, 1]`.
    m_hist: Tensor,
    stack: ResidualStack,
    output_projection1: Dense,
    output_projection2: Dense,
}

impl CsdiDenoiser {
    /// Builds the network.
    pub fn new(
        config: &CsdiDenoiserConfig,
        latent_dim: usize,
        order: usize,
        covariate_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        check_config(latent_dim >= 1, "latent_dim", latent_dim, "an integer ≥ 1")?;
        check_config(order >= 1, "order (j)", order, "an integer ≥ 1")?;
        check_config(
            config.diffusion_embedding_dim >= 2 && config.diffusion_embedding_dim.is_multiple_of(2),
            "diffusion_embedding_dim",
            config.diffusion_embedding_dim,
            "an even integer ≥ 2",
        )?;
        check_config(
            config.diffusion_projection_dim >= 1,
            "diffusion_projection_dim",
            config.diffusion_projection_dim,
            "an integer ≥ 1",
        )?;
        check_config(
            config.noise_embedding_scale.is_finite() && config.noise_embedding_scale > 0.0,
            "noise_embedding_scale",
            config.noise_embedding_scale,
            "a finite number > 0",
        )?;
        let c = config.stack.channels;
        let side = TemporalSide::new(&config.side, covariate_dim, 1, vb.pp("side"))?;
        let emb = vb.pp("diffusion_embedding");
        let mut m_hist = vec![1f32; order + 1];
        m_hist[order] = 0.0;
        let m_hist =
            Tensor::from_vec(m_hist, (1, order + 1, 1), vb.device())?.to_dtype(vb.dtype())?;
        Ok(Self {
            config: *config,
            latent_dim,
            order,
            input_projection: Dense::kaiming(2, c, vb.pp("input_projection"))?,
            embedding_projection1: Dense::new(
                config.diffusion_embedding_dim,
                config.diffusion_projection_dim,
                emb.pp("projection1"),
            )?,
            embedding_projection2: Dense::new(
                config.diffusion_projection_dim,
                config.diffusion_projection_dim,
                emb.pp("projection2"),
            )?,
            stack: ResidualStack::new(
                &config.stack,
                side.dim(),
                0,
                config.diffusion_projection_dim,
                vb.clone(),
            )?,
            side,
            m_hist,
            output_projection1: Dense::kaiming(c, c, vb.pp("output_projection1"))?,
            output_projection2: Dense::zeros(c, 1, vb.pp("output_projection2"))?,
        })
    }

    /// The side information of a batch of `batch` conditionings: the embedded `m_hist`, plus
    /// `times` `[B, j+1]` (absolute time of each step; needed only with time embeddings) and
    /// `covariates` `[B, j+1, V]`. It does not depend on the noise level, so a sampler builds it
    /// once for all of its network calls and passes it to [`CsdiDenoiser::forward_with_side`].
    pub fn side_info(
        &self,
        batch: usize,
        times: Option<&Tensor>,
        covariates: Option<&Tensor>,
    ) -> Result<SideInfo> {
        let len = self.order + 1;
        let m_hist = self.m_hist.broadcast_as((batch, len, 1))?.contiguous()?;
        Ok(SideInfo {
            temporal: self
                .side
                .build(batch, len, times, covariates, Some(&m_hist))?,
            static_: None,
        })
    }

    /// `F` with its side information built anew: see [`CsdiDenoiser::side_info`] and
    /// [`CsdiDenoiser::forward_with_side`].
    pub fn forward(
        &self,
        history: &Tensor,
        noisy: &Tensor,
        c_noise: &Tensor,
        times: Option<&Tensor>,
        covariates: Option<&Tensor>,
    ) -> Result<Tensor> {
        let side = self.side_info(noisy.dim(0)?, times, covariates)?;
        self.forward_with_side(history, noisy, c_noise, &side)
    }

    /// The diffusion-level embedding of every row: sinusoidal features of `c_noise` through two
    /// SiLU projections. Rows share few distinct levels (at most `K` in training, one per call
    /// when sampling), so the projections run once per distinct `c_noise` value (the table) and
    /// each row refers to its entry; with all values distinct, the table has one row per row.
    fn level_embedding(&self, c_noise: &Tensor) -> Result<LevelEmbedding> {
        let values = c_noise
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        let mut slot: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
        let mut distinct = Vec::new();
        let index: Vec<u32> = values
            .iter()
            .map(|v| {
                *slot.entry(v.to_bits()).or_insert_with(|| {
                    distinct.push(*v);
                    (distinct.len() - 1) as u32
                })
            })
            .collect();
        let dev = c_noise.device();
        let (levels, index) = if distinct.len() == values.len() {
            (c_noise.clone(), None)
        } else {
            (
                Tensor::new(distinct, dev)?.to_dtype(c_noise.dtype())?,
                Some(Tensor::new(index, dev)?),
            )
        };
        let emb = sinusoidal_embedding(
            &(levels * self.config.noise_embedding_scale)?,
            self.config.diffusion_embedding_dim,
            10_000.0,
        )?;
        let table = self
            .embedding_projection2
            .forward(&self.embedding_projection1.forward(&emb)?.silu()?)?
            .silu()?;
        Ok(LevelEmbedding { table, index })
    }

    /// `F`: `history` `[B, j, M]` (oldest first), `noisy` `[B, M]` (the scaled noisy target
    /// `c_in ẑ`), `c_noise` `[B]` and the batch's side information. Returns `[B, M]`.
    pub fn forward_with_side(
        &self,
        history: &Tensor,
        noisy: &Tensor,
        c_noise: &Tensor,
        side: &SideInfo,
    ) -> Result<Tensor> {
        let (m, j) = (self.latent_dim, self.order);
        let b = noisy.dim(0)?;
        check_shape(
            noisy.dims() == [b, m],
            "denoiser noisy target",
            format!("[B, {m}]"),
            noisy.dims(),
        )?;
        check_shape(
            history.dims() == [b, j, m],
            "denoiser history",
            format!("[{b}, {j}, {m}]"),
            history.dims(),
        )?;
        check_shape(
            c_noise.dims() == [b],
            "denoiser c_noise",
            format!("[{b}]"),
            c_noise.dims(),
        )?;
        // Two channels over (M, j+1): clean history (target slot zero) and noisy target (history
        // slots zero).
        let hist = history.transpose(1, 2)?.pad_with_zeros(2, 0, 1)?;
        let target = noisy.unsqueeze(2)?.pad_with_zeros(2, j, 0)?;
        let z = Tensor::stack(&[hist, target], 3)?;
        let h0 = ddssm_tensor_ops::relu(&self.input_projection.forward(&z)?)?;

        let emb = self.level_embedding(c_noise)?;

        let y = self.stack.forward(&h0, side, Some(&emb))?;
        let y = ddssm_tensor_ops::relu(&self.output_projection1.forward(&y)?)?;
        let out = self.output_projection2.forward(&y)?.squeeze(3)?;
        Ok(out.narrow(2, j, 1)?.squeeze(2)?)
    }
}
