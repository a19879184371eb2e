//! The terms of the negative ELBO (Eq. 46, 53; App. I.3), per sequence, in nats.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::{Estimator, Result};

/// Options of one ELBO evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElboOptions {
    /// `S`: latent trajectories drawn per sequence (App. I.3; Table 3 tunes it in 1–4).
    pub samples: usize,
    /// Closed-form or single-sample estimates where both exist.
    pub estimator: Estimator,
}

impl Default for ElboOptions {
    fn default() -> Self {
        Self {
            samples: 2,
            estimator: Estimator::Analytic,
        }
    }
}

/// Every term of Eq. 46 for each of `B` sequences (`[B]` tensors, averaged over the `S`
/// trajectories), in nats of the data in its own units: when the model standardises its
/// observations, `recon` includes the Jacobian `Σ_observed log s_d` of `x ↦ (x − m)/s`, so the
/// negative ELBO bounds `−log p(x)` of the data as given.
#[derive(Debug, Clone)]
pub struct ElboTerms {
    /// Eq. 50: `Σ_t −log p_θ(x_t | z_{t−j+1:t})` over the observed entries, in the data's units
    /// (with the standardisation's Jacobian).
    pub recon: Tensor,
    /// Eq. 47: `Σ_{t≤j} log q_φ(z_t | …)`, the negative entropy of the initial states.
    pub init_entropy: Tensor,
    /// Eq. 48: `−Σ_{t≤j} log p_η(z_t | z_{t−j:t−1}) + KL(q_Φ ‖ N(0, I))`.
    pub vhp: Tensor,
    /// `Σ_{t>j}` of the transition term: the Gaussian cross-entropy (DKF) or Eq. 52 (DDSSM),
    /// *without* the constant below.
    pub transition: Tensor,
    /// Eq. 51: `Σ_{t>j} log q_φ(z_t | …)`, the negative posterior entropy.
    pub entropy: Tensor,
    /// Nats per sequence that make `transition` a bound: `(T − j)·M·C` for the DDSSM (Eq. 33),
    /// 0 for the DKF.
    pub transition_constant: f64,
}

impl ElboTerms {
    /// The distortion `D` of App. I.2: the reconstruction term. `[B]`.
    pub fn distortion(&self) -> Tensor {
        self.recon.clone()
    }

    /// The rate `R` of App. I.2: initial entropy + VHP + transition + posterior entropy. `[B]`.
    pub fn rate(&self) -> Result<Tensor> {
        Ok((((&self.init_entropy + &self.vhp)? + &self.transition)? + &self.entropy)?)
    }

    /// The training objective `mean_B(D + λ·R)` (App. I.2), a scalar.
    pub fn objective(&self, lambda: f64) -> Result<Tensor> {
        self.tempered_objective(lambda, 1.0)
    }

    /// `mean_B(D + λ·R_γ)`, where `R_γ` is the rate with the encoder's two negative-entropy terms
    /// (Eq. 47, 51) weighted by `γ = entropy_weight` instead of 1: a tempered posterior, whose
    /// Gaussian variance shrinks in proportion to `γ` (not in the paper; `γ = 1` is
    /// [`ElboTerms::objective`] exactly). The reported bound ([`ElboTerms::negative_elbo`]) is
    /// unweighted whatever `γ` training uses.
    pub fn tempered_objective(&self, lambda: f64, entropy_weight: f64) -> Result<Tensor> {
        let rate = if entropy_weight == 1.0 {
            self.rate()?
        } else {
            let entropies = ((&self.init_entropy + &self.entropy)? * entropy_weight)?;
            ((&self.vhp + &self.transition)? + entropies)?
        };
        Ok((&self.recon + (rate * lambda)?)?.mean_all()?)
    }

    /// The negative ELBO per sequence, `D + R + constant`: an upper bound on `−log p(x_{1:T})` in
    /// nats (unweighted, whatever λ training uses). `[B]`.
    pub fn negative_elbo(&self) -> Result<Tensor> {
        Ok(((&self.recon + self.rate()?)? + self.transition_constant)?)
    }

    /// Batch means of every term, for logging.
    pub fn summary(&self) -> Result<ElboSummary> {
        let mean = |t: &Tensor| -> Result<f64> {
            Ok(t.to_dtype(candle_core::DType::F64)?
                .mean_all()?
                .to_scalar::<f64>()?)
        };
        Ok(ElboSummary {
            recon: mean(&self.recon)?,
            init_entropy: mean(&self.init_entropy)?,
            vhp: mean(&self.vhp)?,
            transition: mean(&self.transition)? + self.transition_constant,
            entropy: mean(&self.entropy)?,
            negative_elbo: mean(&self.negative_elbo()?)?,
        })
    }
}

/// Batch means of the ELBO terms (nats per sequence); `transition` includes its constant, so the
/// five terms add up to `negative_elbo`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ElboSummary {
    /// Eq. 50.
    pub recon: f64,
    /// Eq. 47.
    pub init_entropy: f64,
    /// Eq. 48.
    pub vhp: f64,
    /// The transition term with its constant.
    pub transition: f64,
    /// Eq. 51.
    pub entropy: f64,
    /// The sum: the negative ELBO.
    pub negative_elbo: f64,
}
