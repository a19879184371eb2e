//! How Eq. (52) draws its noise levels: the proposal `q_k` and stratification.
//!
//! Eq. (52) estimates `Σ_k t_k L_k` (with `t_k = w̃_k` under the ELBO weighting, Eq. 44) from
//! `S_k` levels per clean latent. The paper draws `k ~ Uniform{1..K}` and weights each draw by
//! `K·t_k`. Any proposal `q_k > 0` with the weight `t_k / q_k` is unbiased too; so is drawing the
//! `S_k` levels of one latent from the `S_k` equal-probability strata of `q` (slot `m` takes
//! `u ∈ [m/S_k, (m+1)/S_k)` through `q`'s inverse CDF), because the slots' distributions average
//! to `q`. Under the linear schedule `K·w̃_k` spans 64 at `k = 1` to 3·10⁻⁴ at `k = K`, and half of
//! `Σ_k w̃_k` lies in the first 7 of 128 levels: uniform draws hit them rarely and then with a
//! large weight, which is most of the estimate's variance. `q ∝ w̃` (mixed with a little of the
//! uniform so that every level keeps being trained) and stratification are this module's two
//! variance reductions (not in the paper; docs/paper-notes.md).

use ddssm_tensor_ops::SeededNoise;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The distribution `q_k` the noise levels are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelProposal {
    /// `q_k = 1/K` (the paper's Eq. 52).
    #[default]
    Uniform,
    /// `q_k = (1 − a)·w̃_k / Σ_j w̃_j + a/K`, with `a` = [`LevelSampling::uniform_fraction`]:
    /// levels in proportion to their ELBO weight.
    ElboWeight,
}

/// How the `S_k` noise levels of one clean latent are drawn (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LevelSampling {
    /// The proposal `q_k`.
    pub proposal: LevelProposal,
    /// The uniform share `a ∈ [0, 1]` of the [`LevelProposal::ElboWeight`] proposal (unused by
    /// the uniform one). At the default 0.1 each level is drawn at least a tenth as often as
    /// under the uniform proposal, and no weight exceeds `Σ_k t_k / 0.9`.
    pub uniform_fraction: f64,
    /// Draw a latent's `S_k` levels from the `S_k` equal-probability strata of `q`.
    pub stratified: bool,
}

impl Default for LevelSampling {
    fn default() -> Self {
        Self {
            proposal: LevelProposal::Uniform,
            uniform_fraction: 0.1,
            stratified: false,
        }
    }
}

/// Levels drawn for `slots × per_slot` rows (slot-major: row `r` is slot `r / per_slot`), each
/// with the weight that makes the slot average unbiased.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelDraws {
    /// The level `k ∈ 1..=K` of each row.
    pub levels: Vec<u32>,
    /// `t_k / q_k` in the units of `unit_weights` (`K·t_k · 1/(K q_k)`).
    pub weights: Vec<f64>,
}

impl LevelSampling {
    /// The paper's sampling (uniform levels, independent draws).
    pub fn is_paper(&self) -> bool {
        *self == Self::default()
    }

    /// Checks `uniform_fraction`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `uniform_fraction` when it is not in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        let a = self.uniform_fraction;
        if !(0.0..=1.0).contains(&a) {
            return Err(Error::InvalidConfig {
                field: "uniform_fraction",
                value: a.to_string(),
                allowed: "a number in [0, 1]".into(),
            });
        }
        Ok(())
    }

    /// `q_k` for `k = 1..=K` given the ELBO weights `w̃` (`K = w_tilde.len()`).
    pub fn probabilities(&self, w_tilde: &[f64]) -> Vec<f64> {
        let k = w_tilde.len() as f64;
        match self.proposal {
            LevelProposal::Uniform => vec![1.0 / k; w_tilde.len()],
            LevelProposal::ElboWeight => {
                let total: f64 = w_tilde.iter().sum();
                let a = self.uniform_fraction;
                w_tilde
                    .iter()
                    .map(|w| (1.0 - a) * w / total + a / k)
                    .collect()
            }
        }
    }

    /// Draws levels for `slots × per_slot` rows; `unit_weights[k − 1] = K·t_k` is the weight a
    /// uniform draw of level `k` gets (`K·w̃_k` under the ELBO weighting, 1 under the simple one),
    /// `w_tilde` shapes the [`LevelProposal::ElboWeight`] proposal.
    ///
    /// The paper's sampling consumes the stream exactly as it always has (one
    /// [`SeededNoise::uniform_ints`] call) and returns `unit_weights[k − 1]` unchanged, so runs
    /// without this option keep their bits.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] from [`Self::validate`]; [`Error::Shape`] when the two tables
    /// differ in length or are empty.
    pub fn draw(
        &self,
        unit_weights: &[f64],
        w_tilde: &[f64],
        slots: usize,
        per_slot: usize,
        noise: &mut SeededNoise,
    ) -> Result<LevelDraws> {
        self.validate()?;
        let k_max = unit_weights.len();
        if k_max == 0 || w_tilde.len() != k_max {
            return Err(Error::Shape {
                what: "LevelSampling::draw w_tilde",
                expected: format!("[{k_max}] with K ≥ 1"),
                got: vec![w_tilde.len()],
            });
        }
        let rows = slots * per_slot;
        if self.proposal == LevelProposal::Uniform && !self.stratified {
            let levels = noise.uniform_ints(rows, 1, k_max as u32)?;
            let weights = levels
                .iter()
                .map(|&k| unit_weights[k as usize - 1])
                .collect();
            return Ok(LevelDraws { levels, weights });
        }
        let q = self.probabilities(w_tilde);
        let mut cdf = Vec::with_capacity(k_max);
        let mut acc = 0.0;
        for p in &q {
            acc += p;
            cdf.push(acc);
        }
        let u = noise.uniform01(rows);
        let mut levels = Vec::with_capacity(rows);
        let mut weights = Vec::with_capacity(rows);
        for (r, u) in u.into_iter().enumerate() {
            let u = if self.stratified {
                ((r / per_slot) as f64 + u) / slots as f64
            } else {
                u
            } * acc;
            // The first level whose cumulative probability exceeds u (the last on round-off).
            let i = cdf.partition_point(|&c| c <= u).min(k_max - 1);
            levels.push(i as u32 + 1);
            weights.push(unit_weights[i] * acc / (k_max as f64 * q[i]));
        }
        Ok(LevelDraws { levels, weights })
    }
}
