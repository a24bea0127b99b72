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
//! | randn | 1e-6 | Box–Muller in f64 on both sides; CUDA's `log`/`cos`/`sin` may differ from libm by an f64 ulp |
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

// ------------------------------------------------------------------- GEMM

/// `(m, n, k)`: odd sizes, the CPU kernel's split paths, the paper's FC
/// shape, and zero sizes.
const GEMM_ZOO: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 7, 63),
    (7, 1, 7),
    (63, 63, 7),
    (7, 63, 1),
    (64, 65, 66),
    (600, 10, 9),    // row-split path, tiny n
    (513, 70, 33),   // row-split path with a partial last block
    (128, 256, 512), // FC fusion shape
    (128, 130, 200), // column-split path with a partial block
    (32, 27, 9001),  // inner-split path (weight-gradient shape), uneven slices
    (0, 5, 3),       // no rows
    (4, 0, 3),       // no columns
    (4, 5, 0),       // empty inner dimension: C = 0 (or C unchanged when accumulating)
    (0, 0, 0),
];

/// The zoo, then every `(m, n, k)` of {1, 7, 63, 128}² × {1, 7, 63, 257}.
fn gemm_shapes() -> Vec<(usize, usize, usize)> {
    let mut v = GEMM_ZOO.to_vec();
    for m in [1, 7, 63, 128] {
        for n in [1, 7, 63, 128] {
            for k in [1, 7, 63, 257] {
                v.push((m, n, k));
            }
        }
    }
    v
}

/// `matmul` and `gemm_into` (overwriting and accumulating into a random
/// `C`) with every transpose against the naive product. Tolerance relative
/// to the scale of the dot products (`√k` for unit normals): f64 1e-12,
/// f32 1e-4.
fn gemm_matches_naive_reference(dev: &Device) {
    for (si, (m, n, k)) in gemm_shapes().into_iter().enumerate() {
        for (ta, tb) in [
            (Transpose::No, Transpose::No),
            (Transpose::Yes, Transpose::No),
            (Transpose::No, Transpose::Yes),
            (Transpose::Yes, Transpose::Yes),
        ] {
            for &dtype in dtypes(dev) {
                let s = 10 * si as u64;
                let ashape = if ta == Transpose::No { [m, k] } else { [k, m] };
                let bshape = if tb == Transpose::No { [k, n] } else { [n, k] };
                let (a, b) = (rand_t(&ashape, dtype, s + 1), rand_t(&bshape, dtype, s + 2));
                let (da, db) = (up(dev, &a), up(dev, &b));
                let mut av = a.to_vec_f64();
                let mut bv = b.to_vec_f64();
                if ta == Transpose::Yes {
                    av = naive_t(&av, k, m);
                }
                if tb == Transpose::Yes {
                    bv = naive_t(&bv, n, k);
                }
                let want = naive_matmul(&av, &bv, m, n, k);
                let what = format!("gemm {m}x{n}x{k} {ta:?}{tb:?} {dtype:?}");
                let tol = if dtype == DType::F32 { 1e-4 } else { 1e-12 };
                let floor = (k as f64).sqrt().max(1.0);

                let c = ops::matmul(&da, ta, &db, tb).unwrap();
                assert_eq!(c.shape(), &[m, n], "{what}");
                check_ref(dev, &what, &c, &want, floor, tol, Row::Gemm);
                parity(
                    dev,
                    &what,
                    &c,
                    || ops::matmul(&a, ta, &b, tb).unwrap(),
                    Row::Gemm,
                );

                // Into a random C: overwritten, then accumulated into.
                let c0 = rand_t(&[m, n], dtype, s + 3);
                let mut dc = up(dev, &c0);
                ops::gemm_into(&mut dc, false, &da, ta, &db, tb).unwrap();
                check_ref(
                    dev,
                    &format!("{what} into"),
                    &dc,
                    &want,
                    floor,
                    tol,
                    Row::Gemm,
                );
                let mut dc = up(dev, &c0);
                ops::gemm_into(&mut dc, true, &da, ta, &db, tb).unwrap();
                let acc: Vec<f64> = c0
                    .to_vec_f64()
                    .iter()
                    .zip(&want)
                    .map(|(x, y)| x + y)
                    .collect();
                let what_acc = format!("{what} accumulate");
                check_ref(dev, &what_acc, &dc, &acc, floor, tol, Row::Gemm);
                parity(
                    dev,
                    &what_acc,
                    &dc,
                    || {
                        let mut c1 = c0.clone();
                        ops::gemm_into(&mut c1, true, &a, ta, &b, tb).unwrap();
                        c1
                    },
                    Row::Gemm,
                );
                if k == 0 {
                    // An empty sum: zeros, or C left exactly as it was.
                    assert!(back(dev, &what, &c).iter().all(|&v| v == 0.0), "{what}");
                    assert!(dc.bit_eq(&c0), "{what_acc}: C changed");
                }
            }
        }
    }
}

/// Accumulation, including the inner-split path (long `k`, small output).
/// f64: 1e-12 with floors 1 and 100; f32: 1e-5.
fn gemm_accumulates_into_output(dev: &Device) {
    for &dtype in dtypes(dev) {
        for (i, &(m, k, n, floor)) in [(7, 63, 9, 1.0), (5, 10_000, 9, 100.0)].iter().enumerate() {
            let s = 10 * i as u64;
            let a = rand_t(&[m, k], dtype, s + 3);
            let b = rand_t(&[k, n], dtype, s + 4);
            let c0 = rand_t(&[m, n], dtype, s + 5);
            let mut c = up(dev, &c0);
            ops::gemm_into(
                &mut c,
                true,
                &up(dev, &a),
                Transpose::No,
                &up(dev, &b),
                Transpose::No,
            )
            .unwrap();
            let prod = naive_matmul(&a.to_vec_f64(), &b.to_vec_f64(), m, n, k);
            let want: Vec<f64> = c0
                .to_vec_f64()
                .iter()
                .zip(&prod)
                .map(|(x, y)| x + y)
                .collect();
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            let what = format!("gemm_into accumulate {m}x{n}x{k} {dtype:?}");
            check_ref(dev, &what, &c, &want, floor, tol, Row::Gemm);
        }
    }
}

fn gemm_rejects_bad_shapes(dev: &Device) {
    let a = up(dev, &rand_t(&[3, 4], DType::F32, 1));
    let b = up(dev, &rand_t(&[5, 2], DType::F32, 2));
    assert!(ops::matmul(&a, Transpose::No, &b, Transpose::No).is_err());
    let mut c = up(dev, &rand_t(&[3, 3], DType::F32, 3));
    let b2 = up(dev, &rand_t(&[4, 2], DType::F32, 2));
    assert!(ops::gemm_into(&mut c, false, &a, Transpose::No, &b2, Transpose::No).is_err());
    if dev.is_cpu() {
        // Mixed dtypes (f64 exists on the CPU only).
        let b64 = rand_t(&[4, 2], DType::F64, 2);
        assert!(ops::matmul(&a, Transpose::No, &b64, Transpose::No).is_err());
    }
}

// ------------------------------------------------------------ convolution

/// `(n, c, h, w, oc, k, pad)` with a `k×k` kernel: odd sizes, 1s, larger
/// kernels, the paper's MNIST/CIFAR layers (small batch) and an empty batch.
const CONV_ZOO: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (1, 1, 3, 3, 1, 3, 0),
    (1, 1, 1, 1, 7, 3, 1),
    (1, 1, 1, 1, 1, 1, 0),
    (2, 3, 7, 5, 4, 3, 0),
    (2, 3, 7, 5, 4, 3, 1),
    (3, 7, 9, 9, 63, 3, 1),
    (2, 7, 9, 5, 3, 5, 2),
    (1, 2, 63, 7, 1, 3, 0),
    (3, 1, 28, 28, 8, 3, 1),
    (2, 1, 28, 28, 32, 3, 0),   // MNIST conv1
    (2, 32, 13, 13, 64, 3, 0),  // MNIST conv2
    (2, 64, 11, 11, 128, 3, 0), // MNIST conv3
    (2, 3, 32, 32, 32, 3, 0),   // CIFAR conv1
    (0, 3, 5, 5, 2, 3, 0),      // empty batch
];

