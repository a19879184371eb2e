//! The training options that are not in the paper (objective, entropy weight, encoder input
//! noise, transition draw scale, gradient clipping): optional in a config, validated with their field's name, and
//! wired into the loop.

mod common;

use anyhow::Result;
use candle_core::{DType, Device};
use ddssm_model::{Estimator, Model};
use ddssm_train::{
    accumulated_gradients, clip_scale, GroupBounds, GroupNorms, Objective, TrainConfig,
};

use common::{quiet_parameters, quiet_run, small, small_quiet};

/// The importance-weighted objective is optional (the ELBO when absent, and then not written
/// back) and reaches the loop: on the same draws its value lies below the ELBO's average over
/// the same trajectories (Jensen, strictly since the weights differ), its step reports the
/// weights' effective sample size, and its steps end elsewhere.
#[test]
fn the_importance_weighted_objective_reaches_the_loop() -> Result<()> {
    let (mc, tc, data) = small();
    let written = serde_json::to_string(&tc)?;
    assert!(!written.contains("objective"), "{written}");
    let elbo = TrainConfig {
        samples: 4,
        estimator: Estimator::Sample,
        steps: 2,
        validate_every: 0,
        checkpoint_every: 0,
        ..tc
    };
    let iwae = TrainConfig {
        objective: Objective::Iwae,
        ..elbo
    };
    let text = serde_json::to_string(&iwae)?;
    assert!(text.contains("\"objective\":\"iwae\""), "{text}");
    assert_eq!(serde_json::from_str::<TrainConfig>(&text)?, iwae);

    let model = Model::new(&mc, 1, DType::F32, &Device::Cpu)?;
    let idx: Vec<u32> = (0..4).collect();
    let step = |config: &TrainConfig| accumulated_gradients(&model, &data, &idx, config, 1.0, 0);
    let (a_elbo, a_iwae) = (step(&elbo)?, step(&iwae)?);
    let (v_elbo, v_iwae) = (a_elbo.objective, a_iwae.objective);
    assert!(v_iwae < v_elbo - 1e-3, "{v_iwae} vs {v_elbo}");
    // The step reports the weights' effective sample size under this objective only: between
    // 1 and S = 4, and below S since the weights differ.
    assert_eq!(a_elbo.effective_sample_size, None);
    let ess = a_iwae.effective_sample_size.expect("reported under iwae");
    assert!((1.0..4.0).contains(&ess), "{ess}");
    assert_ne!(
        quiet_parameters(&mc, &data, &iwae)?,
        quiet_parameters(&mc, &data, &elbo)?
    );
    Ok(())
}

/// The entropy weight γ is optional in a config (1 when absent, and then not written back), and
/// it reaches the loop: two steps at γ = 0.5 end elsewhere than two at γ = 1 (which repeat
/// exactly; `ElboTerms::tempered_objective` at γ = 1 is the paper's objective, tests/model.rs);
/// so does `pin_latent_scale`.
#[test]
fn the_entropy_weight_defaults_to_one_and_reaches_the_loop() -> Result<()> {
    let written = serde_json::to_string(&TrainConfig::paper_ddssm())?;
    assert!(!written.contains("entropy_weight"), "{written}");
    let read: TrainConfig = serde_json::from_str(&written)?;
    assert_eq!(read.entropy_weight, 1.0);
    let tempered = TrainConfig {
        entropy_weight: 0.5,
        ..TrainConfig::paper_ddssm()
    };
    let written = serde_json::to_string(&tempered)?;
    assert_eq!(serde_json::from_str::<TrainConfig>(&written)?, tempered);

    let (mc, base, data) = small_quiet(2);
    let run = |config: &TrainConfig| quiet_parameters(&mc, &data, config);
    let one = run(&TrainConfig {
        entropy_weight: 1.0,
        ..base
    })?;
    assert_eq!(one, run(&base)?);
    let tempered = run(&TrainConfig {
        entropy_weight: 0.5,
        ..base
    })?;
    assert_ne!(tempered, one);
    // Pinning the latent's scale is optional too (false when absent, not written back), and it
    // reaches the loop: it changes the tempered run.
    assert!(!written.contains("pin_latent_scale"), "{written}");
    assert!(!serde_json::from_str::<TrainConfig>(&written)?.pin_latent_scale);
    let pinned = TrainConfig {
        entropy_weight: 0.5,
        pin_latent_scale: true,
        ..base
    };
    let text = serde_json::to_string(&pinned)?;
    assert!(text.contains("\"pin_latent_scale\":true"), "{text}");
    assert_eq!(serde_json::from_str::<TrainConfig>(&text)?, pinned);
    assert_ne!(run(&pinned)?, tempered);
    Ok(())
}

