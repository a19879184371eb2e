//! Allocator settings for processes that train or sample.
//!
//! Every candle op allocates a fresh output buffer. With glibc's defaults, blocks above the mmap
//! threshold are mapped from the kernel on every allocation and unmapped on every free, and freed
//! heap memory above the trim threshold goes back to the kernel; either way the next allocation
//! touches fresh pages the kernel must zero. At the DKF's batch that page clearing took about 30 %
//! of a training step (docs/performance.md). [`tune_allocator`] keeps all memory in the heap
//! (no per-block mmap, no trimming), so after the first step the process reuses what it already
//! has. The price: the process keeps its peak heap until it exits.
//!
//! Binaries opt in by calling it first thing in `main`; libraries never change process-wide
//! settings. It does nothing on platforms other than Linux with glibc.

// One of the three modules with unsafe code (the workspace denies it elsewhere; the others are
// `simd` and `fused::small_mm`): `mallopt` is a C function. It only changes allocator thresholds.
#![allow(unsafe_code)]

/// Keeps freed memory in the process (see the module documentation). Returns whether the
/// settings were applied.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only adjusts glibc's tunables; any value is accepted or rejected by
        // glibc itself (return value 0).
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TOP_PAD, 64 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
