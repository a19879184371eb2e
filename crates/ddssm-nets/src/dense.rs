//! A fully connected layer applied to the last axis of a tensor of any rank (a 1×1 convolution in
//! channels-last layout).

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use crate::Result;

/// `y = x Wᵀ + b` on the last axis; leading axes are flattened into one matmul.
#[derive(Debug, Clone)]
pub struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Dense {
    /// PyTorch's default initialisation: `W, b ~ U(−1/√in, 1/√in)`; parameters `weight`
    /// (`[out, in]`) and `bias` (`[out]`).
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
        Self::with_init(
            in_dim,
            out_dim,
            true,
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
            vb,
        )
    }

    /// CSDI's `Conv1d_with_init` for a 1×1 convolution: weight Kaiming-normal,
    /// `W ~ N(0, 2/in)` (PyTorch's `kaiming_normal_` with its defaults), bias as in [`Dense::new`].
    pub fn kaiming(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
        Self::with_init(
            in_dim,
            out_dim,
            true,
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / in_dim.max(1) as f64).sqrt(),
            },
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
            vb,
        )
    }

    /// Kaiming-normal weight as in [`Dense::kaiming`], without a bias.
    pub fn kaiming_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_init(
            in_dim,
            out_dim,
            false,
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / in_dim.max(1) as f64).sqrt(),
            },
            Init::Const(0.0),
            vb,
        )
    }

    /// A zero weight and no bias: a map that starts as nothing (a skip path added to an
    /// existing output, which then starts as that output).
    pub fn zero_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_init(
            in_dim,
            out_dim,
            false,
            Init::Const(0.0),
            Init::Const(0.0),
            vb,
        )
    }

    /// Without a bias.
    pub fn no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
        Self::with_init(
            in_dim,
            out_dim,
            false,
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
            Init::Const(0.0),
            vb,
        )
    }

    /// Weight and bias initialised to exactly zero (CSDI's last output projection).
    pub fn zeros(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_init(
            in_dim,
            out_dim,
            true,
            Init::Const(0.0),
            Init::Const(0.0),
            vb,
        )
    }

    fn with_init(
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        w_init: Init,
        b_init: Init,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", w_init)?;
        let bias = if bias {
            Some(vb.get_with_hints(out_dim, "bias", b_init)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// The weight, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[out]` (None for [`Dense::no_bias`]).
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Applies the layer to the last axis of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ddssm_tensor_ops::linear(
            x,
            &self.weight,
            self.bias.as_ref(),
        )?)
    }
}
