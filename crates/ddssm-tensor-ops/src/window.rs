//! History windows with left zero-padding, their padding masks, and time reversal.
//!
//! Every module of the model looks at a short window of latent states (App. H.3–H.6):
//! - the encoder and the transition see the `j` *previous* states `z_{t−j:t−1}`
//!   ([`WindowKind::Previous`]);
//! - the decoder sees the `j` most recent states *including* the current one, `z_{t−j+1:t}`
//!   ([`WindowKind::Current`]).
//!
//! Positions before the start of the sequence are filled with zeros and flagged in a padding mask
//! (1 = a real state, 0 = padding), exactly as App. H.3 and H.4 prescribe. Building all windows
//! for all `t` at once lets the decoder and the transition run as one batched call over time
//! (DESIGN.md §2).

use candle_core::{Tensor, D};

use crate::{Error, Result};

/// Which states a window at time `t` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `z_{t−len}, …, z_{t−1}`: the history of the encoder, the transition and the VHP prior.
    Previous,
    /// `z_{t−len+1}, …, z_t`: the emission window of the decoder.
    Current,
}

/// Windows for every time step and their padding mask.
#[derive(Debug, Clone)]
pub struct HistoryWindows {
    /// `[B, T, len, M]`: `values[b, t, i]` is the state at time `t − len + i` (Previous) or
    /// `t − len + 1 + i` (Current), zero where that time is before the sequence start.
    pub values: Tensor,
    /// `[T, len]`, same dtype as the values: 1 where the state is real, 0 where it is padding.
    /// The same for every batch element.
    pub valid: Tensor,
}

/// Builds the `len`-step windows of `z` (`[B, T, M]`) for every `t` (see [`HistoryWindows`]).
///
/// # Errors
/// [`Error::Shape`] when `z` is not 3-D; [`Error::InvalidArgument`] when `len == 0`.
pub fn history_windows(z: &Tensor, len: usize, kind: WindowKind) -> Result<HistoryWindows> {
    if z.rank() != 3 {
        return Err(Error::Shape {
            what: "history_windows z",
            expected: "[B, T, M]".into(),
            got: z.dims().to_vec(),
        });
    }
    if len == 0 {
        return Err(Error::InvalidArgument {
            name: "window length",
            value: "0".into(),
            allowed: "≥ 1".into(),
        });
    }
    let t_len = z.dim(1)?;
    // zp[τ] = z[τ − len]; the window of step t starts at zp[t] (Previous) or zp[t + 1] (Current).
    let zp = z.pad_with_zeros(1, len, 0)?;
    let first = match kind {
        WindowKind::Previous => 0,
        WindowKind::Current => 1,
    };
    let slices = (0..len)
        .map(|i| zp.narrow(1, first + i, t_len))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let values = Tensor::stack(&slices, 2)?;

    let mut mask = Vec::with_capacity(t_len * len);
    for t in 0..t_len {
        for i in 0..len {
            // The original time index of slot i, shifted by `len` to stay unsigned.
            let shifted = t + first + i;
            mask.push(if shifted >= len { 1f32 } else { 0f32 });
        }
    }
    let valid = Tensor::from_vec(mask, (t_len, len), z.device())?.to_dtype(z.dtype())?;
    Ok(HistoryWindows { values, valid })
}

/// `times` copies of `t` stacked along axis 0: copy `r` of row `i` lands at row `r·N + i` (the
/// layout of `S` chains per sequence throughout the model).
pub fn repeat_rows(t: &Tensor, times: usize) -> Result<Tensor> {
    if times == 1 {
        return Ok(t.clone());
    }
    Ok(Tensor::cat(&vec![t.clone(); times], 0)?)
}

/// Reverses `x` along dimension `dim` (used by the future summary, App. H.4).
pub fn reverse_time<Dim: candle_core::shape::Dim>(x: &Tensor, dim: Dim) -> Result<Tensor> {
    let dim = dim.to_index(x.shape(), "reverse_time")?;
    let n = x.dim(dim)?;
    if n <= 1 {
        return Ok(x.clone());
    }
    let idx: Vec<u32> = (0..n as u32).rev().collect();
    let idx = Tensor::from_vec(idx, n, x.device())?;
    Ok(x.index_select(&idx, dim)?)
}

/// Reverses the last dimension of `x`.
pub fn reverse_last(x: &Tensor) -> Result<Tensor> {
    reverse_time(x, D::Minus1)
}
