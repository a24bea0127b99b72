//! CUDA ↔ CPU parity: every CUDA op against its CPU twin on fresh random
//! (never all-zero) inputs, over a shape zoo with odd sizes (1, 7, 63).
//!
//! Without a usable GPU each parity test prints why to stderr and returns
//! (they are not `#[ignore]`d, so `cargo test --features cuda` on a GPU
//! machine runs them; `benches/gpu/gpu_check.sh` runs the prebuilt binary).
//!
//! Tolerances, as `max |gpu − cpu| ≤ tol · max(1, max |cpu|)`:
//!
//! | ops | tol | why |
//! |---|---|---|
//! | element-wise, bias epilogues, shape ops, max-pool, dropout, uniform, SGD, column sums | 0 (bit-identical) | the same IEEE f32 operations in the same order; kernels are compiled with `--fmad=false` |
//! | Adam/AdamW | 1e-6 | IEEE `sqrtf` and division, but the host-side constants round differently only if the compiler reorders; kept tight |
//! | randn | 1e-6 | Box–Muller in f64 on both sides; CUDA's `log`/`cos`/`sin` may differ from libm by an f64 ulp |
//! | softmax, log-softmax, softmax backward, cross-entropy | 1e-5 | `expf`/`logf` differ by a few ulps; block-tree sums |
//! | sum, sum_sq, dot, mean | 1e-5 | tree order vs the CPU's chunk order |
//! | batch-norm | 1e-4 | per-channel sums in tree order, divided by small variances |
//! | GEMM, conv2d forward/backward, im2col/col2im | 1e-4 | cuBLAS blocking order vs the CPU gemm's |
#![cfg(feature = "cuda")]

use noprop_tensor::cuda::{ops as g, CudaDevice, CudaTensor};
use noprop_tensor::ops::{self as c, AdamHyper, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Device, Tensor};

/// The GPU, or `None` after printing why the test is skipped.
fn gpu(test: &str) -> Option<CudaDevice> {
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("SKIPPED {test}: no usable CUDA device ({e})");
            None
        }
    }
}

fn randn(shape: &[usize], stream: u64) -> Tensor {
    let mut rng = RngStream::new(0x5eed, stream);
    c::randn(shape, DType::F32, &mut rng).unwrap()
}

fn up(d: &CudaDevice, t: &Tensor) -> CudaTensor {
    CudaTensor::from_host(t, d).unwrap()
}

fn check(what: &str, cpu: &Tensor, gpu: &CudaTensor, tol: f32) {
    let gt = gpu.to_host().unwrap();
    assert_eq!(cpu.shape(), gt.shape(), "{what}: shape");
    let (a, b) = (cpu.to_vec_f32(), gt.to_vec_f32());
    let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
    let mut worst = (0f32, 0usize);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let d = if x.is_nan() && y.is_nan() {
            0.0
        } else if x.is_nan() || y.is_nan() {
            f32::INFINITY
        } else {
            (x - y).abs()
        };
        if d > worst.0 {
            worst = (d, i);
        }
    }
    assert!(
        worst.0 <= tol * scale,
        "{what}: max |gpu − cpu| = {} at {} (cpu {}, gpu {}), tolerance {}",
        worst.0,
        worst.1,
        a[worst.1],
        b[worst.1],
        tol * scale
    );
}

fn check_f64(what: &str, cpu: f64, gpu: f64, tol: f64) {
    assert!(
        (cpu - gpu).abs() <= tol * cpu.abs().max(1.0),
        "{what}: cpu {cpu}, gpu {gpu}"
    );
}

const SIZES: &[&[usize]] = &[&[1], &[7], &[63], &[7, 63], &[3, 5, 7, 9], &[70_001]];

#[test]
fn probing_without_a_gpu_is_an_error_not_a_panic() {
    // Runs everywhere: on a machine without a driver this must return Err.
    match CudaDevice::new(0) {
        Ok(d) => eprintln!("found {d:?}"),
        Err(e) => eprintln!("no CUDA device, as a typed error: {e}"),
    }
    let (dev, why) = Device::parse("auto").unwrap();
    eprintln!("--device auto: {why}");
    assert!(why.contains("auto"));
    if dev.is_cpu() {
        assert!(Device::parse("cuda:0").is_err());
    }
}

