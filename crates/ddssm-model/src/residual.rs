//! The encoder's residual posterior (`encoder.residual`, not in the paper; [`EncoderResidual`]):
//! the transition's predicted mean added to the encoder head's mean at every `t > j`.

use candle_core::{Tensor, D};
use ddssm_tensor_ops::DiagGaussian;

use crate::encoder::{per_row, slot_times};
use crate::{EncoderResidual, Result, Transition, TransitionInput};

/// The residual posterior's prior: the transition whose predicted mean is added to the head's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Residual<'a> {
    transition: &'a dyn Transition,
    /// Whether the prediction is cut from the autograd graph.
    detach: bool,
    /// The model order `j`.
    order: usize,
}

impl<'a> Residual<'a> {
    /// The prior of an encoder configured with `kind` and order `order`: `prior` must be the
    /// model's transition where `kind` is a residual, and `None` where it is not.
    pub(crate) fn of(
        kind: EncoderResidual,
        order: usize,
        prior: Option<&'a dyn Transition>,
    ) -> Result<Option<Self>> {
        match (kind, prior) {
            (EncoderResidual::None, None) => Ok(None),
            (EncoderResidual::None, Some(_)) => Err(crate::Error::InvalidData(
                "a transition was given as the encoder's prior, but the encoder has no residual \
                 posterior (encoder.residual = \"none\"); pass Model::residual_prior()"
                    .into(),
            )),
            (r, None) => Err(crate::Error::InvalidData(format!(
                "the encoder's residual posterior (encoder.residual = \"{}\") needs the \
                 transition as its prior; pass Model::residual_prior()",
                r.name()
            ))),
            // Under `TransitionDetached` the prior itself is the transition on detached
            // parameters (`Model::residual_prior`): the prediction stays in the graph, so the
            // gradient reaches the history it reads.
            (_, Some(transition)) => Ok(Some(Self {
                transition,
                detach: false,
                order,
            })),
        }
    }

    /// The same prior with its prediction cut from the autograd graph, parameters and history
    /// alike (for inference, where nothing needs a gradient).
    pub(crate) fn detached(self) -> Self {
        Self {
            detach: true,
            ..self
        }
    }

    /// `[T, j+1]`: the transition's absolute (1-based) times `t−j … t` of every step, in `like`'s
    /// dtype and device (rows `t < j` are never read).
    pub(crate) fn times(&self, t_len: usize, like: &Tensor) -> Result<Tensor> {
        let j = self.order;
        Ok(
            Tensor::from_vec(slot_times(t_len, j + 1, 1), (t_len, j + 1), like.device())?
                .to_dtype(like.dtype())?,
        )
    }

    /// `q` with the transition's predicted mean on `input` added to its mean (Eq. 3 with SRNN's
    /// parameterisation; [`EncoderResidual`]).
    pub(crate) fn shift(&self, q: &DiagGaussian, input: &TransitionInput) -> Result<DiagGaussian> {
        let prediction = self.transition.predicted_mean(input)?;
        let prediction = if self.detach {
            prediction.detach()
        } else {
            prediction
        };
        Ok(DiagGaussian::new(
            (q.mean() + prediction)?,
            q.logvar().clone(),
        )?)
    }

    /// [`Self::shift`] of the teacher-forced posteriors `q` (`[N, T, M]`) of the trajectory `z`
    /// at every step `t > j`: `history` `[N·T, j, M]` as the encoder built it, `covariates` the
    /// inputs' `[N, T, j+1, V]` transition covariates.
    pub(crate) fn shift_steps(
        &self,
        q: DiagGaussian,
        history: &Tensor,
        covariates: Option<&Tensor>,
        z: &Tensor,
    ) -> Result<DiagGaussian> {
        let (n, t_len, m) = z.dims3()?;
        let j = self.order;
        if t_len <= j {
            return Ok(q);
        }
        // Steps t > j (1-based) only, flattened as Model::transition_pairs does.
        let steps = t_len - j;
        let rows = n * steps;
        let input = TransitionInput {
            history: history
                .reshape((n, t_len, j, m))?
                .narrow(1, j, steps)?
                .reshape((rows, j, m))?,
            times: per_row(&self.times(t_len, z)?.narrow(0, j, steps)?, n)?,
            covariates: covariates
                .map(|u| {
                    let v = u.dim(D::Minus1)?;
                    u.narrow(1, j, steps)?.reshape((rows, j + 1, v))
                })
                .transpose()?,
        };
        let later = DiagGaussian::new(
            q.mean().narrow(1, j, steps)?.reshape((rows, m))?,
            q.logvar().narrow(1, j, steps)?.reshape((rows, m))?,
        )?;
        let shifted = self.shift(&later, &input)?.mean().reshape((n, steps, m))?;
        let mean = Tensor::cat(&[q.mean().narrow(1, 0, j)?, shifted], 1)?;
        Ok(DiagGaussian::new(mean, q.logvar().clone())?)
    }
}
