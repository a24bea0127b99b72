//! The adjoint neural ODE: in f64 its discrete-adjoint gradients (states
//! recovered by inverting the Euler steps, image path run once) agree with
//! back-propagation through the stored, unrolled Euler steps (full network
//! at every step) to 1e-6 relative, and with central finite differences;
//! NaN losses are errors naming epoch and step; checkpoints continue
//! identically.

use std::collections::HashMap;

use noprop_baselines::{Adjoint, AdjointConfig, Error};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Tensor};

fn model(steps: usize, seed: u64) -> Adjoint {
    let mut cfg = AdjointConfig::paper((1, 28, 28), 10, seed);
    cfg.steps = steps;
    Adjoint::new(cfg).unwrap()
}

fn grads(m: &mut Adjoint) -> Vec<(String, Vec<f64>)> {
    m.params()
        .into_iter()
        .map(|p| (p.name, p.grad.to_vec_f64()))
        .collect()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// A model a few training steps in (so the dynamics are not trivial), in f64.
fn trained_f64(steps: usize) -> (Adjoint, Tensor, Vec<usize>) {
    trained_f64_batch(steps, 6)
}

/// [`trained_f64`] on a batch of `b` images (from 64 on, the CPU runs the
/// Euler loop and the state recovery as two row halves side by side).
fn trained_f64_batch(steps: usize, b: usize) -> (Adjoint, Tensor, Vec<usize>) {
    let mut m = model(steps, 5);
    let x = ops::randn(&[b, 1, 28, 28], DType::F32, &mut RngStream::new(7, 0)).unwrap();
    let y: Vec<usize> = (0..b).map(|i| (3 * i) % 10).collect();
    for _ in 0..3 {
        m.train_batch(&x, &y, 0).unwrap();
    }
    m.to_dtype(DType::F64);
    (m, x.to_dtype(DType::F64), y)
}

#[test]
fn discrete_adjoint_matches_backprop_through_unrolled_euler_f64() {
    // (steps, batch): the last case splits its 67 rows into halves.
    for (steps, b) in [(1, 6), (7, 6), (25, 6), (7, 67)] {
        let (mut m, x, y) = trained_f64_batch(steps, b);
        let la = m.accumulate_grads(&x, &y).unwrap();
        let stats = m.last_stats;
        let ga = grads(&mut m);
        m.zero_grad();
        let lb = m.accumulate_grads_unrolled(&x, &y).unwrap();
        let gb = grads(&mut m);
        m.zero_grad();
        assert!(
            (la - lb).abs() <= 1e-12 * lb.abs(),
            "K = {steps}: loss {la} vs {lb}"
        );
        assert!(stats.evaluations >= steps, "{stats:?}");
        assert_eq!(stats.unconverged, 0, "K = {steps}: {stats:?}");
        assert!(stats.z0_drift < 1e-10, "K = {steps}: {stats:?}");
        let mut worst = (0.0f64, String::new());
        for ((name, a), (_, b)) in ga.iter().zip(&gb) {
            let scale = max_abs(b);
            assert!(scale > 0.0, "K = {steps}: {name} gets no gradient");
            let err = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max)
                / scale;
            if err > worst.0 {
                worst = (err, name.clone());
            }
        }
        eprintln!(
            "K = {steps}: worst relative gradient error {:.2e} ({}), {} evaluations to recover {} states, z0 drift {:.1e}",
            worst.0, worst.1, stats.evaluations, steps, stats.z0_drift
        );
        assert!(
            worst.0 <= 1e-6,
            "K = {steps}: {} differs by {:.3e}",
            worst.1,
            worst.0
        );
    }
}

