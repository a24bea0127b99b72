//! The per-row ops (`ops::rows`): host results against naive references on
//! random inputs (bit for bit: the references do the arithmetic the callers
//! did before the ops existed), a finite-difference check in `f64` of the
//! time embedding's backward pass, shape errors, and one body run on every
//! device against the host (`test_device!`; the CUDA half prints `SKIPPED …`
//! and passes without a usable GPU).
//!
//! GPU tolerances: 0 for `scale_rows`/`combine_rows` (the same rounded `f32`
//! products and sum), 1e-6 relative for the `f64`-accumulated reductions and
//! the scores (rounded once to `f32`), 1e-6 absolute for the embedding
//! (device `sin`/`cos`/`exp` in `f64`, rounded to `f32`), arg-max exact.

#[macro_use]
mod common;

use noprop_tensor::ops;
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Device, Tensor};

fn rand(shape: &[usize], dtype: DType, stream: u64) -> Tensor {
    ops::randn(shape, dtype, &mut RngStream::new(0x70e5, stream)).unwrap()
}

fn coeffs(b: usize, stream: u64) -> Vec<f64> {
    rand(&[b], DType::F64, stream).to_vec_f64()
}

#[test]
fn scale_rows_matches_the_host_reference() {
    let (b, d) = (7, 5);
    let x = rand(&[b, d], DType::F32, 1);
    let k = coeffs(b, 2);
    let xs = x.to_vec_f32();
    // f64 coefficients: the f64 product of the unrounded k, rounded once.
    let got = ops::scale_rows(&x, &ops::row_coefficients(&k, &Device::Cpu).unwrap()).unwrap();
    let want: Vec<f32> = (0..b * d)
        .map(|j| (xs[j] as f64 * k[j / d]) as f32)
        .collect();
    assert_eq!(got.to_vec_f32(), want);
    // f32 coefficients: the f32 product of the rounded k.
    let k32 = Tensor::from_vec(k.iter().map(|&v| v as f32).collect(), &[b]).unwrap();
    let got = ops::scale_rows(&x, &k32).unwrap();
    let want: Vec<f32> = (0..b * d).map(|j| xs[j] * k[j / d] as f32).collect();
    assert_eq!(got.to_vec_f32(), want);
    assert!(want.iter().any(|v| *v != 0.0));
}

#[test]
fn combine_rows_matches_the_host_reference() {
    let (b, d) = (6, 9);
    let (x, y) = (rand(&[b, d], DType::F32, 3), rand(&[b, d], DType::F32, 4));
    let (al, be) = (coeffs(b, 5), coeffs(b, 6));
    let dev = Device::Cpu;
    let got = ops::combine_rows(
        &ops::row_coefficients(&al, &dev).unwrap(),
        &x,
        &ops::row_coefficients(&be, &dev).unwrap(),
        &y,
    )
    .unwrap();
    let (xs, ys) = (x.to_vec_f32(), y.to_vec_f32());
    let want: Vec<f32> = (0..b * d)
        .map(|j| (al[j / d] as f32) * xs[j] + (be[j / d] as f32) * ys[j])
        .collect();
    assert_eq!(got.to_vec_f32(), want);
    // f64 data: the arithmetic in f64.
    let (x, y) = (x.to_dtype(DType::F64), y.to_dtype(DType::F64));
    let got = ops::combine_rows(
        &ops::row_coefficients(&al, &dev).unwrap(),
        &x,
        &ops::row_coefficients(&be, &dev).unwrap(),
        &y,
    )
    .unwrap();
    let (xs, ys) = (x.to_vec_f64(), y.to_vec_f64());
    let want: Vec<f64> = (0..b * d)
        .map(|j| al[j / d] * xs[j] + be[j / d] * ys[j])
        .collect();
    assert_eq!(got.to_vec_f64(), want);
}

#[test]
fn row_reductions_match_the_host_reference() {
    let (b, d) = (5, 33);
    let (x, y) = (rand(&[b, d], DType::F32, 7), rand(&[b, d], DType::F32, 8));
    let (xs, ys) = (x.to_vec_f64(), y.to_vec_f64());
    let dots = ops::row_dots(&x, &y).unwrap();
    assert_eq!(dots.dtype(), DType::F64);
    let want: Vec<f64> = (0..b)
        .map(|i| (i * d..(i + 1) * d).map(|j| xs[j] * ys[j]).sum())
        .collect();
    assert_eq!(dots.to_vec_f64(), want);
    let sums = ops::row_sums(&x).unwrap();
    let want: Vec<f64> = (0..b)
        .map(|i| xs[i * d..(i + 1) * d].iter().sum())
        .collect();
    assert_eq!(sums.to_vec_f64(), want);
    assert!(want.iter().all(|v| *v != 0.0));
}