/// A training-only number of `TrainConfig` that is not in the paper: `field` (its name in a
/// written config, read and set by `set`) is left out of a written config at its `default` and
/// read back as it when absent; each of `bad` is refused naming the field and `allowed`; `on` is
/// written and read back, and two steps with it end elsewhere than two at the default.
fn optional_number_reaches_the_loop(
    field: &str,
    set: fn(&mut TrainConfig, f64),
    default: f64,
    bad: &[f64],
    allowed: &str,
    on: f64,
) -> Result<()> {
    let written = serde_json::to_string(&TrainConfig::paper_ddssm())?;
    assert!(!written.contains(field), "{written}");
    let mut at_default = TrainConfig::paper_ddssm();
    set(&mut at_default, default);
    assert_eq!(serde_json::from_str::<TrainConfig>(&written)?, at_default);
    for &v in bad {
        let mut config = TrainConfig::paper_ddssm();
        set(&mut config, v);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(field) && err.contains(allowed), "{v}: {err}");
    }
    let (mc, base, data) = small_quiet(2);
    let mut changed = base;
    set(&mut changed, on);
    let text = serde_json::to_string(&changed)?;
    assert!(text.contains(&format!("\"{field}\":{on}")), "{text}");
    assert_eq!(serde_json::from_str::<TrainConfig>(&text)?, changed);
    let run = |config: &TrainConfig| quiet_parameters(&mc, &data, config);
    assert_ne!(run(&changed)?, run(&base)?);
    Ok(())
}

/// The encoder's input noise: 0 by default, refused when negative or not finite.
#[test]
fn the_encoder_input_noise_defaults_to_zero_and_reaches_the_loop() -> Result<()> {
    optional_number_reaches_the_loop(
        "encoder_input_noise",
        |c, v| c.encoder_input_noise = v,
        0.0,
        &[-0.5, f64::NAN, f64::INFINITY],
        "≥ 0",
        0.1,
    )
}

/// The encoder's mask rate: 0 by default, refused outside [0, 1).
#[test]
fn the_encoder_mask_rate_defaults_to_zero_and_reaches_the_loop() -> Result<()> {
    optional_number_reaches_the_loop(
        "encoder_mask_rate",
        |c, v| c.encoder_mask_rate = v,
        0.0,
        &[-0.1, 1.0, f64::NAN],
        "[0, 1)",
        0.5,
    )
}

/// The transition's draw scale α: 1 by default, refused outside (0, 1] and, below 1, with the
/// importance-weighted objective.
#[test]
fn the_transition_draw_scale_defaults_to_one_and_reaches_the_loop() -> Result<()> {
    optional_number_reaches_the_loop(
        "transition_draw_scale",
        |c, v| c.transition_draw_scale = v,
        1.0,
        &[0.0, -0.5, 1.5, f64::NAN],
        "(0, 1]",
        0.5,
    )?;
    let iwae = TrainConfig {
        objective: Objective::Iwae,
        estimator: Estimator::Sample,
        transition_draw_scale: 0.5,
        ..TrainConfig::paper_ddssm()
    };
    let err = iwae.validate().unwrap_err().to_string();
    assert!(
        err.contains("transition_draw_scale") && err.contains("iwae"),
        "{err}"
    );
    Ok(())
}

