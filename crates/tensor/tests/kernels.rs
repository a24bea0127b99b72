//! Every kernel against a naive f64 reference (ndarray) on fresh random
//! inputs over a shape zoo that includes 1, 7, 63 and the paper's shapes.

use approx::assert_relative_eq;
use ndarray::{Array2, Array4, ArrayD, IxDyn};
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Tensor};

/// Random normal tensor (never all-zero) in the given dtype.
fn rand_t(shape: &[usize], dtype: DType, stream: u64) -> Tensor {
    let mut rng = RngStream::new(0xC0FFEE, stream);
    ops::randn(shape, dtype, &mut rng).unwrap()
}

fn to_f64(t: &Tensor) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(t.shape()), t.to_vec_f64()).unwrap()
}

/// Largest |a − b| / (|b| + floor) — the relative error with a floor for values near 0.
fn max_rel_err(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (y.abs() + floor))
        .fold(0.0, f64::max)
}

fn naive_matmul(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let (m, k) = a.dim();
    let n = b.dim().1;
    let mut c = Array2::zeros((m, n));
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for p in 0..k {
                s += a[[i, p]] * b[[p, j]];
            }
            c[[i, j]] = s;
        }
    }
    c
}

fn as2(t: &Tensor) -> Array2<f64> {
    to_f64(t).into_dimensionality().unwrap()
}

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
    (0, 3, 4),
    (3, 0, 4),
    (3, 4, 0),
];

#[test]
fn gemm_matches_naive_reference_all_transposes() {
    for &(m, n, k) in GEMM_ZOO {
        for (ta, tb) in [
            (Transpose::No, Transpose::No),
            (Transpose::Yes, Transpose::No),
            (Transpose::No, Transpose::Yes),
            (Transpose::Yes, Transpose::Yes),
        ] {
            for dtype in [DType::F32, DType::F64] {
                let ashape = if ta == Transpose::No { [m, k] } else { [k, m] };
                let bshape = if tb == Transpose::No { [k, n] } else { [n, k] };
                let a = rand_t(&ashape, dtype, 1);
                let b = rand_t(&bshape, dtype, 2);
                let c = ops::matmul(&a, ta, &b, tb).unwrap();
                let mut a64 = as2(&a);
                let mut b64 = as2(&b);
                if ta == Transpose::Yes {
                    a64 = a64.t().to_owned();
                }
                if tb == Transpose::Yes {
                    b64 = b64.t().to_owned();
                }
                let want = naive_matmul(&a64, &b64);
                assert_eq!(c.shape(), &[m, n]);
                let tol = if dtype == DType::F32 { 1e-4 } else { 1e-12 };
                // Relative to the scale of the dot products (√k for unit normals).
                let floor = (k as f64).sqrt().max(1.0);
                let err = max_rel_err(&c.to_vec_f64(), want.as_slice().unwrap(), floor);
                assert!(
                    err < tol,
                    "gemm {m}x{n}x{k} {ta:?}{tb:?} {dtype:?}: err {err}"
                );
            }
        }
    }
}

#[test]
fn gemm_accumulates_into_output() {
    let a = rand_t(&[7, 63], DType::F64, 3);
    let b = rand_t(&[63, 9], DType::F64, 4);
    let mut c = rand_t(&[7, 9], DType::F64, 5);
    let c0 = as2(&c);
    ops::gemm_into(&mut c, true, &a, Transpose::No, &b, Transpose::No).unwrap();
    let want = &c0 + &naive_matmul(&as2(&a), &as2(&b));
    assert!(max_rel_err(&c.to_vec_f64(), want.as_slice().unwrap(), 1.0) < 1e-12);
    // The inner-split path (long k, small output) accumulates too.
    let a = rand_t(&[5, 10_000], DType::F64, 6);
    let b = rand_t(&[10_000, 9], DType::F64, 7);
    let mut c = rand_t(&[5, 9], DType::F64, 8);
    let c0 = as2(&c);
    ops::gemm_into(&mut c, true, &a, Transpose::No, &b, Transpose::No).unwrap();
    let want = &c0 + &naive_matmul(&as2(&a), &as2(&b));
    assert!(max_rel_err(&c.to_vec_f64(), want.as_slice().unwrap(), 100.0) < 1e-12);
}

