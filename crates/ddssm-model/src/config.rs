//! The model's configuration: sizes, every module's network, and the transition. Serde structs with
//! the paper's defaults (App. F, Tables 1–2), `deny_unknown_fields`, validated when a model is
//! built; stored in TOML under `configs/` and copied into every checkpoint.

use ddssm_diffusion::{DiffusionLossConfig, LevelSampling, NoiseScheduleConfig, Sampler};
use ddssm_nets::{
    ContextProducerConfig, CsdiDenoiserConfig, FeatureMixerConfig, FutureSummaryConfig,
    GaussianHeadConfig, ResidualStackConfig, TemporalSideConfig, TimeMixerConfig,
};
use serde::{Deserialize, Serialize};

use crate::{check_config, Error, Result};

/// The whole model. The defaults are the paper's Section 4 model (M = D = j = 1, no covariates,
/// the DDSSM transition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Latent dimension `M`.
    pub latent_dim: usize,
    /// Observation dimension `D`.
    pub obs_dim: usize,
    /// Markov order `j` of the latent chain (and the emission window).
    pub order: usize,
    /// Dynamic covariates `V` per step (0 = none).
    pub covariate_dim: usize,
    /// Static covariates `P` per sequence (0 = none).
    pub static_dim: usize,
    /// The spatial width `H_seq` every context producer works at (App. H.2).
    pub h_seq: usize,
    /// The encoder (App. H.4).
    pub encoder: EncoderConfig,
    /// The decoder (App. H.3).
    pub decoder: DecoderConfig,
    /// The variational hierarchical prior (App. H.6).
    pub vhp: VhpConfig,
    /// The transition: Gaussian (DKF) or diffusion (DDSSM).
    pub transition: TransitionConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            latent_dim: 1,
            obs_dim: 1,
            order: 1,
            covariate_dim: 0,
            static_dim: 0,
            h_seq: 16,
            encoder: EncoderConfig::default(),
            decoder: DecoderConfig::default(),
            vhp: VhpConfig::default(),
            transition: TransitionConfig::default(),
        }
    }
}

impl ModelConfig {
    /// The paper's DKF of Section 4: the default model with [`TransitionConfig::Gaussian`].
    pub fn paper_dkf() -> Self {
        Self {
            transition: TransitionConfig::Gaussian(GaussianTransitionConfig::default()),
            ..Self::default()
        }
    }

    /// The paper's DDSSM of Section 4 (the default).
    pub fn paper_ddssm() -> Self {
        Self::default()
    }

