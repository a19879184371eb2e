//! The gated activation with the side information added inside (`gated_with_side`), and the
//! sums and reductions its backward pass needs.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};

use super::gate::{gated_fwd, Gate, GatedGradOp};
use super::*;
use crate::{Error, Result};

/// CSDI's gated activation after adding the side information's projections:
/// `pre = y + temporal[b, l] + static[b, h]`, `out = σ(pre[…, :C]) ⊙ tanh(pre[…, C:])`, with `y`
/// `[B, H, L, 2C]`, `temporal` `[B, L, 2C]` (broadcast over `H`) and `static_` `[B, H, 2C]`
/// (broadcast over `L`); either may be absent. One graph node instead of two broadcast additions
/// (whose backward passes are strided reductions) and the activation.
pub fn gated_with_side(
    y: &Tensor,
    temporal: Option<&Tensor>,
    static_: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, h, l, c2) = y.dims4()?;
    if temporal.is_none() && static_.is_none() {
        return gated_activation(y);
    }
    let ok_t = temporal.is_none_or(|t| t.dims() == [b, l, c2]);
    let ok_s = static_.is_none_or(|s| s.dims() == [b, h, c2]);
    if !ok_t || !ok_s {
        return Err(Error::Shape {
            what: "gated activation side information",
            expected: format!("temporal [{b}, {l}, {c2}], static [{b}, {h}, {c2}]"),
            got: [
                temporal.map_or(&[][..], |t| t.dims()),
                static_.map_or(&[][..], |s| s.dims()),
            ]
            .concat(),
        });
    }
    if supported(y) {
        let zeros = || Tensor::zeros((b, 1, c2), y.dtype(), y.device());
        let t = match temporal {
            Some(t) => t.contiguous()?,
            None => zeros()?,
        };
        let s = match static_ {
            Some(s) => s.contiguous()?,
            None => zeros()?,
        };
        return Ok(y.contiguous()?.apply_op3(&t, &s, GatedSideOp)?);
    }
    let mut pre = y.clone();
    if let Some(t) = temporal {
        pre = pre.broadcast_add(&t.unsqueeze(1)?)?;
    }
    if let Some(s) = static_ {
        pre = pre.broadcast_add(&s.unsqueeze(2)?)?;
    }
    gated_activation(&pre)
}

/// `y + t + s` with the broadcasting of [`gated_with_side`], as a plain buffer.
#[inline(always)]
fn side_sum<T: Copy + std::ops::Add<Output = T>>(
    y: &[T],
    t: &[T],
    s: &[T],
    (b, h, l, c2): (usize, usize, usize, usize),
    (tl, sh): (usize, usize),
) -> Vec<T> {
    let mut out = Vec::with_capacity(y.len());
    for bb in 0..b {
        for hh in 0..h {
            let so = (bb * sh + if sh == 1 { 0 } else { hh }) * c2;
            for ll in 0..l {
                let to = (bb * tl + if tl == 1 { 0 } else { ll }) * c2;
                let yo = ((bb * h + hh) * l + ll) * c2;
                out.extend(
                    y[yo..yo + c2]
                        .iter()
                        .zip(&t[to..to + c2])
                        .zip(&s[so..so + c2])
                        .map(|((&a, &b), &c)| a + b + c),
                );
            }
        }
    }
    out
}

struct GatedSideOp;

impl CustomOp3 for GatedSideOp {
    fn name(&self) -> &'static str {
        "ddssm-gated-side"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        ly: &Layout,
        t: &CpuStorage,
        lt: &Layout,
        s: &CpuStorage,
        ls: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, l, c2) = ly.shape().dims4()?;
        let out = side_kernel(
            self.name(),
            [(y, ly), (t, lt), (s, ls)],
            gated_side_f32,
            gated_side::<f64>,
        )?;
        Ok((out, Shape::from((b, h, l, c2 / 2))))
    }

    fn bwd(
        &self,
        y: &Tensor,
        t: &Tensor,
        s: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let pre = y.apply_op3_no_bwd(t, s, &SideSumOp)?;
        let dpre = pre.apply_op2_no_bwd(&grad.contiguous()?, &GatedGradOp)?;
        let dt = dpre.apply_op1_no_bwd(&SideReduceOp {
            keep: 2,
            broadcast: t.dims()[1] == 1,
        })?;
        let ds = dpre.apply_op1_no_bwd(&SideReduceOp {
            keep: 1,
            broadcast: s.dims()[1] == 1,
        })?;
        Ok((Some(dpre), Some(dt), Some(ds)))
    }
}

/// `y + t + s` as a tensor (the backward pass recomputes the pre-activation).
struct SideSumOp;

impl CustomOp3 for SideSumOp {
    fn name(&self) -> &'static str {
        "ddssm-side-sum"
    }

    fn cpu_fwd(
        &self,
        y: &CpuStorage,
        ly: &Layout,
        t: &CpuStorage,
        lt: &Layout,
        s: &CpuStorage,
        ls: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = side_kernel(
            self.name(),
            [(y, ly), (t, lt), (s, ls)],
            side_sum_f32,
            side_sum::<f64>,
        )?;
        Ok((out, ly.shape().clone()))
    }
}

