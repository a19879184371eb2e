//! [`Model`]: encoder, decoder, VHP and a [`Transition`], with the ELBO of one batch (DESIGN.md
//! §2, App. I.3–I.4).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use ddssm_nets::SeededVarMap;
use ddssm_tensor_ops::{history_windows, WindowKind};

use crate::encoder::{per_row, slot_times};
use crate::{
    check_shape, Decoder, DiffusionTransition, Encoder, EncoderInputs, EncoderResidual, Error,
    GaussianTransition, ModelConfig, Result, Standardization, Transition, TransitionConfig,
    TransitionInput, Vhp,
};

/// Maps a network's configuration error to one naming the field by its full path in the model
/// config (`encoder.context.layers`, …).
pub(crate) fn section<T>(name: &str, r: ddssm_nets::Result<T>) -> Result<T> {
    r.map_err(|e| match e {
        ddssm_nets::Error::InvalidConfig {
            field,
            value,
            allowed,
        } => Error::InvalidConfig {
            field: format!("{name}.{field}"),
            value,
            allowed,
        },
        other => other.into(),
    })
}

/// One batch of `B` sequences of length `T`, in the model's observation space.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, T, D]` observations (entries where `mask` is 0 are ignored, and may be NaN).
    pub x: Tensor,
    /// `[B, T, D]`: 1 = observed, 0 = missing (None: all observed).
    pub mask: Option<Tensor>,
    /// `[B, T', V]` dynamic covariates, `T' ≥ T` (forecasts read the steps beyond `T`).
    pub covariates: Option<Tensor>,
    /// `[B, P]` static covariates.
    pub statics: Option<Tensor>,
}

impl Batch {
    /// Fully observed sequences without covariates.
    pub fn new(x: Tensor) -> Self {
        Self {
            x,
            mask: None,
            covariates: None,
            statics: None,
        }
    }

    /// `B`.
    pub fn batch(&self) -> usize {
        self.x.dims().first().copied().unwrap_or(0)
    }

    /// `T`.
    pub fn len(&self) -> usize {
        self.x.dims().get(1).copied().unwrap_or(0)
    }

    /// Whether the sequences have no steps.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequences `start … start + len − 1` (a chunk of the batch, every field narrowed alike).
    pub fn rows(&self, start: usize, len: usize) -> Result<Batch> {
        let narrow = |t: &Tensor| t.narrow(0, start, len);
        Ok(Batch {
            x: narrow(&self.x)?,
            mask: self.mask.as_ref().map(narrow).transpose()?,
            covariates: self.covariates.as_ref().map(narrow).transpose()?,
            statics: self.statics.as_ref().map(narrow).transpose()?,
        })
    }

    /// Checks every shape against `config`, and returns the observations with missing entries set
    /// to 0 (so that no NaN reaches a network).
    pub(crate) fn checked(&self, config: &ModelConfig) -> Result<Tensor> {
        let dims = self.x.dims();
        check_shape(
            dims.len() == 3 && dims[1] >= 1 && dims[2] == config.obs_dim,
            "observations x",
            format!("[B, T ≥ 1, {}]", config.obs_dim),
            dims,
        )?;
        let (b, t) = (dims[0], dims[1]);
        match &self.covariates {
            Some(u) => check_shape(
                config.covariate_dim > 0
                    && u.rank() == 3
                    && u.dims()[0] == b
                    && u.dims()[1] >= t
                    && u.dims()[2] == config.covariate_dim,
                "covariates",
                format!("[{b}, ≥ {t}, {}] (covariate_dim)", config.covariate_dim),
                u.dims(),
            )?,
            None if config.covariate_dim > 0 => {
                return Err(Error::InvalidData(format!(
                    "the model expects {} covariates per step, none were given",
                    config.covariate_dim
                )))
            }
            None => {}
        }
        match &self.statics {
            Some(s) => check_shape(
                config.static_dim > 0 && s.dims() == [b, config.static_dim],
                "static covariates",
                format!("[{b}, {}] (static_dim)", config.static_dim),
                s.dims(),
            )?,
            None if config.static_dim > 0 => {
                return Err(Error::InvalidData(format!(
                    "the model expects {} static covariates per sequence, none were given",
                    config.static_dim
                )))
            }
            None => {}
        }
        match &self.mask {
            Some(m) => {
                check_shape(
                    m.dims() == dims,
                    "observation mask",
                    format!("{dims:?}"),
                    m.dims(),
                )?;
                let zeros = self.x.zeros_like()?;
                Ok(m.ne(0.0)?.where_cond(&self.x, &zeros)?)
            }
            None => Ok(self.x.clone()),
        }
    }

