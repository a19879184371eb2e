//! The interface between this crate and any conditional network.

use candle_core::Tensor;

use crate::Result;

/// Conditioning information that can be tiled along the batch dimension (so that `S_k` noise
/// draws per example can share one batched network call, Eq. 52).
pub trait Conditioning: Sized {
    /// `times` copies stacked along the batch dimension: copy `r` of example `i` lands at row
    /// `r·N + i`.
    fn repeat_batch(&self, times: usize) -> Result<Self>;
}

impl Conditioning for () {
    fn repeat_batch(&self, _times: usize) -> Result<Self> {
        Ok(())
    }
}

impl Conditioning for Tensor {
    fn repeat_batch(&self, times: usize) -> Result<Self> {
        Ok(ddssm_tensor_ops::repeat_rows(self, times)?)
    }
}

impl<A: Conditioning, B: Conditioning> Conditioning for (A, B) {
    fn repeat_batch(&self, times: usize) -> Result<Self> {
        Ok((self.0.repeat_batch(times)?, self.1.repeat_batch(times)?))
    }
}

impl<A: Conditioning> Conditioning for Option<A> {
    fn repeat_batch(&self, times: usize) -> Result<Self> {
        self.as_ref().map(|a| a.repeat_batch(times)).transpose()
    }
}

/// The raw network `F_ψ(x_in, c_noise, cond)` that [`crate::EdmPreconditioning`] wraps.
///
/// `x_in` is the scaled noisy latent `c_in(σ)·ẑ` of shape `[N, M]`, `c_noise` holds one
/// `¼ ln σ` per example (`[N]`), and the output must have the shape of `x_in`. The crate never
/// names the model that implements this: the state space model's conditioning is its own `Cond`.
pub trait Denoiser {
    /// The conditioning information `c` (a history of latents, covariates, …).
    type Cond: Conditioning;

    /// Evaluates `F_ψ`.
    fn forward(&self, x_in: &Tensor, c_noise: &Tensor, cond: &Self::Cond) -> Result<Tensor>;
}

impl<T: Denoiser + ?Sized> Denoiser for &T {
    type Cond = T::Cond;
    fn forward(&self, x_in: &Tensor, c_noise: &Tensor, cond: &Self::Cond) -> Result<Tensor> {
        (**self).forward(x_in, c_noise, cond)
    }
}
