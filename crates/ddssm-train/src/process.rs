//! What a ddssm binary does first in `main`, before any candle op: keep freed memory in the
//! process ([`ddssm_tensor_ops::tune_allocator`]), make candle's kernels single-threaded and split
//! independent work over `$DDSSM_THREADS` workers ([`ddssm_tensor_ops::configure_threads`],
//! docs/performance.md), and log progress to standard error at `$RUST_LOG` (default `info`),
//! coloured only on a terminal so a redirected log stays plain text. With [`PLAIN_OPS_VAR`]
//! (`$DDSSM_PLAIN_OPS`) set, the fused CPU ops are turned off
//! ([`ddssm_tensor_ops::set_fused_ops`]): every op takes the plain-candle path that CUDA and Metal
//! take, so a GPU run's arithmetic can be reproduced, and a suspected fused-op bug bisected, on
//! the CPU (several times slower).
//!
//! Libraries never change process-wide settings on their own; binaries opt in by calling
//! [`start_process`].

/// The environment variable that turns the fused CPU ops off for the whole process (any value).
pub const PLAIN_OPS_VAR: &str = "DDSSM_PLAIN_OPS";

/// Sets up the process as described in the module documentation. Returns the worker count, or an
/// error naming `$DDSSM_THREADS` when it is not a positive integer. A second call (or a logger
/// already installed by the caller) leaves the existing logger in place.
pub fn start_process() -> Result<usize, String> {
    use std::io::IsTerminal;
    ddssm_tensor_ops::tune_allocator();
    let workers = ddssm_tensor_ops::configure_threads(None)?;
    let _already_installed = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    if std::env::var_os(PLAIN_OPS_VAR).is_some() {
        ddssm_tensor_ops::set_fused_ops(false);
        tracing::warn!("${PLAIN_OPS_VAR} is set: the fused CPU ops are off (the GPU's plain path)");
    }
    Ok(workers)
}
