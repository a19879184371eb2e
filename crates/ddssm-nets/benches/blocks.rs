//! Forward + backward of the hot blocks at the paper's sizes (App. F):
//! - the encoder's context producer at batch 256 (the encoder calls it once per time step);
//! - the CSDI denoiser at batch 256·31·5 = 39 680 (B·(T − j)·S_k rows of one DDSSM step).
//!
//! `cargo bench -p ddssm-nets --bench blocks` (set `CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS` to
//! fix the thread count, and report it with the figures).

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use ddssm_nets::{
    ContextProducer, ContextProducerConfig, CsdiDenoiser, CsdiDenoiserConfig, GaussianHead,
    GaussianHeadConfig, SeededVarMap, SideInfo, TemporalSide, TemporalSideConfig,
};
use ddssm_tensor_ops::SeededNoise;

fn encoder_context(c: &mut Criterion) {
    let dev = Device::Cpu;
    let (_vm, vb) = SeededVarMap::builder(0, DType::F32, &dev);
    let side_builder =
        TemporalSide::new(&TemporalSideConfig::default(), 0, 2, vb.pp("side")).unwrap();
    let cp = ContextProducer::new(
        &ContextProducerConfig::default(),
        16,
        2,
        side_builder.dim(),
        0,
        vb.pp("context"),
    )
    .unwrap();
    let head = GaussianHead::new(
        &GaussianHeadConfig::default(),
        cp.output_dim(),
        1,
        vb.pp("head"),
    )
    .unwrap();
    let mut noise = SeededNoise::new(1);
    let b = 256;
    let input = noise.randn((b, 16, 2), DType::F32, &dev).unwrap();
    let masks = Tensor::ones((b, 2, 2), DType::F32, &dev).unwrap();
    c.bench_function(
        "encoder context producer + head, fwd+bwd, batch 256",
        |bench| {
            bench.iter(|| {
                let side = SideInfo {
                    temporal: side_builder.build(b, 2, None, None, Some(&masks)).unwrap(),
                    static_: None,
                };
                let g = head.forward(&cp.forward(&input, &side).unwrap()).unwrap();
                let loss = g.entropy().unwrap().sum_all().unwrap();
                loss.backward().unwrap()
            })
        },
    );
}

fn denoiser(c: &mut Criterion) {
    let dev = Device::Cpu;
    let (_vm, vb) = SeededVarMap::builder(0, DType::F32, &dev);
    let net = CsdiDenoiser::new(&CsdiDenoiserConfig::default(), 1, 1, 0, vb).unwrap();
    let mut noise = SeededNoise::new(2);
    let b = 256 * 31 * 5;
    let hist = noise.randn((b, 1, 1), DType::F32, &dev).unwrap();
    let target = noise.randn((b, 1), DType::F32, &dev).unwrap();
    let c_noise = noise.randn(b, DType::F32, &dev).unwrap();
    let mut group = c.benchmark_group("denoiser");
    group.sample_size(10);
    group.bench_function("CSDI denoiser, fwd+bwd, batch 39680", |bench| {
        bench.iter(|| {
            let out = net.forward(&hist, &target, &c_noise, None, None).unwrap();
            out.sqr().unwrap().sum_all().unwrap().backward().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, encoder_context, denoiser);
criterion_main!(benches);
