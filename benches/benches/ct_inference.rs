//! `cpu/ct_inference/mnist/b<B>/…`: NoProp-CT/FM inference cost with and
//! without image-path caching (docs/DECISIONS.md § 17), next to one full network
//! forward on the same batch.
//!
//! * `full_forward`: one evaluation-mode forward of the whole CT/FM network
//!   (conv image path + label, time and fusion layers) on B images;
//! * `cached_1000_steps`: FM Euler inference, 1,000 steps, image path run once;
//! * `cached_10_steps` / `uncached_10_steps`: 10 steps with and without the
//!   cache (the uncached 1,000-step run is 100× the 10-step one: every step
//!   re-runs the conv stack).

use criterion::{criterion_group, criterion_main, Criterion};
use noprop_models::{ClassEmbedding, ContConfig, ContMethod, EmbeddingKind, NoPropCont, Sampler};
use noprop_nn::Mode;
use noprop_tensor::ops;
use noprop_tensor::philox::RngStream;
use noprop_tensor::DType;

fn ct_inference(c: &mut Criterion) {
    let b = 100;
    let cfg = ContConfig::paper(ContMethod::Fm, (1, 28, 28), 10, EmbeddingKind::OneHot, 0);
    let mut model = NoPropCont::new(cfg, ClassEmbedding::one_hot(10)).expect("model");
    let x = ops::randn(&[b, 1, 28, 28], DType::F32, &mut RngStream::new(1, 0)).expect("randn");
    let z = ops::randn(&[b, 10], DType::F32, &mut RngStream::new(1, 1)).expect("randn");
    let t = vec![0.5; b];
    let mut g = c.benchmark_group(format!("cpu/ct_inference/mnist/b{b}"));
    g.sample_size(10);
    g.bench_function("full_forward", |bch| {
        bch.iter(|| {
            model
                .net_mut()
                .forward(&x, &z, &t, Mode::Eval)
                .expect("forward")
        })
    });
    g.bench_function("cached_1000_steps", |bch| {
        bch.iter(|| {
            model
                .sample(&x, Sampler::Euler, 1000, true, 0, true)
                .expect("sample")
        })
    });
    g.bench_function("cached_10_steps", |bch| {
        bch.iter(|| {
            model
                .sample(&x, Sampler::Euler, 10, true, 0, true)
                .expect("sample")
        })
    });
    g.bench_function("uncached_10_steps", |bch| {
        bch.iter(|| {
            model
                .sample(&x, Sampler::Euler, 10, true, 0, false)
                .expect("sample")
        })
    });
    g.finish();
}

criterion_group!(benches, ct_inference);
criterion_main!(benches);
