//! # ddssm-diffusion
//!
//! Conditional diffusion models trained with an ELBO-weighted, EDM-preconditioned loss, usable on
//! their own: everything is generic over the [`Denoiser`] trait (a raw network `F_ψ` with its own
//! conditioning type), so nothing here knows about state space models.
//!
//! - [`NoiseSchedule`] (linear, cosine) with `α_k, ᾱ_k, σ_k, β̃_k, w_k, w̃_k` (App. D–E);
//! - [`EdmPreconditioning`] (App. E.2): `D_ψ = c_skip ẑ + c_out F_ψ(c_in ẑ, c_noise, c)`;
//! - [`diffusion_loss`]: Eq. (29)/(52) with `S_k` draws, the forward KL, and the constant `C` of
//!   Eq. (33) that makes the total an upper bound on `−log p_ψ(z⁰ | c)`;
//! - [`path_log_weight`]: one diffusion path's importance weight of `p_ψ(z⁰ | c)`, for
//!   likelihoods beyond the bound;
//! - [`sample`]: ancestral DDPM over all `K` steps, DDIM and EDM-Heun on a few levels;
//! - [`GaussianMixtureDenoiser`]: the closed-form optimal denoiser of a mixture target, for tests.

mod denoiser;
mod error;
mod exact;
mod levels;
mod likelihood;
mod loss;
mod precond;
mod sampler;
mod schedule;

pub use ddssm_tensor_ops::normal_cdf;
pub use denoiser::{Conditioning, Denoiser};
pub use error::{Error, Result};
pub use exact::GaussianMixtureDenoiser;
pub use levels::{LevelDraws, LevelProposal, LevelSampling};
pub use likelihood::path_log_weight;
pub use loss::{diffusion_loss, forward_kl, DiffusionLoss, DiffusionLossConfig, LossWeighting};
pub use precond::{EdmCoefficients, EdmPreconditioning};
pub use sampler::{few_step_levels, sample, top_level_mean, LatentShape, ReverseVariance, Sampler};
pub use schedule::{BetaSchedule, NoiseSchedule, NoiseScheduleConfig};

/// The README's examples, compiled and run as doctests so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
