//! Inference with a trained model: reconstruction, forecasting and the one-step predictive of
//! Sec. 4. Nothing here builds a gradient: every result is detached. Observations go in and come
//! out in the data's own units: the model applies and inverts its stored standardisation.

use candle_core::Tensor;
use ddssm_tensor_ops::SeededNoise;

use crate::model::repeat_rows;
use crate::{check_shape, Batch, Model, Result, TransitionInput};

/// `n` reconstructions of each of `B` sequences: `z ~ q_φ(z_{1:T} | x)`, then the emission.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    /// `[n, B, T, M]`: the encoder's trajectories.
    pub z: Tensor,
    /// `[n, B, T, D]`: the emission means `μ_θ(z_{t−j+1:t})`, in the data's units.
    pub mean: Tensor,
    /// `[n, B, T, D]`: draws `x_t ~ p_θ(x_t | z_{t−j+1:t})`, in the data's units.
    pub samples: Tensor,
}

/// `n` forecast paths of each of `B` sequences over `horizon` steps.
#[derive(Debug, Clone)]
pub struct Forecast {
    /// `[n, B, horizon, M]`: the latent path rolled forward by the transition.
    pub z: Tensor,
    /// `[n, B, horizon, D]`: the emission means, in the data's units.
    pub mean: Tensor,
    /// `[n, B, horizon, D]`: draws from the emissions, in the data's units.
    pub samples: Tensor,
}

/// The covariates of `batch` up to step `upto` and its statics, each repeated for `n` trajectories
/// per sequence (row `s·B + b`).
pub(crate) fn per_trajectory(
    batch: &Batch,
    upto: usize,
    n: usize,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    Ok((
        batch
            .covariates_upto(upto)?
            .map(|u| repeat_rows(&u, n))
            .transpose()?,
        batch
            .statics
            .as_ref()
            .map(|s| repeat_rows(s, n))
            .transpose()?,
    ))
}

/// The one-step predictive of `B` sequences taken apart into its three sources of width: the
/// encoder's spread of the last latent, the transition's spread from one fixed latent history, and
/// the emission's noise. All `[n, B, …]`; observations in the data's units.
#[derive(Debug, Clone)]
pub struct OneStepParts {
    /// `[n, B, M]`: encoder draws of the last observed latent `z_{t₀} ~ q_φ(· | x_{1:t₀})`.
    pub z_last: Tensor,
    /// `[n, B, D]`: the emission means `μ_θ` at `t₀` of those draws (their spread is the
    /// encoder's, seen in the data's units).
    pub mean_last: Tensor,
    /// `[n, B, M]`: `z_{t₀+1} ~ p_ψ(· | z_{t₀−j+1:t₀})` with the history held at the first
    /// encoder draw: the transition's own spread.
    pub z_next_fixed: Tensor,
    /// `[n, B, D]`: the emission means of `z_next_fixed`.
    pub mean_next_fixed: Tensor,
    /// `[n, B, D]`: the emission standard deviations at `z_next_fixed`.
    pub std_next_fixed: Tensor,
    /// `[n, B, D]`: the full predictive, one transition draw from each encoder draw, then the
    /// emission (what [`Model::one_step_predictive`] draws).
    pub samples: Tensor,
}

fn split(t: &Tensor, n: usize, b: usize) -> Result<Tensor> {
    let mut dims = t.dims().to_vec();
    dims[0] = b;
    dims.insert(0, n);
    Ok(t.reshape(dims)?.detach())
}

impl Model {
    /// The observed history of `batch` in the model's units, checked to hold at least `j` steps
    /// (what a forecast starts from).
    fn history(&self, batch: &Batch) -> Result<Tensor> {
        let x = self.to_model_units(&batch.checked(self.config())?)?;
        let j = self.config().order;
        check_shape(
            x.dim(1)? >= j,
            "history x",
            format!("at least j = {j} observed steps"),
            x.dims(),
        )?;
        Ok(x)
    }