#[test]
fn row_max_abs_skips_nan_like_f64_max() {
    let x = rand(&[6, 7], DType::F32, 30);
    let v = x.to_vec_f64();
    let want: Vec<f64> = (0..6)
        .map(|i| {
            v[i * 7..(i + 1) * 7]
                .iter()
                .fold(0.0f64, |m, x| m.max(x.abs()))
        })
        .collect();
    assert_eq!(ops::row_max_abs(&x).unwrap().to_vec_f64(), want);
    let n = Tensor::from_vec(vec![f32::NAN, -2.0, 1.0], &[1, 3]).unwrap();
    assert_eq!(ops::row_max_abs(&n).unwrap().to_vec_f64(), vec![2.0]);
}

#[test]
fn argmax_rows_takes_the_first_largest_entry() {
    let x = rand(&[9, 10], DType::F32, 9);
    let v = x.to_vec_f32();
    let want: Vec<usize> = (0..9)
        .map(|i| {
            let r = &v[i * 10..(i + 1) * 10];
            (0..10).fold(0, |best, j| if r[j] > r[best] { j } else { best })
        })
        .collect();
    assert_eq!(ops::argmax_rows(&x).unwrap(), want);
    let ties = Tensor::from_vec(vec![1f32, 3.0, 3.0, 1.0, f32::NAN, 2.0], &[2, 3]).unwrap();
    assert_eq!(ops::argmax_rows(&ties).unwrap(), vec![1, 2]);
}

#[test]
fn sq_dist_scores_are_negative_scaled_squared_distances() {
    let (b, m, d) = (4, 3, 6);
    let a = rand(&[b, d], DType::F64, 10);
    let w = rand(&[m, d], DType::F64, 11);
    let cross = ops::matmul(&a, ops::Transpose::No, &w, ops::Transpose::Yes).unwrap();
    let an = ops::row_dots(&a, &a).unwrap();
    let wn = ops::row_dots(&w, &w).unwrap();
    let k = 0.3;
    let s = ops::sq_dist_scores(&cross, &an, &wn, k)
        .unwrap()
        .to_vec_f64();
    let (av, wv) = (a.to_vec_f64(), w.to_vec_f64());
    for i in 0..b {
        for y in 0..m {
            let dist: f64 = (0..d)
                .map(|j| (av[i * d + j] - wv[y * d + j]).powi(2))
                .sum();
            assert!((s[i * m + y] + k * dist).abs() < 1e-12, "({i}, {y})");
        }
    }
    assert!(
        ops::sq_dist_scores(&cross, &wn, &an, k).is_err(),
        "norms swapped"
    );
}

#[test]
fn time_embedding_matches_the_formula() {
    let t = ops::rand_uniform(&[5], DType::F32, &mut RngStream::new(1, 2)).unwrap();
    let dim = 8;
    let y = ops::time_embedding(&t, dim).unwrap();
    assert_eq!(y.shape(), [5, dim]);
    let (tv, yv) = (t.to_vec_f64(), y.to_vec_f32());
    let w = ops::time_frequencies(dim / 2);
    for i in 0..5 {
        for k in 0..dim / 2 {
            let a = tv[i] * w[k];
            assert_eq!(yv[i * dim + k], a.sin() as f32);
            assert_eq!(yv[i * dim + dim / 2 + k], a.cos() as f32);
        }
    }
    let t2 = t.clone().reshape(&[5, 1]).unwrap();
    assert!(ops::time_embedding(&t2, dim).unwrap().bit_eq(&y));
    assert!(ops::time_embedding(&t, 7).is_err(), "odd width");
    assert!(ops::time_embedding(&Tensor::zeros(&[2, 2], DType::F32), 4).is_err());
}

#[test]
fn time_embedding_backward_matches_finite_differences_in_f64() {
    let (b, dim) = (4, 12);
    let t = ops::rand_uniform(&[b], DType::F64, &mut RngStream::new(3, 4)).unwrap();
    let g = rand(&[b, dim], DType::F64, 12);
    let loss = |t: &Tensor| ops::dot(&ops::time_embedding(t, dim).unwrap(), &g).unwrap();
    let dt = ops::time_embedding_backward(&t, &g, dim)
        .unwrap()
        .to_vec_f64();
    let h = 1e-6;
    let tv = t.to_vec_f64();
    for i in 0..b {
        let (mut p, mut m) = (tv.clone(), tv.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (loss(&Tensor::from_vec(p, &[b]).unwrap())
            - loss(&Tensor::from_vec(m, &[b]).unwrap()))
            / (2.0 * h);
        assert!(
            (fd - dt[i]).abs() < 1e-7 * (1.0 + fd.abs()),
            "t[{i}]: finite difference {fd}, backward {}",
            dt[i]
        );
        assert!(dt[i] != 0.0);
    }
    assert!(ops::time_embedding_backward(&t, &rand(&[b, 4], DType::F64, 1), dim).is_err());
}

#[test]
fn per_row_shapes_are_checked() {
    let x = rand(&[3, 4], DType::F32, 13);
    let k = Tensor::zeros(&[4], DType::F64);
    assert!(ops::scale_rows(&x, &k).is_err());
    assert!(ops::combine_rows(&k, &x, &k, &x).is_err());
    assert!(ops::row_dots(&x, &rand(&[4, 3], DType::F32, 1)).is_err());
    assert!(ops::row_sums(&rand(&[3], DType::F32, 1)).is_err());
}

fn close(what: &str, cpu: &Tensor, dev: &Tensor, rel: f64, abs: f64) {
    assert_eq!(cpu.shape(), dev.shape(), "{what}: shape");
    let (a, b) = (cpu.to_vec_f64(), dev.try_to_vec_f64().unwrap());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= rel * x.abs() + abs,
            "{what}[{i}]: cpu {x}, gpu {y}"
        );
    }
}