#[test]
fn gemm_rejects_bad_shapes() {
    let a = rand_t(&[3, 4], DType::F32, 1);
    let b = rand_t(&[5, 2], DType::F32, 2);
    assert!(ops::matmul(&a, Transpose::No, &b, Transpose::No).is_err());
    let b64 = rand_t(&[4, 2], DType::F64, 2);
    assert!(ops::matmul(&a, Transpose::No, &b64, Transpose::No).is_err());
}

fn naive_conv(x: &Array4<f64>, w: &Array4<f64>, b: &[f64], pad: usize) -> Array4<f64> {
    let (n, c, h, wd) = x.dim();
    let (oc, _, kh, kw) = w.dim();
    let (oh, ow) = (h + 2 * pad + 1 - kh, wd + 2 * pad + 1 - kw);
    let mut y = Array4::zeros((n, oc, oh, ow));
    for ni in 0..n {
        for o in 0..oc {
            for yy in 0..oh {
                for xx in 0..ow {
                    let mut s = b[o];
                    for ci in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (yy + ky) as isize - pad as isize;
                                let ix = (xx + kx) as isize - pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    s += x[[ni, ci, iy as usize, ix as usize]] * w[[o, ci, ky, kx]];
                                }
                            }
                        }
                    }
                    y[[ni, o, yy, xx]] = s;
                }
            }
        }
    }
    y
}

/// (N, C, H, W, OC, pad): odd sizes, 1s, and the paper's MNIST/CIFAR layers (small batch).
const CONV_ZOO: &[(usize, usize, usize, usize, usize, usize)] = &[
    (1, 1, 3, 3, 1, 0),
    (1, 1, 1, 1, 7, 1),
    (2, 3, 7, 5, 4, 0),
    (2, 3, 7, 5, 4, 1),
    (3, 7, 9, 9, 63, 1),
    (2, 1, 28, 28, 32, 0),   // MNIST conv1
    (2, 32, 13, 13, 64, 0),  // MNIST conv2
    (2, 64, 11, 11, 128, 0), // MNIST conv3
    (2, 3, 32, 32, 32, 0),   // CIFAR conv1
    (0, 3, 5, 5, 2, 0),
];