/// Splitting the transition's gradient: false by default (then not written back), refused
/// unless `transition_draw_scale < 1`, and it reaches the loop: two steps with it end elsewhere
/// than two with the draw scale alone.
#[test]
fn the_split_transition_gradient_is_optional_and_reaches_the_loop() -> Result<()> {
    let written = serde_json::to_string(&TrainConfig::paper_ddssm())?;
    assert!(!written.contains("split_transition_gradient"), "{written}");
    assert!(!serde_json::from_str::<TrainConfig>(&written)?.split_transition_gradient);
    let alone = TrainConfig {
        split_transition_gradient: true,
        ..TrainConfig::paper_ddssm()
    };
    let err = alone.validate().unwrap_err().to_string();
    assert!(
        err.contains("split_transition_gradient") && err.contains("transition_draw_scale < 1"),
        "{err}"
    );

    let (mc, tc, data) = small_quiet(2);
    let pulled = TrainConfig {
        transition_draw_scale: 0.5,
        ..tc
    };
    let split = TrainConfig {
        split_transition_gradient: true,
        ..pulled
    };
    split.validate()?;
    let text = serde_json::to_string(&split)?;
    assert!(
        text.contains("\"split_transition_gradient\":true"),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<TrainConfig>(&text)?, split);
    let run = |config: &TrainConfig| quiet_parameters(&mc, &data, config);
    assert_ne!(run(&split)?, run(&pulled)?);
    Ok(())
}

