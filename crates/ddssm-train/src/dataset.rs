//! Windows of a [`ddssm_data::Panel`] as the model's [`Batch`]: observations with their mask
//! (missing targets are 0 and masked, never imputed), covariates and statics, in the data's own
//! units (the model applies its standardisation).

use candle_core::{DType, Device, Tensor};
use ddssm_data::{Panel, SeriesName, Window};
use ddssm_model::{Batch, Standardization};

use crate::{Error, Result};

/// The target scaling of a rolling-origin split as the model's standardisation.
pub fn standardization(scaling: &ddssm_data::Scaling) -> Standardization {
    Standardization {
        mean: scaling.mean.clone(),
        std: scaling.std.clone(),
    }
}

/// `panel`'s numbers of targets, covariates and statics (the order `series::series_run` takes
/// them in).
pub fn panel_sizes(panel: &Panel) -> (usize, usize, usize) {
    (
        panel.target_dim(),
        panel.covariate_dim(),
        panel.static_dim(),
    )
}

/// Steps `start … start + len − 1` of each window's series as one batch: `x` and `mask`
/// `[N, len, D]`, `covariates` `[N, len, V]` (when the panel has any), `statics` `[N, P]` (when it
/// has any). A covariate missing inside a window is an error naming the series and time.
pub fn window_batch(
    panel: &Panel,
    windows: &[Window],
    len: usize,
    device: &Device,
) -> Result<Batch> {
    let (d, v, p) = panel_sizes(panel);
    let n = windows.len();
    let (mut x, mut mask) = (
        Vec::with_capacity(n * len * d),
        Vec::with_capacity(n * len * d),
    );
    let mut cov = Vec::with_capacity(n * len * v);
    let mut statics = Vec::with_capacity(n * p);
    for w in windows {
        let s = &panel.series[w.series];
        if w.start + len > s.len() {
            return Err(Error::State(format!(
                "{}: a window of {len} steps from step {} runs past the {} rows of {}",
                panel.path,
                w.start,
                s.len(),
                SeriesName(&s.id)
            )));
        }
        for t in w.start..w.start + len {
            for k in 0..d {
                x.push(s.targets[t * d + k] as f32);
                mask.push(if s.observed[t * d + k] { 1.0f32 } else { 0.0 });
            }
            for k in 0..v {
                if !s.covariates_present[t * v + k] {
                    return Err(Error::State(format!(
                        "{}: line {}, column `{}`: covariate missing at time {} of {}, inside a \
                         window",
                        panel.path,
                        s.lines[t],
                        panel.columns.covariates[k],
                        s.times[t],
                        SeriesName(&s.id)
                    )));
                }
                cov.push(s.covariates[t * v + k] as f32);
            }
        }
        statics.extend(s.statics.iter().map(|&x| x as f32));
    }
    let tensor = |data: Vec<f32>, shape: &[usize]| -> Result<Tensor> {
        Ok(Tensor::from_vec(data, shape, device)?.to_dtype(DType::F32)?)
    };
    Ok(Batch {
        x: tensor(x, &[n, len, d])?,
        mask: Some(tensor(mask, &[n, len, d])?),
        covariates: (v > 0).then(|| tensor(cov, &[n, len, v])).transpose()?,
        statics: (p > 0).then(|| tensor(statics, &[n, p])).transpose()?,
    })
}

/// The forecast input of every series: its last `context` observed steps, with covariates over
/// those steps and the `horizon` rows after them (the file's future rows, which must hold every
/// covariate). Returns the batch (`x` `[S, context, D]`, covariates `[S, context + horizon, V]`)
/// and, per series, the time labels of the forecast steps (the future rows' times where the file
/// has them, else `+1`, `+2`, …).
pub fn forecast_batch(
    panel: &Panel,
    context: usize,
    horizon: usize,
    device: &Device,
) -> Result<(Batch, Vec<Vec<String>>)> {
    let d = panel.target_dim();
    let v = panel.covariate_dim();
    let mut windows = Vec::new();
    let mut labels = Vec::new();
    for (k, s) in panel.series.iter().enumerate() {
        let end = s.observed_len(d);
        if end < context {
            return Err(Error::State(format!(
                "{}: {} has {end} observed steps; the model needs {context} of context",
                panel.path,
                SeriesName(&s.id)
            )));
        }
        if v > 0 && s.len() < end + horizon {
            return Err(Error::State(format!(
                "{}: the model has covariates, so the file must give them for the {horizon} \
                 steps to forecast; {} has {} rows after its last observation",
                panel.path,
                SeriesName(&s.id),
                s.len() - end
            )));
        }
        windows.push(Window {
            series: k,
            start: end - context,
        });
        labels.push(
            (0..horizon)
                .map(|h| match s.times.get(end + h) {
                    Some(t) => t.to_string(),
                    None => format!("+{}", h + 1),
                })
                .collect(),
        );
    }
    let mut batch = window_batch(panel, &windows, context, device)?;
    if v > 0 {
        batch.covariates = window_batch(panel, &windows, context + horizon, device)?.covariates;
    }
    Ok((batch, labels))
}
