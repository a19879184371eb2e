//! The Tree-structured Parzen Estimator of the paper's hyperparameter search (App. F.1.1), as
//! Optuna's `TPESampler` does it with its defaults: independent (univariate) estimators per
//! parameter, `n_startup_trials = 10` random trials first, `γ(n) = min(⌈0.1 n⌉, 25)` best trials
//! in the "good" group, a prior component of weight 1, neighbour-distance bandwidths with the
//! "magic clip", Optuna's ramp of observation weights, and `n_ei_candidates = 24` draws from the
//! good density of which the one maximising `l(x) / g(x)` is proposed.
//!
//! Why our own: the maintained Rust crate `tpe` (0.3.1) implements the same univariate TPE, but
//! without Optuna's weight ramp for older
//! trials, the cap of 25 good trials, a random start-up phase, log or integer ranges, and it
//! brings a second major version of `rand`. Matching Optuna's defaults exactly took about as much
//! code as wrapping it; this file is tested against random search in `tests/tpe.rs`.
//!
//! Parameters are minimised. Failed trials carry no score and are left out of the estimators.

use std::collections::BTreeMap;

use ddssm_tensor_ops::{normal_cdf, SeededNoise};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// The range a parameter is searched over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Distribution {
    /// A real number in `[low, high]`, uniform or (with `log`) log-uniform.
    Float {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
        /// Search `ln x` instead of `x`.
        #[serde(default)]
        log: bool,
    },
    /// An integer in `low ..= high`.
    Int {
        /// Lower bound.
        low: i64,
        /// Upper bound.
        high: i64,
        /// Search `ln x` instead of `x`.
        #[serde(default)]
        log: bool,
    },
    /// One of a list of values (strings or numbers).
    Categorical {
        /// The values.
        choices: Vec<Value>,
    },
}

impl Distribution {
    /// Checks the bounds; `name` is used in the message.
    pub fn validate(&self, name: &str) -> Result<()> {
        let bad = |allowed: &str, value: String| Error::InvalidConfig {
            field: "search space".into(),
            value: format!("{name}: {value}"),
            allowed: allowed.to_string(),
        };
        match *self {
            Self::Float { low, high, log } => {
                if !(low.is_finite() && high.is_finite() && low < high) {
                    return Err(bad("finite low < high", format!("low {low}, high {high}")));
                }
                if log && low <= 0.0 {
                    return Err(bad("low > 0 with log = true", format!("low {low}")));
                }
            }
            Self::Int { low, high, log } => {
                if low > high {
                    return Err(bad("low ≤ high", format!("low {low}, high {high}")));
                }
                if log && low < 1 {
                    return Err(bad("low ≥ 1 with log = true", format!("low {low}")));
                }
            }
            Self::Categorical { ref choices } => {
                if choices.is_empty() {
                    return Err(bad("at least one choice", "no choices".into()));
                }
            }
        }
        Ok(())
    }

    /// The continuous interval searched for a numeric parameter (after the log transform; an
    /// integer `k` covers `[k − ½, k + ½]`).
    fn interval(&self) -> Option<(f64, f64)> {
        match *self {
            Self::Float { low, high, log } => Some(if log {
                (low.ln(), high.ln())
            } else {
                (low, high)
            }),
            Self::Int { low, high, log } => {
                let (lo, hi) = (low as f64 - 0.5, high as f64 + 0.5);
                Some(if log {
                    ((low as f64 - 0.5).max(0.5).ln(), hi.ln())
                } else {
                    (lo, hi)
                })
            }
            Self::Categorical { .. } => None,
        }
    }

    /// A value in the internal space → the parameter's value.
    fn to_value(&self, u: f64) -> Value {
        match *self {
            Self::Float { low, high, log } => {
                let x = if log { u.exp() } else { u };
                Value::from(x.clamp(low, high))
            }
            Self::Int { low, high, log } => {
                let x = if log { u.exp() } else { u };
                Value::from((x.round() as i64).clamp(low, high))
            }
            Self::Categorical { ref choices } => choices[u as usize].clone(),
        }
    }

    /// The parameter's value → the internal space (None if it does not belong to the range).
    fn internal(&self, v: &Value) -> Option<f64> {
        match *self {
            Self::Float { log, .. } => v.as_f64().map(|x| if log { x.ln() } else { x }),
            Self::Int { log, .. } => v.as_f64().map(|x| if log { x.max(0.5).ln() } else { x }),
            Self::Categorical { ref choices } => {
                choices.iter().position(|c| c == v).map(|i| i as f64)
            }
        }
    }
}

/// A named set of parameters.
pub type Space = BTreeMap<String, Distribution>;

/// A parameter assignment.
pub type Params = BTreeMap<String, Value>;

