//! Runtime selection of wider vector instructions for the fused kernels.
//!
//! The crate is compiled for the baseline x86-64 target (SSE2), so a loop such as the gated
//! activation's runs 4 floats at a time even on a CPU with AVX-512. `wide_f32!` defines a
//! function that runs an `#[inline(always)]` kernel inside a copy compiled with AVX-512F (or
//! AVX2 + FMA) when the CPU has it — checked once per process — so the kernel, inlined there, is
//! vectorised for that width. On other CPUs and
//! architectures the kernel runs as compiled. The arithmetic is the same element by element;
//! only FMA contraction, which Rust does not perform implicitly, could differ, and it is not
//! enabled for `a * b + c` expressions, so results are bit-for-bit those of the baseline build.

// `#[target_feature]` functions may only be called where the feature is known to be present:
// that call is the one unsafe operation here, guarded by a runtime check.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::sync::OnceLock;

    /// The vector instructions the wide kernels may use on this CPU.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub(crate) enum Level {
        Avx512,
        Avx2,
        Baseline,
    }

    /// Checked once per process; `DDSSM_NO_SIMD` (any value) forces the baseline.
    pub(crate) fn level() -> Level {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            if std::env::var_os("DDSSM_NO_SIMD").is_some() {
                Level::Baseline
            } else if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                Level::Avx512
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                Level::Avx2
            } else {
                Level::Baseline
            }
        })
    }
}

/// Whether this CPU has AVX-512F with AVX2 and FMA (and `DDSSM_NO_SIMD` is unset): what the
/// AVX-512-only kernels (`fused::small_mm`, `fused::weight_grad`) need before they are called.
pub(crate) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        matches!(x86::level(), x86::Level::Avx512)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `wide_f32!(fn name(args) -> R = kernel::<f32>);` defines `name`, which calls the
/// `#[inline(always)]` kernel from a copy compiled with AVX-512F (or AVX2 + FMA) when the CPU
/// has it (see the module documentation), else from the baseline build.
macro_rules! wide_f32 {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty = $kernel:expr;) => {
        $(#[$meta])*
        // The one unsafe operation is the guarded call below (see the module documentation).
        #[allow(unsafe_code, clippy::unused_unit)]
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                match $crate::simd::x86::level() {
                    // SAFETY: `level` returned this variant only after
                    // `is_x86_feature_detected!` confirmed every feature `avx512` is compiled with.
                    $crate::simd::x86::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above, for AVX2 and FMA.
                    $crate::simd::x86::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::x86::Level::Baseline => {}
                }
            }
            $kernel($($arg),*)
        }
    };
}
pub(crate) use wide_f32;

#[cfg(test)]
mod tests {
    #[inline(always)]
    fn kernel(v: &[f32]) -> Vec<f32> {
        v.iter()
            .map(|&x| (x * 1.5 + 0.25) / (1.0 + x * x))
            .collect()
    }

    wide_f32! {
        fn wide(v: &[f32]) -> Vec<f32> = kernel;
    }

    #[test]
    fn the_wide_variant_computes_what_the_baseline_does() {
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 9.0).collect();
        assert_eq!(wide(&xs), kernel(&xs));
    }
}
