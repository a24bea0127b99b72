//! One CT/FM inference step's per-step layers (label FC 10→256, `W1_z`
//! 256×256 with the cached image projection and the time row, fc2
//! 256→128, fc3 128→10) on `ROWS` rows (default 250: one row half of an
//! evaluation batch of 500), two ways:
//!
//! * `layers`: one product per layer through [`FrozenLinear`] (the `gemm`
//!   crate), as inference ran before round 10;
//! * `fused`: [`PackedMlp`], every layer per block of rows.
//!
//! `THREADS` (default 1) threads; with 2, two copies of the step loop run
//! side by side, as inference's two row halves do. Prints one JSON line
//! with the best of `ROUNDS` (default 5) rounds of `STEPS` (default 200)
//! steps each, in GFLOP/s of the per-step layers (204,288 FLOP per row),
//! and the largest difference between the two ways' logits.

use std::time::Instant;

use noprop_nn::layers::FrozenLinear;
use noprop_tensor::ops::{self, LayerAddend, MlpLayer, PackedMlp};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Tensor};

/// FLOP of one row's step: 2·(10·256 + 256·256 + 256·128 + 128·10).
const FLOP_PER_ROW: f64 = 204_288.0;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn randn(shape: &[usize], scale: f64, rng: &mut RngStream) -> Tensor {
    let t = ops::randn(shape, DType::F32, rng).expect("randn");
    ops::scale(&t, scale).expect("scale")
}

fn main() {
    let (rows, steps, rounds) = (env("ROWS", 250), env("STEPS", 200), env("ROUNDS", 5));
    let rng = &mut RngStream::new(7, 0);
    let dims = [10, 256, 256, 128, 10];
    let ws: Vec<Tensor> = dims
        .windows(2)
        .map(|io| randn(&[io[1], io[0]], 1.0 / (io[0] as f64).sqrt(), rng))
        .collect();
    let bs: Vec<Tensor> = dims[1..].iter().map(|&n| randn(&[n], 0.1, rng)).collect();
    let z = randn(&[rows, 10], 1.0, rng);
    let proj = randn(&[rows, 256], 1.0, rng);
    let tb = randn(&[256], 1.0, rng);
    let zero = Tensor::zeros(&[256], DType::F32);

    let frozen = |i: usize, b: &Tensor, relu| {
        FrozenLinear::from_parts(ws[i].clone(), b.clone(), relu).expect("frozen")
    };
    let (label, w1_z, fc2, fc3) = (
        frozen(0, &bs[0], true),
        frozen(1, &zero, true),
        frozen(2, &bs[2], true),
        frozen(3, &bs[3], false),
    );
    let layers = || {
        let fz = label.apply(&z).expect("label");
        let mut h1 = proj.clone();
        w1_z.product_into(&mut h1, true, &fz).expect("w1_z");
        ops::bias_relu_rows(&mut h1, &tb).expect("bias");
        fc3.apply(&fc2.apply(&h1).expect("fc2")).expect("fc3")
    };
    let spec = [
        MlpLayer {
            weight: &ws[0],
            bias: Some(&bs[0]),
            relu: true,
        },
        MlpLayer {
            weight: &ws[1],
            bias: None,
            relu: true,
        },
        MlpLayer {
            weight: &ws[2],
            bias: Some(&bs[2]),
            relu: true,
        },
        MlpLayer {
            weight: &ws[3],
            bias: Some(&bs[3]),
            relu: false,
        },
    ];
    let Some(packed) = PackedMlp::pack(&spec).expect("pack") else {
        eprintln!("step_head: this host has no fused kernel (AVX2 + FMA without AVX-512F)");
        std::process::exit(2);
    };
    let addend = LayerAddend {
        layer: 1,
        rows: &proj,
        bias: &tb,
    };
    let fused = || packed.forward(&z, Some(addend)).expect("fused");
    let (a, b) = (layers(), fused());
    let diff = a
        .to_vec_f32()
        .iter()
        .zip(b.to_vec_f32())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));

    let threads = env("THREADS", 1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    // One copy of the step loop per thread, side by side (inference's row
    // halves), each free to spread over the pool.
    let run = |f: &(dyn Fn() -> Tensor + Sync), copies: usize| {
        if copies <= 1 {
            for _ in 0..steps {
                std::hint::black_box(f());
            }
        } else {
            rayon::join(|| run_steps(f, steps), || run_steps(f, steps));
        }
    };
    let time = |f: &(dyn Fn() -> Tensor + Sync)| -> f64 {
        pool.install(|| {
            rayon::scope(|_| {
                (0..rounds)
                    .map(|_| {
                        let t0 = Instant::now();
                        run(f, threads);
                        t0.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
        })
    };
    let gflops = |s: f64| (threads.min(2) * rows * steps) as f64 * FLOP_PER_ROW / s / 1e9;
    let (tl, tf) = (time(&layers), time(&fused));
    println!(
        "{{\"bench\": \"step_head\", \"rows\": {rows}, \"steps\": {steps}, \"threads\": {threads}, \
         \"layers_gflops\": {:.1}, \"fused_gflops\": {:.1}, \"max_abs_diff\": {diff:e}}}",
        gflops(tl),
        gflops(tf)
    );
}

fn run_steps(f: &(dyn Fn() -> Tensor + Sync), steps: usize) {
    for _ in 0..steps {
        std::hint::black_box(f());
    }
}