/// The geometry of a convolution: `(OH, OW)`.
fn out_hw(h: usize, w: usize, k: usize, pad: usize) -> (usize, usize) {
    (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k)
}

/// `im2col`: `[C·K·K, N·OH·OW]`, row `(c, ky, kx)`, column `(n, oy, ox)`.
fn naive_im2col(x: &[f64], s: [usize; 4], k: usize, pad: usize) -> Vec<f64> {
    let [n, c, h, w] = s;
    let (oh, ow) = out_hw(h, w, k, pad);
    let np = n * oh * ow;
    let mut col = vec![0.0; c * k * k * np];
    for ci in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                for ni in 0..n {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let iy = (y + ky) as isize - pad as isize;
                            let ix = (xx + kx) as isize - pad as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                col[row * np + (ni * oh + y) * ow + xx] =
                                    x[((ni * c + ci) * h + iy as usize) * w + ix as usize];
                            }
                        }
                    }
                }
            }
        }
    }
    col
}

/// `col2im`, the adjoint of [`naive_im2col`]: every column entry added to
/// the pixel it was copied from.
fn naive_col2im(col: &[f64], s: [usize; 4], k: usize, pad: usize) -> Vec<f64> {
    let [n, c, h, w] = s;
    let (oh, ow) = out_hw(h, w, k, pad);
    let np = n * oh * ow;
    let mut x = vec![0.0; n * c * h * w];
    for ci in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                for ni in 0..n {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let iy = (y + ky) as isize - pad as isize;
                            let ix = (xx + kx) as isize - pad as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                x[((ni * c + ci) * h + iy as usize) * w + ix as usize] +=
                                    col[row * np + (ni * oh + y) * ow + xx];
                            }
                        }
                    }
                }
            }
        }
    }
    x
}

/// Naive convolution (`[N, OC, OH, OW]`) and its gradients for `dy`:
/// `(y, dx, dw, db)`.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn naive_conv(
    x: &[f64],
    s: [usize; 4],
    wt: &[f64],
    oc: usize,
    k: usize,
    b: Option<&[f64]>,
    pad: usize,
    dy: Option<&[f64]>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let [n, c, h, w] = s;
    let (oh, ow) = out_hw(h, w, k, pad);
    let mut y = vec![0.0; n * oc * oh * ow];
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; wt.len()], vec![0.0; oc]);
    for ni in 0..n {
        for o in 0..oc {
            for yy in 0..oh {
                for xx in 0..ow {
                    let at = ((ni * oc + o) * oh + yy) * ow + xx;
                    let d = dy.map_or(0.0, |d| d[at]);
                    db[o] += d;
                    let mut acc = b.map_or(0.0, |b| b[o]);
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (yy + ky) as isize - pad as isize;
                                let ix = (xx + kx) as isize - pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let xi = ((ni * c + ci) * h + iy as usize) * w + ix as usize;
                                    let wi = ((o * c + ci) * k + ky) * k + kx;
                                    acc += x[xi] * wt[wi];
                                    dw[wi] += d * x[xi];
                                    dx[xi] += d * wt[wi];
                                }
                            }
                        }
                    }
                    y[at] = acc;
                }
            }
        }
    }
    (y, dx, dw, db)
}

