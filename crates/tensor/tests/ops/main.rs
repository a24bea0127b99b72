//! Every op on every device, one test body per device.
//!
//! Each body is a `fn name(dev: &Device)` that `test_device!` (in
//! `common/mod.rs`) runs as two tests, `name::cpu` and `name::cuda`; the
//! CUDA one prints `SKIPPED name::cuda: …` and passes when no GPU can be
//! opened. A body builds random (never all-zero) inputs on the host, moves
//! them to `dev`, runs the public op from `noprop_tensor::ops`, brings the
//! result back and checks it
//!
//! 1. against a naive reference written here (f64 loops, or the same IEEE
//!    operations in the tensor's dtype where the op is exact), on every
//!    device, and
//! 2. on a GPU, also against the CPU op on the same inputs (the parity
//!    check).
//!
//! Only `f32` lives on a GPU: bodies that check `f64` run it on the CPU only
//! (see [`dtypes`]), and `f32` on every device. Shape zoos hold 1, 7, 63,
//! the paper's layer shapes and zero sizes (GEMM with `m`, `n` or `k` = 0,
//! empty batches). Host-only properties (bit-identity across thread counts,
//! ndarray views, copy-on-write clones, Philox) are plain `#[test]`s.
//!
//! # Tolerances
//!
//! On the CPU each reference check uses the tolerance its body states
//! (`f64`: 1e-14 to 1e-9 relative, as before the device-generic rewrite;
//! `f32`: 1e-6 to 1e-4, mostly of the result's scale; sums relative to their
//! partial sums, see `check_sum`). Element-wise, shape, pooling and random
//! ops are checked exactly, against the same IEEE operations. The parity check, and the table for everything a GPU may do
//! differently, as `max |gpu − cpu| ≤ tol · max(1, max |cpu|)`:
//!
//! | ops | tol | why |
//! |---|---|---|
//! | element-wise, bias epilogues, shape ops, im2col, max-pool, dropout, uniform, SGD, column sums | 0 (bit-identical) | the same IEEE f32 operations in the same order; kernels are compiled with `--fmad=false` |
//! | Adam/AdamW | 1e-6 | IEEE `sqrtf` and division, but the host-side constants round differently only if the compiler reorders; kept tight |
//! | randn | 1e-6 | Box–Muller in f64 on both sides; CUDA's `log`/`cos`/`sin` and the CPU's polynomial kernels (`philox::box_muller`) differ by about an f64 ulp |
//! | col2im | 1e-6 | each pixel sums at most `KH·KW` overlapping taps, in another order |
//! | softmax, log-softmax, softmax backward, cross-entropy | 1e-5 | `expf`/`logf` differ by a few ulps; block-tree sums |
//! | sum, sum_sq, dot, mean | 1e-6 of `√(Σᵢ Sᵢ²)` over the running sums `Sᵢ` | tree order vs the CPU's chunk order; an f32 sum's rounding error grows with its partial sums, not with the result, which may cancel |
//! | batch-norm | 1e-4 | per-channel sums in tree order, divided by small variances |
//! | GEMM, conv2d forward/backward | 1e-4 | cuBLAS blocking order vs the CPU gemm's |
//!
//! On a GPU the reference check allows the CPU's tolerance plus the table's
//! row, with the relative error's floor raised to the result's scale: the
//! CPU kernel is within its tolerance of the reference and the GPU within
//! the row of the CPU kernel, so by the triangle inequality the GPU is
//! within `cpu + row·(1 + cpu)` of the reference.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

use approx::assert_relative_eq;
use ndarray::Array2;
use noprop_tensor::ops::{self, AdamHyper, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{CudaDevice, DType, Device, Tensor};

// ---------------------------------------------------------------- helpers

/// Random normal tensor (never all-zero) in the given dtype, on the host.
fn rand_t(shape: &[usize], dtype: DType, stream: u64) -> Tensor {
    let mut rng = RngStream::new(0xC0FFEE, stream);
    ops::randn(shape, dtype, &mut rng).unwrap()
}

/// The dtypes a body checks on `dev`: `f64` on the CPU only (only `f32`
/// lives on a GPU), `f32` everywhere.
fn dtypes(dev: &Device) -> &'static [DType] {
    if dev.is_cpu() {
        &[DType::F64, DType::F32]
    } else {
        &[DType::F32]
    }
}

