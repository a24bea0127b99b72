//! Batch norm: see the parity table in `main.rs`.

use super::*;

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

test_device!(batch_norm_matches_naive_reference,);
