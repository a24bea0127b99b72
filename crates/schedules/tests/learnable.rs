//! The learnable CT schedule (docs/DECISIONS.md § 9): monotone by construction, and
//! finite-difference checks (f64) of SNR′ and of every parameter gradient.

use noprop_schedules::{ode, LearnableSchedule, Stepper};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Tensor};

/// A schedule with random raw parameters of a wide range (any sign).
fn random_schedule(seed: u64) -> LearnableSchedule {
    let w = LearnableSchedule::WIDTH;
    let mut rng = RngStream::new(seed, 77);
    let mut p = ops::randn(&[3 * w + 1], DType::F64, &mut rng)
        .unwrap()
        .to_vec_f64()
        .iter()
        .map(|v| 3.0 * v)
        .collect::<Vec<_>>();
    let u = ops::rand_uniform(&[2], DType::F64, &mut rng)
        .unwrap()
        .to_vec_f64();
    p.push(-10.0 + 6.0 * u[0]);
    p.push(3.0 + 6.0 * u[1]);
    LearnableSchedule::from_params(w, p).unwrap()
}

#[test]
fn gamma_is_decreasing_for_random_parameters() {
    for seed in 0..50 {
        let s = random_schedule(seed);
        let n = 2000;
        let mut prev = s.gamma(0.0);
        assert!((prev - s.gamma1()).abs() < 1e-9, "γ(0) = γ1");
        for k in 1..=n {
            let g = s.gamma(k as f64 / n as f64);
            assert!(
                g <= prev + 1e-12,
                "seed {seed}: γ increases at t = {}",
                k as f64 / n as f64
            );
            prev = g;
        }
        assert!((prev - s.gamma0()).abs() < 1e-9, "γ(1) = γ0");
        for k in 0..=20 {
            let at = s.at(k as f64 / 20.0);
            assert!(at.snr_prime >= 0.0 && at.gamma_prime <= 0.0);
            assert!((at.alpha_bar / (1.0 - at.alpha_bar) - at.snr).abs() <= 1e-9 * at.snr.max(1.0));
        }
    }
}

#[test]
fn snr_prime_matches_finite_differences() {
    for seed in 0..10 {
        let s = random_schedule(seed);
        for &t in &[0.0f64, 0.013, 0.25, 0.5, 0.77, 0.999] {
            let h = 1e-6f64;
            let (lo, hi) = ((t - h).max(0.0), (t + h).min(1.0));
            let fd = (s.snr(hi) - s.snr(lo)) / (hi - lo);
            let an = s.snr_prime(t);
            // One-sided at the ends: O(h) error.
            let tol = if lo == t || hi == t { 1e-3 } else { 1e-5 };
            assert!(
                (fd - an).abs() <= tol * an.abs().max(1e-3),
                "seed {seed} t {t}: fd {fd} analytic {an}"
            );
            let gfd = (s.gamma(hi) - s.gamma(lo)) / (hi - lo);
            assert!((gfd - s.at(t).gamma_prime).abs() <= tol * gfd.abs().max(1e-3));
        }
    }
}

#[test]
fn parameter_gradients_match_finite_differences() {
    for seed in [1u64, 2, 3] {
        let s = random_schedule(seed);
        let p0 = s.params();
        let w = s.width();
        for &(t, ca, cs) in &[(0.3, 1.7, 0.4), (0.81, -0.6, 1.3), (0.05, 2.0, -0.2)] {
            let loss = |p: &[f64]| {
                let s = LearnableSchedule::from_params(w, p.to_vec()).unwrap();
                let at = s.at(t);
                ca * at.alpha_bar + cs * at.snr_prime
            };
            let g = s.grad_of(t, ca, cs);
            assert!(g[3 * w].abs() < 1e-12, "b2 cancels in γ̄");
            for k in 0..p0.len() {
                let h = 1e-5 * p0[k].abs().max(1.0);
                let mut pp = p0.clone();
                pp[k] += h;
                let mut pm = p0.clone();
                pm[k] -= h;
                let fd = (loss(&pp) - loss(&pm)) / (2.0 * h);
                let scale = g.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-8);
                assert!(
                    (fd - g[k]).abs() <= 1e-6 * scale + 1e-6 * fd.abs(),
                    "seed {seed} t {t} param {k}: fd {fd} analytic {}",
                    g[k]
                );
            }
        }
        // accumulate_grad sums over times.
        let mut s2 = s.clone();
        s2.accumulate_grad(&[0.3, 0.81], &[1.7, -0.6], &[0.4, 1.3])
            .unwrap();
        let sum: Vec<f64> = s
            .grad_of(0.3, 1.7, 0.4)
            .iter()
            .zip(s.grad_of(0.81, -0.6, 1.3))
            .map(|(a, b)| a + b)
            .collect();
        for (a, b) in s2.grad().iter().zip(&sum) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
        }
    }
}

