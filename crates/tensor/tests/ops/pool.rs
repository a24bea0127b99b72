//! Pooling: see the parity table in `main.rs`.

use super::*;

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

test_device!(
    max_pool_matches_naive_and_routes_gradients,
    max_pool_ties_signed_zeros_and_nan,
);
