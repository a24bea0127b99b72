//! Reductions, element-wise: see the parity table in `main.rs`.

use super::*;

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

test_device!(reductions_match_naive, elementwise_match_naive,);
