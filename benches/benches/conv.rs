//! `cpu/conv2d/<dataset>/<layer>`: forward + backward (weight, bias and input
//! gradients; conv1 skips the input gradient as in training) of each 3×3,
//! padding-0 convolution of the paper's block, batch 128. Throughput is in
//! FLOP/s of the three GEMMs (criterion's "elements" are FLOPs).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use noprop_benches::CONV_LAYERS;
use noprop_nn::layers::Conv2d;
use noprop_nn::{Mode, Module};
use noprop_tensor::ops;
use noprop_tensor::philox::RngStream;
use noprop_tensor::DType;

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
        g.bench_function(format!("{label}/fwd_bwd_flops"), |b| {
            b.iter(|| {
                layer.forward(&x, Mode::Train).expect("forward");
                layer.backward(&dy).expect("backward");
                layer.zero_grad();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, conv);
criterion_main!(benches);