#[test]
fn parity_elementwise() {
    let Some(d) = gpu("parity_elementwise") else {
        return;
    };
    for (si, s) in SIZES.iter().enumerate() {
        let (a, b) = (randn(s, 2 * si as u64), randn(s, 2 * si as u64 + 1));
        let (ga, gb) = (up(&d, &a), up(&d, &b));
        check(
            "add",
            &c::add(&a, &b).unwrap(),
            &g::add(&ga, &gb).unwrap(),
            0.0,
        );
        check(
            "sub",
            &c::sub(&a, &b).unwrap(),
            &g::sub(&ga, &gb).unwrap(),
            0.0,
        );
        check(
            "mul",
            &c::mul(&a, &b).unwrap(),
            &g::mul(&ga, &gb).unwrap(),
            0.0,
        );
        check(
            "add_scaled",
            &c::add_scaled(0.3, &a, -1.7, &b).unwrap(),
            &g::add_scaled(0.3, &ga, -1.7, &gb).unwrap(),
            0.0,
        );
        check(
            "scale",
            &c::scale(&a, 0.37).unwrap(),
            &g::scale(&ga, 0.37).unwrap(),
            0.0,
        );
        check("relu", &c::relu(&a).unwrap(), &g::relu(&ga).unwrap(), 0.0);
        let y = c::relu(&a).unwrap();
        let gy = g::relu(&ga).unwrap();
        check(
            "relu_backward",
            &c::relu_backward(&b, &y).unwrap(),
            &g::relu_backward(&gb, &gy).unwrap(),
            0.0,
        );
        let (mut y1, mut gy1) = (a.clone(), ga.try_clone().unwrap());
        c::axpy(&mut y1, -0.61, &b).unwrap();
        g::axpy(&mut gy1, -0.61, &gb).unwrap();
        check("axpy", &y1, &gy1, 0.0);
        c::add_assign(&mut y1, &b).unwrap();
        g::add_assign(&mut gy1, &gb).unwrap();
        check("add_assign", &y1, &gy1, 0.0);
        c::mul_assign(&mut y1, &b).unwrap();
        g::mul_assign(&mut gy1, &gb).unwrap();
        check("mul_assign", &y1, &gy1, 0.0);
        let mut f = a.clone();
        f.fill(2.5);
        let mut gf = ga.try_clone().unwrap();
        g::fill(&mut gf, 2.5).unwrap();
        check("fill", &f, &gf, 0.0);
    }
    for &(m, n) in &[(1, 1), (7, 63), (63, 7), (300, 129)] {
        let (x, bias) = (randn(&[m, n], 40), randn(&[n], 41));
        let (gb, mut gx) = (up(&d, &bias), up(&d, &x));
        let mut x2 = x.clone();
        c::add_bias_rows(&mut x2, &bias).unwrap();
        g::add_bias_rows(&mut gx, &gb).unwrap();
        check("add_bias_rows", &x2, &gx, 0.0);
        let (mut x3, mut gx3) = (x.clone(), up(&d, &x));
        c::bias_relu_rows(&mut x3, &bias).unwrap();
        g::bias_relu_rows(&mut gx3, &gb).unwrap();
        check("bias_relu_rows", &x3, &gx3, 0.0);
    }
}

#[test]
fn parity_gemm() {
    let Some(d) = gpu("parity_gemm") else {
        return;
    };
    let dims = [1usize, 7, 63, 128];
    let mut seed = 100;
    for &m in &dims {
        for &n in &dims {
            for &k in &[1usize, 7, 63, 257] {
                for ta in [Transpose::No, Transpose::Yes] {
                    for tb in [Transpose::No, Transpose::Yes] {
                        let ash = if ta == Transpose::No { [m, k] } else { [k, m] };
                        let bsh = if tb == Transpose::No { [k, n] } else { [n, k] };
                        let (a, b) = (randn(&ash, seed), randn(&bsh, seed + 1));
                        seed += 2;
                        let (ga, gb) = (up(&d, &a), up(&d, &b));
                        let what = format!("matmul m={m} n={n} k={k} {ta:?} {tb:?}");
                        let cc = c::matmul(&a, ta, &b, tb).unwrap();
                        let gc = g::matmul(&ga, ta, &gb, tb).unwrap();
                        check(&what, &cc, &gc, 1e-4);
                        // Accumulate into a random C.
                        let c0 = randn(&[m, n], seed);
                        let (mut c1, mut gc1) = (c0.clone(), up(&d, &c0));
                        c::gemm_into(&mut c1, true, &a, ta, &b, tb).unwrap();
                        g::gemm_into(&mut gc1, true, &ga, ta, &gb, tb).unwrap();
                        check(&format!("{what} accumulate"), &c1, &gc1, 1e-4);
                    }
                }
            }
        }
    }
}