    /// Checks every field before anything is built, naming a bad one by its full dotted path in
    /// this config (`transition.schedule.num_steps`, `encoder.head.logvar_bounds`, …) with the
    /// allowed values.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("latent_dim", self.latent_dim),
            ("obs_dim", self.obs_dim),
            ("order", self.order),
            ("h_seq", self.h_seq),
        ] {
            check_config(value >= 1, field, value, "an integer ≥ 1")?;
        }
        let s = &self.encoder.summary;
        for (field, value) in [
            ("encoder.summary.hidden", s.hidden),
            ("encoder.summary.layers", s.layers),
        ] {
            check_config(value >= 1, field, value, "an integer ≥ 1")?;
        }
        check_embedding_dim(
            "encoder.summary.time_embedding_dim",
            s.time_embedding_dim,
            true,
        )?;
        // A context producer's stack is flattened into its table (`encoder.context.layers`).
        let mut contexts = vec![
            ("encoder.context", &self.encoder.context.stack),
            ("decoder.context", &self.decoder.context.stack),
            ("vhp.prior", &self.vhp.prior.stack),
            ("vhp.posterior", &self.vhp.posterior.stack),
        ];
        let mut heads = vec![
            ("encoder.head", &self.encoder.head),
            ("decoder.head", &self.decoder.head),
            ("vhp.head", &self.vhp.head),
        ];
        let mut sides = vec![
            ("encoder.side", &self.encoder.side),
            ("decoder.side", &self.decoder.side),
            ("vhp.side", &self.vhp.side),
        ];
        match &self.transition {
            TransitionConfig::Gaussian(g) => {
                contexts.push(("transition.context", &g.context.stack));
                heads.push(("transition.head", &g.head));
                sides.push(("transition.side", &g.side));
            }
            TransitionConfig::Diffusion(d) => {
                contexts.push(("transition.denoiser.stack", &d.denoiser.stack));
                sides.push(("transition.denoiser.side", &d.denoiser.side));
                validate_diffusion(d)?;
            }
        }
        for (path, stack) in contexts {
            check_stack(path, stack)?;
        }
        for (path, head) in heads {
            check_config(
                head.hidden >= 1,
                &format!("{path}.hidden"),
                head.hidden,
                "an integer ≥ 1",
            )?;
            check_config(
                head.layers >= 1,
                &format!("{path}.layers"),
                head.layers,
                "an integer ≥ 1",
            )?;
            let b = head.logvar_bounds;
            check_config(
                b.min.is_finite() && b.max.is_finite() && b.min < b.max,
                &format!("{path}.logvar_bounds"),
                format!("{{ min = {}, max = {} }}", b.min, b.max),
                "finite min < max",
            )?;
        }
        for (path, side) in sides {
            check_embedding_dim(
                &format!("{path}.time_embedding_dim"),
                side.time_embedding_dim,
                true,
            )?;
            check_config(
                side.mask_dim >= 1,
                &format!("{path}.mask_dim"),
                side.mask_dim,
                "an integer ≥ 1",
            )?;
        }
        Ok(())
    }

    /// Parses a TOML document (unknown fields are errors).
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| Error::InvalidConfig {
            field: "model config".into(),
            value: "(TOML)".into(),
            allowed: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The config as a TOML document.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::InvalidData(format!("config to TOML: {e}")))
    }

    /// The config as one line of JSON (how checkpoints store it).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::InvalidData(format!("config to JSON: {e}")))
    }

    /// Parses the JSON written by [`ModelConfig::to_json`].
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|e| Error::InvalidConfig {
            field: "model config".into(),
            value: "(JSON)".into(),
            allowed: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// The encoder (App. H.4, Table 1: summary = 3-layer GRU of width 16; context = 2 layers, 16
/// channels, Conv(k = 2) mixers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderConfig {
    /// The future summary `h_t` of `x_{t:T}`.
    pub summary: FutureSummaryConfig,
    /// The autoregressive context producer over `[summary slot, j history slots]`.
    pub context: ContextProducerConfig,
    /// Its temporal side information (role and padding masks, time embeddings).
    pub side: TemporalSideConfig,
    /// The Gaussian head giving `q(z_t | …)`.
    pub head: GaussianHeadConfig,
    /// Not in the paper (off by default, and then not written): a linear map of the history
    /// `z_{t−j:t−1}` added to the head's mean, starting at zero. The paper's encoder reaches the
    /// history only through the context producer's ReLU lift of each latent; this path lets the
    /// posterior mean follow linear dynamics exactly (docs/paper-notes.md, "The encoder's
    /// history skip").
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub history_skip: bool,
    /// Not in the paper (`none` by default, and then not written): SRNN's residual posterior,
    /// the transition's predicted mean added to the head's mean ([`EncoderResidual`]).
    #[serde(skip_serializing_if = "EncoderResidual::is_none")]
    pub residual: EncoderResidual,
}

