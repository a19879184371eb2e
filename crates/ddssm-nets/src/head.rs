//! The Gaussian output head (App. H.3–H.5): two MLPs from a context vector to the mean and the
//! raw log-variance of a diagonal Gaussian, whose log-variance is then soft-clamped
//! ([`ddssm_tensor_ops::LogVarBounds`]).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use ddssm_tensor_ops::{DiagGaussian, LogVarBounds};
use serde::{Deserialize, Serialize};

use crate::{check_config, Dense, Result};

/// Configuration of a Gaussian head; the defaults are the paper's (hidden dimension 16).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianHeadConfig {
    /// Hidden width of each MLP.
    pub hidden: usize,
    /// Linear layers per MLP (≥ 1; ReLU between them).
    pub layers: usize,
    /// Soft bounds of the log-variance.
    #[serde(default)]
    pub logvar_bounds: LogVarBounds,
}

impl Default for GaussianHeadConfig {
    fn default() -> Self {
        Self {
            hidden: 16,
            layers: 2,
            logvar_bounds: LogVarBounds::default(),
        }
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    layers: Vec<Dense>,
}

impl Mlp {
    fn new(
        input: usize,
        hidden: usize,
        output: usize,
        layers: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let dims: Vec<usize> = std::iter::once(input)
            .chain(std::iter::repeat_n(hidden, layers - 1))
            .chain(std::iter::once(output))
            .collect();
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, w)| Dense::new(w[0], w[1], vb.pp(format!("layer{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = ddssm_tensor_ops::relu(&h)?;
            }
        }
        Ok(h)
    }
}

/// Maps a context vector `[…, input]` to a diagonal Gaussian over `[…, output]`.
#[derive(Debug, Clone)]
pub struct GaussianHead {
    mean: Mlp,
    logvar: Mlp,
    bounds: LogVarBounds,
}

impl GaussianHead {
    /// Builds the two MLPs `mean` and `logvar`.
    pub fn new(
        config: &GaussianHeadConfig,
        input: usize,
        output: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        check_config(
            config.layers >= 1,
            "head.layers",
            config.layers,
            "an integer ≥ 1",
        )?;
        check_config(
            config.hidden >= 1,
            "head.hidden",
            config.hidden,
            "an integer ≥ 1",
        )?;
        config.logvar_bounds.validate()?;
        Ok(Self {
            mean: Mlp::new(input, config.hidden, output, config.layers, vb.pp("mean"))?,
            logvar: Mlp::new(input, config.hidden, output, config.layers, vb.pp("logvar"))?,
            bounds: config.logvar_bounds,
        })
    }

    /// The Gaussian for each context vector.
    pub fn forward(&self, context: &Tensor) -> Result<DiagGaussian> {
        Ok(DiagGaussian::from_raw(
            self.mean.forward(context)?,
            &self.logvar.forward(context)?,
            &self.bounds,
        )?)
    }
}
