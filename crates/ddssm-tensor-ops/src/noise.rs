//! Seeded noise: one seed drives every random draw in ddssm.
//!
//! candle's CPU random number generator cannot be seeded (`Device::Cpu.set_seed` fails and
//! `Tensor::randn` is unseeded), so every draw in this project comes from a [`SeededNoise`]
//! instead. Its state is two integers — the seed and the number of draws made so far — so it can
//! be written into a checkpoint and restored exactly ([`NoiseState`]). Draw number `n` of seed `s`
//! is produced by a ChaCha generator (`StdRng`) seeded from a SplitMix64 hash of `(s, n)`, so the
//! numbers depend only on the seed and the order of the calls, never on timing or threads.
//!
//! Independent streams for independent purposes (data, initialisation, training noise) come from
//! [`SeededNoise::fork`], which derives a new seed from the parent seed and a label.

use candle_core::{DType, Device, Shape, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The complete state of a [`SeededNoise`]: enough to resume the exact same sequence of draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseState {
    /// The seed of the stream.
    pub seed: u64,
    /// How many draws (calls) the stream has made.
    pub draws: u64,
}

/// A seeded source of random tensors and numbers. See the module documentation.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    state: NoiseState,
}

/// SplitMix64's finaliser: a bijective, well-mixing hash of a 64-bit word.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a hash of a label, used to derive the seeds of forked streams.
fn label_hash(label: &str) -> u64 {
    label.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

impl SeededNoise {
    /// A new stream with this seed, at its first draw.
    pub fn new(seed: u64) -> Self {
        Self {
            state: NoiseState { seed, draws: 0 },
        }
    }

    /// Restores a stream from a saved [`NoiseState`].
    pub fn from_state(state: NoiseState) -> Self {
        Self { state }
    }

    /// The current state, to be saved for an exact resume.
    pub fn state(&self) -> NoiseState {
        self.state
    }

    /// The seed this stream was created with.
    pub fn seed(&self) -> u64 {
        self.state.seed
    }

    /// An independent stream whose seed is derived from this stream's seed and `label`. Forking
    /// does not advance this stream, and the same `(seed, label)` always gives the same child.
    pub fn fork(&self, label: &str) -> Self {
        Self::new(splitmix64(self.state.seed ^ splitmix64(label_hash(label))))
    }

    /// An independent stream seeded by this stream's next draw (which it consumes): for work
    /// split into pieces that may run in any order, one `split` per piece, taken in order.
    pub fn split(&mut self) -> Self {
        let key = splitmix64(
            splitmix64(self.state.seed ^ 0x5851_F42D_4C95_7F2D)
                ^ self.state.draws.wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        self.state.draws += 1;
        Self::new(key)
    }

    /// The generator for the next draw; advances the draw counter.
    pub fn next_rng(&mut self) -> StdRng {
        let key = splitmix64(
            splitmix64(self.state.seed) ^ self.state.draws.wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        self.state.draws += 1;
        StdRng::seed_from_u64(key)
    }

    /// A tensor of independent standard normal draws (f32 or f64) on `device`.
    pub fn randn<S: Into<Shape>>(
        &mut self,
        shape: S,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.elem_count();
        let mut rng = self.next_rng();
        let t = match dtype {
            DType::F64 => {
                let v: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
                Tensor::from_vec(v, shape, device)?
            }
            DType::F32 | DType::F16 | DType::BF16 => {
                let v: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
                Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?
            }
            other => {
                return Err(Error::InvalidArgument {
                    name: "dtype",
                    value: format!("{other:?}"),
                    allowed: "a floating-point dtype (f32, f64, f16, bf16)".into(),
                })
            }
        };
        Ok(t)
    }

    /// A tensor shaped like `like` (same shape, dtype and device) of standard normal draws.
    pub fn randn_like(&mut self, like: &Tensor) -> Result<Tensor> {
        self.randn(like.shape().clone(), like.dtype(), like.device())
    }

    /// A tensor of independent Uniform[0, 1) draws (f32 or f64) on `device`.
    pub fn rand_uniform<S: Into<Shape>>(
        &mut self,
        shape: S,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.elem_count();
        let mut rng = self.next_rng();
        let v: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
    }

    /// `n` integers drawn uniformly from `low..=high` (host memory: they usually index tables).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `low > high`.
    pub fn uniform_ints(&mut self, n: usize, low: u32, high: u32) -> Result<Vec<u32>> {
        if low > high {
            return Err(Error::InvalidArgument {
                name: "low..=high",
                value: format!("{low}..={high}"),
                allowed: "low <= high".into(),
            });
        }
        let mut rng = self.next_rng();
        Ok((0..n).map(|_| rng.random_range(low..=high)).collect())
    }

    /// `n` standard normal draws in host memory, as f64.
    pub fn normals(&mut self, n: usize) -> Vec<f64> {
        let mut rng = self.next_rng();
        (0..n).map(|_| rng.sample(StandardNormal)).collect()
    }

    /// `n` uniform draws on `[0, 1)` in host memory, as f64.
    pub fn uniform01(&mut self, n: usize) -> Vec<f64> {
        let mut rng = self.next_rng();
        (0..n).map(|_| rng.random::<f64>()).collect()
    }

    /// A random permutation of `0..n` (Fisher–Yates), e.g. for shuffling a data set.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut rng = self.next_rng();
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(seed: u64) -> Vec<f32> {
        let mut noise = SeededNoise::new(seed);
        let a = noise.randn((4, 3), DType::F32, &Device::Cpu).unwrap();
        let b = noise.randn(5, DType::F32, &Device::Cpu).unwrap();
        let mut v = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.extend(b.to_vec1::<f32>().unwrap());
        v
    }

    #[test]
    fn same_seed_gives_identical_tensors() {
        assert_eq!(draw(7), draw(7));
    }

    #[test]
    fn different_seeds_give_different_tensors() {
        let (a, b) = (draw(7), draw(8));
        assert_eq!(a.len(), b.len());
        assert!(
            a.iter().zip(&b).all(|(x, y)| x != y),
            "streams overlap: {a:?} {b:?}"
        );
    }

    #[test]
    fn consecutive_draws_differ() {
        let mut noise = SeededNoise::new(1);
        let a = noise.normals(8);
        let b = noise.normals(8);
        assert_ne!(a, b);
    }

    #[test]
    fn a_restored_state_continues_the_same_sequence() {
        let mut noise = SeededNoise::new(3);
        noise.normals(10);
        let saved = noise.state();
        let expected = noise.normals(10);
        let mut restored = SeededNoise::from_state(saved);
        assert_eq!(restored.normals(10), expected);
    }

    #[test]
    fn forks_are_deterministic_independent_and_do_not_advance_the_parent() {
        let parent = SeededNoise::new(11);
        let before = parent.state();
        let mut a1 = parent.fork("data");
        let mut a2 = parent.fork("data");
        let mut b = parent.fork("init");
        assert_eq!(parent.state(), before);
        let (x1, x2, y) = (a1.normals(6), a2.normals(6), b.normals(6));
        assert_eq!(x1, x2);
        assert_ne!(x1, y);
    }

    #[test]
    fn splits_are_deterministic_distinct_and_advance_the_parent() {
        let mut p1 = SeededNoise::new(11);
        let mut p2 = SeededNoise::new(11);
        let (mut a1, mut b1) = (p1.split(), p1.split());
        let (mut a2, mut b2) = (p2.split(), p2.split());
        assert_eq!(p1.state().draws, 2);
        let (x1, y1) = (a1.normals(6), b1.normals(6));
        assert_eq!((x1.clone(), y1.clone()), (a2.normals(6), b2.normals(6)));
        assert_ne!(x1, y1);
        // Neither the parent's next draw nor a fork repeats a split stream.
        assert_ne!(p1.normals(6), x1);
        assert_ne!(SeededNoise::new(11).fork("a").normals(6), x1);
    }

    #[test]
    fn uniform_ints_stay_in_range_and_hit_both_ends() {
        let mut noise = SeededNoise::new(5);
        let v = noise.uniform_ints(2000, 1, 4).unwrap();
        assert!(v.iter().all(|&k| (1..=4).contains(&k)));
        assert!(v.contains(&1) && v.contains(&4));
        assert!(noise.uniform_ints(1, 3, 2).is_err());
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = SeededNoise::new(2).permutation(100);
        assert_ne!(p, (0..100).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn randn_has_unit_moments() {
        // 40 000 draws: the mean's standard error is 1/200 = 0.005; the variance's is
        // sqrt(2/40 000) ≈ 0.0071. Tolerances are 4 standard errors.
        let mut noise = SeededNoise::new(9);
        let v = noise.normals(40_000);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 4.0 * 0.005, "mean {mean}");
        assert!((var - 1.0).abs() < 4.0 * 0.0071, "var {var}");
    }
}