/// What the encoder's mean is a residual on (not in the paper; docs/paper-notes.md, "The
/// encoder's residual posterior"). The paper's encoder gives `μ_t` from its head alone. SRNN's
/// residual posterior (Fraccaro et al. 2016) gives `μ_t = E_ψ[z_t | z_{t−j:t−1}] + head`, the
/// transition's predicted mean ([`crate::Transition::predicted_mean`]) plus a learned
/// correction, at every `t > j` (the first `j` steps, which the VHP models, keep the head
/// alone). The head then has to say only how the step departs from the dynamics, not where the
/// state is. No parameters are added: the same weights give the paper's encoder under `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderResidual {
    /// The paper's encoder: the head's mean alone.
    #[default]
    None,
    /// The transition's predicted mean plus the head's, the ELBO's gradient reaching the
    /// transition's parameters through the encoder as well (SRNN's).
    Transition,
    /// As `transition`, but the transition's parameters get no gradient through the encoder:
    /// the prediction is made by the transition on detached views of its parameters
    /// ([`crate::Model::residual_prior`]), so the transition is trained by its own term only,
    /// while the history `z_{t−j:t−1}` the prediction reads still passes the gradient on (the
    /// encoder's gradient is SRNN's).
    TransitionDetached,
}

impl EncoderResidual {
    /// Whether this is the paper's encoder (no residual).
    pub fn is_none(&self) -> bool {
        *self == EncoderResidual::None
    }

    /// The name a config spells it with.
    pub fn name(&self) -> &'static str {
        match self {
            EncoderResidual::None => "none",
            EncoderResidual::Transition => "transition",
            EncoderResidual::TransitionDetached => "transition_detached",
        }
    }
}

/// The decoder (App. H.3, Table 1: 2 layers, 16 channels, Conv(k = 2) mixers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DecoderConfig {
    /// The context producer over the window `z_{t−j+1:t}`.
    pub context: ContextProducerConfig,
    /// Its temporal side information (padding mask, time embeddings).
    pub side: TemporalSideConfig,
    /// The Gaussian head giving `p(x_t | …)`.
    pub head: GaussianHeadConfig,
}

/// A stack of the paper's "Initialization Context" / Gaussian transition (Table 1): `layers`
/// blocks, 16 channels, identity time mixer, Conv(k = 2) feature mixer.
fn identity_time_context(layers: usize) -> ContextProducerConfig {
    ContextProducerConfig {
        stack: ResidualStackConfig {
            layers,
            channels: 16,
            time_mixer: TimeMixerConfig::Identity,
            feature_mixer: FeatureMixerConfig::Conv { kernel: 2 },
        },
    }
}

/// The variational hierarchical prior (App. G, H.6; Table 1 "Initialization Context").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VhpConfig {
    /// The conditional prior `p_η(z_t | z_{t−j:t−1})`, `t ≤ j`.
    pub prior: ContextProducerConfig,
    /// The auxiliary posterior `q_Φ(z_{−j+1:0} | z_{1:j})`.
    pub posterior: ContextProducerConfig,
    /// Temporal side information of both (time embeddings; no masks, see docs/paper-notes.md).
    pub side: TemporalSideConfig,
    /// The Gaussian heads of both.
    pub head: GaussianHeadConfig,
}

impl Default for VhpConfig {
    fn default() -> Self {
        Self {
            prior: identity_time_context(2),
            posterior: identity_time_context(2),
            side: TemporalSideConfig::default(),
            head: GaussianHeadConfig::default(),
        }
    }
}

/// Which transition density `p_ψ(z_t | z_{t−j:t−1}, u)` the model uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransitionConfig {
    /// A diagonal Gaussian (App. H.5): the DKF.
    Gaussian(GaussianTransitionConfig),
    /// A conditional diffusion model (App. D, E, H.1): the DDSSM.
    Diffusion(DiffusionTransitionConfig),
}

impl Default for TransitionConfig {
    fn default() -> Self {
        Self::Diffusion(DiffusionTransitionConfig::default())
    }
}

impl TransitionConfig {
    /// `"gaussian"` or `"diffusion"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Gaussian(_) => "gaussian",
            Self::Diffusion(_) => "diffusion",
        }
    }
}

