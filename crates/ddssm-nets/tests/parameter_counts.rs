//! The parameter counts of the paper-sized modules (M = 1, j = 1, D = 1, H_seq = 16; App. F
//! Tables 1–2) are written in `docs/parameter-counts.md`; this test keeps that table true.
//! Regenerate it with `UPDATE_DOCS=1 cargo test -p ddssm-nets --test parameter_counts` after a
//! deliberate change.

use std::path::PathBuf;

use candle_core::{DType, Device};
use candle_nn::VarMap;
use ddssm_nets::*;

fn count(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

fn counts() -> Vec<(&'static str, usize)> {
    let dev = Device::Cpu;
    let h_seq = 16;
    let side = TemporalSideConfig::default();
    let mut rows = Vec::new();
    let mut add = |name: &'static str, build: &dyn Fn(candle_nn::VarBuilder)| {
        let (vm, vb) = SeededVarMap::builder(0, DType::F32, &dev);
        build(vb);
        rows.push((name, count(&vm)));
    };
    add("future summary (3 GRU layers × 16)", &|vb| {
        FutureSummary::new(&FutureSummaryConfig::default(), 1, 0, vb).unwrap();
    });
    add(
        "encoder context producer (2 layers, 16 ch, L = j + 1 = 2, role + padding masks)",
        &|vb| {
            let t = TemporalSide::new(&side, 0, 2, vb.pp("side")).unwrap();
            ContextProducer::new(&ContextProducerConfig::default(), h_seq, 2, t.dim(), 0, vb)
                .unwrap();
        },
    );
    add(
        "decoder context producer (2 layers, 16 ch, L = j = 1, padding mask)",
        &|vb| {
            let t = TemporalSide::new(&side, 0, 1, vb.pp("side")).unwrap();
            ContextProducer::new(&ContextProducerConfig::default(), h_seq, 1, t.dim(), 0, vb)
                .unwrap();
        },
    );
    add(
        "Gaussian transition context producer (3 layers, identity time mixer, no masks)",
        &|vb| {
            let cfg = ContextProducerConfig {
                stack: ResidualStackConfig {
                    layers: 3,
                    channels: 16,
                    time_mixer: TimeMixerConfig::Identity,
                    feature_mixer: FeatureMixerConfig::Conv { kernel: 2 },
                },
            };
            ContextProducer::new(&cfg, h_seq, 1, 0, 0, vb).unwrap();
        },
    );
    add(
        "initialisation context producer (2 layers, identity time mixer, padding mask)",
        &|vb| {
            let t = TemporalSide::new(&side, 0, 1, vb.pp("side")).unwrap();
            let cfg = ContextProducerConfig {
                stack: ResidualStackConfig {
                    layers: 2,
                    channels: 16,
                    time_mixer: TimeMixerConfig::Identity,
                    feature_mixer: FeatureMixerConfig::Conv { kernel: 2 },
                },
            };
            ContextProducer::new(&cfg, h_seq, 1, t.dim(), 0, vb).unwrap();
        },
    );
    add(
        "Gaussian head (256 → 1, hidden 16, 2 layers per MLP)",
        &|vb| {
            GaussianHead::new(&GaussianHeadConfig::default(), h_seq * 16, 1, vb).unwrap();
        },
    );
    add(
        "CSDI denoiser (3 layers, 16 ch, embedding 64 → 128, M = 1, j = 1)",
        &|vb| {
            CsdiDenoiser::new(&CsdiDenoiserConfig::default(), 1, 1, 0, vb).unwrap();
        },
    );
    rows
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