#[test]
fn conv2d_forward_and_backward_match_naive_reference() {
    for (zi, &(n, c, h, w, oc, pad)) in CONV_ZOO.iter().enumerate() {
        let s = zi as u64 * 10;
        let x = rand_t(&[n, c, h, w], DType::F64, s + 1);
        let wt = rand_t(&[oc, c, 3, 3], DType::F64, s + 2);
        let b = rand_t(&[oc], DType::F64, s + 3);
        let mut ws = ops::ConvWorkspace::new();
        let y = ops::conv2d_forward(&x, &wt, Some(&b), pad, false, &mut ws).unwrap();
        let x4: Array4<f64> = to_f64(&x).into_dimensionality().unwrap();
        let w4: Array4<f64> = to_f64(&wt).into_dimensionality().unwrap();
        let want = naive_conv(&x4, &w4, &b.to_vec_f64(), pad);
        assert_eq!(y.shape(), want.shape());
        let err = max_rel_err(&y.to_vec_f64(), want.as_slice().unwrap(), 1.0);
        assert!(err < 1e-12, "conv fwd zoo {zi}: {err}");

        // Backward against the adjoint identities: <dy, conv(x)> is linear in x and w.
        let dy = rand_t(y.shape(), DType::F64, s + 4);
        let g = ops::conv2d_backward(&dy, &wt, None, &mut ws, true).unwrap();
        let dy4: Array4<f64> = to_f64(&dy).into_dimensionality().unwrap();
        let (_, _, oh, ow) = dy4.dim();
        // Naive gradients.
        let mut dw = Array4::<f64>::zeros((oc, c, 3, 3));
        let mut dx = Array4::<f64>::zeros((n, c, h, w));
        let mut db = vec![0.0; oc];
        for ni in 0..n {
            for o in 0..oc {
                for yy in 0..oh {
                    for xx in 0..ow {
                        let d = dy4[[ni, o, yy, xx]];
                        db[o] += d;
                        for ci in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = (yy + ky) as isize - pad as isize;
                                    let ix = (xx + kx) as isize - pad as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w
                                    {
                                        let (iy, ix) = (iy as usize, ix as usize);
                                        dw[[o, ci, ky, kx]] += d * x4[[ni, ci, iy, ix]];
                                        dx[[ni, ci, iy, ix]] += d * w4[[o, ci, ky, kx]];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let e1 = max_rel_err(&g.dw.to_vec_f64(), dw.as_slice().unwrap(), 1.0);
        let e2 = max_rel_err(&g.dx.unwrap().to_vec_f64(), dx.as_slice().unwrap(), 1.0);
        let e3 = max_rel_err(&g.db.to_vec_f64(), &db, 1.0);
        assert!(
            e1 < 1e-11 && e2 < 1e-11 && e3 < 1e-11,
            "conv bwd zoo {zi}: {e1} {e2} {e3}"
        );
        // A second backward without a forward is an error, not garbage.
        assert!(ops::conv2d_backward(&dy, &wt, None, &mut ws, true).is_err());
    }
}

#[test]
fn conv2d_f32_matches_f64_and_fused_relu() {
    let x = rand_t(&[4, 32, 13, 13], DType::F32, 11);
    let wt = rand_t(&[64, 32, 3, 3], DType::F32, 12);
    let b = rand_t(&[64], DType::F32, 13);
    let mut ws = ops::ConvWorkspace::new();
    let y = ops::conv2d_forward(&x, &wt, Some(&b), 0, true, &mut ws).unwrap();
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
    let err = max_rel_err(&y.to_vec_f64(), &want, 17.0);
    assert!(err < 1e-5, "{err}");
    assert!(y.to_vec_f64().contains(&0.0) && y.to_vec_f64().iter().any(|&v| v > 0.0));
}

#[test]
fn im2col_col2im_are_adjoint() {
    // <im2col(x), c> == <x, col2im(c)> for random x, c.
    // pad 0 with a 3-row kernel takes col2im's fused path (edge rows too).
    for &(n, c, h, w, kw, pad) in &[
        (1, 1, 3, 3, 3, 0),
        (2, 3, 7, 5, 3, 1),
        (1, 7, 9, 8, 3, 0),
        (2, 4, 13, 11, 3, 0),
        (1, 2, 4, 6, 2, 0),
        (1, 2, 5, 6, 1, 1),
    ] {
        let x = rand_t(&[n, c, h, w], DType::F64, 21);
        let col = ops::im2col(&x, 3, kw, pad).unwrap();
        let cc = rand_t(col.shape(), DType::F64, 22);
        let back = ops::col2im(&cc, &[n, c, h, w], 3, kw, pad).unwrap();
        let lhs = ops::dot(&col, &cc).unwrap();
        let rhs = ops::dot(&x, &back).unwrap();
        assert_relative_eq!(lhs, rhs, max_relative = 1e-12);
    }
}

#[test]
fn max_pool_matches_naive_and_routes_gradients() {
    for &(n, c, h, w) in &[
        (1, 1, 2, 2),
        (2, 3, 7, 7),
        (2, 32, 26, 26),
        (1, 128, 9, 9),
        (1, 1, 1, 5),
    ] {
        let x = rand_t(&[n, c, h, w], DType::F64, 31);
        let (y, idx) = ops::max_pool2d_forward(&x).unwrap();
        let x4: Array4<f64> = to_f64(&x).into_dimensionality().unwrap();
        let (oh, ow) = (h / 2, w / 2);
        assert_eq!(y.shape(), &[n, c, oh, ow]);
        let ys = y.to_vec_f64();
        let dy = rand_t(y.shape(), DType::F64, 32);
        let dys = dy.to_vec_f64();
        let mut dx = Array4::<f64>::zeros((n, c, h, w));
        let mut k = 0;
        for ni in 0..n {
            for ci in 0..c {
                for yy in 0..oh {
                    for xx in 0..ow {
                        let mut best = (2 * yy, 2 * xx);
                        for (dy_, dx_) in [(0, 1), (1, 0), (1, 1)] {
                            let (a, b) = (2 * yy + dy_, 2 * xx + dx_);
                            if x4[[ni, ci, a, b]] > x4[[ni, ci, best.0, best.1]] {
                                best = (a, b);
                            }
                        }
                        assert_eq!(ys[k], x4[[ni, ci, best.0, best.1]]);
                        assert_eq!(idx[k] as usize, best.0 * w + best.1);
                        dx[[ni, ci, best.0, best.1]] += dys[k];
                        k += 1;
                    }
                }
            }
        }
        let g = ops::max_pool2d_backward(&dy, &idx, &[n, c, h, w]).unwrap();
        assert_eq!(g.to_vec_f64(), dx.as_slice().unwrap().to_vec());
    }
}

/// Ties, signed zeros and NaN: the first maximum in window order wins and a
/// NaN wins over numbers (the first NaN). Values are drawn from a tiny set so
/// that ties are everywhere, as after a ReLU; some rows hold NaN, which sends
/// them down the exact slow path.
#[test]
fn max_pool_ties_signed_zeros_and_nan() {
    let set = [0.0, -0.0, 1.0, 1.0, -2.0, 0.5, f64::NAN];
    for (dtype, (n, c, h, w)) in [(DType::F32, (2, 3, 8, 9)), (DType::F64, (1, 4, 7, 6))] {
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
        let x = Tensor::from_vec(vals.clone(), &[n, c, h, w])
            .unwrap()
            .to_dtype(dtype);
        let (y, idx) = ops::max_pool2d_forward(&x).unwrap();
        let ys = y.to_vec_f64();
        let (oh, ow) = (h / 2, w / 2);
        let mut k = 0;
        for pl in 0..n * c {
            for yy in 0..oh {
                for xx in 0..ow {
                    let at = |a: usize, b: usize| (a * w + b, vals[pl * h * w + a * w + b]);
                    let mut best = at(2 * yy, 2 * xx);
                    for (da, db) in [(0, 1), (1, 0), (1, 1)] {
                        let v = at(2 * yy + da, 2 * xx + db);
                        if v.1 > best.1 || (v.1.is_nan() && !best.1.is_nan()) {
                            best = v;
                        }
                    }
                    assert_eq!(idx[k] as usize, best.0, "plane {pl} window ({yy}, {xx})");
                    assert!(
                        ys[k].to_bits() == best.1.to_bits() || (ys[k].is_nan() && best.1.is_nan()),
                        "plane {pl} window ({yy}, {xx}): {} vs {}",
                        ys[k],
                        best.1
                    );
                    k += 1;
                }
            }
        }
    }
}

#[test]
fn batch_norm_matches_naive_reference() {
    for shape in [
        vec![7, 1],
        vec![128, 256],
        vec![63, 7],
        vec![2, 3, 5, 5],
        vec![4, 32, 7, 7],
    ] {
        let x = rand_t(&shape, DType::F64, 41);
        let c = shape[1];
        let gamma = rand_t(&[c], DType::F64, 42);
        let beta = rand_t(&[c], DType::F64, 43);
        let mut rm = Tensor::zeros(&[c], DType::F64);
        let mut rv = Tensor::full(&[c], 1.0, DType::F64);
        let (y, saved) =
            ops::batch_norm_train(&x, &gamma, &beta, &mut rm, &mut rv, 0.1, 1e-5).unwrap();
        let xs = x.to_vec_f64();
        let p: usize = shape[2..].iter().product();
        let n = shape[0];
        let m = (n * p) as f64;
        let (g, b) = (gamma.to_vec_f64(), beta.to_vec_f64());
        let mut want = vec![0.0; xs.len()];
        for ci in 0..c {
            let vals: Vec<usize> = (0..n)
                .flat_map(|ni| (0..p).map(move |j| (ni * c + ci) * p + j))
                .collect();
            let mu = vals.iter().map(|&i| xs[i]).sum::<f64>() / m;
            let var = vals.iter().map(|&i| (xs[i] - mu).powi(2)).sum::<f64>() / m;
            for &i in &vals {
                want[i] = g[ci] * (xs[i] - mu) / (var + 1e-5).sqrt() + b[ci];
            }
            assert_relative_eq!(
                rm.to_vec_f64()[ci],
                0.1 * mu,
                max_relative = 1e-10,
                epsilon = 1e-14
            );
            let unbiased = if m > 1.0 { var * m / (m - 1.0) } else { var };
            assert_relative_eq!(
                rv.to_vec_f64()[ci],
                0.9 + 0.1 * unbiased,
                max_relative = 1e-10
            );
        }
        assert!(max_rel_err(&y.to_vec_f64(), &want, 1.0) < 1e-10);
        // Eval with the batch's own stats reproduces the training output.
        let ye = ops::batch_norm_eval(&x, &gamma, &beta, &saved.mean, &saved.var, 1e-5).unwrap();
        assert!(max_rel_err(&ye.to_vec_f64(), &want, 1.0) < 1e-10);
    }
}

#[test]
fn softmax_family_matches_naive_reference() {
    for &(b, m) in &[(1, 1), (7, 10), (63, 100), (128, 10)] {
        let x = rand_t(&[b, m], DType::F64, 51);
        let xs = x.to_vec_f64();
        let labels: Vec<usize> = (0..b).map(|i| (i * 7 + 3) % m).collect();
        let p = ops::softmax(&x).unwrap().to_vec_f64();
        let lp = ops::log_softmax(&x).unwrap().to_vec_f64();
        let (loss, grad) = ops::softmax_cross_entropy(&x, &labels).unwrap();
        let g = grad.to_vec_f64();
        let mut want_loss = 0.0;
        for i in 0..b {
            let r = &xs[i * m..(i + 1) * m];
            let z: f64 = r.iter().map(|v| v.exp()).sum();
            for j in 0..m {
                assert_relative_eq!(p[i * m + j], r[j].exp() / z, max_relative = 1e-12);
                assert_relative_eq!(
                    lp[i * m + j],
                    r[j] - z.ln(),
                    max_relative = 1e-12,
                    epsilon = 1e-12
                );
                let onehot = if j == labels[i] { 1.0 } else { 0.0 };
                assert_relative_eq!(
                    g[i * m + j],
                    (r[j].exp() / z - onehot) / b as f64,
                    epsilon = 1e-14
                );
            }
            want_loss -= r[labels[i]] - z.ln();
        }
        assert_relative_eq!(loss, want_loss / b as f64, max_relative = 1e-12);
    }
    let x = rand_t(&[2, 3], DType::F32, 52);
    assert!(ops::softmax_cross_entropy(&x, &[0, 3]).is_err());
    assert!(ops::softmax_cross_entropy(&x, &[0]).is_err());
}

#[test]
fn softmax_backward_matches_jacobian() {
    let x = rand_t(&[7, 10], DType::F64, 61);
    let p = ops::softmax(&x).unwrap();
    let dp = rand_t(&[7, 10], DType::F64, 62);
    let dx = ops::softmax_backward(&p, &dp).unwrap().to_vec_f64();
    let (ps, dps) = (p.to_vec_f64(), dp.to_vec_f64());
    for i in 0..7 {
        for j in 0..10 {
            let mut s = 0.0;
            for k in 0..10 {
                let jac = ps[i * 10 + k] * (if j == k { 1.0 } else { 0.0 } - ps[i * 10 + j]);
                s += dps[i * 10 + k] * jac;
            }
            assert_relative_eq!(dx[i * 10 + j], s, max_relative = 1e-10, epsilon = 1e-14);
        }
    }
}

#[test]
fn reductions_and_elementwise_match_naive() {
    for n in [1usize, 7, 63, 100_003] {
        let a = rand_t(&[n], DType::F64, 71);
        let b = rand_t(&[n], DType::F64, 72);
        let (av, bv) = (a.to_vec_f64(), b.to_vec_f64());
        assert_relative_eq!(
            ops::sum(&a).unwrap(),
            av.iter().sum::<f64>(),
            max_relative = 1e-10
        );
        assert_relative_eq!(
            ops::sum_sq(&a).unwrap(),
            av.iter().map(|v| v * v).sum::<f64>(),
            max_relative = 1e-12
        );
        let d: f64 = av.iter().zip(&bv).map(|(x, y)| x * y).sum();
        assert_relative_eq!(
            ops::dot(&a, &b).unwrap(),
            d,
            max_relative = 1e-9,
            epsilon = 1e-9
        );
        let s = ops::add_scaled(2.0, &a, -0.5, &b).unwrap().to_vec_f64();
        let mut y = a.clone();
        ops::axpy(&mut y, 3.0, &b).unwrap();
        let yv = y.to_vec_f64();
        let m = ops::mul(&a, &b).unwrap().to_vec_f64();
        let r = ops::relu(&a).unwrap().to_vec_f64();
        for i in 0..n {
            assert_eq!(s[i], 2.0 * av[i] - 0.5 * bv[i]);
            assert_eq!(yv[i], av[i] + 3.0 * bv[i]);
            assert_eq!(m[i], av[i] * bv[i]);
            assert_eq!(r[i], av[i].max(0.0));
        }
    }
    let x = rand_t(&[63, 130], DType::F64, 73);
    let xs = x.to_vec_f64();
    let cs = ops::sum_rows(&x).unwrap().to_vec_f64();
    for j in 0..130 {
        let want: f64 = (0..63).map(|i| xs[i * 130 + j]).sum();
        assert_relative_eq!(cs[j], want, max_relative = 1e-12, epsilon = 1e-12);
    }
    let mut y = x.clone();
    let bias = rand_t(&[130], DType::F64, 74);
    ops::bias_relu_rows(&mut y, &bias).unwrap();
    let bv = bias.to_vec_f64();
    for (i, v) in y.to_vec_f64().iter().enumerate() {
        assert_eq!(*v, (xs[i] + bv[i % 130]).max(0.0));
    }
}

#[test]
fn concat_split_gather_scatter_transpose() {
    let a = rand_t(&[7, 3], DType::F32, 81);
    let b = rand_t(&[7, 5], DType::F32, 82);
    let c = ops::concat_cols(&[&a, &b]).unwrap();
    assert_eq!(c.shape(), &[7, 8]);
    let parts = ops::split_cols(&c, &[3, 5]).unwrap();
    assert!(parts[0].bit_eq(&a) && parts[1].bit_eq(&b));
    let table = rand_t(&[10, 4], DType::F64, 83);
    let idx = [3usize, 3, 9, 0];
    let g = ops::gather_rows(&table, &idx).unwrap();
    let tv = table.to_vec_f64();
    for (r, &i) in idx.iter().enumerate() {
        assert_eq!(&g.to_vec_f64()[r * 4..(r + 1) * 4], &tv[i * 4..(i + 1) * 4]);
    }
    // scatter_add is gather's adjoint: <gather(T), S> = <T, scatter(S)>.
    let s = rand_t(&[4, 4], DType::F64, 84);
    let back = ops::scatter_add_rows(&s, &idx, 10).unwrap();
    assert_relative_eq!(
        ops::dot(&g, &s).unwrap(),
        ops::dot(&table, &back).unwrap(),
        max_relative = 1e-12
    );
    assert!(ops::gather_rows(&table, &[10]).is_err());
    let t = ops::transpose2d(&b).unwrap();
    let bv = b.to_vec_f64();
    for i in 0..7 {
        for j in 0..5 {
            assert_eq!(t.to_vec_f64()[j * 7 + i], bv[i * 5 + j]);
        }
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
fn fused_relu_mask_in_conv_backward_equals_separate_mask() {
    let x = rand_t(&[3, 4, 9, 8], DType::F64, 111);
    let w = rand_t(&[5, 4, 3, 3], DType::F64, 112);
    let b = rand_t(&[5], DType::F64, 113);
    let mut ws1 = ops::ConvWorkspace::new();
    let y = ops::conv2d_forward(&x, &w, Some(&b), 0, true, &mut ws1).unwrap();
    let dy = rand_t(y.shape(), DType::F64, 114);
    let fused = ops::conv2d_backward(&dy, &w, Some(&y), &mut ws1, true).unwrap();
    let mut ws2 = ops::ConvWorkspace::new();
    ops::conv2d_forward(&x, &w, Some(&b), 0, true, &mut ws2).unwrap();
    let masked = ops::relu_backward(&dy, &y).unwrap();
    let plain = ops::conv2d_backward(&masked, &w, None, &mut ws2, true).unwrap();
    assert!(fused.dw.bit_eq(&plain.dw) && fused.db.bit_eq(&plain.db));
    assert!(fused.dx.unwrap().bit_eq(&plain.dx.unwrap()));
    // The mask did something.
    assert!(y.to_vec_f64().contains(&0.0));
}

#[test]
fn dropout_forward_matches_mask_and_keep_rate() {
    let x = rand_t(&[1000, 100], DType::F32, 121);
    let mut r1 = RngStream::new(5, 9);
    let mut r2 = RngStream::new(5, 9);
    let (y, m) = ops::dropout_forward(&x, 0.2, &mut r1).unwrap();
    let m2 = ops::dropout_mask(x.shape(), 0.2, DType::F32, &mut r2).unwrap();
    assert!(m.bit_eq(&m2));
    assert_eq!(r1.offset(), r2.offset());
    assert!(y.bit_eq(&ops::mul(&x, &m).unwrap()));
    let kept = m.to_vec_f32().iter().filter(|&&v| v > 0.0).count() as f64 / 100_000.0;
    assert!((kept - 0.8).abs() < 0.01, "kept {kept}");
    assert!(m.to_vec_f32().iter().all(|&v| v == 0.0 || v == 1.25));
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
