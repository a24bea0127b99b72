//! Softmax: see the parity table in `main.rs`.

use super::*;

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

test_device!(
    softmax_family_matches_naive_reference,
    softmax_backward_matches_jacobian,
);