/// A copy of the host tensor `t` on `dev`.
fn up(dev: &Device, t: &Tensor) -> Tensor {
    let d = t.to_device(dev).unwrap();
    assert_eq!(d.device(), *dev);
    d
}

/// The values of `t` (on any device) as `f64`, after checking it lives on `dev`.
fn back(dev: &Device, what: &str, t: &Tensor) -> Vec<f64> {
    assert_eq!(t.device(), *dev, "{what}: the result is not on {dev}");
    t.try_to_vec_f64().unwrap()
}

/// `v` rounded to the dtype: the reference of an exact op applies this after
/// every IEEE operation, which then gives the dtype's own result (an f32
/// `+ − × ÷` computed in f64 and rounded once is the f32 operation).
fn rounder(dtype: DType) -> fn(f64) -> f64 {
    match dtype {
        DType::F32 => |v| v as f32 as f64,
        DType::F64 => |v| v,
    }
}

/// `max(1, max |v|)`.
fn scale(v: &[f64]) -> f64 {
    v.iter().fold(1.0, |m, x| m.max(x.abs()))
}

/// Largest `|a − b| / (|b| + floor)` (the relative error with a floor for
/// values near 0); a NaN on one side only is an infinite error.
fn max_rel_err(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x.is_nan(), y.is_nan()) {
            (true, true) => 0.0,
            (false, false) => (x - y).abs() / (y.abs() + floor),
            _ => f64::INFINITY,
        })
        .fold(0.0, f64::max)
}

/// A row of the parity table in the file's doc.
#[derive(Clone, Copy, Debug)]
enum Row {
    Exact,
    Adam,
    Randn,
    Col2im,
    Softmax,
    Reduce,
    BatchNorm,
    Gemm,
}

impl Row {
    fn tol(self) -> f64 {
        match self {
            Row::Exact => 0.0,
            Row::Adam | Row::Randn | Row::Col2im | Row::Reduce => 1e-6,
            Row::Softmax => 1e-5,
            Row::BatchNorm | Row::Gemm => 1e-4,
        }
    }
}

/// The result `got` (on `dev`) against the naive `want`: on the CPU
/// `max_rel_err(got, want, floor) ≤ tol`; on a GPU the floor is raised to
/// the scale of `want` and the tolerance is `tol + row·(1 + tol)`.
fn check_ref(dev: &Device, what: &str, got: &Tensor, want: &[f64], floor: f64, tol: f64, row: Row) {
    let g = back(dev, what, got);
    assert_eq!(g.len(), want.len(), "{what}: length");
    let (floor, tol) = if dev.is_cpu() {
        (floor, tol)
    } else {
        (floor.max(scale(want)), tol + row.tol() * (1.0 + tol))
    };
    let err = max_rel_err(&g, want, floor);
    assert!(err <= tol, "{what} on {dev}: error {err} > {tol}");
}

/// `got` equals `want` exactly (NaN equals NaN), on every device.
fn check_exact(dev: &Device, what: &str, got: &Tensor, want: &[f64]) {
    check_ref(dev, what, got, want, 1.0, 0.0, Row::Exact);
}

/// A scalar result against the naive `want`: on the CPU
/// `|got − want| ≤ max(tol·max(|got|, |want|), eps)`; on a GPU
/// `|got − want| ≤ (tol + row·(1 + tol))·max(1, |want|)`.
fn check_scalar(dev: &Device, what: &str, got: f64, want: f64, tol: f64, eps: f64, row: Row) {
    let d = (got - want).abs();
    let bound = if dev.is_cpu() {
        (tol * got.abs().max(want.abs())).max(eps)
    } else {
        (tol + row.tol() * (1.0 + tol)) * want.abs().max(1.0)
    };
    assert!(
        d <= bound,
        "{what} on {dev}: {got} vs {want} (bound {bound})"
    );
}