    /// Reconstructs `batch` `n` times: encoder trajectories, then the decoder.
    pub fn reconstruct(
        &self,
        batch: &Batch,
        n: usize,
        noise: &mut SeededNoise,
    ) -> Result<Reconstruction> {
        let x = self.to_model_units(&batch.checked(self.config())?)?;
        let (b, t_len, _) = x.dims3()?;
        let z = self
            .encoder()
            .sample_no_grad(
                &self.encoder_inputs(&x, batch)?,
                n,
                noise,
                self.residual_prior(),
            )?
            .z
            .detach();
        let (covariates, statics) = per_trajectory(batch, t_len, n)?;
        let emission = self
            .decoder()
            .forward(&z, covariates.as_ref(), statics.as_ref())?;
        let samples = self.to_data_units(&emission.sample(noise)?)?;
        Ok(Reconstruction {
            z: split(&z, n, b)?,
            mean: split(&self.to_data_units(emission.mean())?, n, b)?,
            samples: split(&samples, n, b)?,
        })
    }

    /// Forecasts `horizon` steps past the end of `batch.x` (`t₀ = T ≥ j` observed steps), `n`
    /// paths per sequence: `z_{1:t₀} ~ q_φ(· | x_{1:t₀})` (the encoder sees only the observed
    /// steps), then `z_t ~ p_ψ(z_t | z_{t−j:t−1})` and `x_t ~ p_θ(x_t | z_{t−j+1:t})` for
    /// `t = t₀+1 … t₀+horizon`. With covariates, `batch.covariates` must cover `t₀ + horizon`
    /// steps.
    pub fn forecast(
        &self,
        batch: &Batch,
        horizon: usize,
        n: usize,
        noise: &mut SeededNoise,
    ) -> Result<Forecast> {
        let x = self.history(batch)?;
        let (b, t0, _) = x.dims3()?;
        check_shape(horizon >= 1, "forecast horizon", "≥ 1 step", &[horizon])?;
        let total = t0 + horizon;
        if let Some(u) = &batch.covariates {
            check_shape(
                u.dims()[1] >= total,
                "covariates",
                format!("at least t₀ + horizon = {total} steps"),
                u.dims(),
            )?;
        }
        let traj = self.encoder().sample_no_grad(
            &self.encoder_inputs(&x, batch)?,
            n,
            noise,
            self.residual_prior(),
        )?;
        let (covariates, statics) = per_trajectory(batch, total, n)?;
        let (z, future) = self.roll_forward(
            &traj.z.detach(),
            covariates.as_ref(),
            statics.as_ref(),
            horizon,
            noise,
        )?;
        let samples = self.to_data_units(&future.sample(noise)?)?;
        Ok(Forecast {
            z: split(&z, n, b)?,
            mean: split(&self.to_data_units(future.mean())?, n, b)?,
            samples: split(&samples, n, b)?,
        })
    }

    /// Rolls the latent paths `z` (`[N, t₀, M]`, `t₀ ≥ j`) forward `horizon` steps with the
    /// transition, `z_t ~ p_ψ(z_t | z_{t−j:t−1})`, and returns the new steps (`[N, horizon, M]`)
    /// with their emissions `p_θ(x_t | z_{t−j+1:t})` in the model's units. `covariates` (`[N, ≥
    /// t₀ + horizon, V]`) and `statics` (`[N, P]`) are given per path.
    fn roll_forward(
        &self,
        z: &Tensor,
        covariates: Option<&Tensor>,
        statics: Option<&Tensor>,
        horizon: usize,
        noise: &mut SeededNoise,
    ) -> Result<(Tensor, ddssm_tensor_ops::DiagGaussian)> {
        let (rows, t0, _) = z.dims3()?;
        let j = self.config().order;
        let total = t0 + horizon;
        let (dtype, device) = (z.dtype(), z.device());
        let mut path: Vec<Tensor> = (0..t0)
            .map(|t| z.narrow(1, t, 1)?.squeeze(1)?.contiguous())
            .collect::<candle_core::Result<_>>()?;
        for t in t0..total {
            // Step t (0-based) = time t + 1; its history is times t + 1 − j … t.
            let history = Tensor::stack(&path[t - j..t], 1)?;
            let times: Vec<f32> = (0..=j).map(|i| (t + 1 + i - j) as f32).collect();
            let times = Tensor::from_vec(times, (1, j + 1), device)?
                .to_dtype(dtype)?
                .broadcast_as((rows, j + 1))?
                .contiguous()?;
            let covariates = covariates.map(|u| u.narrow(1, t - j, j + 1)).transpose()?;
            let input = TransitionInput {
                history,
                times,
                covariates,
            };
            path.push(self.transition().sample(&input, noise)?.detach());
        }
        let z = Tensor::stack(&path, 1)?;
        // Only the new steps' emissions are needed: decode the stretch that covers their
        // windows, steps t₀ − j + 2 … t₀ + horizon (1-based), not the whole path.
        let start = t0 + 1 - j;
        let stretch = j - 1 + horizon;
        let emission = self.decoder().forward_from(
            &z.narrow(1, start, stretch)?,
            covariates
                .map(|u| u.narrow(1, start, stretch))
                .transpose()?
                .as_ref(),
            statics,
            start,
        )?;
        let mean = emission.mean().narrow(1, j - 1, horizon)?.detach();
        let logvar = emission.logvar().narrow(1, j - 1, horizon)?.detach();
        Ok((
            z.narrow(1, t0, horizon)?,
            ddssm_tensor_ops::DiagGaussian::new(mean, logvar)?,
        ))
    }