/// Forward (with and without bias, with the fused ReLU) and backward (with
/// the fused ReLU mask) against the naive convolution; im2col exactly and
/// col2im against its naive adjoint. f64: forward 1e-12, backward 1e-11,
/// col2im 1e-12 (floor 1); f32: 1e-5 of the result's scale.
fn conv2d_matches_naive_reference(dev: &Device) {
    for (zi, &(n, c, h, w, oc, k, pad)) in CONV_ZOO.iter().enumerate() {
        for &dtype in dtypes(dev) {
            let s = zi as u64 * 10;
            let shape = [n, c, h, w];
            let x = rand_t(&shape, dtype, s + 1);
            let wt = rand_t(&[oc, c, k, k], dtype, s + 2);
            let b = rand_t(&[oc], dtype, s + 3);
            let (dx_, dw_, db_) = (up(dev, &x), up(dev, &wt), up(dev, &b));
            let (xv, wv, bv) = (x.to_vec_f64(), wt.to_vec_f64(), b.to_vec_f64());
            let what = format!("conv {:?} {dtype:?}", CONV_ZOO[zi]);
            let f32 = dtype == DType::F32;

            // im2col is a copy; col2im sums overlapping taps.
            let col = ops::im2col(&dx_, k, k, pad).unwrap();
            check_exact(
                dev,
                &format!("{what} im2col"),
                &col,
                &naive_im2col(&xv, shape, k, pad),
            );
            let cc = rand_t(col.shape(), dtype, s + 4);
            let back_ = ops::col2im(&up(dev, &cc), &shape, k, k, pad).unwrap();
            let want = naive_col2im(&cc.to_vec_f64(), shape, k, pad);
            let (floor, tol) = if f32 {
                (scale(&want), 1e-6)
            } else {
                (1.0, 1e-12)
            };
            check_ref(
                dev,
                &format!("{what} col2im"),
                &back_,
                &want,
                floor,
                tol,
                Row::Col2im,
            );
            parity(
                dev,
                &format!("{what} col2im"),
                &back_,
                || ops::col2im(&cc, &shape, k, k, pad).unwrap(),
                Row::Col2im,
            );

            for (bias, relu) in [(true, false), (false, false), (true, true)] {
                let what = format!("{what} bias={bias} relu={relu}");
                let mut ws = ops::ConvWorkspace::new();
                let y = ops::conv2d_forward(&dx_, &dw_, bias.then_some(&db_), pad, relu, &mut ws)
                    .unwrap();
                let dy = rand_t(y.shape(), dtype, s + 5);
                let yv = back(dev, &what, &y);
                // The fused mask [y > 0] applied to dy, from the op's own output.
                let dyv: Vec<f64> = dy
                    .to_vec_f64()
                    .iter()
                    .zip(&yv)
                    .map(|(&d, &yy)| if relu && yy <= 0.0 { 0.0 } else { d })
                    .collect();
                let bias_v = bias.then_some(&bv[..]);
                let (mut want, wdx, wdw, wdb) =
                    naive_conv(&xv, shape, &wv, oc, k, bias_v, pad, Some(&dyv));
                if relu {
                    want.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                assert_eq!(
                    y.shape(),
                    &[n, oc, h + 2 * pad + 1 - k, w + 2 * pad + 1 - k]
                );
                let (floor, tol) = if f32 {
                    (scale(&want), 1e-5)
                } else {
                    (1.0, 1e-12)
                };
                check_ref(
                    dev,
                    &format!("{what} forward"),
                    &y,
                    &want,
                    floor,
                    tol,
                    Row::Gemm,
                );
                // The CPU twin, masking with the device's own output (so
                // that a value near 0 that rounds to the other side of 0 on
                // the two devices does not flip the mask).
                let run_cpu = || {
                    let mut ws = ops::ConvWorkspace::new();
                    let yc = ops::conv2d_forward(&x, &wt, bias.then_some(&b), pad, relu, &mut ws)
                        .unwrap();
                    let yh = y.to_device(&Device::Cpu).unwrap();
                    let g =
                        ops::conv2d_backward(&dy, &wt, relu.then_some(&yh), &mut ws, true).unwrap();
                    (yc, g)
                };
                parity(
                    dev,
                    &format!("{what} forward"),
                    &y,
                    || run_cpu().0,
                    Row::Gemm,
                );

                let mask = relu.then_some(&y);
                let ddy = up(dev, &dy);
                let g = ops::conv2d_backward(&ddy, &dw_, mask, &mut ws, true).unwrap();
                let dxg = g.dx.as_ref().unwrap();
                for (name, got, want) in
                    [("dw", &g.dw, &wdw), ("db", &g.db, &wdb), ("dx", dxg, &wdx)]
                {
                    let (floor, tol) = if f32 {
                        (scale(want), 1e-5)
                    } else {
                        (1.0, 1e-11)
                    };
                    let what = format!("{what} {name}");
                    check_ref(dev, &what, got, want, floor, tol, Row::Gemm);
                }
                if !dev.is_cpu() {
                    let (_, gc) = run_cpu();
                    parity(
                        dev,
                        &format!("{what} dw"),
                        &g.dw,
                        || gc.dw.clone(),
                        Row::Gemm,
                    );
                    parity(
                        dev,
                        &format!("{what} db"),
                        &g.db,
                        || gc.db.clone(),
                        Row::Gemm,
                    );
                    let cdx = gc.dx.clone().unwrap();
                    parity(dev, &format!("{what} dx"), dxg, || cdx, Row::Gemm);
                }
                // A second backward without a forward is an error, not garbage.
                assert!(ops::conv2d_backward(&ddy, &dw_, mask, &mut ws, true).is_err());
            }
        }
    }
}

/// An f32 convolution with the fused ReLU against the f64 one on the CPU
/// (floor 17, 1e-5); the ReLU zeroed some outputs and kept others.
fn conv2d_f32_matches_f64_and_fused_relu(dev: &Device) {
    let x = rand_t(&[4, 32, 13, 13], DType::F32, 11);
    let wt = rand_t(&[64, 32, 3, 3], DType::F32, 12);
    let b = rand_t(&[64], DType::F32, 13);
    let mut ws = ops::ConvWorkspace::new();
    let y = ops::conv2d_forward(
        &up(dev, &x),
        &up(dev, &wt),
        Some(&up(dev, &b)),
        0,
        true,
        &mut ws,
    )
    .unwrap();
    let mut ws64 = ops::ConvWorkspace::new();
    let y64 = ops::conv2d_forward(
        &x.to_dtype(DType::F64),
        &wt.to_dtype(DType::F64),
        Some(&b.to_dtype(DType::F64)),
        0,
        false,
        &mut ws64,
    )
    .unwrap();
    let want: Vec<f64> = y64.to_vec_f64().iter().map(|v| v.max(0.0)).collect();
    check_ref(dev, "conv f32 vs f64", &y, &want, 17.0, 1e-5, Row::Gemm);
    let yv = back(dev, "conv f32", &y);
    assert!(yv.contains(&0.0) && yv.iter().any(|&v| v > 0.0));
}

/// The ReLU mask fused into the backward equals masking `dy` first, bit
/// for bit (the same GEMMs on the same values).
fn fused_relu_mask_in_conv_backward_equals_separate_mask(dev: &Device) {
    for &dtype in dtypes(dev) {
        let x = up(dev, &rand_t(&[3, 4, 9, 8], dtype, 111));
        let w = up(dev, &rand_t(&[5, 4, 3, 3], dtype, 112));
        let b = up(dev, &rand_t(&[5], dtype, 113));
        let mut ws1 = ops::ConvWorkspace::new();
        let y = ops::conv2d_forward(&x, &w, Some(&b), 0, true, &mut ws1).unwrap();
        let dy = up(dev, &rand_t(y.shape(), dtype, 114));
        let fused = ops::conv2d_backward(&dy, &w, Some(&y), &mut ws1, true).unwrap();
        let mut ws2 = ops::ConvWorkspace::new();
        ops::conv2d_forward(&x, &w, Some(&b), 0, true, &mut ws2).unwrap();
        let masked = ops::relu_backward(&dy, &y).unwrap();
        let plain = ops::conv2d_backward(&masked, &w, None, &mut ws2, true).unwrap();
        assert!(
            fused.dw.bit_eq(&plain.dw) && fused.db.bit_eq(&plain.db),
            "{dtype:?}"
        );
        assert!(fused.dx.unwrap().bit_eq(&plain.dx.unwrap()), "{dtype:?}");
        // The mask did something.
        assert!(back(dev, "y", &y).contains(&0.0));
    }
}

/// `<im2col(x), c> == <x, col2im(c)>` for random `x`, `c`; pad 0 with a
/// 3-row kernel takes col2im's fused path (edge rows too). f64: 1e-12
/// relative; f32: 1e-5.
fn im2col_col2im_are_adjoint(dev: &Device) {
    for &(n, c, h, w, kw, pad) in &[
        (1, 1, 3, 3, 3, 0),
        (2, 3, 7, 5, 3, 1),
        (1, 7, 9, 8, 3, 0),
        (2, 4, 13, 11, 3, 0),
        (1, 2, 4, 6, 2, 0),
        (1, 2, 5, 6, 1, 1),
    ] {
        for &dtype in dtypes(dev) {
            let x = up(dev, &rand_t(&[n, c, h, w], dtype, 21));
            let col = ops::im2col(&x, 3, kw, pad).unwrap();
            let cc = up(dev, &rand_t(col.shape(), dtype, 22));
            let back_ = ops::col2im(&cc, &[n, c, h, w], 3, kw, pad).unwrap();
            let lhs = ops::dot(&col, &cc).unwrap();
            let rhs = ops::dot(&x, &back_).unwrap();
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            check_scalar(dev, "adjoint", lhs, rhs, tol, 0.0, Row::Gemm);
        }
    }
}

/// A weight with other input channels than the cached forward's input is
/// refused, and the refusal leaves the workspace usable.
fn conv2d_backward_rejects_a_weight_of_other_input_channels(dev: &Device) {
    let x = up(dev, &rand_t(&[2, 3, 9, 9], DType::F32, 6000));
    let w = up(dev, &rand_t(&[4, 3, 3, 3], DType::F32, 6001));
    let wrong = up(dev, &rand_t(&[4, 5, 3, 3], DType::F32, 6002));
    let mut ws = ops::ConvWorkspace::new();
    let y = ops::conv2d_forward(&x, &w, None, 0, false, &mut ws).unwrap();
    let dy = up(dev, &rand_t(y.shape(), DType::F32, 6003));
    let e = match ops::conv2d_backward(&dy, &wrong, None, &mut ws, true) {
        Err(e) => e,
        Ok(_) => panic!("{dev} must refuse a weight of other input channels"),
    };
    assert!(e.to_string().contains("input channels"), "{e}");
    // The refused call left the cached forward in place: the right weight works.
    let ok = ops::conv2d_backward(&dy, &w, None, &mut ws, true).unwrap();
    assert_eq!(ok.dw.shape(), w.shape());
    assert_eq!(ok.dw.device(), *dev);
}

// ---------------------------------------------------------------- pooling

/// The naive 2×2 max-pool: per output, the flat in-plane index of the first
/// maximum in window order (a NaN wins over numbers, the first NaN).
fn naive_pool_argmax(x: &[f64], s: [usize; 4]) -> Vec<usize> {
    let [n, c, h, w] = s;
    let (oh, ow) = (h / 2, w / 2);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for pl in 0..n * c {
        for yy in 0..oh {
            for xx in 0..ow {
                let at = |a: usize, b: usize| (a * w + b, x[pl * h * w + a * w + b]);
                let mut best = at(2 * yy, 2 * xx);
                for (da, db) in [(0, 1), (1, 0), (1, 1)] {
                    let v = at(2 * yy + da, 2 * xx + db);
                    if v.1 > best.1 || (v.1.is_nan() && !best.1.is_nan()) {
                        best = v;
                    }
                }
                out.push(best.0);
            }
        }
    }
    out
}

/// Max-pool values (bit for bit, signed zeros and NaN included), indices (on
/// the CPU, where they are readable) and the gradient routed to each argmax
/// (exact: windows do not overlap), against [`naive_pool_argmax`].
fn check_pool(dev: &Device, what: &str, x: &Tensor, s: [usize; 4]) {
    let [n, c, h, w] = s;
    let xv = x.to_vec_f64();
    let arg = naive_pool_argmax(&xv, s);
    let (y, idx) = ops::max_pool2d(&up(dev, x)).unwrap();
    assert_eq!(y.shape(), &[n, c, h / 2, w / 2], "{what}");
    let ys = back(dev, what, &y);
    let hw = h * w;
    for (k, (&a, &got)) in arg.iter().zip(&ys).enumerate() {
        let want = xv[(k / ((h / 2) * (w / 2))) * hw + a];
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{what} on {dev}, output {k}: {got} vs {want}"
        );
    }
    if let Some(i) = idx.as_host() {
        assert!(dev.is_cpu(), "{what}: indices of a device pool on the host");
        let got: Vec<usize> = i.iter().map(|&v| v as usize).collect();
        assert_eq!(got, arg, "{what}: indices");
    }
    let dy = rand_t(y.shape(), x.dtype(), 32);
    let dys = dy.to_vec_f64();
    let mut want = vec![0.0; xv.len()];
    for (k, &a) in arg.iter().enumerate() {
        want[(k / ((h / 2) * (w / 2))) * hw + a] += dys[k];
    }
    let g = ops::max_pool2d_grad(&up(dev, &dy), &idx, &s).unwrap();
    check_exact(dev, &format!("{what} backward"), &g, &want);
    parity(dev, what, &y, || ops::max_pool2d(x).unwrap().0, Row::Exact);
}

