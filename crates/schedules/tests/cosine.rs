//! The T = 10 values of docs/DECISIONS.md, note C (A), and the noising distribution by sampling.

use approx::assert_abs_diff_eq;
use noprop_schedules::{noisy_latent, CosineSchedule};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Tensor};

#[test]
fn pinned_alpha_bar_snr_and_posterior_for_t10() {
    let s = CosineSchedule::new(10).unwrap();
    let want = [
        0.0, 0.0199, 0.0782, 0.1700, 0.2882, 0.4233, 0.5645, 0.7006, 0.8207, 0.9152, 0.9766,
    ];
    for (t, w) in want.iter().enumerate() {
        assert_abs_diff_eq!(s.alpha_bar(t), *w, epsilon = 1e-4);
    }
    assert_abs_diff_eq!(s.snr(10), 41.7, epsilon = 0.05);
    assert_eq!(s.snr(0), 0.0);
    let diffs: [f64; 10] = [
        0.020, 0.064, 0.120, 0.200, 0.329, 0.562, 1.04, 2.24, 6.21, 30.9,
    ];
    for (i, d) in diffs.iter().enumerate() {
        // The listed values carry 3 significant digits.
        assert_abs_diff_eq!(s.snr_diff(i + 1), *d, epsilon = 5e-3 * d.max(1.0));
    }
    let p1 = s.posterior(1);
    assert_abs_diff_eq!(p1.a, 0.141, epsilon = 1e-3);
    assert_eq!(p1.b, 0.0);
    assert_abs_diff_eq!(p1.c, 0.980, epsilon = 1e-3);
    let p10 = s.posterior(10);
    assert_abs_diff_eq!(p10.a, 0.733, epsilon = 1e-3);
    assert_abs_diff_eq!(p10.b, 0.267, epsilon = 1e-3);
    assert_abs_diff_eq!(p10.c, 0.017, epsilon = 1e-3);
    // The KL term of Eq. 8 vanishes because ᾱ_0 = 0.
    assert_eq!(s.kl_z0(3.0, 10), 0.0);
}

#[test]
fn schedule_identities_hold_for_many_t() {
    for steps in [1usize, 2, 7, 10, 63, 1000] {
        let s = CosineSchedule::new(steps).unwrap();
        assert_eq!(s.steps(), steps);
        // ᾱ_t = ∏_{s≥t} α_s, increasing, in [0, 1).
        let mut prod = 1.0;
        for t in (0..=steps).rev() {
            prod *= s.alpha(t);
            assert_abs_diff_eq!(s.alpha_bar(t), prod, epsilon = 1e-12);
            if t > 0 {
                assert!(s.alpha_bar(t) > s.alpha_bar(t - 1));
                assert!(s.snr_diff(t) > 0.0);
                let p = s.posterior(t);
                assert!(p.a.is_finite() && p.b.is_finite() && p.c > 0.0 && p.c < 1.0);
                // Mean of q(z_t|y) is preserved by the posterior step:
                // a_t + b_t·√ᾱ_{t−1} = √ᾱ_t.
                assert_abs_diff_eq!(
                    p.a + p.b * s.alpha_bar(t - 1).sqrt(),
                    s.alpha_bar(t).sqrt(),
                    epsilon = 1e-12
                );
                // And the variance: b_t²(1 − ᾱ_{t−1}) + c_t = 1 − ᾱ_t.
                assert_abs_diff_eq!(
                    p.b * p.b * (1.0 - s.alpha_bar(t - 1)) + p.c,
                    1.0 - s.alpha_bar(t),
                    epsilon = 1e-12
                );
            }
        }
    }
    assert!(CosineSchedule::new(0).is_err());
}

#[test]
fn noising_has_mean_sqrt_alpha_bar_u_and_variance_one_minus_alpha_bar() {
    // z ~ N(√ᾱ·u, (1 − ᾱ)I): a community implementation used ᾱ·u; this test
    // would catch it (√0.2882 = 0.537 vs 0.2882).
    let s = CosineSchedule::new(10).unwrap();
    let n = 200_000;
    let d = 3;
    let u_row = [1.5f64, -2.0, 0.25];
    let u = Tensor::from_vec(u_row.repeat(n), &[n, d]).unwrap();
    for t in [1, 4, 10] {
        let ab = s.alpha_bar(t);
        let eps = ops::randn(&[n, d], DType::F64, &mut RngStream::new(11, t as u64)).unwrap();
        let z = noisy_latent(&u, ab, &eps).unwrap().to_vec_f64();
        for j in 0..d {
            let col: Vec<f64> = (0..n).map(|i| z[i * d + j]).collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            // Standard errors: √((1−ᾱ)/n) ≈ 0.002 for the mean, ≈ 0.3% for the variance.
            assert_abs_diff_eq!(mean, ab.sqrt() * u_row[j], epsilon = 0.01);
            assert_abs_diff_eq!(var, 1.0 - ab, epsilon = 0.015 * (1.0 - ab) + 1e-3);
        }
    }
}
