//! Likelihood beyond the ELBO: importance weights `p(x, z, a)/q(z, a | x)` of whole latent
//! trajectories, and the importance-weighted bound (IWAE, Burda et al. 2016) built on them.
//!
//! One weight per encoder trajectory `z ~ q_φ(z_{1:T} | x)` (Eq. 47, 51), the VHP's auxiliary
//! latents `a ~ q_Φ(a | z_{1:j})` (Eq. 48) and, for the DDSSM, one diffusion path per transition
//! (Eq. 33's chain, [`crate::Transition::log_weight`]):
//!
//! `log w = Σ_t log p_θ(x_t | z) + log p_η(z_{1:j} | a) + log N(a; 0, I) − log q_Φ(a | z_{1:j})
//!          + Σ_{t>j} log w_ψ(z_t | z_{t−j:t−1}) − Σ_t log q_φ(z_t | …)`.
//!
//! Every factor's expectation is the density it stands for, so `E[w] = p(x)`; the mean of `log w`
//! is the ELBO (with sampled instead of closed-form terms), and `log (1/k) Σ_i w_i` is a lower bound
//! on `log p(x)` that rises toward it as `k` grows.

use candle_core::{Tensor, D};
use ddssm_tensor_ops::SeededNoise;

use crate::inference::per_trajectory;
use crate::model::repeat_rows;
use crate::{Batch, Model, Result};

/// The effective sample size `1/Σ_i w̃_i²` of normalised importance weights, from log weights
/// `[k, B]` (column `b` one sequence's `k` weights), averaged over the `B` sequences: between 1
/// (one weight carries everything) and `k` (all equal). A plain number; nothing is tracked.
pub fn effective_sample_size(log_w: &Tensor) -> Result<f64> {
    let log_w = log_w.detach().to_dtype(candle_core::DType::F64)?;
    let w = log_w.broadcast_sub(&log_w.max_keepdim(0)?)?.exp()?;
    let w = w.broadcast_div(&w.sum_keepdim(0)?)?;
    Ok(w.sqr()?.sum(0)?.recip()?.mean_all()?.to_scalar::<f64>()?)
}

impl Model {
    /// `k` log importance weights per sequence of `batch` (given in the data's units; the weights
    /// include the standardisation's Jacobian, so they weigh `p(x)` of the data as given): `[k, B]`,
    /// detached, in nats. Row `i` of the result is trajectory `i` of every sequence. Draws, from
    /// `noise`: the encoder's `ε_t`, the emission nothing, the VHP's auxiliary latents, then each
    /// transition's (for the DDSSM, `K` path draws).
    pub fn log_weights(&self, batch: &Batch, k: usize, noise: &mut SeededNoise) -> Result<Tensor> {
        crate::check_config(k >= 1, "k (importance samples)", k, "an integer ≥ 1")?;
        let (raw, x) = self.observations(batch)?;
        let (b, t_len, _) = x.dims3()?;
        let j = self.config().order;
        let traj = self.encoder().sample_no_grad(
            &self.encoder_inputs(&x, batch)?,
            k,
            noise,
            self.residual_prior(),
        )?;
        let z = traj.z.detach();
        let (covariates, statics) = per_trajectory(batch, t_len, k)?;

        // log p_θ(x | z) over the observed entries, minus the Jacobian of the standardisation.
        let emission = self
            .decoder()
            .forward(&z, covariates.as_ref(), statics.as_ref())?;
        let mut log_px = emission.log_prob_elementwise(&repeat_rows(&x, k)?)?;
        if let Some(mask) = &batch.mask {
            log_px = (log_px * repeat_rows(mask, k)?)?;
        }
        let mut log_w = log_px.sum(D::Minus1)?.sum(D::Minus1)?;
        if let Some(jac) = self.jacobian(&raw, batch.mask.as_ref())? {
            log_w = (log_w - repeat_rows(&jac, k)?)?;
        }

        // − log q_φ(z | x), every step.
        log_w = (log_w - traj.posterior.log_prob(&z)?.sum(1)?)?;

        // The VHP with its auxiliary latents drawn, not integrated.
        let z_init = z.narrow(1, 0, j)?;
        let cov_init = covariates.as_ref().map(|u| u.narrow(1, 0, j)).transpose()?;
        let q_aux = self.vhp().posterior(&z_init, cov_init.as_ref())?;
        let aux = q_aux.sample(noise)?;
        let n = k * b;
        let m = self.config().latent_dim;
        let prior = self
            .vhp()
            .prior(&aux.reshape((n, j, m))?, &z_init, cov_init.as_ref())?;
        let log_aux_prior = (aux.sqr()?.sum(D::Minus1)? * -0.5)?.affine(
            1.0,
            -0.5 * (j * m) as f64 * (2.0 * std::f64::consts::PI).ln(),
        )?;
        log_w = (log_w
            + prior
                .log_prob_elementwise(&z_init)?
                .sum(D::Minus1)?
                .sum(D::Minus1)?)?;
        log_w = ((log_w + log_aux_prior)? - q_aux.log_prob(&aux)?)?;

        // The transitions t > j.
        let (input, target) = self.transition_pairs(&z, covariates.as_ref())?;
        let steps = t_len - j;
        let transition = self
            .transition()
            .log_weight(&input, &target, noise)?
            .reshape((n, steps))?
            .sum(1)?;
        log_w = (log_w + transition)?;
        Ok(log_w.reshape((k, b))?.detach())
    }
}