fn max_pool_matches_naive_and_routes_gradients(dev: &Device) {
    for s in [
        [1, 1, 2, 2],
        [1, 1, 1, 1],
        [2, 3, 7, 7],
        [1, 1, 63, 8],
        [2, 32, 26, 26],
        [4, 8, 28, 28],
        [1, 128, 9, 9],
        [1, 1, 1, 5],
        [0, 3, 4, 4],
    ] {
        for &dtype in dtypes(dev) {
            let x = rand_t(&s, dtype, 31);
            check_pool(dev, &format!("max_pool2d {s:?} {dtype:?}"), &x, s);
        }
    }
}

/// Ties, signed zeros and NaN: the first maximum in window order wins and a
/// NaN wins over numbers (the first NaN). Values are drawn from a tiny set so
/// that ties are everywhere, as after a ReLU; some rows hold NaN, which sends
/// them down the exact slow path.
fn max_pool_ties_signed_zeros_and_nan(dev: &Device) {
    let set = [0.0, -0.0, 1.0, 1.0, -2.0, 0.5, f64::NAN];
    for s in [[2, 3, 8, 9], [1, 4, 7, 6]] {
        for &dtype in dtypes(dev) {
            let [n, c, h, w] = s;
            let numel = n * c * h * w;
            let u = rand_t(&[numel], DType::F64, 33).to_vec_f64();
            // NaN only in the planes with odd index, so most rows stay NaN-free.
            let vals: Vec<f64> = u
                .iter()
                .enumerate()
                .map(|(i, &r)| {
                    let k = ((r.abs() * 1e4) as usize) % set.len();
                    let plane = i / (h * w);
                    if plane % 2 == 0 && k == set.len() - 1 {
                        0.0
                    } else {
                        set[k]
                    }
                })
                .collect();
            let x = Tensor::from_vec(vals, &s).unwrap().to_dtype(dtype);
            check_pool(dev, &format!("max_pool2d ties {s:?} {dtype:?}"), &x, s);
        }
    }
}

// ------------------------------------------------------------- batch norm

/// Naive training batch-norm of `x` (`[N, C, …]`): `(y, mean, biased var)`.
fn naive_bn(x: &[f64], s: &[usize], g: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, c) = (s[0], s[1]);
    let p: usize = s[2..].iter().product();
    let m = (n * p) as f64;
    let (mut y, mut mu, mut var) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    for ci in 0..c {
        let idx: Vec<usize> = (0..n)
            .flat_map(|ni| (0..p).map(move |j| (ni * c + ci) * p + j))
            .collect();
        mu[ci] = idx.iter().map(|&i| x[i]).sum::<f64>() / m;
        var[ci] = idx.iter().map(|&i| (x[i] - mu[ci]).powi(2)).sum::<f64>() / m;
        for &i in &idx {
            y[i] = g[ci] * (x[i] - mu[ci]) / (var[ci] + 1e-5).sqrt() + b[ci];
        }
    }
    (y, mu, var)
}

/// Training forward (output, saved statistics, running statistics),
/// backward (`dx`, `dγ`, `dβ`) and eval against the naive formulas. f64:
/// 1e-10 (floor 1); f32: 1e-4 of the result's scale (divisions by the
/// standard deviation of a few values).
fn batch_norm_matches_naive_reference(dev: &Device) {
    let shapes: &[&[usize]] = &[
        &[7, 1],
        &[2, 1],
        &[128, 256],
        &[63, 7],
        &[64, 32],
        &[2, 3, 5, 5],
        &[4, 32, 7, 7],
        &[2, 63, 1, 1],
    ];
    for (si, &shape) in shapes.iter().enumerate() {
        for &dtype in dtypes(dev) {
            let seed = 40 + 10 * si as u64;
            let c = shape[1];
            let x = rand_t(shape, dtype, seed + 1);
            let gamma = rand_t(&[c], dtype, seed + 2);
            let beta = rand_t(&[c], dtype, seed + 3);
            let rm0 = rand_t(&[c], dtype, seed + 4);
            let rv0 = ops::relu(&rand_t(&[c], dtype, seed + 5)).unwrap();
            let (dxx, dg, db) = (up(dev, &x), up(dev, &gamma), up(dev, &beta));
            let (mut rm, mut rv) = (up(dev, &rm0), up(dev, &rv0));
            let what = format!("batch_norm {shape:?} {dtype:?}");
            let f32 = dtype == DType::F32;
            let tol_of = |v: &[f64]| if f32 { (scale(v), 1e-4) } else { (1.0, 1e-10) };

            let (y, saved) =
                ops::batch_norm_train(&dxx, &dg, &db, &mut rm, &mut rv, 0.1, 1e-5).unwrap();
            let (xv, gv, bv) = (x.to_vec_f64(), gamma.to_vec_f64(), beta.to_vec_f64());
            let (want, mu, var) = naive_bn(&xv, shape, &gv, &bv);
            let m = (x.numel() / c) as f64;
            let want_rm: Vec<f64> = rm0
                .to_vec_f64()
                .iter()
                .zip(&mu)
                .map(|(r, u)| 0.9 * r + 0.1 * u)
                .collect();
            let want_rv: Vec<f64> = rv0
                .to_vec_f64()
                .iter()
                .zip(&var)
                .map(|(r, v)| 0.9 * r + 0.1 * if m > 1.0 { v * m / (m - 1.0) } else { *v })
                .collect();
            for (name, got, want) in [
                ("y", &y, &want),
                ("mean", &saved.mean, &mu),
                ("var", &saved.var, &var),
                ("running mean", &rm, &want_rm),
                ("running var", &rv, &want_rv),
            ] {
                let (floor, tol) = tol_of(want);
                check_ref(
                    dev,
                    &format!("{what} {name}"),
                    got,
                    want,
                    floor,
                    tol,
                    Row::BatchNorm,
                );
            }
            let run_cpu = || {
                let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
                let (y, s) =
                    ops::batch_norm_train(&x, &gamma, &beta, &mut rm, &mut rv, 0.1, 1e-5).unwrap();
                (y, s, rm, rv)
            };
            if !dev.is_cpu() {
                let (cy, cs, crm, crv) = run_cpu();
                for (name, got, cpu) in [
                    ("y", &y, cy),
                    ("mean", &saved.mean, cs.mean),
                    ("var", &saved.var, cs.var),
                    ("running mean", &rm, crm),
                    ("running var", &rv, crv),
                ] {
                    parity(dev, &format!("{what} {name}"), got, || cpu, Row::BatchNorm);
                }
            }

            // Backward: dβ = Σ dy, dγ = Σ dy·x̂, dx = γ/(σ·m)·(m·dy − dβ − x̂·dγ).
            let dy = rand_t(shape, dtype, seed + 6);
            let (gdx, gdg, gdb) = ops::batch_norm_backward(&up(dev, &dy), &dg, &saved).unwrap();
            let dyv = dy.to_vec_f64();
            let p: usize = shape[2..].iter().product();
            let ch = |i: usize| (i / p) % c;
            let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
            let xhat: Vec<f64> = xv
                .iter()
                .enumerate()
                .map(|(i, v)| (v - mu[ch(i)]) * inv[ch(i)])
                .collect();
            let (mut wdg, mut wdb) = (vec![0.0; c], vec![0.0; c]);
            for i in 0..xv.len() {
                wdb[ch(i)] += dyv[i];
                wdg[ch(i)] += dyv[i] * xhat[i];
            }
            let wdx: Vec<f64> = (0..xv.len())
                .map(|i| {
                    let k = ch(i);
                    gv[k] * inv[k] / m * (m * dyv[i] - wdb[k] - xhat[i] * wdg[k])
                })
                .collect();
            for (name, got, want) in [
                ("dx", &gdx, &wdx),
                ("dgamma", &gdg, &wdg),
                ("dbeta", &gdb, &wdb),
            ] {
                let (floor, tol) = tol_of(want);
                check_ref(
                    dev,
                    &format!("{what} {name}"),
                    got,
                    want,
                    floor,
                    tol,
                    Row::BatchNorm,
                );
            }
            if !dev.is_cpu() {
                let (_, cs, _, _) = run_cpu();
                let (cdx, cdg, cdb) = ops::batch_norm_backward(&dy, &gamma, &cs).unwrap();
                parity(dev, &format!("{what} dx"), &gdx, || cdx, Row::BatchNorm);
                parity(dev, &format!("{what} dgamma"), &gdg, || cdg, Row::BatchNorm);
                parity(dev, &format!("{what} dbeta"), &gdb, || cdb, Row::BatchNorm);
            }

            // Eval with the batch's own statistics reproduces the training output.
            let ye = ops::batch_norm_eval(&dxx, &dg, &db, &saved.mean, &saved.var, 1e-5).unwrap();
            let (floor, tol) = tol_of(&want);
            check_ref(
                dev,
                &format!("{what} eval (batch stats)"),
                &ye,
                &want,
                floor,
                tol,
                Row::BatchNorm,
            );
            // Eval with other running statistics.
            let (rmv, rvv) = (rm0.to_vec_f64(), rv0.to_vec_f64());
            let want_e: Vec<f64> = (0..xv.len())
                .map(|i| {
                    let k = ch(i);
                    gv[k] * (xv[i] - rmv[k]) / (rvv[k] + 1e-5).sqrt() + bv[k]
                })
                .collect();
            let ye =
                ops::batch_norm_eval(&dxx, &dg, &db, &up(dev, &rm0), &up(dev, &rv0), 1e-5).unwrap();
            let (floor, tol) = tol_of(&want_e);
            check_ref(
                dev,
                &format!("{what} eval"),
                &ye,
                &want_e,
                floor,
                tol,
                Row::BatchNorm,
            );
            parity(
                dev,
                &format!("{what} eval"),
                &ye,
                || ops::batch_norm_eval(&x, &gamma, &beta, &rm0, &rv0, 1e-5).unwrap(),
                Row::BatchNorm,
            );
        }
    }
}

