//! The residual update `(x + r)/√2` of a CSDI block.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::*;
use crate::{Error, Result};

/// The residual update of a CSDI block, `(x + r)/√2`, as one graph node (`x` and `r` of the same
/// shape).
pub fn residual_update(x: &Tensor, r: &Tensor) -> Result<Tensor> {
    if x.dims() != r.dims() {
        return Err(Error::Shape {
            what: "residual update",
            expected: format!("{:?}", x.dims()),
            got: r.dims().to_vec(),
        });
    }
    if supported(x) && x.dtype() == r.dtype() {
        return Ok(x.contiguous()?.apply_op2(&r.contiguous()?, ResidualOp)?);
    }
    Ok(((x + r)? * std::f64::consts::FRAC_1_SQRT_2)?)
}

struct ResidualOp;

impl CustomOp2 for ResidualOp {
    fn name(&self) -> &'static str {
        "ddssm-residual-update"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        r: &CpuStorage,
        lr: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match (x, r) {
            (CpuStorage::F32(x), CpuStorage::F32(r)) => {
                let k = std::f32::consts::FRAC_1_SQRT_2;
                CpuStorage::F32(
                    contiguous_slice(x, lx)?
                        .iter()
                        .zip(contiguous_slice(r, lr)?)
                        .map(|(a, b)| (a + b) * k)
                        .collect(),
                )
            }
            (CpuStorage::F64(x), CpuStorage::F64(r)) => {
                let k = std::f64::consts::FRAC_1_SQRT_2;
                CpuStorage::F64(
                    contiguous_slice(x, lx)?
                        .iter()
                        .zip(contiguous_slice(r, lr)?)
                        .map(|(a, b)| (a + b) * k)
                        .collect(),
                )
            }
            _ => candle_core::bail!("ddssm-residual-update: f32 or f64 with matching dtypes"),
        };
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _r: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = (grad * std::f64::consts::FRAC_1_SQRT_2)?;
        Ok((Some(g.clone()), Some(g)))
    }
}