/// Gradient clipping: off by default (then not written back), refused unless a finite number
/// above 0; every step records its gradient's norm before clipping; a bound above every step's norm
/// leaves the run bit for bit as without one, and a bound below them changes where it ends.
#[test]
fn gradient_clipping_is_optional_recorded_and_reaches_the_loop() -> Result<()> {
    let written = serde_json::to_string(&TrainConfig::paper_ddssm())?;
    assert!(!written.contains("max_grad_norm"), "{written}");
    assert_eq!(
        serde_json::from_str::<TrainConfig>(&written)?.max_grad_norm,
        None
    );
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let config = TrainConfig {
            max_grad_norm: Some(bad),
            ..TrainConfig::paper_ddssm()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("max_grad_norm") && err.contains("> 0"),
            "{bad}: {err}"
        );
    }
    assert_eq!(clip_scale(3.0, None), 1.0);
    assert_eq!(clip_scale(3.0, Some(4.0)), 1.0);
    assert_eq!(clip_scale(4.0, Some(1.0)), 0.25);

    let (mc, base, data) = small_quiet(3);
    let (report, unclipped) = quiet_run(&mc, &data, &base)?;
    let norms: Vec<f64> = report
        .history
        .iter()
        .map(|r| {
            r.gradient_norm
                .expect("every step records its gradient norm")
        })
        .collect();
    assert!(norms.iter().all(|n| n.is_finite() && *n > 0.0), "{norms:?}");
    let largest = norms.iter().cloned().fold(0.0, f64::max);
    let smallest = norms.iter().cloned().fold(f64::INFINITY, f64::min);
    let loose = TrainConfig {
        max_grad_norm: Some(2.0 * largest),
        ..base
    };
    let text = serde_json::to_string(&loose)?;
    assert!(text.contains("\"max_grad_norm\":"), "{text}");
    assert_eq!(serde_json::from_str::<TrainConfig>(&text)?, loose);
    let run = |config: &TrainConfig| quiet_parameters(&mc, &data, config);
    assert_eq!(run(&loose)?, unclipped);
    let tight = TrainConfig {
        max_grad_norm: Some(0.5 * smallest),
        ..base
    };
    assert_ne!(run(&tight)?, unclipped);

    // Per group: the group norms are recorded and add up to the whole; both kinds of bound at
    // once, an empty table and a bound not above 0 are refused by name; clipping each group on
    // its own to a bound above every group's norm changes nothing, one between the largest
    // group's norm and the others' moves the run differently from whole-gradient clipping, and
    // the same bound on that group alone moves it the same way.
    let groups: Vec<GroupNorms> = report
        .history
        .iter()
        .map(|r| {
            r.group_gradient_norms
                .expect("every step records its group norms")
        })
        .collect();
    for (g, whole) in groups.iter().zip(&norms) {
        let sum: f64 = g.in_group_order().iter().map(|n| n * n).sum();
        assert!((sum.sqrt() / whole - 1.0).abs() < 1e-12, "{g:?} vs {whole}");
        // (λ starts at 0, so the transition's and the VHP's terms may weigh nothing yet.)
        assert!(
            g.in_group_order()
                .iter()
                .all(|n| n.is_finite() && *n >= 0.0),
            "{g:?}"
        );
    }
    let both = TrainConfig {
        max_grad_norm: Some(1.0),
        max_group_grad_norms: Some(GroupBounds::all(1.0)),
        ..base
    };
    let err = both.validate().unwrap_err().to_string();
    assert!(
        err.contains("max_group_grad_norms") && err.contains("max_grad_norm is set"),
        "{err}"
    );
    let empty = TrainConfig {
        max_group_grad_norms: Some(GroupBounds::default()),
        ..base
    };
    let err = empty.validate().unwrap_err().to_string();
    assert!(err.contains("at least one of encoder"), "{err}");
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let config = TrainConfig {
            max_group_grad_norms: Some(GroupBounds {
                transition: Some(bad),
                ..GroupBounds::default()
            }),
            ..base
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("max_group_grad_norms.transition") && err.contains("> 0"),
            "{bad}: {err}"
        );
    }
    let per_group = |bounds| TrainConfig {
        max_group_grad_norms: Some(bounds),
        ..base
    };
    let text = serde_json::to_string(&per_group(GroupBounds {
        transition: Some(190.0),
        ..GroupBounds::default()
    }))?;
    assert!(
        text.contains("\"max_group_grad_norms\":{\"transition\":190.0}"),
        "{text}"
    );
    assert_eq!(
        serde_json::from_str::<TrainConfig>(&text)?,
        per_group(GroupBounds {
            transition: Some(190.0),
            ..GroupBounds::default()
        })
    );
    assert!(!serde_json::to_string(&tight)?.contains("max_group_grad_norms"));
    assert_eq!(run(&per_group(GroupBounds::all(2.0 * largest)))?, unclipped);
    // A bound that only the largest group exceeds on every step.
    let second = groups
        .iter()
        .map(|g| {
            let mut v = g.in_group_order();
            v.sort_by(f64::total_cmp);
            v[2]
        })
        .fold(0.0, f64::max);
    let first = groups
        .iter()
        .map(|g| g.in_group_order().into_iter().fold(0.0, f64::max))
        .fold(f64::INFINITY, f64::min);
    assert!(
        second < first,
        "no bound separates the largest group: {groups:?}"
    );
    let between = 0.5 * (second + first);
    let by_group = run(&per_group(GroupBounds::all(between)))?;
    assert_ne!(by_group, unclipped);
    let whole = TrainConfig {
        max_grad_norm: Some(between),
        ..base
    };
    assert_ne!(by_group, run(&whole)?);
    // The same bound on the largest group alone clips the same steps by the same factors: a
    // group without a bound is not clipped.
    let largest_group = |g: &GroupNorms| {
        let v = g.in_group_order();
        (0..4).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
    };
    let which = largest_group(&groups[0]);
    assert!(
        groups.iter().all(|g| largest_group(g) == which),
        "the largest group changes between steps: {groups:?}"
    );
    let mut alone = [None; 4];
    alone[which] = Some(between);
    let [encoder, decoder, transition, zinit] = alone;
    let alone = GroupBounds {
        encoder,
        decoder,
        transition,
        zinit,
    };
    assert_eq!(run(&per_group(alone))?, by_group);
    Ok(())
}