/// The sampler's settings (Optuna's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tpe {
    /// Random proposals before the estimators take over.
    pub n_startup_trials: usize,
    /// Candidates drawn from the good density per parameter.
    pub n_ei_candidates: usize,
    /// Weight of the prior component.
    pub prior_weight: f64,
}

impl Default for Tpe {
    fn default() -> Self {
        Self {
            n_startup_trials: 10,
            n_ei_candidates: 24,
            prior_weight: 1.0,
        }
    }
}

/// `γ(n)`: how many of `n` completed trials form the good group.
pub fn n_good(n: usize) -> usize {
    (n.div_ceil(10)).min(25)
}

/// Optuna's observation weights for `n` trials in trial order: flat for the newest 25, a linear
/// ramp from `1/n` for the older ones.
pub fn observation_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                1.0 / n as f64
            } else {
                1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

fn standard_normal(rng: &mut StdRng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A mixture of normals truncated to `[lo, hi]`.
struct Parzen {
    weights: Vec<f64>,
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    lo: f64,
    hi: f64,
}

impl Parzen {
    /// Observations `xs` with weights `ws`, plus the prior component.
    fn new(xs: &[f64], ws: &[f64], lo: f64, hi: f64, prior_weight: f64) -> Self {
        let width = hi - lo;
        let mut mus: Vec<f64> = xs.to_vec();
        let mut weights: Vec<f64> = ws.to_vec();
        mus.push(0.5 * (lo + hi));
        weights.push(prior_weight);
        let n = mus.len();
        // Bandwidth: the larger gap to a neighbour in sorted order (the bounds close the ends),
        // clipped to [width / min(100, n), width]; the prior's is the whole width.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
        let mut sigmas = vec![0.0; n];
        let min_sigma = width / (100.0_f64).min(n as f64);
        for (k, &i) in order.iter().enumerate() {
            let left = if k == 0 { lo } else { mus[order[k - 1]] };
            let right = if k + 1 == n { hi } else { mus[order[k + 1]] };
            sigmas[i] = (mus[i] - left).max(right - mus[i]).clamp(min_sigma, width);
        }
        sigmas[n - 1] = width;
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        Self {
            weights,
            mus,
            sigmas,
            lo,
            hi,
        }
    }

    fn sample(&self, rng: &mut StdRng) -> f64 {
        let mut u: f64 = rng.random();
        let mut k = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            if u < *w {
                k = i;
                break;
            }
            u -= w;
        }
        for _ in 0..1000 {
            let x = self.mus[k] + self.sigmas[k] * standard_normal(rng);
            if (self.lo..=self.hi).contains(&x) {
                return x;
            }
        }
        self.mus[k].clamp(self.lo, self.hi)
    }

    fn log_pdf(&self, x: f64) -> f64 {
        let mut p = 0.0;
        for ((w, mu), s) in self.weights.iter().zip(&self.mus).zip(&self.sigmas) {
            let z = (x - mu) / s;
            let mass = normal_cdf((self.hi - mu) / s) - normal_cdf((self.lo - mu) / s);
            let density = (-0.5 * z * z).exp() / (s * (std::f64::consts::TAU).sqrt());
            p += w * density / mass.max(1e-300);
        }
        p.max(1e-300).ln()
    }
}

/// Category probabilities: the prior spread evenly plus each observation's weight on its value.
fn categorical(xs: &[f64], ws: &[f64], k: usize, prior_weight: f64) -> Vec<f64> {
    let mut p = vec![prior_weight / k as f64; k];
    for (x, w) in xs.iter().zip(ws) {
        p[*x as usize] += w;
    }
    let total: f64 = p.iter().sum();
    p.iter().map(|v| v / total).collect()
}

fn sample_categorical(p: &[f64], rng: &mut StdRng) -> usize {
    let mut u: f64 = rng.random();
    for (i, v) in p.iter().enumerate() {
        if u < *v {
            return i;
        }
        u -= v;
    }
    p.len() - 1
}

impl Tpe {
    /// A uniform (log-uniform for `log` ranges) draw of every parameter.
    pub fn random(&self, space: &Space, noise: &mut SeededNoise) -> Params {
        let mut rng = noise.next_rng();
        space
            .iter()
            .map(|(name, d)| {
                let u = match d {
                    Distribution::Categorical { choices } => {
                        rng.random_range(0..choices.len()) as f64
                    }
                    _ => {
                        let (lo, hi) = d.interval().expect("numeric");
                        lo + (hi - lo) * rng.random::<f64>()
                    }
                };
                (name.clone(), d.to_value(u))
            })
            .collect()
    }

    /// The next proposal given the completed trials `history` (`(params, score)` in trial order;
    /// lower is better). Deterministic in `(history, noise)`.
    pub fn propose(
        &self,
        space: &Space,
        history: &[(Params, f64)],
        noise: &mut SeededNoise,
    ) -> Params {
        let done: Vec<&(Params, f64)> = history.iter().filter(|(_, s)| s.is_finite()).collect();
        if done.len() < self.n_startup_trials.max(1) {
            return self.random(space, noise);
        }
        let mut ranked: Vec<usize> = (0..done.len()).collect();
        ranked.sort_by(|&a, &b| done[a].1.total_cmp(&done[b].1).then(a.cmp(&b)));
        let below = n_good(done.len());
        let mut good: Vec<usize> = ranked[..below].to_vec();
        let mut bad: Vec<usize> = ranked[below..].to_vec();
        good.sort_unstable();
        bad.sort_unstable();
        let mut out = Params::new();
        for (name, d) in space {
            let mut rng = noise.fork(name).next_rng();
            let values = |idx: &[usize]| -> (Vec<f64>, Vec<f64>) {
                let xs: Vec<f64> = idx
                    .iter()
                    .filter_map(|&i| done[i].0.get(name).and_then(|v| d.internal(v)))
                    .collect();
                let ws = observation_weights(xs.len());
                (xs, ws)
            };
            let (gx, gw) = values(&good);
            let (bx, bw) = values(&bad);
            let u = match d {
                Distribution::Categorical { choices } => {
                    let l = categorical(&gx, &gw, choices.len(), self.prior_weight);
                    let g = categorical(&bx, &bw, choices.len(), self.prior_weight);
                    (0..self.n_ei_candidates)
                        .map(|_| sample_categorical(&l, &mut rng))
                        .max_by(|&a, &b| {
                            (l[a].ln() - g[a].ln()).total_cmp(&(l[b].ln() - g[b].ln()))
                        })
                        .unwrap_or(0) as f64
                }
                _ => {
                    let (lo, hi) = d.interval().expect("numeric");
                    let l = Parzen::new(&gx, &gw, lo, hi, self.prior_weight);
                    let g = Parzen::new(&bx, &bw, lo, hi, self.prior_weight);
                    let candidates: Vec<f64> = (0..self.n_ei_candidates)
                        .map(|_| l.sample(&mut rng))
                        .collect();
                    candidates
                        .into_iter()
                        .map(|x| (x, l.log_pdf(x) - g.log_pdf(x)))
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .map_or(0.5 * (lo + hi), |(x, _)| x)
                }
            };
            out.insert(name.clone(), d.to_value(u));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optuna_gamma_and_weights() {
        assert_eq!(n_good(1), 1);
        assert_eq!(n_good(10), 1);
        assert_eq!(n_good(11), 2);
        assert_eq!(n_good(1000), 25);
        assert_eq!(observation_weights(3), vec![1.0; 3]);
        let w = observation_weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12);
        assert!(w.windows(2).all(|p| p[0] <= p[1]));
        assert_eq!(w[29], 1.0);
    }

    #[test]
    fn the_truncated_mixture_integrates_to_one() {
        let p = Parzen::new(&[0.2, 0.25, 0.9], &[1.0, 1.0, 1.0], 0.0, 1.0, 1.0);
        let n = 20_000;
        let integral: f64 = (0..n)
            .map(|i| p.log_pdf((i as f64 + 0.5) / n as f64).exp() / n as f64)
            .sum();
        assert!((integral - 1.0).abs() < 1e-6, "{integral}");
    }

    #[test]
    fn values_stay_in_range_and_round_trip() {
        let space: Space = [
            (
                "lr".to_string(),
                Distribution::Float {
                    low: 1e-4,
                    high: 1e-2,
                    log: true,
                },
            ),
            (
                "k".to_string(),
                Distribution::Int {
                    low: 1,
                    high: 8,
                    log: false,
                },
            ),
            (
                "b".to_string(),
                Distribution::Categorical {
                    choices: vec![Value::from(64), Value::from("x")],
                },
            ),
        ]
        .into_iter()
        .collect();
        let tpe = Tpe::default();
        let mut noise = SeededNoise::new(0);
        let mut history = Vec::new();
        for i in 0..30 {
            let p = tpe.propose(&space, &history, &mut noise.fork(&format!("{i}")));
            let lr = p["lr"].as_f64().unwrap();
            assert!((1e-4..=1e-2).contains(&lr));
            let k = p["k"].as_i64().unwrap();
            assert!((1..=8).contains(&k));
            assert!(p["b"] == 64 || p["b"] == "x");
            history.push((p, (lr.ln() + 7.0).powi(2) + k as f64));
        }
        noise = SeededNoise::new(0);
        let again = tpe.propose(&space, &history[..20], &mut noise.fork("20"));
        let first = tpe.propose(&space, &history[..20], &mut SeededNoise::new(0).fork("20"));
        assert_eq!(again, first, "same history and seed, same proposal");
    }
}