#[test]
fn default_schedule_endpoints_and_ancestral_coefficients() {
    let s = LearnableSchedule::new(0, 5).unwrap();
    assert_eq!(s.num_params(), 195);
    assert!((s.gamma(0.0) - 7.0).abs() < 1e-12);
    assert!((s.gamma(1.0) + 7.0).abs() < 1e-12);
    // The ancestral step between s < t matches the DT posterior algebra:
    // the mean of q(z_t | z_s, y) must reproduce q(z_t | y)'s moments.
    let (a_s, a_t) = (s.alpha_bar(0.4), s.alpha_bar(0.401));
    let p = s.posterior(0.4, 0.401);
    // Mean coefficient of u: a + b·√ᾱ_s = √ᾱ_t; variance: b²(1 − ᾱ_s) + c = 1 − ᾱ_t.
    assert!((p.a + p.b * a_s.sqrt() - a_t.sqrt()).abs() < 1e-12);
    assert!((p.b * p.b * (1.0 - a_s) + p.c - (1.0 - a_t)).abs() < 1e-12);
    assert!(p.c > 0.0);
    // Probability-flow coefficients: dz/dt = −½γ′(√ᾱ·û − ᾱ·z).
    let (ku, kz) = s.pf_ode_coeffs(0.5);
    let at = s.at(0.5);
    assert!((ku + 0.5 * at.gamma_prime * at.alpha_bar.sqrt()).abs() < 1e-12);
    assert!((kz - 0.5 * at.gamma_prime * at.alpha_bar).abs() < 1e-12);
}

#[test]
fn euler_and_heun_integrate_a_linear_ode() {
    // dz/dt = −z from z(0) = 1: exact e^{−1} at t = 1. Euler is O(h), Heun O(h²).
    let z0 = Tensor::from_vec(vec![1.0f64, 2.0], &[1, 2]).unwrap();
    let exact = (-1.0f64).exp();
    let mut errs = Vec::new();
    for stepper in [Stepper::Euler, Stepper::Heun] {
        let mut z = z0.clone();
        let n = 100;
        for k in 0..n {
            z = stepper
                .step::<noprop_schedules::Error, _>(
                    &z,
                    k as f64 / n as f64,
                    1.0 / n as f64,
                    |z, _t| Ok(ops::scale(z, -1.0)?),
                )
                .unwrap();
        }
        errs.push((z.to_vec_f64()[0] - exact).abs());
        assert!((z.to_vec_f64()[1] - 2.0 * z.to_vec_f64()[0]).abs() < 1e-12);
    }
    assert!(errs[0] < 3e-3 && errs[0] > 1e-4, "Euler error {}", errs[0]);
    assert!(errs[1] < 1e-5, "Heun error {}", errs[1]);
}

#[test]
fn flow_matching_path_helpers() {
    let z0 = Tensor::from_vec(vec![1.0f64, -1.0, 0.5, 0.5], &[2, 2]).unwrap();
    let z1 = Tensor::from_vec(vec![0.0f64, 1.0, 1.0, 0.0], &[2, 2]).unwrap();
    let zt = ode::fm_path(&z0, &z1, &[0.25, 1.0], 0.0, None).unwrap();
    assert_eq!(zt.to_vec_f64(), vec![0.75, -0.5, 1.0, 0.0]);
    let v = ode::fm_target(&z0, &z1).unwrap();
    // Extrapolating along the true field from z_t lands on z_1 exactly.
    let z1_hat = ode::fm_extrapolate(&zt, &v, &[0.25, 1.0]).unwrap();
    assert_eq!(z1_hat.to_vec_f64(), z1.to_vec_f64());
    assert!(ode::fm_path(&z0, &z1, &[0.5, 0.5], 0.1, None).is_err());
    let n = ode::noisy_latent_rows(&z1, &[1.0, 0.0], &z0).unwrap();
    assert_eq!(n.to_vec_f64(), vec![0.0, 1.0, 0.5, 0.5]);
}

/// `at_many` computes the parts that do not depend on `t` once: it must
/// give exactly the numbers of `at` at each time, for random parameters.
#[test]
fn at_many_equals_at_bit_for_bit() {
    for seed in 0..4 {
        let s = random_schedule(seed);
        let ts: Vec<f64> = (0..=40).map(|i| i as f64 / 40.0).collect();
        for (t, many) in ts.iter().zip(s.at_many(&ts)) {
            assert_eq!(many, s.at(*t), "seed {seed}, t = {t}");
        }
        assert!(s.at_many(&[]).is_empty());
    }
}

/// The whole grid's posteriors are the pairwise ones, bit for bit.
#[test]
fn posteriors_on_a_grid_are_the_pairwise_posteriors() {
    let s = random_schedule(3);
    let steps = 37;
    let dt = 1.0 / steps as f64;
    let ts: Vec<f64> = (0..=steps).map(|k| k as f64 * dt).collect();
    let all = s.posteriors(&ts);
    assert_eq!(all.len(), steps);
    for (k, p) in all.iter().enumerate() {
        let q = s.posterior(ts[k], ts[k + 1]);
        assert_eq!(
            (p.a.to_bits(), p.b.to_bits(), p.c.to_bits()),
            (q.a.to_bits(), q.b.to_bits(), q.c.to_bits()),
            "step {k}"
        );
    }
    assert!(s.posteriors(&ts[..1]).is_empty());
}
