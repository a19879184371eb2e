//! The transition term of the ELBO (Eq. 52 for the DDSSM, the Gaussian cross-entropy for the
//! DKF) on the encoder's draws: as the ELBO scores them, pulled toward their means
//! ([`crate::ElboOptions::transition_draw_scale`]), or with its gradient split by parameter
//! ([`crate::ElboOptions::split_transition_gradient`], also behind
//! [`crate::ElboOptions::encoder_mask_transition_kept`]).

use candle_core::Tensor;
use ddssm_tensor_ops::{DiagGaussian, SeededNoise};

use crate::{Estimator, Model, Result};

impl Model {
    /// The transition term of each trajectory (`[S·B]`) scored on `draws`, and its constant
    /// summed over the `T − j` steps.
    pub(crate) fn transition_term(
        &self,
        draws: &Scored,
        covariates: Option<&Tensor>,
        estimator: Estimator,
        noise: &mut SeededNoise,
    ) -> Result<(Tensor, f64)> {
        let (per_step, constant) = self.transition_steps(draws, covariates, estimator, noise)?;
        let steps = per_step.dim(1)?;
        Ok((per_step.sum(1)?, constant * steps as f64))
    }

    /// The transition term of each trajectory at each step `t > j` (`[S·B, T − j]`), and its
    /// constant per step.
    fn transition_steps(
        &self,
        draws: &Scored,
        covariates: Option<&Tensor>,
        estimator: Estimator,
        noise: &mut SeededNoise,
    ) -> Result<(Tensor, f64)> {
        let (n, t_len, m) = draws.z.dims3()?;
        let j = self.config().order;
        let steps = t_len - j;
        let (input, target) = self.transition_pairs(&draws.z, covariates)?;
        let rows =
            |t: &Tensor| -> Result<Tensor> { Ok(t.narrow(1, j, steps)?.reshape((n * steps, m))?) };
        let posterior = DiagGaussian::new(rows(&draws.mean)?, rows(&draws.logvar)?)?;
        let loss = self
            .transition()
            .loss(&input, &target, &posterior, estimator, noise)?;
        Ok((loss.objective.reshape((n, steps))?, loss.constant))
    }

    /// [`ElboOptions::split_transition_gradient`]: the ELBO's own transition term in value, whose
    /// gradient reaches the encoder as the full-spread term's would with the transition held,
    /// and the transition's parameters as the pulled term's would with the encoder held — with
    /// `learn_from` (`[S·B, T − j]`, 0 or 1; [`ElboOptions::encoder_mask_transition_kept`]) only
    /// from the steps it marks. Both evaluations use the same draws of the transition's noise
    /// (`k`, `ε`), and `noise` ends where one evaluation leaves it.
    pub(crate) fn split_transition_term(
        &self,
        draws: &Scored,
        alpha: f64,
        learn_from: Option<&Tensor>,
        covariates: Option<&Tensor>,
        estimator: Estimator,
        noise: &mut SeededNoise,
    ) -> Result<(Tensor, f64)> {
        let mut replay = noise.clone();
        // The encoder's side: the term on leaf copies of its inputs, differentiated here; then
        // `Σ input · ∂term/∂input` (the derivative held) carries that gradient, and only that,
        // back into the encoder.
        let live = [&draws.z, &draws.mean, &draws.logvar];
        let leaves = live
            .iter()
            .map(|t| candle_core::Var::from_tensor(&t.detach()))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let held = Scored {
            z: leaves[0].as_tensor().clone(),
            mean: leaves[1].as_tensor().clone(),
            logvar: leaves[2].as_tensor().clone(),
        };
        let (full, constant) = self.transition_term(&held, covariates, estimator, noise)?;
        let grads = full.sum_all()?.backward()?;
        let mut term = full.detach();
        for (leaf, live) in leaves.iter().zip(live) {
            if let Some(g) = grads.get(leaf.as_tensor()) {
                let carrier = (live * g.detach())?.sum(2)?.sum(1)?;
                term = (term + (&carrier - carrier.detach())?)?;
            }
        }
        // The transition's side: the pulled draws, the encoder held, on the same noise.
        let (pulled, _) = self.transition_steps(
            &draws.detach().pulled(alpha)?,
            covariates,
            estimator,
            &mut replay,
        )?;
        let pulled = match learn_from {
            Some(w) => (pulled * w)?,
            None => pulled,
        }
        .sum(1)?;
        Ok(((term + (&pulled - pulled.detach())?)?, constant))
    }
}

/// The encoder's draws and posterior parameters (`[S·B, T, M]` each) that the transition term
/// scores.
#[derive(Clone)]
pub(crate) struct Scored {
    pub(crate) z: Tensor,
    pub(crate) mean: Tensor,
    pub(crate) logvar: Tensor,
}

impl Scored {
    /// The encoder's trajectories as drawn.
    pub(crate) fn of(traj: &crate::Trajectories) -> Self {
        Self {
            z: traj.z.clone(),
            mean: traj.posterior.mean().clone(),
            logvar: traj.posterior.logvar().clone(),
        }
    }

    /// The draws pulled toward their means by `alpha` (the posterior's variance times `alpha²`);
    /// at 1, the draws themselves.
    pub(crate) fn pulled(&self, alpha: f64) -> Result<Self> {
        if alpha == 1.0 {
            return Ok(self.clone());
        }
        Ok(Self {
            z: (&self.mean + ((&self.z - &self.mean)? * alpha)?)?,
            mean: self.mean.clone(),
            logvar: (&self.logvar + 2.0 * alpha.ln())?,
        })
    }

    /// The same values without their graph.
    fn detach(&self) -> Self {
        Self {
            z: self.z.detach(),
            mean: self.mean.detach(),
            logvar: self.logvar.detach(),
        }
    }
}
