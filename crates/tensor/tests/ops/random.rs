//! Random: see the parity table in `main.rs`.

use super::*;

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
    random_draws_match_the_host_stream,
    dropout_forward_matches_mask_and_keep_rate,
);
