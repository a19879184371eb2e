//! The assembled ELBO (Eq. 46, 53) against an independent computation, term by term.
//!
//! With the single-sample estimator (`Estimator::Sample`) the negative ELBO of a sequence is,
//! averaged over its `S` encoder trajectories `z ~ q(z | x)`,
//!
//! `−log p(x | z) + log q(z | x) − log p_η(z_{1:j} | aux) + KL(q_Φ(aux | z_{1:j}) ‖ N(0, I))
//!  + Σ_{t>j} ℓ_ψ(z_t | z_{t−j:t−1}, u_{t−j:t})  (+ the diffusion bound's constant)`,
//!
//! where ℓ_ψ is the transition's term (the DKF's `−log p_ψ(z_t | …)`, the DDSSM's Eq. 52 bound).
//! This test replays the model's noise stream in its documented order (encoder, VHP auxiliary
//! latents, transition), takes each network's output distribution (means and log-variances), and
//! writes the rest out in plain f64 loops: every Gaussian log-density, the mask over observed
//! entries, which steps belong to the initial states and which to the transition, the KL to the
//! standard normal, the history windows and covariate windows of every transition target, the
//! repetition of covariates and statics over the `S` trajectories, and the average over them. The
//! transition's own term comes from `Transition::loss` on those hand-built windows (the diffusion
//! loss itself is checked against closed forms in `ddssm-diffusion`). Both models, with
//! covariates, static covariates and missing values, `j = 2`, `M = 2`, `D = 3`.
//!
//! The per-trajectory terms (`ElboTerms::trajectory_distortion` and its siblings) and the
//! importance-weighted objective built on them are checked against the same replay.
//!
//! Tolerance: everything runs in f64, the two computations differ only in summation order:
//! relative 1e-10.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ddssm_model::{Batch, ElboOptions, Estimator, Model, TransitionConfig, TransitionInput};
use ddssm_tensor_ops::{DiagGaussian, SeededNoise};

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// `log N(x; μ, exp(logvar))`, written out.
fn log_normal(x: f64, mean: f64, logvar: f64) -> f64 {
    -0.5 * (LN_2PI + logvar + (x - mean).powi(2) / logvar.exp())
}

fn v3(t: &Tensor) -> Vec<Vec<Vec<f64>>> {
    t.to_dtype(DType::F64).unwrap().to_vec3().unwrap()
}

fn v2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