#[test]
fn adjoint_gradients_match_finite_differences_f64() {
    let (mut m, x, y) = trained_f64(6);
    m.accumulate_grads(&x, &y).unwrap();
    let g = grads(&mut m);
    m.zero_grad();
    let probes = [
        ("net.img.conv1.weight", 4usize),
        ("net.label.fc.weight", 17),
        ("net.time.fc.weight", 100),
        ("net.head.fc1.weight", 1000),
        ("net.head.fc1.weight", 256 * 768 - 3),
        ("net.head.fc3.bias", 2),
        ("classifier.weight", 11),
    ];
    let eps = 1e-6;
    for (name, i) in probes {
        let analytic = g.iter().find(|(n, _)| n == name).unwrap().1[i];
        let mut loss_at = |delta: f64| {
            for p in m.params() {
                if p.name == name {
                    let s = p.value.as_mut_slice::<f64>().unwrap();
                    s[i] += delta;
                }
            }
            let l = m.accumulate_grads(&x, &y).unwrap();
            m.zero_grad();
            l
        };
        let lp = loss_at(eps);
        let lm = loss_at(-2.0 * eps);
        loss_at(eps);
        let fd = (lp - lm) / (2.0 * eps);
        let err = (fd - analytic).abs() / fd.abs().max(analytic.abs()).max(1e-8);
        assert!(
            err < 1e-5,
            "{name}[{i}]: adjoint {analytic:.6e} vs finite difference {fd:.6e}"
        );
    }
}

#[test]
fn nan_loss_is_an_error_naming_epoch_and_step() {
    let mut m = model(3, 0);
    let mut x = ops::randn(&[4, 1, 28, 28], DType::F32, &mut RngStream::new(1, 0)).unwrap();
    let y = [0, 1, 2, 3];
    m.train_batch(&x, &y, 2).unwrap();
    x.as_mut_slice::<f32>().unwrap()[5] = f32::NAN;
    let before = m.state_tensors().unwrap();
    let err = m.train_batch(&x, &y, 2).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonFiniteLoss {
                epoch: 2,
                step: 1,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("epoch 2") && msg.contains("step 1"), "{msg}");
    // Nothing was updated.
    for ((n, a), (_, b)) in before.iter().zip(&m.state_tensors().unwrap()) {
        assert!(a.bit_eq(b), "{n} changed");
    }
}

#[test]
fn checkpoint_round_trip_continues_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adjoint.safetensors");
    let x = ops::randn(&[8, 1, 28, 28], DType::F32, &mut RngStream::new(2, 0)).unwrap();
    let y: Vec<usize> = (0..8).collect();
    let mut a = model(4, 1);
    a.train_batch(&x, &y, 0).unwrap();
    a.save(&path, HashMap::new()).unwrap();
    let (mut b, meta) = Adjoint::load(&path).unwrap();
    assert_eq!(meta.get("method").map(String::as_str), Some("adjoint"));
    let la = a.train_batch(&x, &y, 0).unwrap();
    let lb = b.train_batch(&x, &y, 0).unwrap();
    assert_eq!(la.to_bits(), lb.to_bits());
    for ((n, t1), (_, t2)) in a
        .state_tensors()
        .unwrap()
        .iter()
        .zip(&b.state_tensors().unwrap())
    {
        assert!(t1.bit_eq(t2), "{n}");
    }
    assert_eq!(a.predict(&x, 4, 3).unwrap(), b.predict(&x, 4, 3).unwrap());
}

#[test]
fn training_lowers_the_loss_and_moves_the_image_path() {
    let mut m = model(10, 0);
    let x = ops::randn(&[16, 1, 28, 28], DType::F32, &mut RngStream::new(3, 0)).unwrap();
    let y: Vec<usize> = (0..16).map(|i| i % 10).collect();
    let conv = |m: &mut Adjoint| {
        m.params()
            .into_iter()
            .find(|p| p.name == "net.img.conv1.weight")
            .unwrap()
            .value
            .clone()
    };
    let before = conv(&mut m);
    let losses: Vec<f64> = (0..15).map(|_| m.train_batch(&x, &y, 0).unwrap()).collect();
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[10..].iter().sum::<f64>() / 5.0;
    assert!(last < first - 0.05, "loss did not fall: {losses:?}");
    assert!(!before.bit_eq(&conv(&mut m)));
}