/// The DKF's Gaussian transition (App. H.5; Table 1: 3 layers, 16 channels, identity time mixer,
/// Conv(k = 2) feature mixer).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GaussianTransitionConfig {
    /// The context producer over the `j` history slots.
    pub context: ContextProducerConfig,
    /// Its temporal side information (time embeddings only: no masks, App. H.5).
    pub side: TemporalSideConfig,
    /// The Gaussian head.
    pub head: GaussianHeadConfig,
}

impl Default for GaussianTransitionConfig {
    fn default() -> Self {
        Self {
            context: identity_time_context(3),
            side: TemporalSideConfig::default(),
            head: GaussianHeadConfig::default(),
        }
    }
}

/// The DDSSM's diffusion transition (App. D, E, H.1; Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DiffusionTransitionConfig {
    /// The CSDI-style denoiser `F_ψ`.
    pub denoiser: CsdiDenoiserConfig,
    /// The noise schedule (K = 128, linear).
    pub schedule: NoiseScheduleConfig,
    /// The loss of Eq. 52 (`S_k`, weighting).
    pub loss: DiffusionLossConfig,
    /// The sampler used when the model generates (forecasts, predictive).
    pub sampler: Sampler,
    /// The scale the diffusion sees the latent at (not in the paper; docs/paper-notes.md).
    /// Written only when it is not the paper's `fixed`, so configs and checkpoints without it
    /// read as before.
    #[serde(skip_serializing_if = "LatentScale::is_fixed")]
    pub latent_scale: LatentScale,
}

/// How [`DiffusionTransitionConfig`] scales the latent before diffusing it.
///
/// The latent's overall scale is not pinned by the model (the encoder and decoder can trade it),
/// while the diffusion's noise levels and EDM's `σ_data` are fixed numbers in latent units: a
/// trained latent of scale 18 meets a schedule built for scale 1. `learned` lets the transition
/// fit that scale: it diffuses `z / s` (history and target) with `s = exp(log_scale)` a trained
/// parameter (initialised at 1), and adds the change of variables `M·log s` to each target's
/// bound, so `p(z_t | …) = p̃(z_t / s | z_{t−j:t−1} / s) / s^M` stays a normalised density and the
/// ELBO a bound; samples are drawn in the scaled space and multiplied by `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatentScale {
    /// The paper's: the diffusion runs on `z` itself (`s = 1`).
    #[default]
    Fixed,
    /// A trained scale `s = exp(log_scale)` (tensor `transition.log_scale`).
    Learned,
}

impl LatentScale {
    /// Whether this is the paper's fixed scale.
    pub fn is_fixed(&self) -> bool {
        *self == LatentScale::Fixed
    }
}

/// The first field in which two configs differ, as `` `path`: this run has A, the other B ``
/// (dotted path as in a TOML file; `None` when they are equal). Works for any serialisable
/// config.
pub fn config_difference<T: Serialize>(ours: &T, theirs: &T) -> Option<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                keys.into_iter().find_map(|k| {
                    let sub = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let null = Value::Null;
                    walk(&sub, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null))
                })
            }
            _ if a == b => None,
            _ => {
                let show = |v: &Value| match v {
                    Value::Null => "nothing".to_string(),
                    other => other.to_string(),
                };
                Some(format!(
                    "`{path}`: this run has {}, the other {}",
                    show(a),
                    show(b)
                ))
            }
        }
    }
    match (serde_json::to_value(ours), serde_json::to_value(theirs)) {
        (Ok(a), Ok(b)) => walk("", &a, &b),
        _ => Some("the configs cannot be compared (not serialisable)".into()),
    }
}

/// A sinusoidal embedding's width: even and ≥ 2, or 0 where `off_allowed` (disabled).
fn check_embedding_dim(path: &str, dim: usize, off_allowed: bool) -> Result<()> {
    let ok = dim.is_multiple_of(2) && (dim >= 2 || (off_allowed && dim == 0));
    let allowed = if off_allowed {
        "0 (off) or an even integer ≥ 2"
    } else {
        "an even integer ≥ 2"
    };
    check_config(ok, path, dim, allowed)
}

