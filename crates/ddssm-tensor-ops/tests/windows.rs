//! History windows and padding masks for j = 1, 2, 3 with T both smaller and larger than j.

use candle_core::{DType, Device, Tensor};
use ddssm_tensor_ops::{history_windows, reverse_time, WindowKind};

/// z[b, t, m] = 100·b + 10·(t + 1) + m, so every entry names its own position (time is 1-based
/// as in the paper, and a zero can only be padding).
fn ramp(b: usize, t: usize, m: usize) -> Tensor {
    let v: Vec<f32> = (0..b)
        .flat_map(|bb| {
            (0..t).flat_map(move |tt| (0..m).map(move |mm| (100 * bb + 10 * (tt + 1) + mm) as f32))
        })
        .collect();
    Tensor::from_vec(v, (b, t, m), &Device::Cpu).unwrap()
}

fn check(j: usize, t_len: usize, kind: WindowKind) {
    let (b, m) = (2, 2);
    let z = ramp(b, t_len, m);
    let w = history_windows(&z, j, kind).unwrap();
    assert_eq!(w.values.dims(), &[b, t_len, j, m]);
    assert_eq!(w.valid.dims(), &[t_len, j]);
    let flat = w.values.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let valid = w.valid.to_vec2::<f32>().unwrap();
    for bb in 0..b {
        for t in 0..t_len {
            for i in 0..j {
                // The (0-based) time of slot i.
                let src = match kind {
                    WindowKind::Previous => t as i64 - j as i64 + i as i64,
                    WindowKind::Current => t as i64 - j as i64 + 1 + i as i64,
                };
                let real = src >= 0;
                assert_eq!(
                    valid[t][i],
                    if real { 1.0 } else { 0.0 },
                    "mask j={j} T={t_len} t={t} i={i}"
                );
                for mm in 0..m {
                    let got = flat[((bb * t_len + t) * j + i) * m + mm];
                    let want = if real {
                        (100 * bb + 10 * (src as usize + 1) + mm) as f32
                    } else {
                        0.0
                    };
                    assert_eq!(
                        got, want,
                        "{kind:?} j={j} T={t_len} b={bb} t={t} i={i} m={mm}"
                    );
                }
            }
        }
    }
}

#[test]
fn windows_and_masks_for_small_and_large_t() {
    for j in 1..=3 {
        for t_len in [1, 2, 3, 5, 8] {
            check(j, t_len, WindowKind::Previous);
            check(j, t_len, WindowKind::Current);
        }
    }
}

#[test]
fn previous_window_of_j1_is_the_shifted_sequence() {
    let z = ramp(1, 4, 1);
    let w = history_windows(&z, 1, WindowKind::Previous).unwrap();
    let v = w.values.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(v, vec![0.0, 10.0, 20.0, 30.0]);
    let w = history_windows(&z, 1, WindowKind::Current).unwrap();
    let v = w.values.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(v, vec![10.0, 20.0, 30.0, 40.0]);
}

#[test]
fn bad_inputs_are_errors() {
    let z = ramp(1, 4, 1);
    assert!(history_windows(&z, 0, WindowKind::Previous).is_err());
    assert!(history_windows(&z.squeeze(0).unwrap(), 1, WindowKind::Previous).is_err());
}

#[test]
fn windows_follow_the_input_dtype() {
    let z = ramp(1, 3, 1).to_dtype(DType::F64).unwrap();
    let w = history_windows(&z, 2, WindowKind::Current).unwrap();
    assert_eq!(w.values.dtype(), DType::F64);
    assert_eq!(w.valid.dtype(), DType::F64);
}

#[test]
fn time_reversal_reverses_and_is_an_involution() {
    let z = ramp(2, 5, 3);
    let r = reverse_time(&z, 1).unwrap();
    let a = z.to_vec3::<f32>().unwrap();
    let b = r.to_vec3::<f32>().unwrap();
    for bb in 0..2 {
        for t in 0..5 {
            assert_eq!(a[bb][t], b[bb][4 - t]);
        }
    }
    let back = reverse_time(&r, 1).unwrap().to_vec3::<f32>().unwrap();
    assert_eq!(back, a);
    // Length-1 axes are returned unchanged.
    let one = ramp(1, 1, 2);
    assert_eq!(
        reverse_time(&one, 1).unwrap().to_vec3::<f32>().unwrap(),
        one.to_vec3::<f32>().unwrap()
    );
}