    /// The covariates of the first `t` steps.
    pub(crate) fn covariates_upto(&self, t: usize) -> Result<Option<Tensor>> {
        Ok(self
            .covariates
            .as_ref()
            .map(|u| u.narrow(1, 0, t))
            .transpose()?)
    }
}

/// Rows repeated `times` times along the batch axis (copy `s` of row `b` at `s·B + b`).
pub(crate) fn repeat_rows(t: &Tensor, times: usize) -> Result<Tensor> {
    Ok(if times == 1 {
        t.clone()
    } else {
        Tensor::cat(&vec![t.clone(); times], 0)?
    })
}

/// The parameters of each group of App. I.1, each with its own learning rate (Table 3).
#[derive(Debug, Clone)]
pub struct ParameterGroups {
    /// φ: future summary, context producer and head of the encoder.
    pub encoder: Vec<(String, Var)>,
    /// θ: the decoder.
    pub decoder: Vec<(String, Var)>,
    /// ψ: the transition.
    pub transition: Vec<(String, Var)>,
    /// η and Φ: the VHP's conditional prior and auxiliary posterior ("zinit").
    pub vhp: Vec<(String, Var)>,
}

/// The state space model of Eq. 1/12: DDSSM or DKF depending on its [`Transition`].
pub struct Model {
    config: ModelConfig,
    varmap: VarMap,
    encoder: Encoder,
    decoder: Decoder,
    vhp: Vhp,
    transition: Box<dyn Transition>,
    /// The transition on detached views of its parameters, for `encoder.residual =
    /// "transition_detached"` ([`frozen_transition`]).
    frozen_transition: Option<Box<dyn Transition>>,
    standardization: Option<Standardization>,
    dtype: DType,
    device: Device,
}

/// The transition of `config` built from `vb` (`transition.*`).
fn build_transition(config: &ModelConfig, vb: VarBuilder) -> Result<Box<dyn Transition>> {
    Ok(match &config.transition {
        TransitionConfig::Gaussian(c) => Box::new(GaussianTransition::new(config, c, vb)?),
        TransitionConfig::Diffusion(c) => Box::new(DiffusionTransition::new(config, c, vb)?),
    })
}