/// A residual stack whose fields sit at `path` (`encoder.context`, `transition.denoiser.stack`):
/// sizes and mixer kernels.
fn check_stack(path: &str, stack: &ResidualStackConfig) -> Result<()> {
    check_config(
        stack.layers >= 1,
        &format!("{path}.layers"),
        stack.layers,
        "an integer ≥ 1",
    )?;
    check_config(
        stack.channels >= 1,
        &format!("{path}.channels"),
        stack.channels,
        "an integer ≥ 1",
    )?;
    if let TimeMixerConfig::Conv { kernel } = stack.time_mixer {
        check_config(
            kernel >= 1,
            &format!("{path}.time_mixer.kernel"),
            kernel,
            "an integer ≥ 1",
        )?;
    }
    if let FeatureMixerConfig::Conv { kernel } = stack.feature_mixer {
        check_config(
            kernel >= 1,
            &format!("{path}.feature_mixer.kernel"),
            kernel,
            "an integer ≥ 1",
        )?;
    }
    Ok(())
}

/// A diffusion crate result whose config error names its field by its path inside a part of
/// the model config: the field is prefixed with that part's path (`transition.schedule`).
fn under<T>(prefix: &str, result: ddssm_diffusion::Result<T>) -> Result<T> {
    result.map_err(|e| match e {
        ddssm_diffusion::Error::InvalidConfig {
            field,
            value,
            allowed,
        } => Error::InvalidConfig {
            field: format!("{prefix}.{field}"),
            value,
            allowed,
        },
        other => other.into(),
    })
}

/// [`LevelSampling::validate`], its error naming the field by its path under `transition`.
pub(crate) fn validate_levels(levels: &LevelSampling) -> Result<()> {
    under("transition.loss.levels", levels.validate())
}

/// The diffusion transition's own fields: denoiser sizes, schedule, loss, sampler.
fn validate_diffusion(d: &DiffusionTransitionConfig) -> Result<()> {
    check_embedding_dim(
        "transition.denoiser.diffusion_embedding_dim",
        d.denoiser.diffusion_embedding_dim,
        false,
    )?;
    check_config(
        d.denoiser.diffusion_projection_dim >= 1,
        "transition.denoiser.diffusion_projection_dim",
        d.denoiser.diffusion_projection_dim,
        "an integer ≥ 1",
    )?;
    let scale = d.denoiser.noise_embedding_scale;
    check_config(
        scale.is_finite() && scale > 0.0,
        "transition.denoiser.noise_embedding_scale",
        scale,
        "a finite number > 0",
    )?;
    // The schedule names its fields by their path inside it; prefix the transition's.
    under("transition.schedule", d.schedule.build())?;
    check_config(
        d.loss.s_k >= 1,
        "transition.loss.s_k",
        d.loss.s_k,
        "an integer ≥ 1",
    )?;
    validate_levels(&d.loss.levels)?;
    match d.sampler {
        Sampler::Ddim { steps } | Sampler::EdmHeun { steps } | Sampler::DpmSolver2M { steps } => {
            check_config(
                steps >= 1,
                "transition.sampler.steps",
                steps,
                "an integer ≥ 1",
            )
        }
        Sampler::Ancestral { .. } => Ok(()),
    }
}

/// How an expectation over `z_t ~ q(z_t | history)` is estimated where a closed form exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Closed form given the sampled history (Rao–Blackwellised; App. I.3.3 "may be computed in
    /// closed form"): the negative entropy `−½ Σ(log 2π + 1 + log σ²)` and, for the Gaussian
    /// transition, the cross-entropy `E_q[−log p_ψ(z_t | c_t)]`.
    #[default]
    Analytic,
    /// The single-sample Monte Carlo terms of Eq. 47, 51: `log q(z_t)` and `−log p_ψ(z_t | c_t)`
    /// at the sampled `z_t`.
    Sample,
}