/// (n, c, h, w, oc, kernel, pad)
const CONVS: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (1, 1, 1, 1, 1, 1, 0),
    (2, 3, 7, 7, 4, 3, 1),
    (3, 1, 28, 28, 8, 3, 1),
    (2, 7, 9, 5, 3, 5, 2),
    (1, 2, 63, 7, 1, 3, 0),
    (4, 16, 14, 14, 32, 3, 1),
];

#[test]
fn parity_conv() {
    let Some(d) = gpu("parity_conv") else {
        return;
    };
    for (i, &(n, ch, h, w, oc, k, pad)) in CONVS.iter().enumerate() {
        let s = 10 * i as u64;
        let x = randn(&[n, ch, h, w], s);
        let wt = randn(&[oc, ch, k, k], s + 1);
        let b = randn(&[oc], s + 2);
        let (gx, gw, gbias) = (up(&d, &x), up(&d, &wt), up(&d, &b));
        let what = format!("conv {:?}", CONVS[i]);
        check(
            &format!("{what} im2col"),
            &c::im2col(&x, k, k, pad).unwrap(),
            &g::im2col(&gx, k, k, pad).unwrap(),
            0.0,
        );
        let col = randn(c::im2col(&x, k, k, pad).unwrap().shape(), s + 3);
        check(
            &format!("{what} col2im"),
            &c::col2im(&col, x.shape(), k, k, pad).unwrap(),
            &g::col2im(&up(&d, &col), x.shape(), k, k, pad).unwrap(),
            1e-6,
        );
        for (bias, relu) in [(false, false), (true, false), (true, true)] {
            let mut ws = c::ConvWorkspace::new();
            let mut gws = g::ConvWorkspace::new();
            let y = c::conv2d_forward(&x, &wt, bias.then_some(&b), pad, relu, &mut ws).unwrap();
            let gy =
                g::conv2d_forward(&gx, &gw, bias.then_some(&gbias), pad, relu, &mut gws).unwrap();
            check(&format!("{what} forward b={bias} r={relu}"), &y, &gy, 1e-4);
            let dy = randn(y.shape(), s + 4);
            let gdy = up(&d, &dy);
            let mask = relu.then_some(&y);
            let gmask = relu.then_some(&gy);
            let gr = c::conv2d_backward(&dy, &wt, mask, &mut ws, true).unwrap();
            let ggr = g::conv2d_backward(&gdy, &gw, gmask, &mut gws, true).unwrap();
            check(&format!("{what} dw"), &gr.dw, &ggr.dw, 1e-4);
            check(&format!("{what} db"), &gr.db, &ggr.db, 1e-4);
            check(
                &format!("{what} dx"),
                gr.dx.as_ref().unwrap(),
                ggr.dx.as_ref().unwrap(),
                1e-4,
            );
        }
    }
}

#[test]
fn parity_pool() {
    let Some(d) = gpu("parity_pool") else {
        return;
    };
    for (i, s) in [[1, 1, 1, 1], [2, 3, 7, 7], [1, 1, 63, 8], [4, 8, 28, 28]]
        .iter()
        .enumerate()
    {
        let x = randn(s, 200 + i as u64);
        let gx = up(&d, &x);
        let (y, idx) = c::max_pool2d_forward(&x).unwrap();
        let (gy, gidx) = g::max_pool2d_forward(&gx).unwrap();
        check(&format!("max_pool2d {s:?}"), &y, &gy, 0.0);
        let dy = randn(y.shape(), 300 + i as u64);
        let dx = c::max_pool2d_backward(&dy, &idx, s).unwrap();
        let gdx = g::max_pool2d_backward(&up(&d, &dy), &gidx, s).unwrap();
        check(&format!("max_pool2d backward {s:?}"), &dx, &gdx, 0.0);
    }
}

