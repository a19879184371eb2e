//! # ddssm-tensor-ops
//!
//! The numerics every layer of ddssm needs, on candle-core alone:
//!
//! - [`DiagGaussian`]: reparameterised sampling, log-density, entropy and KL divergences of
//!   diagonal Gaussians, batched over leading dimensions, with a soft clamp on log-variances
//!   ([`LogVarBounds`]) so extreme network outputs cannot produce inf or NaN;
//! - [`sinusoidal_embedding`] for diffusion levels and absolute time;
//! - [`history_windows`]: the zero-padded `j`-step windows and padding masks behind the encoder,
//!   decoder, transition and VHP of App. H.3–H.6, and [`reverse_time`];
//! - [`SeededNoise`]: one seed drives every random draw, and its state can be saved;
//! - [`map_ordered`] and [`configure_threads`]: data parallelism over OS threads with candle's
//!   kernels single-threaded;
//! - [`host`]: the CPU model, load average and peak memory that benchmarks record;
//! - [`parse_device`]: `"cpu"`, `"cuda:0"`, `"metal"` with a clear error when a device was not
//!   compiled in;
//! - [`Error`]: this crate's typed errors.

mod alloc;
mod device;
mod embedding;
mod error;
mod fused;
mod gaussian;
pub mod host;
mod mixture;
mod noise;
mod parallel;
mod simd;
mod window;

pub use alloc::tune_allocator;
pub use device::{available_devices, parse_device};
pub use embedding::{sinusoidal_embedding, time_embedding};
pub use error::{Error, Result};
pub use fused::{
    axis_conv, fused_ops, gated_activation, gated_with_side, linear, linear_accumulate,
    linear_accumulate_scaled, linear_residual, matmul_kernels, relu, residual_update,
    set_fused_ops, time_pool,
};
pub use gaussian::{softplus, DiagGaussian, LogVarBounds, LN_2PI};
pub use mixture::{normal_cdf, GaussianMixture};
pub use noise::{NoiseState, SeededNoise};
pub use parallel::{
    configure_threads, map_chunks, map_ordered, set_workers, workers, ThreadSettings, THREADS_VAR,
};
pub use window::{
    history_windows, repeat_rows, reverse_last, reverse_time, HistoryWindows, WindowKind,
};

/// The README's examples, compiled and run as doctests so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
