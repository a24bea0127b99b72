//! Time every GEMM shape of `noprop_benches::GEMM_SHAPES` with our kernel
//! (the `gemm` crate, row/column blocks on rayon) and with `matrixmultiply`,
//! and print one JSON object per line: `{"shape", "impl", "seconds", "gflops"}`.
//!
//! `cargo xtask bench` runs this next to `benches/peers/gemm_numpy.py` in the
//! same sitting and renders the table in `docs/BENCHMARKS.md`.

use std::time::Instant;

use noprop_benches::GEMM_SHAPES;
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Tensor};

/// Median of timings of `f` after warm-up: at least `reps` calls and at
/// least ~0.3 s of calls in all (small shapes get many repetitions).
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let s = Instant::now();
    f();
    let one = s.elapsed().as_secs_f64().max(1e-7);
    let reps = reps.max((0.3 / one) as usize).min(5000);
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

fn main() {
    noprop_tensor::tune_host_allocator();
    let reps: usize = std::env::var("GEMM_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    for s in GEMM_SHAPES {
        let a = ops::randn(&[s.m, s.k], DType::F32, &mut RngStream::new(1, 0)).expect("randn");
        let b = ops::randn(&[s.k, s.n], DType::F32, &mut RngStream::new(1, 1)).expect("randn");
        let mut c = Tensor::zeros(&[s.m, s.n], DType::F32);
        let ours = median_secs(reps, || {
            ops::gemm_into(&mut c, false, &a, Transpose::No, &b, Transpose::No).expect("gemm");
        });
        let (av, bv) = (
            a.as_slice::<f32>().expect("f32"),
            b.as_slice::<f32>().expect("f32"),
        );
        let mut cv = vec![0f32; s.m * s.n];
        let mm = median_secs(reps, || {
            // SAFETY: the slices hold m·k, k·n and m·n elements with the
            // row-major strides passed here.
            unsafe {
                matrixmultiply::sgemm(
                    s.m,
                    s.k,
                    s.n,
                    1.0,
                    av.as_ptr(),
                    s.k as isize,
                    1,
                    bv.as_ptr(),
                    s.n as isize,
                    1,
                    0.0,
                    cv.as_mut_ptr(),
                    s.n as isize,
                    1,
                )
            };
        });
        for (name, secs) in [("noprop (gemm crate)", ours), ("matrixmultiply", mm)] {
            println!(
                "{{\"shape\":\"{}\",\"label\":\"{}\",\"impl\":\"{}\",\"seconds\":{:.9},\"gflops\":{:.3}}}",
                s.id(),
                s.label,
                name,
                secs,
                s.flops() as f64 / secs / 1e9
            );
        }
    }
}