#[test]
fn parity_batchnorm() {
    let Some(d) = gpu("parity_batchnorm") else {
        return;
    };
    let shapes: &[&[usize]] = &[&[7, 63], &[2, 1], &[4, 3, 7, 7], &[2, 63, 1, 1], &[64, 32]];
    for (i, s) in shapes.iter().enumerate() {
        let ch = s[1];
        let seed = 400 + 10 * i as u64;
        let x = randn(s, seed);
        let (gamma, beta) = (randn(&[ch], seed + 1), randn(&[ch], seed + 2));
        let (rm0, rv0) = (
            randn(&[ch], seed + 3),
            c::relu(&randn(&[ch], seed + 4)).unwrap(),
        );
        let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
        let (mut grm, mut grv) = (up(&d, &rm0), up(&d, &rv0));
        let (ggamma, gbeta) = (up(&d, &gamma), up(&d, &beta));
        let gx = up(&d, &x);
        let (y, saved) =
            c::batch_norm_train(&x, &gamma, &beta, &mut rm, &mut rv, 0.1, 1e-5).unwrap();
        let (gy, gsaved) =
            g::batch_norm_train(&gx, &ggamma, &gbeta, &mut grm, &mut grv, 0.1, 1e-5).unwrap();
        let what = format!("batch_norm {s:?}");
        check(&format!("{what} y"), &y, &gy, 1e-4);
        check(&format!("{what} mean"), &saved.mean, &gsaved.mean, 1e-4);
        check(&format!("{what} var"), &saved.var, &gsaved.var, 1e-4);
        check(&format!("{what} running mean"), &rm, &grm, 1e-4);
        check(&format!("{what} running var"), &rv, &grv, 1e-4);
        let dy = randn(s, seed + 5);
        let (dx, dg, db) = c::batch_norm_backward(&dy, &gamma, &saved).unwrap();
        let (gdx, gdg, gdb) = g::batch_norm_backward(&up(&d, &dy), &ggamma, &gsaved).unwrap();
        check(&format!("{what} dx"), &dx, &gdx, 1e-4);
        check(&format!("{what} dgamma"), &dg, &gdg, 1e-4);
        check(&format!("{what} dbeta"), &db, &gdb, 1e-4);
        let ye = c::batch_norm_eval(&x, &gamma, &beta, &rm0, &rv0, 1e-5).unwrap();
        let gye =
            g::batch_norm_eval(&gx, &ggamma, &gbeta, &up(&d, &rm0), &up(&d, &rv0), 1e-5).unwrap();
        check(&format!("{what} eval"), &ye, &gye, 1e-5);
    }
}

#[test]
fn parity_softmax() {
    let Some(d) = gpu("parity_softmax") else {
        return;
    };
    for (i, &(b, m)) in [(1, 1), (7, 63), (63, 7), (4, 1000), (128, 10)]
        .iter()
        .enumerate()
    {
        let x = c::scale(&randn(&[b, m], 500 + i as u64), 3.0).unwrap();
        let gx = up(&d, &x);
        let what = format!("softmax {b}x{m}");
        let p = c::softmax(&x).unwrap();
        let gp = g::softmax(&gx).unwrap();
        check(&what, &p, &gp, 1e-5);
        check(
            &format!("log_{what}"),
            &c::log_softmax(&x).unwrap(),
            &g::log_softmax(&gx).unwrap(),
            1e-5,
        );
        let dp = randn(&[b, m], 600 + i as u64);
        check(
            &format!("{what} backward"),
            &c::softmax_backward(&p, &dp).unwrap(),
            &g::softmax_backward(&gp, &up(&d, &dp)).unwrap(),
            1e-5,
        );
        let labels: Vec<usize> = (0..b).map(|r| (r * 7 + 3) % m).collect();
        let (l, gr) = c::softmax_cross_entropy(&x, &labels).unwrap();
        let (gl, ggr) = g::softmax_cross_entropy(&gx, &labels).unwrap();
        check_f64(&format!("{what} cross-entropy loss"), l, gl, 1e-5);
        check(&format!("{what} cross-entropy grad"), &gr, &ggr, 1e-5);
    }
}

