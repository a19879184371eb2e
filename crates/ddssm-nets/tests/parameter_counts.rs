//! The parameter counts of the paper-sized modules (M = 1, j = 1, D = 1, H_seq = 16; App. F
//! Tables 1–2) are written in `docs/parameter-counts.md`; this test keeps that table true.
//! Regenerate it with `UPDATE_DOCS=1 cargo test -p ddssm-nets --test parameter_counts` after a
//! deliberate change.

use std::path::PathBuf;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use ddssm_nets::*;

fn count(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// A paper-sized context producer over `[B, 16, len]` whose side information is `mask_channels`
/// embedded masks (none when 0), as the encoder, decoder, transition and VHP build theirs.
fn context(vb: VarBuilder, stack: ResidualStackConfig, len: usize, mask_channels: usize) {
    let side = TemporalSide::new(
        &TemporalSideConfig::default(),
        0,
        mask_channels,
        vb.pp("side"),
    )
    .unwrap();
    ContextProducer::new(&ContextProducerConfig { stack }, 16, len, side.dim(), 0, vb).unwrap();
}

/// Builds one module into the given `VarBuilder`.
type Build = Box<dyn Fn(VarBuilder)>;

fn counts() -> Vec<(&'static str, usize)> {
    let identity_time = |layers| ResidualStackConfig {
        time_mixer: TimeMixerConfig::Identity,
        ..ResidualStackConfig::paper(layers)
    };
    let builds: Vec<(&'static str, Build)> = vec![
        (
            "future summary (3 GRU layers × 16)",
            Box::new(|vb| {
                FutureSummary::new(&FutureSummaryConfig::default(), 1, 0, vb).unwrap();
            }),
        ),
        (
            "encoder context producer (2 layers, 16 ch, L = j + 1 = 2, role + padding masks)",
            Box::new(|vb| context(vb, ResidualStackConfig::paper(2), 2, 2)),
        ),
        (
            "decoder context producer (2 layers, 16 ch, L = j = 1, padding mask)",
            Box::new(|vb| context(vb, ResidualStackConfig::paper(2), 1, 1)),
        ),
        (
            "Gaussian transition context producer (3 layers, identity time mixer, no masks)",
            Box::new(move |vb| context(vb, identity_time(3), 1, 0)),
        ),
        (
            "initialisation context producer (2 layers, identity time mixer, padding mask)",
            Box::new(move |vb| context(vb, identity_time(2), 1, 1)),
        ),
        (
            "Gaussian head (256 → 1, hidden 16, 2 layers per MLP)",
            Box::new(|vb| {
                GaussianHead::new(&GaussianHeadConfig::default(), 16 * 16, 1, vb).unwrap();
            }),
        ),
        (
            "CSDI denoiser (3 layers, 16 ch, embedding 64 → 128, M = 1, j = 1)",
            Box::new(|vb| {
                CsdiDenoiser::new(&CsdiDenoiserConfig::default(), 1, 1, 0, vb).unwrap();
            }),
        ),
    ];
    builds
        .into_iter()
        .map(|(name, build)| {
            let (vm, vb) = SeededVarMap::builder(0, DType::F32, &Device::Cpu);
            build(vb);
            (name, count(&vm))
        })
        .collect()
}

#[test]
fn documented_parameter_counts_are_current() {
    let rows = counts();
    let mut text = String::from(
        "# Parameter counts of the paper-sized network blocks\n\n\
         M = 1, j = 1, D = 1, H_seq = 16, sizes of App. F Tables 1–2. Kept true by\n\
         `cargo test -p ddssm-nets --test parameter_counts` (regenerate with `UPDATE_DOCS=1`).\n\n\
         | module | parameters |\n|---|---:|\n",
    );
    for (name, n) in &rows {
        text.push_str(&format!("| {name} | {n} |\n"));
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/parameter-counts.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let doc = std::fs::read_to_string(&path).expect("docs/parameter-counts.md exists");
    for (name, n) in &rows {
        let line = format!("| {name} | {n} |");
        assert!(
            doc.contains(&line),
            "docs/parameter-counts.md lacks `{line}`"
        );
    }
}