/// The transition of `config` rebuilt on detached views of the `transition.*` parameters in
/// `varmap`: the same values — a view shares its parameter's storage, and the optimiser and
/// checkpoint loading write parameters in place (`Var::set`), so it follows both — but no
/// gradient reaches the parameters through it, while one still reaches its inputs. The prior of
/// [`EncoderResidual::TransitionDetached`].
fn frozen_transition(
    config: &ModelConfig,
    varmap: &VarMap,
    dtype: DType,
    device: &Device,
) -> Result<Box<dyn Transition>> {
    let views: HashMap<String, Tensor> = {
        let data = varmap.data().lock().expect("varmap lock poisoned");
        data.iter()
            .filter(|(name, _)| name.starts_with("transition."))
            .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
            .collect()
    };
    build_transition(
        config,
        VarBuilder::from_tensors(views, dtype, device).pp("transition"),
    )
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("transition", &self.transition.kind())
            .field("parameters", &self.parameter_count())
            .field("dtype", &self.dtype)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Builds the model of `config` with parameters initialised from `seed` (each parameter's
    /// initial value depends only on the seed and its name).
    pub fn new(config: &ModelConfig, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        config.validate()?;
        let (varmap, vb) = SeededVarMap::builder(seed, dtype, device);
        let encoder = Encoder::new(config, vb.pp("encoder"))?;
        let decoder = Decoder::new(config, vb.pp("decoder"))?;
        let vhp = Vhp::new(config, vb.pp("vhp"))?;
        let transition = build_transition(config, vb.pp("transition"))?;
        let frozen_transition = (config.encoder.residual == EncoderResidual::TransitionDetached)
            .then(|| frozen_transition(config, &varmap, dtype, device))
            .transpose()?;
        Ok(Self {
            config: config.clone(),
            varmap,
            encoder,
            decoder,
            vhp,
            transition,
            frozen_transition,
            standardization: None,
            dtype,
            device: device.clone(),
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// All parameters, by name (`encoder.context.block0.mid_projection.weight`, …).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Floating-point type of the parameters.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Where the parameters live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The variational hierarchical prior.
    pub fn vhp(&self) -> &Vhp {
        &self.vhp
    }

    /// The transition.
    pub fn transition(&self) -> &dyn Transition {
        self.transition.as_ref()
    }

    /// The prior the encoder's [`Encoder::sample`] and [`Encoder::posteriors`] take: the
    /// transition where `encoder.residual` makes the encoder a residual posterior (under
    /// `"transition_detached"` the transition on detached views of its parameters, so the
    /// ELBO's gradient reaches the history it reads but not its parameters), else `None`.
    pub fn residual_prior(&self) -> Option<&dyn Transition> {
        match self.config.encoder.residual {
            EncoderResidual::None => None,
            EncoderResidual::Transition => Some(self.transition()),
            EncoderResidual::TransitionDetached => self.frozen_transition.as_deref(),
        }
    }

    /// Switches the diffusion transition's sampler (forecasts and predictives use it from now on;
    /// the config, and so a checkpoint written later, records it). An error for a Gaussian
    /// transition.
    pub fn set_sampler(&mut self, sampler: ddssm_diffusion::Sampler) -> Result<()> {
        self.transition.set_sampler(sampler)?;
        if let Some(frozen) = &mut self.frozen_transition {
            frozen.set_sampler(sampler)?;
        }
        if let TransitionConfig::Diffusion(d) = &mut self.config.transition {
            d.sampler = sampler;
        }
        Ok(())
    }

    /// Switches how the diffusion transition's Eq. 52 draws its noise levels (an estimator's
    /// choice: the parameters are untouched, the config records it). An error for a Gaussian
    /// transition or a `uniform_fraction` outside `[0, 1]`.
    pub fn set_level_sampling(&mut self, levels: ddssm_diffusion::LevelSampling) -> Result<()> {
        self.transition.set_level_sampling(levels)?;
        if let Some(frozen) = &mut self.frozen_transition {
            frozen.set_level_sampling(levels)?;
        }
        if let TransitionConfig::Diffusion(d) = &mut self.config.transition {
            d.loss.levels = levels;
        }
        Ok(())
    }

    /// The observation standardisation stored with the model, if any.
    pub fn standardization(&self) -> Option<&Standardization> {
        self.standardization.as_ref()
    }

    /// Stores the map between the data's units and the model's observation space (saved in
    /// checkpoints). Every public entry — [`Model::elbo`], reconstruction, forecasting, the
    /// one-step predictive — then takes and returns the data's own units and applies the map
    /// itself; the ELBO includes its Jacobian.
    pub fn set_standardization(&mut self, s: Option<Standardization>) -> Result<()> {
        if let Some(s) = &s {
            self.check_standardization(s)?;
        }
        self.standardization = s;
        Ok(())
    }

    /// Checks that `s` fits this model: one finite mean and one finite `std > 0` per observed
    /// dimension.
    pub(crate) fn check_standardization(&self, s: &Standardization) -> Result<()> {
        let d = self.config.obs_dim;
        if s.mean.len() != d || s.std.len() != d {
            return Err(Error::InvalidData(format!(
                "standardization has {} means and {} stds, the model observes {d} dimensions",
                s.mean.len(),
                s.std.len(),
            )));
        }
        if s.mean.iter().any(|m| !m.is_finite())
            || s.std.iter().any(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(Error::InvalidData(format!(
                "standardization {s:?}: means must be finite and stds finite and > 0"
            )));
        }
        Ok(())
    }

    /// Parameters sorted by name.
    pub fn named_parameters(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("varmap lock poisoned");
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// The parameters split into the groups of App. I.1.
    pub fn parameter_groups(&self) -> ParameterGroups {
        let mut groups = ParameterGroups {
            encoder: Vec::new(),
            decoder: Vec::new(),
            transition: Vec::new(),
            vhp: Vec::new(),
        };
        for (name, var) in self.named_parameters() {
            let group = match name.split('.').next() {
                Some("encoder") => &mut groups.encoder,
                Some("decoder") => &mut groups.decoder,
                Some("transition") => &mut groups.transition,
                _ => &mut groups.vhp,
            };
            group.push((name, var));
        }
        groups
    }

    /// The number of scalar parameters.
    pub fn parameter_count(&self) -> usize {
        self.named_parameters()
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    /// The transition inputs `(history, times, covariates)` and targets of every `t > j` of the
    /// trajectories `z` (`[N, T, M]`), flattened to `N·(T − j)` rows (row `n·(T−j) + t − j − 1`).
    pub fn transition_pairs(
        &self,
        z: &Tensor,
        covariates: Option<&Tensor>,
    ) -> Result<(TransitionInput, Tensor)> {
        let (n, t_len, m) = z.dims3()?;
        let j = self.config.order;
        let steps = t_len - j;
        let rows = n * steps;
        let history = history_windows(z, j, WindowKind::Previous)?
            .values
            .narrow(1, j, steps)?
            .reshape((rows, j, m))?;
        let target = z.narrow(1, j, steps)?.reshape((rows, m))?;
        let times = Tensor::from_vec(slot_times(t_len, j + 1, 1), (t_len, j + 1), z.device())?
            .to_dtype(z.dtype())?
            .narrow(0, j, steps)?;
        let covariates = covariates
            .map(|u| -> Result<Tensor> {
                let v = u.dim(D::Minus1)?;
                Ok(history_windows(u, j + 1, WindowKind::Current)?
                    .values
                    .narrow(1, j, steps)?
                    .reshape((rows, j + 1, v))?)
            })
            .transpose()?;
        Ok((
            TransitionInput {
                history,
                times: per_row(&times, n)?,
                covariates,
            },
            target,
        ))
    }

    /// `x` (`[…, D]`, the data's units) in the model's observation space: standardised with the
    /// stored [`Standardization`], or as it is without one.
    pub(crate) fn to_model_units(&self, x: &Tensor) -> Result<Tensor> {
        match &self.standardization {
            Some(s) => s.apply(x),
            None => Ok(x.clone()),
        }
    }

    /// Observations `x` (`[…, D]`) in the model's space back in the data's units.
    pub(crate) fn to_data_units(&self, x: &Tensor) -> Result<Tensor> {
        match &self.standardization {
            Some(s) => s.invert(x),
            None => Ok(x.clone()),
        }
    }

    /// `Σ_{t,d observed} log s_d` per sequence (`[B]`): what `−log p(x̃)` of the standardised
    /// `x̃` lacks to be `−log p(x)`. `None` without a standardisation.
    pub(crate) fn jacobian(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        let Some(s) = &self.standardization else {
            return Ok(None);
        };
        let log_s: Vec<f64> = s.std.iter().map(|v| v.ln()).collect();
        let log_s = Tensor::from_vec(log_s, s.std.len(), x.device())?.to_dtype(x.dtype())?;
        let per_entry = match mask {
            Some(m) => m.broadcast_mul(&log_s)?,
            None => log_s.broadcast_as(x.shape())?.contiguous()?,
        };
        Ok(Some(per_entry.sum(D::Minus1)?.sum(D::Minus1)?))
    }

    /// `batch`'s observations as given and in the model's units, checked to span more than `j`
    /// steps (so that there is a transition to score): what the ELBO and the importance weights
    /// start from.
    pub(crate) fn observations(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let raw = batch.checked(&self.config)?;
        let x = self.to_model_units(&raw)?;
        let j = self.config.order;
        check_shape(
            x.dim(1)? > j,
            "observations x",
            format!("T > j = {j} steps"),
            x.dims(),
        )?;
        Ok((raw, x))
    }

    /// The encoder's inputs for `x` (`[B, T, D]`, the model's units) with the batch's mask, its
    /// covariates up to `T` and its statics.
    pub(crate) fn encoder_inputs(&self, x: &Tensor, batch: &Batch) -> Result<EncoderInputs> {
        self.encoder_view(x, batch.mask.as_ref(), batch)
    }

    /// [`Self::encoder_inputs`] with `mask` (`[B, T, D]`, 1 = the encoder sees the entry) in place
    /// of the batch's own.
    pub(crate) fn encoder_view(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        batch: &Batch,
    ) -> Result<EncoderInputs> {
        self.encoder.prepare(
            x,
            mask,
            batch.covariates_upto(x.dim(1)?)?.as_ref(),
            batch.statics.as_ref(),
        )
    }

    /// Copies parameter values from `tensors` (as read from a checkpoint), which must hold exactly
    /// this model's parameter names with the same shapes.
    pub(crate) fn assign(&self, tensors: &HashMap<String, Tensor>, source: &str) -> Result<()> {
        let bad = |reason: String| Error::Checkpoint {
            path: source.to_string(),
            reason,
        };
        let params = self.named_parameters();
        let missing: Vec<&str> = params
            .iter()
            .filter(|(name, _)| !tensors.contains_key(name))
            .map(|(name, _)| name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(bad(format!(
                "{} parameter(s) of the model are missing, e.g. {}",
                missing.len(),
                missing[..missing.len().min(3)].join(", ")
            )));
        }
        let mut extra: Vec<&String> = tensors
            .keys()
            .filter(|k| !params.iter().any(|(name, _)| name == *k))
            .collect();
        extra.sort();
        if !extra.is_empty() {
            return Err(bad(format!(
                "{} tensor(s) the model does not have, e.g. {:?}",
                extra.len(),
                &extra[..extra.len().min(3)]
            )));
        }
        for (name, var) in &params {
            let t = &tensors[name];
            if t.dims() != var.dims() {
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, the model expects {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
        }
        for (name, var) in &params {
            var.set(
                &tensors[name]
                    .to_dtype(self.dtype)?
                    .to_device(&self.device)?,
            )?;
        }
        Ok(())
    }
}