/// On a GPU, the parity check: `got` against the CPU op's result `cpu()`,
/// `max |got − cpu| ≤ row · max(1, max |cpu|)`. On the CPU `got` is the CPU
/// op's result, so there is nothing to compare (and `cpu` is not run).
fn parity(dev: &Device, what: &str, got: &Tensor, cpu: impl FnOnce() -> Tensor, row: Row) {
    if dev.is_cpu() {
        return;
    }
    let c = cpu();
    assert!(c.is_on_host(), "{what}: the CPU twin ran on a device");
    assert_eq!(c.shape(), got.shape(), "{what}: shape");
    let (a, b) = (c.to_vec_f64(), back(dev, what, got));
    let tol = row.tol() * scale(&a);
    let mut worst = (0f64, 0usize);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let d = match (x.is_nan(), y.is_nan()) {
            (true, true) => 0.0,
            (false, false) => (x - y).abs(),
            _ => f64::INFINITY,
        };
        if d > worst.0 {
            worst = (d, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{what}: max |gpu − cpu| = {} at {} (cpu {}, gpu {}), tolerance {tol}",
        worst.0,
        worst.1,
        a[worst.1],
        b[worst.1],
    );
}

/// The parity check of a scalar result: `|got − cpu| ≤ row · max(1, |cpu|)`.
fn parity_scalar(dev: &Device, what: &str, got: f64, cpu: impl FnOnce() -> f64, row: Row) {
    if dev.is_cpu() {
        return;
    }
    let c = cpu();
    assert!(
        (got - c).abs() <= row.tol() * c.abs().max(1.0),
        "{what}: cpu {c}, gpu {got}"
    );
}

/// `a·b` for `[m, k]·[k, n]` row-major matrices in f64.
fn naive_matmul(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for p in 0..k {
                s += a[i * k + p] * b[p * n + j];
            }
            c[i * n + j] = s;
        }
    }
    c
}

/// The `[r, c]` row-major matrix `v`, transposed.
fn naive_t(v: &[f64], r: usize, c: usize) -> Vec<f64> {
    let mut t = vec![0.0; v.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = v[i * c + j];
        }
    }
    t
}

pub(crate) const SIZES: &[&[usize]] = &[
    &[1],
    &[7],
    &[63],
    &[7, 63],
    &[3, 5, 7, 9],
    &[70_001],
    &[100_003],
    &[0],
];

mod batchnorm;
mod conv;
mod gemm;
mod optim;
mod pool;
mod random;
mod reduce;
mod shape;
mod softmax;

// ------------------------------------------------------ host-only properties

#[test]
fn probing_without_a_gpu_is_an_error_not_a_panic() {
    // Runs everywhere: on a machine without a driver (or without the `cuda`
    // feature) this must return Err.
    match CudaDevice::new(0) {
        Ok(d) => eprintln!("found {d:?}"),
        Err(e) => eprintln!("no CUDA device, as a typed error: {e}"),
    }
    let (dev, why) = Device::parse("auto").unwrap();
    eprintln!("--device auto: {why}");
    assert!(why.contains("auto"));
    if dev.is_cpu() {
        assert!(Device::parse("cuda:0").is_err());
        assert!(Device::parse("cuda").is_err());
    }
}

