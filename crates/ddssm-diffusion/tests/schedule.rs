//! Noise-schedule identities and the golden table of the paper's schedule.

use std::path::PathBuf;

use ddssm_diffusion::{
    few_step_levels, BetaSchedule, EdmCoefficients, NoiseSchedule, NoiseScheduleConfig,
    ReverseVariance,
};

fn paper() -> NoiseSchedule {
    NoiseScheduleConfig::default().build().unwrap()
}

fn cosine() -> NoiseSchedule {
    NoiseScheduleConfig {
        num_steps: 128,
        betas: BetaSchedule::Cosine {
            offset: 0.008,
            max_beta: 0.999,
        },
        sigma_data: 1.0,
        ..Default::default()
    }
    .build()
    .unwrap()
}

#[test]
fn default_is_the_scaled_linear_schedule_with_k_128() {
    let s = paper();
    assert_eq!(s.num_steps(), 128);
    assert!((s.beta[0] - 0.1 / 128.0).abs() < 1e-15);
    assert!((s.beta[127] - 20.0 / 128.0).abs() < 1e-15);
    // z^K ≈ N(0, I): ᾱ_K ≈ 2e-5 (the unscaled DDPM range would leave ≈ 0.27).
    let ab = s.alpha_bar_final();
    assert!(ab > 1e-5 && ab < 4e-5, "ᾱ_K = {ab}");
    let unscaled = NoiseScheduleConfig {
        num_steps: 128,
        betas: BetaSchedule::Linear {
            beta_start: Some(1e-4),
            beta_end: Some(0.02),
        },
        sigma_data: 1.0,
        ..Default::default()
    }
    .build()
    .unwrap();
    assert!(
        (unscaled.alpha_bar_final() - 0.27).abs() < 0.01,
        "{}",
        unscaled.alpha_bar_final()
    );
}

#[test]
fn derived_quantities_satisfy_their_definitions() {
    for s in [paper(), cosine()] {
        let mut prod = 1.0;
        let mut prev_sigma = 0.0;
        for i in 0..s.num_steps() {
            assert!((s.alpha[i] - (1.0 - s.beta[i])).abs() < 1e-15);
            prod *= s.alpha[i];
            assert!((s.alpha_bar[i] - prod).abs() <= 1e-14 * prod.max(1e-300));
            // Eq. (36).
            assert!((s.sigma[i] - ((1.0 - prod) / prod).sqrt()).abs() <= 1e-12 * s.sigma[i]);
            assert!(s.sigma[i] > prev_sigma, "σ_k must increase");
            prev_sigma = s.sigma[i];
            assert!(s.beta_tilde[i] <= s.beta[i] + 1e-15);
            // Eq. (42) = Eq. (43) = Eq. (44).
            let c = EdmCoefficients::at_sigma(s.sigma[i]);
            let eq42 = s.w[i] * c.c_out * c.c_out / (s.sigma[i] * s.sigma[i]);
            let eq43 = s.w[i] * s.alpha_bar[i];
            let eq44 = s.beta[i] * s.alpha_bar[i] / (2.0 * s.alpha[i] * (1.0 - s.alpha_bar[i]));
            assert!(
                (eq42 - eq44).abs() <= 1e-12 * eq44,
                "k={} {eq42} {eq44}",
                i + 1
            );
            assert!((eq43 - eq44).abs() <= 1e-12 * eq44);
            assert!((s.w_tilde[i] - eq44).abs() <= 1e-12 * eq44);
        }
        assert_eq!(s.beta_tilde[0], 0.0);
        // w̃_1 = ½ exactly (ᾱ_1 = α_1).
        assert!((s.w_tilde[0] - 0.5).abs() < 1e-12);
    }
}

#[test]
fn edm_coefficients_match_karras_table_1() {
    for sigma in [0.01, 0.5, 1.0, 3.0, 200.0] {
        let c = EdmCoefficients::at_sigma(sigma);
        assert!((c.c_skip - 1.0 / (sigma * sigma + 1.0)).abs() < 1e-15);
        assert!((c.c_out - sigma / (sigma * sigma + 1.0).sqrt()).abs() < 1e-15);
        assert!((c.c_in - 1.0 / (sigma * sigma + 1.0).sqrt()).abs() < 1e-15);
        assert!((c.c_noise - 0.25 * sigma.ln()).abs() < 1e-15);
        // c_skip + c_out²... the EDM identity c_skip·σ² + ... : c_out² + c_skip = 1 for σ_data = 1.
        assert!((c.c_out * c.c_out + c.c_skip - 1.0).abs() < 1e-14);
    }
}

/// The golden table of the paper's schedule (K = 128, scaled linear range). Regenerate with
/// `UPDATE_GOLDEN=1 cargo test -p ddssm-diffusion --test schedule` only after a deliberate change.
#[test]
fn paper_schedule_matches_the_golden_table() {
    let s = paper();
    let mut text = String::from("# k beta alpha_bar sigma beta_tilde w w_tilde\n");
    for i in 0..s.num_steps() {
        text.push_str(&format!(
            "{} {:.12e} {:.12e} {:.12e} {:.12e} {:.12e} {:.12e}\n",
            i + 1,
            s.beta[i],
            s.alpha_bar[i],
            s.sigma[i],
            s.beta_tilde[i],
            s.w[i],
            s.w_tilde[i]
        ));
    }
    text.push_str(&format!(
        "# bound_constant_per_dim {:.12e}\n",
        s.bound_constant_per_dim()
    ));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/linear_k128.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden =
        std::fs::read_to_string(&path).expect("golden file exists (UPDATE_GOLDEN=1 writes it)");
    let nums = |t: &str| -> Vec<f64> {
        t.split_whitespace()
            .filter_map(|w| w.parse::<f64>().ok())
            .collect()
    };
    let (got, want) = (nums(&text), nums(&golden));
    assert_eq!(got.len(), want.len(), "table length changed");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-10 * w.abs().max(1e-300),
            "{g} vs golden {w}"
        );
    }
}

