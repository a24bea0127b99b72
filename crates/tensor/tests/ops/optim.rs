//! Optimisers: see the parity table in `main.rs`.

use super::*;

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

test_device!(optimisers_match_naive,);
