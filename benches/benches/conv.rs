//! `cpu/conv2d/<dataset>/<layer>/<dy>`: forward + backward (weight, bias and
//! input gradients; conv1 skips the input gradient as in training) of each
//! 3×3, padding-0 convolution of the paper's block, batch 128. Throughput is
//! in FLOP/s of the three dense GEMMs (criterion's "elements" are FLOPs).
//!
//! `<dy>` is the output gradient the backward gets (the fused ReLU then
//! zeroes about half of what is left):
//! * `fwd_bwd_flops`: dense normals;
//! * `dy_kept_2of3`: a third of them zeroed at random, as dropout and the
//!   next layer's ReLU leave conv2's in training (about a third nonzero
//!   after the mask);
//! * `dy_pooled`: one pixel of every 2×2 window kept, as a max pool leaves
//!   conv1's and conv3's (about a tenth nonzero after the mask).
//!
//! The CPU backward takes its sparse path (`crates/tensor/src/ops/conv/sparse.rs`,
//! `worth_it`) where at most 30 % of an image's masked gradient is nonzero
//! and the layer has at least 64 rows in its column matrix (conv2, conv3).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use noprop_benches::CONV_LAYERS;
use noprop_nn::layers::Conv2d;
use noprop_nn::{Mode, Module};
use noprop_tensor::ops;
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Tensor};

fn conv(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu/conv2d");
    g.sample_size(10);
    for &(label, cin, h, w, cout) in CONV_LAYERS {
        let first = label.ends_with("conv1");
        let mut layer = Conv2d::new(cin, cout, 3, 0, 0, label).with_relu();
        if first {
            layer = layer.without_input_grad();
        }
        let x =
            ops::randn(&[128, cin, h, w], DType::F32, &mut RngStream::new(2, 0)).expect("randn");
        let (oh, ow) = (h - 2, w - 2);
        let dy =
            ops::randn(&[128, cout, oh, ow], DType::F32, &mut RngStream::new(2, 1)).expect("randn");
        let gemm_flops = 2 * 128 * oh * ow * cin * 9 * cout;
        let flops = gemm_flops * if first { 2 } else { 3 };
        g.throughput(Throughput::Elements(flops as u64));
        for (name, keep) in [
            ("fwd_bwd_flops", Keep::All),
            ("dy_kept_2of3", Keep::TwoOfThree),
            ("dy_pooled", Keep::Pooled),
        ] {
            let dy = keep.apply(&dy);
            g.bench_function(format!("{label}/{name}"), |b| {
                b.iter(|| {
                    layer.forward(&x, Mode::Train).expect("forward");
                    layer.backward(&dy).expect("backward");
                    layer.zero_grad();
                })
            });
        }
    }
    g.finish();
}

/// Which entries of the output gradient a bench keeps (see the module
/// documentation).
#[derive(Clone, Copy)]
enum Keep {
    All,
    TwoOfThree,
    Pooled,
}

impl Keep {
    fn apply(self, dy: &Tensor) -> Tensor {
        let (c, oh, ow) = (dy.dim(1), dy.dim(2), dy.dim(3));
        let v: Vec<f32> = dy
            .to_vec_f32()
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let (ch, oy, ox) = ((i / (oh * ow)) % c, (i / ow) % oh, i % ow);
                let kept = match self {
                    Keep::All => true,
                    // A fixed hash of the index: about two in three.
                    Keep::TwoOfThree => {
                        ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 3 != 0
                    }
                    Keep::Pooled => (oy % 2) * 2 + ox % 2 == (ch + oy / 2 * 3 + ox / 2) % 4,
                };
                if kept {
                    d
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_vec(v, dy.shape()).expect("same shape")
    }
}

criterion_group!(benches, conv);
criterion_main!(benches);