fn v1(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

/// `S` copies of `t`'s rows, copy `s` of row `b` at `s·B + b`.
fn repeat(t: &Tensor, s: usize) -> Tensor {
    Tensor::cat(&vec![t.clone(); s], 0).unwrap()
}

fn check(transition: TransitionConfig) -> Result<()> {
    let dev = Device::Cpu;
    let config = common::general_config(transition);
    let (j, m, d) = (config.order, config.latent_dim, config.obs_dim);
    let (b, t_len, s) = (3, 6, 2);
    let n = s * b;
    let model = Model::new(&config, 4, DType::F64, &dev)?;
    // At zero the denoiser's last layer would hide its conditioning from the transition term.
    common::randomise_zero_parameters(&model, 5)?;
    let mut data_noise = SeededNoise::new(12);
    let x = data_noise.randn((b, t_len, d), DType::F64, &dev)?;
    let u = data_noise.randn((b, t_len, 2), DType::F64, &dev)?;
    let statics = data_noise.randn((b, 2), DType::F64, &dev)?;
    let mask_v: Vec<f64> = (0..b * t_len * d)
        .map(|i| if i % 4 == 1 { 0.0 } else { 1.0 })
        .collect();
    let mask = Tensor::from_vec(mask_v.clone(), (b, t_len, d), &dev)?;
    let batch = Batch {
        x: x.clone(),
        mask: Some(mask.clone()),
        covariates: Some(u.clone()),
        statics: Some(statics.clone()),
    };
    let options = ElboOptions {
        samples: s,
        estimator: Estimator::Sample,
        ..ElboOptions::default()
    };
    let seed = 31;
    let terms = model.elbo(&batch, &options, &mut SeededNoise::new(seed))?;

    // The replay: the same draws, in the model's documented order.
    let mut noise = SeededNoise::new(seed);
    let inputs = model
        .encoder()
        .prepare(&x, Some(&mask), Some(&u), Some(&statics))?;
    let traj = model
        .encoder()
        .sample(&inputs, s, &mut noise, model.residual_prior())?;
    let z = v3(&traj.z); // [N, T, M]
    let (q_mean, q_logvar) = (v3(traj.posterior.mean()), v3(traj.posterior.logvar()));
    let emission =
        model
            .decoder()
            .forward(&traj.z, Some(&repeat(&u, s)), Some(&repeat(&statics, s)))?;
    let (x_mean, x_logvar) = (v3(emission.mean()), v3(emission.logvar()));
    let z_init = traj.z.narrow(1, 0, j)?;
    let u_init = repeat(&u, s).narrow(1, 0, j)?;
    let aux_q = model.vhp().posterior(&z_init, Some(&u_init))?; // over [N, j·M]
    let aux = aux_q.sample(&mut noise)?.reshape((n, j, m))?;
    let prior = model.vhp().prior(&aux, &z_init, Some(&u_init))?; // over [N, j, M]
    let (p_mean, p_logvar) = (v3(prior.mean()), v3(prior.logvar()));
    let (a_mean, a_logvar) = (v2(aux_q.mean()), v2(aux_q.logvar()));

    // Transition pairs by hand: row r·(T − j) + (t − j) for trajectory r and 0-based step t ≥ j.
    let xv = v3(&x);
    let uv = v3(&u);
    let (mut hist, mut times, mut covs, mut target, mut tq_mean, mut tq_logvar) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in 0..n {
        for t in j..t_len {
            for step in &z[r][t - j..t] {
                hist.extend_from_slice(step);
            }
            // 1-based absolute times t − j … t of the 1-based target t + 1.
            times.extend((t - j..=t).map(|k| (k + 1) as f64));
            for step in &uv[r % b][t - j..=t] {
                covs.extend_from_slice(step);
            }
            target.extend_from_slice(&z[r][t]);
            tq_mean.extend_from_slice(&q_mean[r][t]);
            tq_logvar.extend_from_slice(&q_logvar[r][t]);
        }
    }
    let rows = n * (t_len - j);
    let input = TransitionInput {
        history: Tensor::from_vec(hist, (rows, j, m), &dev)?,
        times: Tensor::from_vec(times, (rows, j + 1), &dev)?,
        covariates: Some(Tensor::from_vec(covs, (rows, j + 1, 2), &dev)?),
    };
    let posterior = DiagGaussian::new(
        Tensor::from_vec(tq_mean, (rows, m), &dev)?,
        Tensor::from_vec(tq_logvar, (rows, m), &dev)?,
    )?;
    let target = Tensor::from_vec(target, (rows, m), &dev)?;
    let trans =
        model
            .transition()
            .loss(&input, &target, &posterior, Estimator::Sample, &mut noise)?;
    let trans_rows = v1(&trans.objective);

    // Each term per trajectory, then the average over the S trajectories of each sequence.
    // expect[b]: recon, init log q, vhp, transition, log q; per_trajectory[r]: trajectory r's
    // distortion, rate (with the constant) and transition term, r = s·B + b.
    let mut expect = vec![[0.0f64; 5]; b];
    let mut per_trajectory = vec![[0.0f64; 3]; n];
    for r in 0..n {
        let seq = r % b;
        let mut recon = 0.0;
        for t in 0..t_len {
            for k in 0..d {
                if mask_v[(seq * t_len + t) * d + k] == 1.0 {
                    recon -= log_normal(xv[seq][t][k], x_mean[r][t][k], x_logvar[r][t][k]);
                }
            }
        }
        let log_q = |t: usize| -> f64 {
            (0..m)
                .map(|k| log_normal(z[r][t][k], q_mean[r][t][k], q_logvar[r][t][k]))
                .sum()
        };
        let init_log_q: f64 = (0..j).map(log_q).sum();
        let rest_log_q: f64 = (j..t_len).map(log_q).sum();
        let mut vhp = 0.0;
        for t in 0..j {
            for k in 0..m {
                vhp -= log_normal(z[r][t][k], p_mean[r][t][k], p_logvar[r][t][k]);
            }
        }
        for (mu, lv) in a_mean[r].iter().zip(&a_logvar[r]) {
            vhp += 0.5 * (mu * mu + lv.exp() - 1.0 - lv);
        }
        let steps = t_len - j;
        let transition: f64 = trans_rows[r * steps..(r + 1) * steps].iter().sum();
        let constant = trans.constant * steps as f64;
        per_trajectory[r] = [
            recon,
            init_log_q + vhp + transition + rest_log_q + constant,
            transition,
        ];
        for (e, v) in expect[seq]
            .iter_mut()
            .zip([recon, init_log_q, vhp, transition, rest_log_q])
        {
            *e += v / s as f64;
        }
    }
    let got = [
        v1(&terms.recon),
        v1(&terms.init_entropy),
        v1(&terms.vhp),
        v1(&terms.transition),
        v1(&terms.entropy),
    ];
    let negative = v1(&terms.negative_elbo()?);
    let names = ["recon", "init log q", "vhp", "transition", "log q"];
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-10 * (1.0 + b.abs());
    for seq in 0..b {
        for (k, name) in names.iter().enumerate() {
            assert!(
                close(got[k][seq], expect[seq][k]),
                "{}: sequence {seq}, {name}: model {} vs independent {}",
                config.transition.kind(),
                got[k][seq],
                expect[seq][k]
            );
        }
        let total: f64 = expect[seq].iter().sum::<f64>() + trans.constant * (t_len - j) as f64;
        assert!(
            close(negative[seq], total),
            "{}: sequence {seq}: −ELBO {} vs independent {total}",
            config.transition.kind(),
            negative[seq]
        );
    }
    // The per-trajectory terms, and the importance-weighted objective built on them:
    // −mean_b log (1/S) Σ_s exp(−(D_s + λ R_s)), written out.
    let lambda = 0.7;
    let per = [
        v2(&terms.trajectory_distortion),
        v2(&terms.trajectory_rate),
        v2(&terms.trajectory_transition),
    ];
    let mut iwae = 0.0;
    for seq in 0..b {
        let log_w: Vec<f64> = (0..s)
            .map(|i| {
                let [d, r, _] = per_trajectory[i * b + seq];
                -(d + lambda * r)
            })
            .collect();
        let top = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mean_w = log_w.iter().map(|l| (l - top).exp()).sum::<f64>() / s as f64;
        iwae -= (top + mean_w.ln()) / b as f64;
        for i in 0..s {
            for (k, name) in ["distortion", "rate", "transition"].iter().enumerate() {
                assert!(
                    close(per[k][i][seq], per_trajectory[i * b + seq][k]),
                    "{}: trajectory {i} of sequence {seq}, {name}: model {} vs independent {}",
                    config.transition.kind(),
                    per[k][i][seq],
                    per_trajectory[i * b + seq][k]
                );
            }
        }
    }
    let got = terms
        .importance_weighted_objective(lambda)?
        .to_scalar::<f64>()?;
    assert!(
        close(got, iwae),
        "{}: importance-weighted objective {got} vs independent {iwae}",
        config.transition.kind()
    );
    Ok(())
}

#[test]
fn dkf_negative_elbo_matches_an_independent_computation() -> Result<()> {
    check(TransitionConfig::Gaussian(Default::default()))
}

#[test]
fn ddssm_negative_elbo_matches_an_independent_computation() -> Result<()> {
    check(TransitionConfig::Diffusion(Default::default()))
}