#[test]
fn ndarray_round_trip_and_views() {
    let a = Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32 + 0.5);
    let t = Tensor::from_ndarray(&a);
    assert_eq!(t.shape(), &[3, 4]);
    let v = t.view::<f32>().unwrap();
    assert_eq!(
        v.as_slice().unwrap().as_ptr(),
        t.as_slice::<f32>().unwrap().as_ptr()
    );
    assert_eq!(
        t.to_ndarray::<f32>()
            .unwrap()
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap(),
        a
    );
    // A transposed (non-contiguous) view is copied in logical order.
    let tt = Tensor::from_ndarray(&a.t());
    assert_eq!(tt.to_vec_f32()[1], a[[1, 0]]);
    assert!(t.view::<f64>().is_err());
    assert!(Tensor::from_vec(vec![1.0f32; 5], &[2, 3]).is_err());
}

#[test]
fn kernels_are_bitwise_identical_across_thread_counts() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut outs = Vec::new();
            for &(m, k, n) in &[
                (128, 2048, 256),
                (1000, 288, 64),
                (128, 512, 256),
                (32, 9000, 27), // inner-split path
            ] {
                let a = rand_t(&[m, k], DType::F32, 91);
                let b = rand_t(&[k, n], DType::F32, 92);
                outs.push(ops::matmul(&a, Transpose::No, &b, Transpose::No).unwrap());
                outs.push(
                    ops::matmul(&a, Transpose::Yes, &outs[outs.len() - 1], Transpose::No).unwrap(),
                );
            }
            // 40 images: the CPU conv runs four parts of the batch, more
            // than there are threads.
            let x = rand_t(&[40, 32, 13, 13], DType::F32, 93);
            let w = rand_t(&[64, 32, 3, 3], DType::F32, 94);
            let mut ws = ops::ConvWorkspace::new();
            let y = ops::conv2d_forward(&x, &w, None, 0, false, &mut ws).unwrap();
            let g = ops::conv2d_backward(&y, &w, None, &mut ws, true).unwrap();
            outs.extend([y, g.dw, g.db, g.dx.unwrap()]);
            // And the backward's sparse path: a gradient as a max pool
            // leaves it, through the fused ReLU's mask.
            let y = ops::conv2d_forward(&x, &w, None, 0, true, &mut ws).unwrap();
            let dy = conv::pooled_like(&rand_t(y.shape(), DType::F32, 95));
            let g = ops::conv2d_backward(&dy, &w, Some(&y), &mut ws, true).unwrap();
            outs.extend([g.dw, g.db, g.dx.unwrap()]);
            outs.push(Tensor::scalar(ops::sum(&x).unwrap(), DType::F64));
            outs
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        for (i, (a, b)) in one.iter().zip(run(threads)).enumerate() {
            assert!(
                a.bit_eq(&b),
                "output {i} differs between 1 and {threads} threads"
            );
        }
    }
}

#[test]
fn clones_share_storage_until_written() {
    let a = rand_t(&[3, 4], DType::F32, 101);
    let mut b = a.clone();
    assert_eq!(
        a.as_slice::<f32>().unwrap().as_ptr(),
        b.as_slice::<f32>().unwrap().as_ptr()
    );
    b.as_mut_slice::<f32>().unwrap()[0] = 42.0;
    assert_ne!(a.as_slice::<f32>().unwrap()[0], 42.0);
    let mut c = a.clone();
    c.fill(1.0);
    assert!(a.to_vec_f32().iter().any(|&v| v != 1.0));
    let mut d = a.clone();
    ops::scale_in_place(&mut d, 2.0).unwrap();
    assert_eq!(d.to_vec_f32()[1], 2.0 * a.to_vec_f32()[1]);
}

#[test]
fn philox_word_fill_matches_block_by_block() {
    use noprop_tensor::philox::{block, fill_words};
    for (n, first) in [
        (0usize, 0u64),
        (3, 5),
        (64, 0),
        (64 * 3 + 7, u32::MAX as u64 - 5),
    ] {
        let mut w = vec![0u32; n];
        fill_words(77, 1 << 40, first, &mut w);
        for (i, quad) in w.chunks(4).enumerate() {
            assert_eq!(
                quad,
                &block(77, 1 << 40, first + i as u64)[..quad.len()],
                "n {n} block {i}"
            );
        }
    }
}
