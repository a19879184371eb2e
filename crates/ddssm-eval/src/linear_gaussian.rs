//! A scalar linear-Gaussian state space model and its exact log-likelihood (Kalman filter):
//! `z_1 ~ N(m_1, p_1)`, `z_t = a z_{t−1} + w_t`, `w_t ~ N(0, q)`, `x_t = z_t + v_t`,
//! `v_t ~ N(0, r)`.
//!
//! `log p(x_{1:T}) = Σ_t log N(x_t; m_{t|t−1}, p_{t|t−1} + r)` with the usual predict/update
//! recursion. It is the exact reference that no ELBO may exceed.

use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use crate::{check, Result, Series};

/// Parameters of the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearGaussianSsm {
    /// Steps per series `T`.
    pub t: usize,
    /// Transition coefficient `a`.
    pub a: f64,
    /// Transition noise variance `q`.
    pub q: f64,
    /// Observation noise variance `r`.
    pub r: f64,
    /// Mean of `z_1`.
    pub m1: f64,
    /// Variance of `z_1`.
    pub p1: f64,
}

impl LinearGaussianSsm {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check(self.t >= 1, "t", self.t, "an integer ≥ 1")?;
        check(self.a.is_finite(), "a", self.a, "a finite number")?;
        check(
            self.q > 0.0 && self.q.is_finite(),
            "q",
            self.q,
            "a finite number > 0",
        )?;
        check(
            self.r > 0.0 && self.r.is_finite(),
            "r",
            self.r,
            "a finite number > 0",
        )?;
        check(self.m1.is_finite(), "m1", self.m1, "a finite number")?;
        check(
            self.p1 > 0.0 && self.p1.is_finite(),
            "p1",
            self.p1,
            "a finite number > 0",
        )
    }

    /// Simulates `n` series; returns `(latents, observations)`, each `[n, T, 1]`.
    pub fn simulate(&self, n: usize, noise: &mut SeededNoise) -> Result<(Series, Series)> {
        self.validate()?;
        let w = noise.normals(n * self.t);
        let v = noise.normals(n * self.t);
        let mut z = Vec::with_capacity(n * self.t);
        let mut x = Vec::with_capacity(n * self.t);
        for i in 0..n {
            let mut zt = 0.0;
            for t in 0..self.t {
                let e = w[i * self.t + t];
                zt = if t == 0 {
                    self.m1 + self.p1.sqrt() * e
                } else {
                    self.a * zt + self.q.sqrt() * e
                };
                z.push(zt);
                x.push(zt + self.r.sqrt() * v[i * self.t + t]);
            }
        }
        let series = |values| Series {
            n,
            t: self.t,
            d: 1,
            values,
        };
        Ok((series(z), series(x)))
    }

    /// The exact `log p(x_{1:T})` of one series (natural log, nats).
    pub fn log_likelihood(&self, x: &[f64]) -> f64 {
        let (mut m, mut p) = (self.m1, self.p1);
        let mut ll = 0.0;
        for (t, &xt) in x.iter().enumerate() {
            if t > 0 {
                m *= self.a;
                p = self.a * self.a * p + self.q;
            }
            let s = p + self.r;
            let innov = xt - m;
            ll += -0.5 * ((2.0 * std::f64::consts::PI * s).ln() + innov * innov / s);
            let gain = p / s;
            m += gain * innov;
            p *= 1.0 - gain;
        }
        ll
    }

    /// `log p(x)` for every series of `x` (`[N, T, 1]`).
    pub fn log_likelihoods(&self, x: &Series) -> Vec<f64> {
        (0..x.n)
            .map(|i| self.log_likelihood(&x.values[i * x.t..(i + 1) * x.t]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(t: usize) -> LinearGaussianSsm {
        LinearGaussianSsm {
            t,
            a: 0.8,
            q: 0.5,
            r: 0.3,
            m1: 0.2,
            p1: 1.5,
        }
    }

    #[test]
    fn one_step_is_the_marginal_gaussian() {
        let ll = model(1).log_likelihood(&[1.0]);
        let s = 1.5 + 0.3;
        let expected = -0.5 * ((2.0 * std::f64::consts::PI * s).ln() + 0.8f64.powi(2) / s);
        assert!((ll - expected).abs() < 1e-12);
    }

    #[test]
    fn two_steps_match_the_joint_gaussian() {
        // x = (x1, x2) is Gaussian with mean (m1, a m1) and covariance
        // [[p1 + r, a p1], [a p1, a² p1 + q + r]].
        let m = model(2);
        let x = [0.7, -0.4];
        let (mu1, mu2) = (m.m1, m.a * m.m1);
        let (s11, s12, s22) = (m.p1 + m.r, m.a * m.p1, m.a * m.a * m.p1 + m.q + m.r);
        let det = s11 * s22 - s12 * s12;
        let (d1, d2) = (x[0] - mu1, x[1] - mu2);
        let quad = (s22 * d1 * d1 - 2.0 * s12 * d1 * d2 + s11 * d2 * d2) / det;
        let expected = -0.5 * (2.0 * (2.0 * std::f64::consts::PI).ln() + det.ln() + quad);
        assert!((m.log_likelihood(&x) - expected).abs() < 1e-12);
    }

    #[test]
    fn simulated_data_is_more_likely_under_its_own_parameters() {
        let m = model(32);
        let (_, x) = m.simulate(256, &mut SeededNoise::new(5)).unwrap();
        let own: f64 = m.log_likelihoods(&x).iter().sum();
        let other = LinearGaussianSsm { a: -0.5, ..m };
        let wrong: f64 = other.log_likelihoods(&x).iter().sum();
        assert!(own > wrong + 100.0, "{own} vs {wrong}");
    }
}