#[test]
fn parity_reduce() {
    let Some(d) = gpu("parity_reduce") else {
        return;
    };
    for (i, s) in SIZES.iter().enumerate() {
        let (a, b) = (randn(s, 700 + i as u64), randn(s, 800 + i as u64));
        let (ga, gb) = (up(&d, &a), up(&d, &b));
        let what = format!("{s:?}");
        check_f64(
            &format!("sum {what}"),
            c::sum(&a).unwrap(),
            g::sum(&ga).unwrap(),
            1e-5,
        );
        check_f64(
            &format!("mean {what}"),
            c::mean(&a).unwrap(),
            g::mean(&ga).unwrap(),
            1e-5,
        );
        check_f64(
            &format!("sum_sq {what}"),
            c::sum_sq(&a).unwrap(),
            g::sum_sq(&ga).unwrap(),
            1e-5,
        );
        check_f64(
            &format!("dot {what}"),
            c::dot(&a, &b).unwrap(),
            g::dot(&ga, &gb).unwrap(),
            1e-5,
        );
    }
    for &(m, n) in &[(1, 1), (7, 63), (63, 7), (300, 129)] {
        let x = randn(&[m, n], 900);
        check(
            "sum_rows",
            &c::sum_rows(&x).unwrap(),
            &g::sum_rows(&up(&d, &x)).unwrap(),
            0.0,
        );
    }
}

#[test]
fn parity_optim() {
    let Some(d) = gpu("parity_optim") else {
        return;
    };
    for (i, s) in SIZES.iter().enumerate() {
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
            let mut p = randn(s, seed);
            let mut m = randn(s, seed + 1);
            let mut v = c::mul(&m, &m).unwrap();
            let (mut gp, mut gm, mut gv) = (up(&d, &p), up(&d, &m), up(&d, &v));
            for t in 1..=3 {
                let grad = randn(s, seed + 2 + t);
                c::adam_update(&mut p, &grad, &mut m, &mut v, &h, t).unwrap();
                g::adam_update(&mut gp, &up(&d, &grad), &mut gm, &mut gv, &h, t).unwrap();
            }
            let what = format!("adam {s:?} decoupled={decoupled}");
            check(&format!("{what} param"), &p, &gp, 1e-6);
            check(&format!("{what} m"), &m, &gm, 1e-6);
            check(&format!("{what} v"), &v, &gv, 1e-6);
        }
        let seed = 2000 + 10 * i as u64;
        let (mut p, mut b) = (randn(s, seed), randn(s, seed + 1));
        let (mut gp, mut gbuf) = (up(&d, &p), up(&d, &b));
        for t in 0..3 {
            let grad = randn(s, seed + 2 + t);
            c::sgd_momentum_update(&mut p, &grad, &mut b, 0.05, 0.9, 5e-4).unwrap();
            g::sgd_momentum_update(&mut gp, &up(&d, &grad), &mut gbuf, 0.05, 0.9, 5e-4).unwrap();
        }
        check(&format!("sgd {s:?} param"), &p, &gp, 0.0);
        check(&format!("sgd {s:?} momentum"), &b, &gbuf, 0.0);
    }
}

#[test]
fn parity_random() {
    let Some(d) = gpu("parity_random") else {
        return;
    };
    for (i, s) in SIZES
        .iter()
        .chain([&[70_002usize][..], &[3, 1]].iter())
        .enumerate()
    {
        // Same (seed, stream, offset) on both devices, offsets not multiples of anything.
        let start = RngStream::at(77, 5 + i as u64, 12_345 * i as u64 + 3);
        let (mut r1, mut r2) = (start, start);
        check(
            &format!("randn {s:?}"),
            &c::randn(s, DType::F32, &mut r1).unwrap(),
            &g::randn(&d, s, &mut r2).unwrap(),
            1e-6,
        );
        assert_eq!(r1, r2, "randn advances both streams alike");
        check(
            &format!("rand_uniform {s:?}"),
            &c::rand_uniform(s, DType::F32, &mut r1).unwrap(),
            &g::rand_uniform(&d, s, &mut r2).unwrap(),
            0.0,
        );
        for p in [0.0, 0.1, 0.5] {
            check(
                &format!("dropout_mask {s:?} p={p}"),
                &c::dropout_mask(s, p, DType::F32, &mut r1).unwrap(),
                &g::dropout_mask(&d, s, p, &mut r2).unwrap(),
                0.0,
            );
            let x = randn(s, 3000 + i as u64);
            let (y, m) = c::dropout_forward(&x, p, &mut r1).unwrap();
            let (gy, gm) = g::dropout_forward(&up(&d, &x), p, &mut r2).unwrap();
            check(&format!("dropout_forward y {s:?} p={p}"), &y, &gy, 0.0);
            check(&format!("dropout_forward mask {s:?} p={p}"), &m, &gm, 0.0);
        }
        assert_eq!(r1, r2, "both streams at the same offset");
    }
}

