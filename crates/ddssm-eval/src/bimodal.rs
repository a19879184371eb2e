//! The bimodal random walk of Section 4:
//! `z_t = φ z_{t−1} + c s_t`, `s_t ~ Uniform{−1, +1}`, `x_t = z_t + ε_t`, `ε_t ~ N(0, σ_x²)`.
//!
//! The paper writes `ε ~ N(0, 0.2)`; the authors' public code uses 0.2 as the *standard
//! deviation* and draws `z_0 ~ N(0, 1)`. Both are configurable; the defaults follow the code
//! (see `docs/paper-notes.md`).

use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use crate::{check, Result, Series};

/// Parameters of the simulator; the defaults are Section 4's (T = 32, φ = 0.9, c = 4).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BimodalRandomWalk {
    /// Steps per series `T`.
    pub t: usize,
    /// Autoregressive coefficient φ.
    pub phi: f64,
    /// Step size `c` of the ±c jumps.
    pub step: f64,
    /// Standard deviation σ_x of the observation noise.
    pub obs_noise_std: f64,
    /// Standard deviation of `z_0`.
    pub z0_std: f64,
}

impl Default for BimodalRandomWalk {
    fn default() -> Self {
        Self {
            t: 32,
            phi: 0.9,
            step: 4.0,
            obs_noise_std: 0.2,
            z0_std: 1.0,
        }
    }
}

impl BimodalRandomWalk {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check(self.t >= 1, "t", self.t, "an integer ≥ 1")?;
        check(self.phi.is_finite(), "phi", self.phi, "a finite number")?;
        check(self.step.is_finite(), "step", self.step, "a finite number")?;
        check(
            self.obs_noise_std > 0.0 && self.obs_noise_std.is_finite(),
            "obs_noise_std",
            self.obs_noise_std,
            "a finite number > 0",
        )?;
        check(
            self.z0_std >= 0.0 && self.z0_std.is_finite(),
            "z0_std",
            self.z0_std,
            "a finite number ≥ 0",
        )
    }

    /// Simulates `n` independent series; returns `(latents z_{1:T}, observations x_{1:T})`, each
    /// `[n, T, 1]`.
    pub fn simulate(&self, n: usize, noise: &mut SeededNoise) -> Result<(Series, Series)> {
        self.validate()?;
        let t_len = self.t;
        let z0 = noise.normals(n);
        let signs = noise.uniform_ints(n * t_len, 0, 1).expect("0 ≤ 1");
        let eps = noise.normals(n * t_len);
        let mut z = Vec::with_capacity(n * t_len);
        let mut x = Vec::with_capacity(n * t_len);
        for i in 0..n {
            let mut zt = self.z0_std * z0[i];
            for t in 0..t_len {
                let s = if signs[i * t_len + t] == 1 { 1.0 } else { -1.0 };
                zt = self.phi * zt + self.step * s;
                z.push(zt);
                x.push(zt + self.obs_noise_std * eps[i * t_len + t]);
            }
        }
        let series = |values| Series {
            n,
            t: t_len,
            d: 1,
            values,
        };
        Ok((series(z), series(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_are_bimodal_with_the_configured_noise() {
        let sim = BimodalRandomWalk::default();
        let (z, x) = sim.simulate(512, &mut SeededNoise::new(1)).unwrap();
        assert_eq!((z.n, z.t, z.d), (512, 32, 1));
        let mut plus = 0usize;
        let mut total = 0usize;
        let mut resid2 = 0.0;
        for i in 0..512 {
            for t in 1..32 {
                let d = z.get(i, t, 0) - 0.9 * z.get(i, t - 1, 0);
                assert!((d.abs() - 4.0).abs() < 1e-9, "step {d}");
                plus += usize::from(d > 0.0);
                total += 1;
            }
            for t in 0..32 {
                resid2 += (x.get(i, t, 0) - z.get(i, t, 0)).powi(2);
            }
        }
        // Sign frequency: standard error √(0.25/15 872) ≈ 0.004; tolerance 4 standard errors.
        let p = plus as f64 / total as f64;
        assert!((p - 0.5).abs() < 0.016, "{p}");
        // Noise variance from 16 384 draws: standard error 0.04·√(2/16 384) ≈ 4.4e-4.
        let var = resid2 / (512.0 * 32.0);
        assert!((var - 0.04).abs() < 4.0 * 4.4e-4, "{var}");
    }

    #[test]
    fn same_seed_same_data_and_bad_config_is_named() {
        let sim = BimodalRandomWalk::default();
        let a = sim.simulate(4, &mut SeededNoise::new(3)).unwrap();
        let b = sim.simulate(4, &mut SeededNoise::new(3)).unwrap();
        assert_eq!(a, b);
        let bad = BimodalRandomWalk {
            obs_noise_std: 0.0,
            ..sim
        };
        assert!(bad
            .simulate(1, &mut SeededNoise::new(3))
            .unwrap_err()
            .to_string()
            .contains("obs_noise_std"));
    }
}