    /// [`OneStepParts`] of the one-step predictive `p(x_{t₀+1} | x_{1:t₀})` of each sequence of
    /// `batch`, `n` draws of each part: where the predictive's width comes from.
    pub fn one_step_parts(
        &self,
        batch: &Batch,
        n: usize,
        noise: &mut SeededNoise,
    ) -> Result<OneStepParts> {
        let x = self.history(batch)?;
        let (b, t0, _) = x.dims3()?;
        let j = self.config().order;
        let z = self
            .encoder()
            .sample_no_grad(
                &self.encoder_inputs(&x, batch)?,
                n,
                noise,
                self.residual_prior(),
            )?
            .z
            .detach();
        let (covariates, statics) = per_trajectory(batch, t0 + 1, n)?;
        // The emission at t₀ of every encoder draw (window z_{t₀−j+1:t₀}).
        let last = self.decoder().forward_from(
            &z.narrow(1, t0 - j, j)?,
            covariates
                .as_ref()
                .map(|u| u.narrow(1, t0 - j, j))
                .transpose()?
                .as_ref(),
            statics.as_ref(),
            t0 - j,
        )?;
        let mean_last = self.to_data_units(&last.mean().narrow(1, j - 1, 1)?.squeeze(1)?)?;
        let (_, emission) =
            self.roll_forward(&z, covariates.as_ref(), statics.as_ref(), 1, noise)?;
        let samples = self.to_data_units(&emission.sample(noise)?.squeeze(1)?)?;
        // The first draw's history (rows 0 … B − 1), repeated n times.
        let fixed = repeat_rows(&z.narrow(0, 0, b)?, n)?;
        let (z_fixed, emission_fixed) =
            self.roll_forward(&fixed, covariates.as_ref(), statics.as_ref(), 1, noise)?;
        let mean = emission_fixed.mean().squeeze(1)?;
        let std = (emission_fixed.logvar().squeeze(1)? * 0.5)?.exp()?;
        let mean_data = self.to_data_units(&mean)?;
        let std_data = (self.to_data_units(&(&mean + std)?)? - &mean_data)?;
        Ok(OneStepParts {
            z_last: split(&z.narrow(1, t0 - 1, 1)?.squeeze(1)?, n, b)?,
            mean_last: split(&mean_last, n, b)?,
            z_next_fixed: split(&z_fixed.squeeze(1)?, n, b)?,
            mean_next_fixed: split(&mean_data, n, b)?,
            std_next_fixed: split(&std_data, n, b)?,
            samples: split(&samples, n, b)?,
        })
    }

    /// The one-step predictive of Sec. 4, `p(x_{T+1} | x_{1:T})`: `n` draws per sequence of
    /// `batch` (`[n, B, D]`), in the data's units.
    pub fn one_step_predictive(
        &self,
        batch: &Batch,
        n: usize,
        noise: &mut SeededNoise,
    ) -> Result<Tensor> {
        let f = self.forecast(batch, 1, n, noise)?;
        Ok(f.samples.squeeze(2)?)
    }
}
