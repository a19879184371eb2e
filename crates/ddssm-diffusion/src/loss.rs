//! The diffusion term of the ELBO, Eq. (29)/(52), with the constants that make it a bound.
//!
//! For each clean latent `z⁰` (`[N, M]`) with conditioning `c`, draw `S_k` pairs
//! `(k ~ Uniform{1..K}, ε ~ N(0, I))` (other unbiased level draws: [`crate::LevelSampling`]), form `ẑ = z⁰ + σ_k ε` (Eq. 36), and regress the raw network
//! onto the target `y = (z⁰ − c_skip ẑ)/c_out` (Eq. 38) with weight `K·w̃_k` (Eq. 41, 44):
//!
//! `L_diff(z⁰) = L_forward(z⁰) + (1/S_k) Σ_m K w̃_{k_m} ‖F_ψ(c_in ẑ_m, c_noise, c) − y_m‖²`,
//!
//! an unbiased estimate of `L_forward + Σ_k w_k E‖ε − ε_ψ‖²` (Eq. 33, 37). The forward term
//! `L_forward = KL(q(z^K | z⁰) ‖ N(0, I)) = ½[ᾱ_K‖z⁰‖² − Mᾱ_K − M ln(1 − ᾱ_K)]` depends on the
//! encoder's `z⁰` and is kept (App. E.1). Adding the schedule constant `M·C`
//! ([`crate::NoiseSchedule::bound_constant_per_dim`]) gives a true upper bound on
//! `−log p_ψ(z⁰ | c)` in nats, comparable with a Gaussian transition's `−log N(z⁰; μ, σ²)`.

use candle_core::{Tensor, D};
use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use crate::levels::LevelSampling;
use crate::precond::CoefficientColumns;
use crate::{Conditioning, Denoiser, EdmPreconditioning, Error, NoiseSchedule, Result};

/// How the squared error at level `k` is weighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossWeighting {
    /// `K·w̃_k` (Eq. 44): the ELBO, a bound on the negative log-likelihood (the paper's choice).
    #[default]
    Elbo,
    /// Unit weight on `‖F_ψ − y‖²` (EDM's effective weighting). Often easier to optimise, but
    /// **not** a bound: the reported value cannot be compared with a likelihood.
    Simple,
}

/// Options of [`diffusion_loss`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionLossConfig {
    /// `S_k`: noise draws per clean latent (App. I.3.4). Table 3 tunes it in 1–8 (DDSSM: 5).
    pub s_k: usize,
    /// The weighting of the regression.
    #[serde(default)]
    pub weighting: LossWeighting,
    /// How the `S_k` levels are drawn (not in the paper, whose draws are uniform and
    /// independent; written only when it is not the paper's, so configs and checkpoints without
    /// it read as before).
    #[serde(default, skip_serializing_if = "LevelSampling::is_paper")]
    pub levels: LevelSampling,
}

impl Default for DiffusionLossConfig {
    fn default() -> Self {
        Self {
            s_k: 5,
            weighting: LossWeighting::Elbo,
            levels: LevelSampling::default(),
        }
    }
}

/// The diffusion term for each of `N` clean latents.
#[derive(Debug, Clone)]
pub struct DiffusionLoss {
    /// `[N]`: the `S_k`-average of the weighted regression `K w̃_k ‖F_ψ − y‖²`.
    pub regression: Tensor,
    /// `[N]`: `L_forward(z⁰) = KL(q(z^K | z⁰) ‖ N(0, I))`.
    pub forward_kl: Tensor,
    /// `M·C` of Eq. (33), the same for every example; 0 under [`LossWeighting::Simple`].
    pub constant: f64,
}

impl DiffusionLoss {
    /// `[N]`: `regression + forward_kl`, the optimisation target of Eq. (52).
    pub fn total(&self) -> Result<Tensor> {
        Ok((&self.regression + &self.forward_kl)?)
    }

    /// `[N]`: `regression + forward_kl + M·C`, an upper bound on `−log p_ψ(z⁰ | c)` in nats
    /// (under the ELBO weighting).
    pub fn bound(&self) -> Result<Tensor> {
        Ok((self.total()? + self.constant)?)
    }
}

/// `L_forward(z⁰)` for `z0` of shape `[N, M]`: shape `[N]`.
pub fn forward_kl(schedule: &NoiseSchedule, z0: &Tensor) -> Result<Tensor> {
    let m = z0.dim(D::Minus1)? as f64;
    let (constant, coef) = schedule.forward_kl_coefficients();
    Ok((z0.sqr()?.sum(D::Minus1)? * coef)?.affine(1.0, m * constant)?)
}

/// Evaluates Eq. (52) for clean latents `z0` (`[N, M]`) and their conditioning `cond` (batch `N`).
/// The `S_k·N` network evaluations go through one batched call.
pub fn diffusion_loss<N: Denoiser + ?Sized>(
    net: &N,
    schedule: &NoiseSchedule,
    z0: &Tensor,
    cond: &N::Cond,
    config: &DiffusionLossConfig,
    noise: &mut SeededNoise,
) -> Result<DiffusionLoss> {
    if z0.rank() != 2 {
        return Err(Error::Shape {
            what: "diffusion_loss z0",
            expected: "[N, M]".into(),
            got: z0.dims().to_vec(),
        });
    }
    if config.s_k == 0 {
        return Err(Error::InvalidConfig {
            field: "s_k",
            value: "0".into(),
            allowed: "an integer ≥ 1".into(),
        });
    }
    let (n, m) = z0.dims2()?;
    let k_max = schedule.num_steps();
    let rows = config.s_k * n;
    let unit_weights: Vec<f64> = match config.weighting {
        LossWeighting::Elbo => schedule.w_tilde.iter().map(|w| k_max as f64 * w).collect(),
        LossWeighting::Simple => vec![1.0; k_max],
    };
    let draws = config
        .levels
        .draw(&unit_weights, &schedule.w_tilde, config.s_k, n, noise)?;
    let coeffs: Vec<_> = draws
        .levels
        .iter()
        .map(|&k| schedule.preconditioning(k as usize))
        .collect();
    let cols = CoefficientColumns::new(&coeffs, z0.dtype(), z0.device())?;
    let weights = Tensor::from_vec(draws.weights, rows, z0.device())?.to_dtype(z0.dtype())?;

    let z0_rep = z0.repeat_batch(config.s_k)?;
    let cond_rep = cond.repeat_batch(config.s_k)?;
    let eps = noise.randn((rows, m), z0.dtype(), z0.device())?;
    let z_hat = (&z0_rep + eps.broadcast_mul(&cols.sigma)?)?;
    let f = EdmPreconditioning::for_schedule(net, schedule).raw(&z_hat, &cols, &cond_rep)?;
    let target = (&z0_rep - z_hat.broadcast_mul(&cols.c_skip)?)?.broadcast_div(&cols.c_out)?;
    let sq = (f - target)?.sqr()?.sum(D::Minus1)?;
    let regression = (sq * weights)?.reshape((config.s_k, n))?.mean(0)?;

    let constant = match config.weighting {
        LossWeighting::Elbo => m as f64 * schedule.bound_constant_per_dim(),
        LossWeighting::Simple => 0.0,
    };
    Ok(DiffusionLoss {
        regression,
        forward_kl: forward_kl(schedule, z0)?,
        constant,
    })
}