// ---------------------------------------------------------------- softmax

/// Softmax, log-softmax and the fused cross-entropy (loss and gradient)
/// against the naive formulas, including an empty batch. f64: 1e-12
/// relative (the gradient 1e-14 absolute); f32: 1e-6 of the result's scale.
fn softmax_family_matches_naive_reference(dev: &Device) {
    for (i, &(b, m)) in [
        (1, 1),
        (7, 10),
        (63, 100),
        (128, 10),
        (7, 63),
        (63, 7),
        (4, 1000),
        (0, 10),
    ]
    .iter()
    .enumerate()
    {
        for &dtype in dtypes(dev) {
            let x = ops::scale(&rand_t(&[b, m], dtype, 51 + i as u64), 3.0).unwrap();
            let dx = up(dev, &x);
            let xs = x.to_vec_f64();
            let labels: Vec<usize> = (0..b).map(|r| (r * 7 + 3) % m).collect();
            let what = format!("softmax {b}x{m} {dtype:?}");
            let p = ops::softmax(&dx).unwrap();
            let lp = ops::log_softmax(&dx).unwrap();
            let (loss, grad) = ops::softmax_cross_entropy(&dx, &labels).unwrap();
            let (mut wp, mut wlp, mut wg) = (vec![0.0; b * m], vec![0.0; b * m], vec![0.0; b * m]);
            let mut want_loss = 0.0;
            for r in 0..b {
                let row = &xs[r * m..(r + 1) * m];
                let z: f64 = row.iter().map(|v| v.exp()).sum();
                for j in 0..m {
                    wp[r * m + j] = row[j].exp() / z;
                    wlp[r * m + j] = row[j] - z.ln();
                    let onehot = if j == labels[r] { 1.0 } else { 0.0 };
                    wg[r * m + j] = (row[j].exp() / z - onehot) / b as f64;
                }
                want_loss -= row[labels[r]] - z.ln();
            }
            let want_loss = if b == 0 { 0.0 } else { want_loss / b as f64 };
            let f32 = dtype == DType::F32;
            let t = |v: &[f64], floor64: f64| {
                if f32 {
                    (scale(v), 1e-6)
                } else {
                    (floor64, 1e-12)
                }
            };
            let (floor, tol) = t(&wp, 1e-300);
            check_ref(dev, &what, &p, &wp, floor, tol, Row::Softmax);
            let (floor, tol) = t(&wlp, 1.0);
            check_ref(
                dev,
                &format!("log_{what}"),
                &lp,
                &wlp,
                floor,
                tol,
                Row::Softmax,
            );
            let (floor, tol) = if f32 {
                (scale(&wg), 1e-6)
            } else {
                (1.0, 1e-14)
            };
            check_ref(
                dev,
                &format!("{what} xent grad"),
                &grad,
                &wg,
                floor,
                tol,
                Row::Softmax,
            );
            let (ltol, leps) = if f32 { (1e-6, 1e-6) } else { (1e-12, 0.0) };
            check_scalar(
                dev,
                &format!("{what} xent loss"),
                loss,
                want_loss,
                ltol,
                leps,
                Row::Softmax,
            );
            parity(dev, &what, &p, || ops::softmax(&x).unwrap(), Row::Softmax);
            parity(
                dev,
                &format!("log_{what}"),
                &lp,
                || ops::log_softmax(&x).unwrap(),
                Row::Softmax,
            );
            let cpu = || ops::softmax_cross_entropy(&x, &labels).unwrap();
            parity(
                dev,
                &format!("{what} xent grad"),
                &grad,
                || cpu().1,
                Row::Softmax,
            );
            parity_scalar(
                dev,
                &format!("{what} xent loss"),
                loss,
                || cpu().0,
                Row::Softmax,
            );
        }
    }
    let x = up(dev, &rand_t(&[2, 3], DType::F32, 52));
    assert!(ops::softmax_cross_entropy(&x, &[0, 3]).is_err());
    assert!(ops::softmax_cross_entropy(&x, &[0]).is_err());
}

/// The softmax backward against the Jacobian `∂p_k/∂x_j = p_k(δ_jk − p_j)`.
/// f64: 1e-10 relative, 1e-14 absolute; f32: 1e-6 of the scale.
fn softmax_backward_matches_jacobian(dev: &Device) {
    for &(b, m) in &[(7, 10), (1, 1), (63, 7), (0, 5)] {
        for &dtype in dtypes(dev) {
            let x = rand_t(&[b, m], dtype, 61);
            let p = ops::softmax(&x).unwrap();
            let dp = rand_t(&[b, m], dtype, 62);
            let dx = ops::softmax_backward(&up(dev, &p), &up(dev, &dp)).unwrap();
            let (ps, dps) = (p.to_vec_f64(), dp.to_vec_f64());
            let mut want = vec![0.0; b * m];
            for i in 0..b {
                for j in 0..m {
                    let mut s = 0.0;
                    for k in 0..m {
                        let jac = ps[i * m + k] * (if j == k { 1.0 } else { 0.0 } - ps[i * m + j]);
                        s += dps[i * m + k] * jac;
                    }
                    want[i * m + j] = s;
                }
            }
            let what = format!("softmax_backward {b}x{m} {dtype:?}");
            if dtype == DType::F64 {
                let got = back(dev, &what, &dx);
                for (g, w) in got.iter().zip(&want) {
                    assert_relative_eq!(*g, *w, max_relative = 1e-10, epsilon = 1e-14);
                }
            } else {
                check_ref(dev, &what, &dx, &want, scale(&want), 1e-6, Row::Softmax);
            }
            parity(
                dev,
                &what,
                &dx,
                || ops::softmax_backward(&p, &dp).unwrap(),
                Row::Softmax,
            );
        }
    }
}

// ------------------------------------------------- reductions, element-wise

const SIZES: &[&[usize]] = &[
    &[1],
    &[7],
    &[63],
    &[7, 63],
    &[3, 5, 7, 9],
    &[70_001],
    &[100_003],
    &[0],
];