#[test]
fn parity_shape() {
    let Some(d) = gpu("parity_shape") else {
        return;
    };
    for &b in &[1usize, 7, 63] {
        let parts: Vec<Tensor> = [1usize, 7, 63]
            .iter()
            .enumerate()
            .map(|(i, &w)| randn(&[b, w], 4000 + i as u64))
            .collect();
        let gparts: Vec<CudaTensor> = parts.iter().map(|p| up(&d, p)).collect();
        let cat = c::concat_cols(&parts.iter().collect::<Vec<_>>()).unwrap();
        let gcat = g::concat_cols(&gparts.iter().collect::<Vec<_>>()).unwrap();
        check("concat_cols", &cat, &gcat, 0.0);
        let sp = c::split_cols(&cat, &[7, 1, 63]).unwrap();
        let gsp = g::split_cols(&gcat, &[7, 1, 63]).unwrap();
        for (x, y) in sp.iter().zip(&gsp) {
            check("split_cols", x, y, 0.0);
        }
        let table = randn(&[10, 63], 4100);
        let idx: Vec<usize> = (0..b).map(|i| (i * 3 + 1) % 10).collect();
        check(
            "gather_rows",
            &c::gather_rows(&table, &idx).unwrap(),
            &g::gather_rows(&up(&d, &table), &idx).unwrap(),
            0.0,
        );
        let src = randn(&[b, 63], 4200);
        check(
            "scatter_add_rows",
            &c::scatter_add_rows(&src, &idx, 10).unwrap(),
            &g::scatter_add_rows(&up(&d, &src), &idx, 10).unwrap(),
            0.0,
        );
    }
    for &(r, cl) in &[(1, 1), (7, 63), (63, 7), (100, 33), (257, 513)] {
        let x = randn(&[r, cl], 4300);
        check(
            "transpose2d",
            &c::transpose2d(&x).unwrap(),
            &g::transpose2d(&up(&d, &x)).unwrap(),
            0.0,
        );
    }
}

#[test]
fn parity_conv2d_backward_rejects_a_weight_of_other_input_channels() {
    let Some(d) = gpu("parity_conv2d_backward_rejects_a_weight_of_other_input_channels") else {
        return;
    };
    let x = randn(&[2, 3, 9, 9], 6000);
    let w = randn(&[4, 3, 3, 3], 6001);
    let wrong = randn(&[4, 5, 3, 3], 6002);
    let (mut ws, mut gws) = (c::ConvWorkspace::new(), g::ConvWorkspace::new());
    let y = c::conv2d_forward(&x, &w, None, 0, false, &mut ws).unwrap();
    let gy = g::conv2d_forward(&up(&d, &x), &up(&d, &w), None, 0, false, &mut gws).unwrap();
    let dy = randn(y.shape(), 6003);
    assert!(c::conv2d_backward(&dy, &wrong, None, &mut ws, true).is_err());
    let e = match g::conv2d_backward(&up(&d, &dy), &up(&d, &wrong), None, &mut gws, true) {
        Err(e) => e,
        Ok(_) => panic!("CUDA must refuse a weight of other input channels"),
    };
    assert!(e.to_string().contains("input channels"), "{e}");
    // The refused call left the cached forward in place: the right weight works.
    let ok = g::conv2d_backward(&up(&d, &dy), &up(&d, &w), None, &mut gws, true).unwrap();
    assert_eq!(ok.dw.shape(), w.shape());
    let _ = gy;
}
