//! Seeded parameter initialisation.
//!
//! candle's `VarMap` initialises parameters from an unseeded generator. [`SeededVarMap`] is a
//! `VarBuilder` backend that creates every parameter from the initialisation hint the layer asks
//! for (Kaiming, uniform, normal, constant) but draws the numbers from a [`SeededNoise`] stream
//! forked from the model seed *and the parameter's full name*. A parameter's initial value
//! therefore depends only on `(seed, name)` — not on the order in which layers are built — and
//! the parameters land in an ordinary [`VarMap`] for optimisers and checkpoints.

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{init::NormalOrUniform, Init, VarBuilder, VarMap};
use ddssm_tensor_ops::SeededNoise;

/// A `VarBuilder` backend with seeded, order-independent initialisation (see the module docs).
#[derive(Clone)]
pub struct SeededVarMap {
    varmap: VarMap,
    root: SeededNoise,
}

impl SeededVarMap {
    /// A backend that stores new parameters in `varmap` and draws them from `seed`.
    pub fn new(varmap: VarMap, seed: u64) -> Self {
        Self {
            varmap,
            root: SeededNoise::new(seed),
        }
    }

    /// A fresh `VarMap` and a `VarBuilder` (f32 unless told otherwise) that fills it.
    pub fn builder(seed: u64, dtype: DType, device: &Device) -> (VarMap, VarBuilder<'static>) {
        let varmap = VarMap::new();
        let backend = Self::new(varmap.clone(), seed);
        (
            varmap.clone(),
            VarBuilder::from_backend(Box::new(backend), dtype, device.clone()),
        )
    }

    fn initial_value(
        &self,
        shape: &Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut noise = self.root.fork(name);
        let map_err = |e: ddssm_tensor_ops::Error| candle_core::Error::Msg(e.to_string());
        let uniform = |noise: &mut SeededNoise, lo: f64, up: f64| -> candle_core::Result<Tensor> {
            noise
                .rand_uniform(shape.clone(), DType::F64, dev)
                .map_err(map_err)?
                .affine(up - lo, lo)?
                .to_dtype(dtype)
        };
        let normal =
            |noise: &mut SeededNoise, mean: f64, std: f64| -> candle_core::Result<Tensor> {
                noise
                    .randn(shape.clone(), DType::F64, dev)
                    .map_err(map_err)?
                    .affine(std, mean)?
                    .to_dtype(dtype)
            };
        match init {
            Init::Const(c) => Tensor::full(c, shape.clone(), dev)?.to_dtype(dtype),
            Init::Uniform { lo, up } => uniform(&mut noise, lo, up),
            Init::Randn { mean, stdev } => normal(&mut noise, mean, stdev),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(&mut noise, -bound, bound)
                    }
                    NormalOrUniform::Normal => normal(&mut noise, 0.0, std),
                }
            }
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self.varmap.data().lock().expect("varmap lock");
        if let Some(existing) = data.get(name) {
            let t = existing.as_tensor();
            if t.shape() != &s {
                candle_core::bail!(
                    "parameter {name} exists with shape {:?}, asked for {s:?}",
                    t.dims()
                );
            }
            return t.to_dtype(dtype);
        }
        let value = self.initial_value(&s, name, h, dtype, dev)?;
        let var = Var::from_tensor(&value)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let data = self.varmap.data().lock().expect("varmap lock");
        match data.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype),
            None => candle_core::bail!("no parameter named {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .contains_key(name)
    }
}