#[test]
fn few_step_levels_descend_from_k_to_1_without_repeats() {
    let s = paper();
    for steps in [2, 5, 10, 18, 40, 127] {
        let l = few_step_levels(&s, steps);
        assert_eq!(l[0], 128);
        assert_eq!(*l.last().unwrap(), 1);
        assert!(l.windows(2).all(|w| w[0] > w[1]), "{steps}: {l:?}");
        assert!(l.len() <= steps);
    }
    assert_eq!(few_step_levels(&s, 500).len(), 128);
}

#[test]
fn bad_configs_name_the_field() {
    let err = NoiseScheduleConfig {
        num_steps: 1,
        betas: BetaSchedule::default(),
        sigma_data: 1.0,
        ..Default::default()
    }
    .build()
    .unwrap_err();
    assert!(err.to_string().contains("num_steps"), "{err}");
    let err = NoiseScheduleConfig {
        num_steps: 10,
        betas: BetaSchedule::Linear {
            beta_start: Some(0.5),
            beta_end: Some(0.1),
        },
        sigma_data: 1.0,
        ..Default::default()
    }
    .build()
    .unwrap_err();
    assert!(err.to_string().contains("beta_end"), "{err}");
    let err = NoiseScheduleConfig {
        sigma_data: 0.0,
        ..Default::default()
    }
    .build()
    .unwrap_err();
    assert!(err.to_string().contains("sigma_data"), "{err}");
    let err = toml::from_str::<NoiseScheduleConfig>(
        "num_steps = 128\n[betas]\nkind = \"linear\"\nbeta_begin = 0.1\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("beta_begin"), "{err}");
    let err =
        toml::from_str::<NoiseScheduleConfig>("num_steps = 128\n[betas]\nkind = \"quadratic\"\n")
            .unwrap_err();
    assert!(
        err.to_string().contains("linear") && err.to_string().contains("cosine"),
        "{err}"
    );
    let ok = toml::from_str::<NoiseScheduleConfig>("num_steps = 64\n").unwrap();
    assert_eq!(ok.betas, BetaSchedule::default());
}

/// The reverse variance `β̃` (not in the paper): `σ_k² = β̃_k` for `k ≥ 2` and `β_1` at `k = 1`;
/// the weights are Eq. (32)'s `β_k²/(2σ_k²α_k(1 − ᾱ_k))` and Eq. (42)'s `w_k c_out²/σ_k²` (checked
/// for both σ_data), the bound's variance terms vanish, leaving `½ ln(2π β_1)`; the paper's
/// config does not write the field (its golden table, above, pins its values).
#[test]
fn the_beta_tilde_bound_has_eq_32_weights_and_no_variance_terms() {
    for sigma_data in [1.0, 4.0] {
        let build = |reverse_variance| {
            NoiseScheduleConfig {
                sigma_data,
                reverse_variance,
                ..Default::default()
            }
            .build()
            .unwrap()
        };
        let (b, t) = (
            build(ReverseVariance::Beta),
            build(ReverseVariance::BetaTilde),
        );
        assert_eq!(b.reverse_variance, b.beta);
        assert_eq!(t.reverse_variance[0], t.beta[0]);
        assert_eq!(t.reverse_variance[1..], t.beta_tilde[1..]);
        for i in 0..t.num_steps() {
            let var = t.reverse_variance[i];
            let eq32 = t.beta[i] * t.beta[i] / (2.0 * var * t.alpha[i] * (1.0 - t.alpha_bar[i]));
            assert!((t.w[i] - eq32).abs() <= 1e-12 * eq32, "w at k = {}", i + 1);
            let c = t.preconditioning(i + 1);
            let eq42 = t.w[i] * c.c_out * c.c_out / (t.sigma[i] * t.sigma[i]);
            assert!(
                (t.w_tilde[i] - eq42).abs() <= 1e-9 * eq42,
                "w̃ at k = {}",
                i + 1
            );
            // β̃_k < β_k for k ≥ 2, so every level but the first weighs more.
            if i > 0 {
                assert!(t.w[i] > b.w[i], "k = {}", i + 1);
            } else {
                assert_eq!(t.w[0], b.w[0]);
            }
        }
        let normaliser = 0.5 * (2.0 * std::f64::consts::PI * t.beta[0]).ln();
        assert_eq!(t.bound_constant_per_dim(), normaliser);
        assert!(b.bound_constant_per_dim() > normaliser);
    }
    let written = toml::to_string(&NoiseScheduleConfig::default()).unwrap();
    assert!(!written.contains("reverse_variance"), "{written}");
    let tilde: NoiseScheduleConfig =
        toml::from_str("num_steps = 128\nreverse_variance = \"beta_tilde\"").unwrap();
    assert_eq!(tilde.reverse_variance, ReverseVariance::BetaTilde);
    let err =
        toml::from_str::<NoiseScheduleConfig>("num_steps = 128\nreverse_variance = \"beta_hat\"")
            .unwrap_err()
            .to_string();
    assert!(err.contains("beta_tilde"), "{err}");
}