/// `Q = √(Σᵢ Sᵢ²)` over the running sums `Sᵢ` of `terms`: the scale of the
/// rounding error of a sum in floating point (each addition rounds by up to
/// half an ulp of `Sᵢ`, so a sequential f32 sum is off by about
/// `2⁻²⁴·Q/√3`; chunked or tree orders do better).
fn partial_sums_norm(terms: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut q) = (0.0f64, 0.0f64);
    for t in terms {
        s += t;
        q += s * s;
    }
    q.sqrt()
}

/// A sum's result against the f64 sum `want`, `mag` being the
/// [`partial_sums_norm`] of its terms. f64 (CPU only): `|got − want| ≤
/// max(tol·max(|got|, |want|), eps)`. f32: the error of an f32 sum grows with
/// its partial sums, not with the result (which may cancel), so the bound is
/// `2e-7·max(1, mag)` on the CPU (six standard deviations of a sequential
/// sum's error) plus, on a GPU, the table's row. On a GPU also the parity
/// check, `|gpu − cpu| ≤ row·max(1, mag)`.
#[allow(clippy::too_many_arguments)]
fn check_sum(
    dev: &Device,
    what: &str,
    dtype: DType,
    got: f64,
    want: f64,
    mag: f64,
    (tol, eps): (f64, f64),
    cpu: impl FnOnce() -> f64,
) {
    let d = (got - want).abs();
    let bound = match (dtype, dev.is_cpu()) {
        (DType::F64, _) => (tol * got.abs().max(want.abs())).max(eps),
        (DType::F32, true) => 2e-7 * mag.max(1.0),
        (DType::F32, false) => (2e-7 + Row::Reduce.tol()) * mag.max(1.0),
    };
    assert!(
        d <= bound,
        "{what} on {dev}: {got} vs {want} (bound {bound})"
    );
    if !dev.is_cpu() {
        let c = cpu();
        let bound = Row::Reduce.tol() * mag.max(1.0);
        assert!(
            (got - c).abs() <= bound,
            "{what}: cpu {c}, gpu {got} (bound {bound})"
        );
    }
}

/// Sum, mean, sum of squares and dot against f64 sums (see [`check_sum`];
/// f64: 1e-10, 1e-10, 1e-12 and 1e-9 (+1e-9 absolute) relative), and column
/// sums, including empty inputs.
fn reductions_match_naive(dev: &Device) {
    for (i, s) in SIZES.iter().enumerate() {
        for &dtype in dtypes(dev) {
            let a = rand_t(s, dtype, 71 + 2 * i as u64);
            let b = rand_t(s, dtype, 72 + 2 * i as u64);
            let (da, db) = (up(dev, &a), up(dev, &b));
            let (av, bv) = (a.to_vec_f64(), b.to_vec_f64());
            let n = av.len();
            let what = format!("{s:?} {dtype:?}");
            let abs = partial_sums_norm(av.iter().copied());
            let sum: f64 = av.iter().sum();
            let got = ops::sum(&da).unwrap();
            let cpu = || ops::sum(&a).unwrap();
            check_sum(
                dev,
                &format!("sum {what}"),
                dtype,
                got,
                sum,
                abs,
                (1e-10, 0.0),
                cpu,
            );
            if n > 0 {
                let got = ops::mean(&da).unwrap();
                let (want, mag) = (sum / n as f64, abs / n as f64);
                let cpu = || ops::mean(&a).unwrap();
                check_sum(
                    dev,
                    &format!("mean {what}"),
                    dtype,
                    got,
                    want,
                    mag,
                    (1e-10, 0.0),
                    cpu,
                );
            }
            let got = ops::sum_sq(&da).unwrap();
            let want: f64 = av.iter().map(|v| v * v).sum();
            let mag = partial_sums_norm(av.iter().map(|v| v * v));
            let cpu = || ops::sum_sq(&a).unwrap();
            check_sum(
                dev,
                &format!("sum_sq {what}"),
                dtype,
                got,
                want,
                mag,
                (1e-12, 0.0),
                cpu,
            );
            let got = ops::dot(&da, &db).unwrap();
            let want: f64 = av.iter().zip(&bv).map(|(x, y)| x * y).sum();
            let mag = partial_sums_norm(av.iter().zip(&bv).map(|(x, y)| x * y));
            let cpu = || ops::dot(&a, &b).unwrap();
            check_sum(
                dev,
                &format!("dot {what}"),
                dtype,
                got,
                want,
                mag,
                (1e-9, 1e-9),
                cpu,
            );
        }
    }
    // Column sums, including an empty batch (zeros).
    for &(m, n) in &[(63, 130), (1, 1), (7, 63), (63, 7), (300, 129), (0, 7)] {
        for &dtype in dtypes(dev) {
            let x = rand_t(&[m, n], dtype, 73);
            let xs = x.to_vec_f64();
            let got = ops::sum_rows(&up(dev, &x)).unwrap();
            assert_eq!(got.shape(), &[n]);
            let want: Vec<f64> = (0..n)
                .map(|j| (0..m).map(|i| xs[i * n + j]).sum())
                .collect();
            let what = format!("sum_rows {m}x{n} {dtype:?}");
            let (floor, tol) = if dtype == DType::F32 {
                (scale(&want), 1e-6)
            } else {
                (1e-12, 1e-12)
            };
            check_ref(dev, &what, &got, &want, floor, tol, Row::Exact);
            parity(dev, &what, &got, || ops::sum_rows(&x).unwrap(), Row::Exact);
        }
    }
}

/// A binary op on tensors, for a table of cases.
type BinaryOp = fn(&Tensor, &Tensor) -> Tensor;

/// The reference of an element-wise op on one element pair.
type Reference<'a> = dyn Fn(f64, f64) -> f64 + 'a;