/// On `dev` against the host (on the CPU the same path through the
/// dispatch; on a GPU the parity check with the tolerances above).
fn per_row_ops_on_the_device_match_the_host(dev: &Device) {
    let dev = dev.clone();
    let (b, d) = (37, 21);
    let (x, y) = (rand(&[b, d], DType::F32, 20), rand(&[b, d], DType::F32, 21));
    let (gx, gy) = (x.to_device(&dev).unwrap(), y.to_device(&dev).unwrap());
    let (al, be) = (coeffs(b, 22), coeffs(b, 23));
    // Coefficients rounded to f32 on both sides (the GPU holds only f32).
    let r32 = |k: &[f64]| {
        ops::row_coefficients(k, &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
    };
    // On a GPU `row_coefficients` gives exactly these f32 values.
    let (ga, gb) = (
        r32(&al).to_device(&dev).unwrap(),
        r32(&be).to_device(&dev).unwrap(),
    );
    if !dev.is_cpu() {
        let on_dev = ops::row_coefficients(&al, &dev).unwrap();
        assert!(on_dev.bit_eq(&ga), "row_coefficients on the device");
    }
    close(
        "scale_rows",
        &ops::scale_rows(&x, &r32(&al)).unwrap(),
        &ops::scale_rows(&gx, &ga).unwrap(),
        0.0,
        0.0,
    );
    close(
        "combine_rows",
        &ops::combine_rows(&r32(&al), &x, &r32(&be), &y).unwrap(),
        &ops::combine_rows(&ga, &gx, &gb, &gy).unwrap(),
        0.0,
        0.0,
    );
    let dots = ops::row_dots(&x, &y).unwrap();
    close(
        "row_dots",
        &dots,
        &ops::row_dots(&gx, &gy).unwrap(),
        1e-6,
        1e-9,
    );
    let sums = ops::row_sums(&x).unwrap();
    close("row_sums", &sums, &ops::row_sums(&gx).unwrap(), 1e-6, 1e-9);
    close(
        "row_max_abs",
        &ops::row_max_abs(&x).unwrap(),
        &ops::row_max_abs(&gx).unwrap(),
        0.0,
        0.0,
    );
    assert_eq!(
        ops::argmax_rows(&x).unwrap(),
        ops::argmax_rows(&gx).unwrap()
    );
    let w = rand(&[10, d], DType::F32, 24);
    let gw = w.to_device(&dev).unwrap();
    let cross = ops::matmul(&x, ops::Transpose::No, &w, ops::Transpose::Yes).unwrap();
    let an = ops::row_dots(&x, &x).unwrap();
    let wn = ops::row_dots(&w, &w).unwrap();
    let s = ops::sq_dist_scores(&cross, &an, &wn, 0.5).unwrap();
    let gcross = cross.to_device(&dev).unwrap();
    let gs = ops::sq_dist_scores(
        &gcross,
        &ops::row_dots(&gx, &gx).unwrap(),
        &ops::row_dots(&gw, &gw).unwrap(),
        0.5,
    )
    .unwrap();
    close("sq_dist_scores", &s, &gs, 1e-6, 1e-6);
    let t = ops::rand_uniform(&[b], DType::F32, &mut RngStream::new(5, 6)).unwrap();
    let gt = t.to_device(&dev).unwrap();
    let e = ops::time_embedding(&t, 64).unwrap();
    close(
        "time_embedding",
        &e,
        &ops::time_embedding(&gt, 64).unwrap(),
        0.0,
        1e-6,
    );
    let dy = rand(&[b, 64], DType::F32, 25);
    let gdy = dy.to_device(&dev).unwrap();
    close(
        "time_embedding_backward",
        &ops::time_embedding_backward(&t, &dy, 64).unwrap(),
        &ops::time_embedding_backward(&gt, &gdy, 64).unwrap(),
        1e-5,
        1e-5,
    );
    assert_eq!(gx.device(), dev, "inputs live on the device under test");
    if !dev.is_cpu() {
        // Mixed devices are a typed error.
        assert!(ops::scale_rows(&gx, &r32(&al)).is_err());
    }
}

test_device!(per_row_ops_on_the_device_match_the_host);