/// A kernel of `(y, t, s)` shaped as [`gated_with_side`] shapes them: `[B, H, L, 2C]`, and the
/// side inputs' middle dimensions.
type SideKernel<T> = fn(&[T], &[T], &[T], (usize, usize, usize, usize), (usize, usize)) -> Vec<T>;

/// Runs the `f32` or `f64` kernel of the op `name` on the storages `[y, t, s]` with their layouts
/// (`y` `[B, H, L, 2C]`, `t` `[B, L or 1, 2C]`, `s` `[B, H or 1, 2C]`).
fn side_kernel(
    name: &str,
    [(y, ly), (t, lt), (s, ls)]: [(&CpuStorage, &Layout); 3],
    f32_kernel: SideKernel<f32>,
    f64_kernel: SideKernel<f64>,
) -> candle_core::Result<CpuStorage> {
    let dims = ly.shape().dims4()?;
    let bc = (lt.dims()[1], ls.dims()[1]);
    Ok(match (y, t, s) {
        (CpuStorage::F32(y), CpuStorage::F32(t), CpuStorage::F32(s)) => {
            CpuStorage::F32(f32_kernel(
                contiguous_slice(y, ly)?,
                contiguous_slice(t, lt)?,
                contiguous_slice(s, ls)?,
                dims,
                bc,
            ))
        }
        (CpuStorage::F64(y), CpuStorage::F64(t), CpuStorage::F64(s)) => {
            CpuStorage::F64(f64_kernel(
                contiguous_slice(y, ly)?,
                contiguous_slice(t, lt)?,
                contiguous_slice(s, ls)?,
                dims,
                bc,
            ))
        }
        _ => candle_core::bail!("{name}: f32 or f64 with matching dtypes"),
    })
}

/// Sums `[B, H, L, C']` down to `[B, L, C']` (`keep = 2`: over `H`) or `[B, H, C']` (`keep = 1`:
/// over `L`); with `broadcast`, over both, to `[B, 1, C']`.
struct SideReduceOp {
    keep: usize,
    broadcast: bool,
}

#[inline(always)]
fn side_reduce<T: Copy + Default + std::ops::AddAssign>(
    d: &[T],
    (b, h, l, c): (usize, usize, usize, usize),
    keep: usize,
    broadcast: bool,
) -> Vec<T> {
    let kept = if broadcast {
        1
    } else if keep == 2 {
        l
    } else {
        h
    };
    let mut out = vec![T::default(); b * kept * c];
    for bb in 0..b {
        for hh in 0..h {
            for ll in 0..l {
                let k = if broadcast {
                    0
                } else if keep == 2 {
                    ll
                } else {
                    hh
                };
                let src = ((bb * h + hh) * l + ll) * c;
                let dst = (bb * kept + k) * c;
                for (o, &v) in out[dst..dst + c].iter_mut().zip(&d[src..src + c]) {
                    *o += v;
                }
            }
        }
    }
    out
}

impl CustomOp1 for SideReduceOp {
    fn name(&self) -> &'static str {
        "ddssm-side-reduce"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, len, c) = l.shape().dims4()?;
        let kept = if self.broadcast {
            1
        } else if self.keep == 2 {
            len
        } else {
            h
        };
        let dims = (b, h, len, c);
        let out = match s {
            CpuStorage::F32(v) => {
                let v = contiguous_slice(v, l)?;
                let (keep, broadcast) = (self.keep, self.broadcast);
                CpuStorage::F32(side_reduce_f32(v, dims, keep, broadcast))
            }
            CpuStorage::F64(v) => CpuStorage::F64(side_reduce(
                contiguous_slice(v, l)?,
                dims,
                self.keep,
                self.broadcast,
            )),
            _ => candle_core::bail!("ddssm-side-reduce: f32 or f64"),
        };
        Ok((out, Shape::from((b, kept, c))))
    }
}

/// `side_sum` then the gated activation, as one kernel.
#[inline(always)]
fn gated_side<T: Gate + std::ops::Add<Output = T>>(
    y: &[T],
    t: &[T],
    s: &[T],
    dims: (usize, usize, usize, usize),
    bc: (usize, usize),
) -> Vec<T> {
    gated_fwd(&side_sum(y, t, s, dims, bc), dims.3 / 2)
}

crate::simd::wide_f32! {
    fn gated_side_f32(
        y: &[f32],
        t: &[f32],
        s: &[f32],
        dims: (usize, usize, usize, usize),
        bc: (usize, usize),
    ) -> Vec<f32> = gated_side::<f32>;
}
crate::simd::wide_f32! {
    fn side_sum_f32(
        y: &[f32],
        t: &[f32],
        s: &[f32],
        dims: (usize, usize, usize, usize),
        bc: (usize, usize),
    ) -> Vec<f32> = side_sum::<f32>;
}
crate::simd::wide_f32! {
    fn side_reduce_f32(
        v: &[f32],
        dims: (usize, usize, usize, usize),
        keep: usize,
        broadcast: bool,
    ) -> Vec<f32> = side_reduce::<f32>;
}
