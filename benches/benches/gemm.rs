//! `cpu/gemm/MxKxN`: the GEMM shapes of the paper's block at batch 128.
//! Throughput is reported in FLOP/s (criterion's "elements" are FLOPs, 2·m·n·k).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use noprop_benches::GEMM_SHAPES;
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Tensor};

fn gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu/gemm");
    g.sample_size(20);
    for s in GEMM_SHAPES {
        let a = ops::randn(&[s.m, s.k], DType::F32, &mut RngStream::new(1, 0)).expect("randn");
        let b = ops::randn(&[s.k, s.n], DType::F32, &mut RngStream::new(1, 1)).expect("randn");
        let mut out = Tensor::zeros(&[s.m, s.n], DType::F32);
        g.throughput(Throughput::Elements(s.flops()));
        g.bench_function(format!("{}_flops", s.id()), |bch| {
            bch.iter(|| {
                ops::gemm_into(&mut out, false, &a, Transpose::No, &b, Transpose::No).expect("gemm")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, gemm);
criterion_main!(benches);