/// Element-wise ops and bias epilogues: exact, against the same IEEE
/// operations done here (in f64 and rounded to the dtype after each one).
fn elementwise_match_naive(dev: &Device) {
    for (i, s) in SIZES.iter().enumerate() {
        for &dtype in dtypes(dev) {
            let r = rounder(dtype);
            let a = rand_t(s, dtype, 2 * i as u64);
            let b = rand_t(s, dtype, 2 * i as u64 + 1);
            let (da, db) = (up(dev, &a), up(dev, &b));
            let (av, bv) = (a.to_vec_f64(), b.to_vec_f64());
            let map2 = |f: &dyn Fn(f64, f64) -> f64| -> Vec<f64> {
                av.iter().zip(&bv).map(|(&x, &y)| f(x, y)).collect()
            };
            let what = format!("{s:?} {dtype:?}");
            let (al, be) = (r(0.3), r(-1.7));
            // (name, the op, its reference on one element pair).
            let cases: [(&str, BinaryOp, &Reference<'_>); 7] = [
                ("add", |a, b| ops::add(a, b).unwrap(), &|x, y| r(x + y)),
                ("sub", |a, b| ops::sub(a, b).unwrap(), &|x, y| r(x - y)),
                ("mul", |a, b| ops::mul(a, b).unwrap(), &|x, y| r(x * y)),
                (
                    "add_scaled",
                    |a, b| ops::add_scaled(0.3, a, -1.7, b).unwrap(),
                    &|x, y| r(r(al * x) + r(be * y)),
                ),
                ("scale", |a, _| ops::scale(a, 0.37).unwrap(), &|x, _| {
                    r(r(0.37) * x)
                }),
                ("relu", |a, _| ops::relu(a).unwrap(), &|x, _| {
                    if x < 0.0 {
                        0.0
                    } else {
                        x
                    }
                }),
                (
                    "relu_backward",
                    |a, b| ops::relu_backward(b, &ops::relu(a).unwrap()).unwrap(),
                    &|x, y| if x <= 0.0 { 0.0 } else { y },
                ),
            ];
            for (name, op, f) in cases {
                let what = format!("{name} {what}");
                let got = op(&da, &db);
                check_exact(dev, &what, &got, &map2(f));
                parity(dev, &what, &got, || op(&a, &b), Row::Exact);
            }
            // In place: y ← y + αb, then y += b, y ⊙= b, y ← 2y, relu, mask, fill.
            let mut y = da.clone();
            ops::axpy(&mut y, -0.61, &db).unwrap();
            let mut want: Vec<f64> = map2(&|x, y| r(x + r(r(-0.61) * y)));
            check_exact(dev, &format!("axpy {what}"), &y, &want);
            ops::add_assign(&mut y, &db).unwrap();
            want.iter_mut().zip(&bv).for_each(|(w, y)| *w = r(*w + y));
            check_exact(dev, &format!("add_assign {what}"), &y, &want);
            ops::mul_assign(&mut y, &db).unwrap();
            want.iter_mut().zip(&bv).for_each(|(w, y)| *w = r(*w * y));
            check_exact(dev, &format!("mul_assign {what}"), &y, &want);
            ops::scale_in_place(&mut y, 2.0).unwrap();
            want.iter_mut().for_each(|w| *w *= 2.0);
            check_exact(dev, &format!("scale_in_place {what}"), &y, &want);
            let mut m = db.clone();
            ops::relu_backward_in_place(&mut m, &y).unwrap();
            let wm: Vec<f64> = want
                .iter()
                .zip(&bv)
                .map(|(&w, &b)| if w <= 0.0 { 0.0 } else { b })
                .collect();
            check_exact(dev, &format!("relu_backward_in_place {what}"), &m, &wm);
            ops::relu_in_place(&mut y).unwrap();
            want.iter_mut().for_each(|w| *w = w.max(0.0));
            check_exact(dev, &format!("relu_in_place {what}"), &y, &want);
            // The inputs were not written (copy on write).
            check_exact(dev, &format!("input a {what}"), &da, &av);
            check_exact(dev, &format!("input b {what}"), &db, &bv);
            y.try_fill(2.5).unwrap();
            check_exact(dev, &format!("fill {what}"), &y, &vec![2.5; av.len()]);
        }
    }
    // Bias epilogues on [m, n] rows, including an empty batch.
    for &(m, n) in &[(1, 1), (7, 63), (63, 7), (300, 129), (63, 130), (0, 5)] {
        for &dtype in dtypes(dev) {
            let r = rounder(dtype);
            let x = rand_t(&[m, n], dtype, 40);
            let bias = rand_t(&[n], dtype, 41);
            let (xs, bv) = (x.to_vec_f64(), bias.to_vec_f64());
            let sum: Vec<f64> = xs
                .iter()
                .enumerate()
                .map(|(i, v)| r(v + bv[i % n]))
                .collect();
            let what = format!("{m}x{n} {dtype:?}");
            let mut y = up(dev, &x);
            ops::add_bias_rows(&mut y, &up(dev, &bias)).unwrap();
            check_exact(dev, &format!("add_bias_rows {what}"), &y, &sum);
            let mut y = up(dev, &x);
            ops::bias_relu_rows(&mut y, &up(dev, &bias)).unwrap();
            let relu: Vec<f64> = sum.iter().map(|v| v.max(0.0)).collect();
            check_exact(dev, &format!("bias_relu_rows {what}"), &y, &relu);
        }
    }
}

// ------------------------------------------------------------- shape ops

/// Concatenation, split, gather, scatter-add and transpose: exact (scatter
/// adds in row order, rounded to the dtype), including empty batches.
fn concat_split_gather_scatter_transpose(dev: &Device) {
    for &b in &[1usize, 7, 63, 0] {
        for &dtype in dtypes(dev) {
            let r = rounder(dtype);
            let what = format!("batch {b} {dtype:?}");
            let widths = [1usize, 7, 63];
            let parts: Vec<Tensor> = widths
                .iter()
                .enumerate()
                .map(|(i, &w)| rand_t(&[b, w], dtype, 80 + i as u64))
                .collect();
            let dparts: Vec<Tensor> = parts.iter().map(|p| up(dev, p)).collect();
            let cat = ops::concat_cols(&dparts.iter().collect::<Vec<_>>()).unwrap();
            assert_eq!(cat.shape(), &[b, 71]);
            let pv: Vec<Vec<f64>> = parts.iter().map(|p| p.to_vec_f64()).collect();
            let mut want = Vec::new();
            for row in 0..b {
                for (p, &w) in pv.iter().zip(&widths) {
                    want.extend_from_slice(&p[row * w..(row + 1) * w]);
                }
            }
            check_exact(dev, &format!("concat_cols {what}"), &cat, &want);
            let sp = ops::split_cols(&cat, &widths).unwrap();
            for (i, (got, p)) in sp.iter().zip(&pv).enumerate() {
                check_exact(dev, &format!("split_cols {i} {what}"), got, p);
            }

            let table = rand_t(&[10, 63], dtype, 83);
            let tv = table.to_vec_f64();
            let idx: Vec<usize> = (0..b).map(|i| [3, 3, 9, 0][i % 4]).collect();
            let g = ops::gather_rows(&up(dev, &table), &idx).unwrap();
            let want: Vec<f64> = idx
                .iter()
                .flat_map(|&i| tv[i * 63..(i + 1) * 63].to_vec())
                .collect();
            check_exact(dev, &format!("gather_rows {what}"), &g, &want);
            let src = rand_t(&[b, 63], dtype, 84);
            let sv = src.to_vec_f64();
            let sc = ops::scatter_add_rows(&up(dev, &src), &idx, 10).unwrap();
            let mut want = vec![0.0; 10 * 63];
            for (row, &i) in idx.iter().enumerate() {
                for j in 0..63 {
                    want[i * 63 + j] = r(want[i * 63 + j] + sv[row * 63 + j]);
                }
            }
            check_exact(dev, &format!("scatter_add_rows {what}"), &sc, &want);
            parity(
                dev,
                &format!("scatter_add_rows {what}"),
                &sc,
                || ops::scatter_add_rows(&src, &idx, 10).unwrap(),
                Row::Exact,
            );
            assert!(ops::gather_rows(&up(dev, &table), &[10]).is_err());
        }
    }
    // scatter_add is gather's adjoint: <gather(T), S> = <T, scatter(S)> (f64).
    if dev.is_cpu() {
        let table = rand_t(&[10, 4], DType::F64, 83);
        let idx = [3usize, 3, 9, 0];
        let g = ops::gather_rows(&table, &idx).unwrap();
        let s = rand_t(&[4, 4], DType::F64, 84);
        let back_ = ops::scatter_add_rows(&s, &idx, 10).unwrap();
        assert_relative_eq!(
            ops::dot(&g, &s).unwrap(),
            ops::dot(&table, &back_).unwrap(),
            max_relative = 1e-12
        );
    }
    for &(rows, cols) in &[
        (7, 5),
        (1, 1),
        (7, 63),
        (63, 7),
        (100, 33),
        (257, 513),
        (0, 4),
    ] {
        for &dtype in dtypes(dev) {
            let x = rand_t(&[rows, cols], dtype, 85);
            let t = ops::transpose2d(&up(dev, &x)).unwrap();
            assert_eq!(t.shape(), &[cols, rows]);
            let want = naive_t(&x.to_vec_f64(), rows, cols);
            check_exact(
                dev,
                &format!("transpose2d {rows}x{cols} {dtype:?}"),
                &t,
                &want,
            );
        }
    }
}

// ------------------------------------------------------------- optimisers

/// Adam/AdamW (PyTorch's formulation) and SGD with momentum, three steps,
/// against the update rules in f64. f64: 1e-12 (floor 1); f32: 1e-6 of the
/// result's scale.
fn optimisers_match_naive(dev: &Device) {
    for (i, s) in SIZES.iter().enumerate() {
        for &dtype in dtypes(dev) {
            // f32: relative to the result's scale (momentum buffers grow to ~10).
            let tol_of = |want: &[f64]| {
                if dtype == DType::F32 {
                    (scale(want), 1e-6)
                } else {
                    (1.0, 1e-12)
                }
            };
            for decoupled in [false, true] {
                let h = AdamHyper {
                    lr: 1e-3,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 1e-2,
                    decoupled,
                };
                let seed = 1000 + 10 * i as u64;
                let p0 = rand_t(s, dtype, seed);
                let m0 = rand_t(s, dtype, seed + 1);
                let v0 = ops::mul(&m0, &m0).unwrap();
                let (mut p, mut m, mut v) = (up(dev, &p0), up(dev, &m0), up(dev, &v0));
                let (mut wp, mut wm, mut wv) = (p0.to_vec_f64(), m0.to_vec_f64(), v0.to_vec_f64());
                let grads: Vec<Tensor> = (1..=3).map(|t| rand_t(s, dtype, seed + 1 + t)).collect();
                for (t, grad) in (1..=3u64).zip(&grads) {
                    ops::adam_update(&mut p, &up(dev, grad), &mut m, &mut v, &h, t).unwrap();
                    let (bc1, bc2) = (1.0 - h.beta1.powi(t as i32), 1.0 - h.beta2.powi(t as i32));
                    for (j, g) in grad.to_vec_f64().into_iter().enumerate() {
                        let g = if decoupled {
                            wp[j] *= 1.0 - h.lr * h.weight_decay;
                            g
                        } else {
                            g + h.weight_decay * wp[j]
                        };
                        wm[j] = h.beta1 * wm[j] + (1.0 - h.beta1) * g;
                        wv[j] = h.beta2 * wv[j] + (1.0 - h.beta2) * g * g;
                        wp[j] -= h.lr / bc1 * wm[j] / (wv[j].sqrt() / bc2.sqrt() + h.eps);
                    }
                }
                let what = format!("adam {s:?} decoupled={decoupled} {dtype:?}");
                for (name, got, want) in [("param", &p, &wp), ("m", &m, &wm), ("v", &v, &wv)] {
                    let (floor, tol) = tol_of(want);
                    let what = format!("{what} {name}");
                    check_ref(dev, &what, got, want, floor, tol, Row::Adam);
                }
                if !dev.is_cpu() {
                    let (mut cp, mut cm, mut cv) = (p0.clone(), m0.clone(), v0.clone());
                    for (t, grad) in (1..=3u64).zip(&grads) {
                        ops::adam_update(&mut cp, grad, &mut cm, &mut cv, &h, t).unwrap();
                    }
                    parity(dev, &format!("{what} param"), &p, || cp, Row::Adam);
                    parity(dev, &format!("{what} m"), &m, || cm, Row::Adam);
                    parity(dev, &format!("{what} v"), &v, || cv, Row::Adam);
                }
            }
            let seed = 2000 + 10 * i as u64;
            let (p0, b0) = (rand_t(s, dtype, seed), rand_t(s, dtype, seed + 1));
            let (mut p, mut b) = (up(dev, &p0), up(dev, &b0));
            let (mut wp, mut wb) = (p0.to_vec_f64(), b0.to_vec_f64());
            let grads: Vec<Tensor> = (0..3).map(|t| rand_t(s, dtype, seed + 2 + t)).collect();
            for grad in &grads {
                ops::sgd_momentum_update(&mut p, &up(dev, grad), &mut b, 0.05, 0.9, 5e-4).unwrap();
                for (j, g) in grad.to_vec_f64().into_iter().enumerate() {
                    wb[j] = 0.9 * wb[j] + g + 5e-4 * wp[j];
                    wp[j] -= 0.05 * wb[j];
                }
            }
            let what = format!("sgd {s:?} {dtype:?}");
            for (name, got, want) in [("param", &p, &wp), ("momentum", &b, &wb)] {
                let (floor, tol) = tol_of(want);
                let what = format!("{what} {name}");
                check_ref(dev, &what, got, want, floor, tol, Row::Exact);
            }
            if !dev.is_cpu() {
                let (mut cp, mut cb) = (p0.clone(), b0.clone());
                for grad in &grads {
                    ops::sgd_momentum_update(&mut cp, grad, &mut cb, 0.05, 0.9, 5e-4).unwrap();
                }
                parity(dev, &format!("{what} param"), &p, || cp, Row::Exact);
                parity(dev, &format!("{what} momentum"), &b, || cb, Row::Exact);
            }
        }
    }
}

// ----------------------------------------------------------------- random

/// Draws on `dev` are the host's draws at the same stream position (the
/// reference is the host Philox stream), and advance the stream alike:
/// normals (1e-6 on a GPU, bit-identical on the CPU), uniforms and dropout
/// masks (bit-identical), including an empty draw.
fn random_draws_match_the_host_stream(dev: &Device) {
    for (i, s) in SIZES
        .iter()
        .chain([&[70_002usize][..], &[3, 1]].iter())
        .enumerate()
    {
        for &dtype in dtypes(dev) {
            // Same (seed, stream, offset) on both sides, offsets not multiples of anything.
            let start = RngStream::at(77, 5 + i as u64, 12_345 * i as u64 + 3);
            let (mut r1, mut r2) = (start, start);
            let what = format!("{s:?} {dtype:?}");
            let want = ops::randn(s, dtype, &mut r1).unwrap();
            let got = ops::randn_on(dev, s, dtype, &mut r2).unwrap();
            check_ref(
                dev,
                &format!("randn {what}"),
                &got,
                &want.to_vec_f64(),
                1.0,
                0.0,
                Row::Randn,
            );
            assert_eq!(r1, r2, "randn advances both streams alike");
            let want = ops::rand_uniform(s, dtype, &mut r1).unwrap();
            let got = ops::rand_uniform_on(dev, s, dtype, &mut r2).unwrap();
            check_exact(
                dev,
                &format!("rand_uniform {what}"),
                &got,
                &want.to_vec_f64(),
            );
            assert_eq!(r1, r2, "rand_uniform advances both streams alike");
            for p in [0.0, 0.1, 0.5] {
                let x = rand_t(s, dtype, 3000 + i as u64);
                let mask = ops::dropout_mask(s, p, dtype, &mut r1).unwrap();
                let (y, m) = ops::dropout_forward(&up(dev, &x), p, &mut r2).unwrap();
                check_exact(
                    dev,
                    &format!("dropout mask {what} p={p}"),
                    &m,
                    &mask.to_vec_f64(),
                );
                let want = ops::mul(&x, &mask).unwrap().to_vec_f64();
                check_exact(dev, &format!("dropout y {what} p={p}"), &y, &want);
                assert_eq!(r1, r2, "dropout advances both streams alike");
            }
        }
    }
}

/// Dropout keeps `1 − p` of the elements, scaled by `1/(1 − p)`.
fn dropout_forward_matches_mask_and_keep_rate(dev: &Device) {
    let x = rand_t(&[1000, 100], DType::F32, 121);
    let mut r1 = RngStream::new(5, 9);
    let mut r2 = RngStream::new(5, 9);
    let (y, m) = ops::dropout_forward(&up(dev, &x), 0.2, &mut r1).unwrap();
    let m2 = ops::dropout_mask(x.shape(), 0.2, DType::F32, &mut r2).unwrap();
    assert!(m.bit_eq(&m2));
    assert_eq!(r1.offset(), r2.offset());
    assert!(y.bit_eq(&ops::mul(&x, &m2).unwrap()));
    let mv = back(dev, "mask", &m);
    let kept = mv.iter().filter(|&&v| v > 0.0).count() as f64 / 100_000.0;
    assert!((kept - 0.8).abs() < 0.01, "kept {kept}");
    assert!(mv.iter().all(|&v| v == 0.0 || v == 1.25));
}

test_device!(
    gemm_matches_naive_reference,
    gemm_accumulates_into_output,
    gemm_rejects_bad_shapes,
    conv2d_matches_naive_reference,
    conv2d_f32_matches_f64_and_fused_relu,
    fused_relu_mask_in_conv_backward_equals_separate_mask,
    im2col_col2im_are_adjoint,
    conv2d_backward_rejects_a_weight_of_other_input_channels,
    max_pool_matches_naive_and_routes_gradients,
    max_pool_ties_signed_zeros_and_nan,
    batch_norm_matches_naive_reference,
    softmax_family_matches_naive_reference,
    softmax_backward_matches_jacobian,
    reductions_match_naive,
    elementwise_match_naive,
    concat_split_gather_scatter_transpose,
    optimisers_match_naive,
    random_draws_match_the_host_stream,
    dropout_forward_matches_mask_and_keep_rate,
);

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
            let x = rand_t(&[8, 32, 13, 13], DType::F32, 93);
            let w = rand_t(&[64, 32, 3, 3], DType::F32, 94);
            let mut ws = ops::ConvWorkspace::new();
            let y = ops::conv2d_forward(&x, &w, None, 0, false, &mut ws).unwrap();
            let g = ops::conv2d_backward(&y, &w, None, &mut ws, true).unwrap();
            outs.extend([y, g.dw, g.db, g.dx.unwrap()]);
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
