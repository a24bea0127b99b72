//! GEMM: see the parity table in `main.rs`.

use super::*;

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

test_device!(
    gemm_matches_naive_reference,
    gemm_accumulates_into_output,
    gemm_rejects_bad_shapes,
);
