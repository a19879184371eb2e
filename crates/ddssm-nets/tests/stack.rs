//! A residual stack is its blocks composed: the scaled sum of their skips. The stack skips the last
//! block's residual output (no one reads it) and applies `1/√layers` as the last skip is added;
//! this checks that those shortcuts give the plain composition's bits, forward and in every
//! parameter's gradient.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ddssm_nets::*;
use ddssm_tensor_ops::SeededNoise;

mod common;
use common::bits;

#[test]
fn a_stack_gives_its_blocks_composed_bit_for_bit() {
    let dev = Device::Cpu;
    let mut noise = SeededNoise::new(5);
    let mut randn = |shape: &[usize]| noise.randn(shape, DType::F32, &dev).unwrap();
    let (b, h, l, c) = (3, 4, 5, 16);
    let (temporal_dim, static_dim, diffusion_dim) = (6, 3, 8);
    let x = randn(&[b, h, l, c]);
    let side = SideInfo {
        temporal: Some(randn(&[b, l, temporal_dim])),
        static_: Some(randn(&[b, h, static_dim])),
    };
    let emb = LevelEmbedding {
        table: randn(&[b, diffusion_dim]),
        index: None,
    };
    let upstream = randn(&[b, h, l, c]);
    for layers in [1, 2, 3] {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let config = ResidualStackConfig::paper(layers);
        let stack =
            ResidualStack::new(&config, temporal_dim, static_dim, diffusion_dim, vb.clone())
                .unwrap();
        // The same variables, as separate blocks.
        let blocks: Vec<ResidualBlock> = (0..layers)
            .map(|i| {
                ResidualBlock::new(
                    &config,
                    temporal_dim,
                    static_dim,
                    diffusion_dim,
                    vb.pp(format!("block{i}")),
                )
                .unwrap()
            })
            .collect();
        let fused = stack.forward(&x, &side, Some(&emb)).unwrap();
        let (mut y, mut skip) = (x.clone(), None::<Tensor>);
        for block in &blocks {
            let (next, sum) = block.forward(&y, &side, Some(&emb), skip.as_ref()).unwrap();
            y = next;
            skip = Some(sum);
        }
        let plain = (skip.unwrap() / (layers as f64).sqrt()).unwrap();
        assert_eq!(bits(&fused), bits(&plain), "{layers} layers: forward");
        let grads = |t: &Tensor| {
            (t * &upstream)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (gf, gp) = (grads(&fused), grads(&plain));
        let vars = varmap.all_vars();
        assert!(vars.len() >= 10 * layers);
        for v in vars {
            let (f, p) = (gf.get(v.as_tensor()), gp.get(v.as_tensor()));
            match (f, p) {
                (Some(f), Some(p)) => assert_eq!(bits(f), bits(p), "{layers} layers"),
                // The last block's residual half gets no gradient either way: nothing reads it.
                (None, None) => {}
                _ => panic!("{layers} layers: a gradient on one side only"),
            }
        }
    }
}
