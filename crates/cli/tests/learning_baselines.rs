//! Learning checks of the baselines on real digits (issue bars):
//! `mnist-test-split` (the first 8,000 MNIST test images train, the last
//! 2,000 are held out), seed 0, batch 128, the paper's optimiser settings
//! (AdamW, lr 1e-3, wd 1e-3), 2 epochs:
//!
//! * back-propagation (Eqs. 17–19), T = 10, one-hot: test accuracy ≥ 0.45
//!   (a PyTorch transcription reaches 0.46 / 0.58 after 1 / 2 epochs);
//! * the adjoint neural ODE with 20 Euler steps for training and inference:
//!   ≥ 0.90 (PyTorch, discrete adjoint through 20 Euler steps: 0.951).
//!
//! The paper's adjoint setting is 1,000 steps (`--steps 1000`, the default);
//! 20 keeps CI time down. Without the MNIST files the test fails with the
//! loader's message: these checks must not silently pass.

mod common;

fn train(method: &str, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let results = dir.path().to_str().expect("UTF-8 temp path");
    let mut args = vec![
        "train",
        "--method",
        method,
        "--dataset",
        "mnist-test-split",
        "--embedding",
        "one-hot",
        "--epochs",
        "2",
        "--seed",
        "0",
        "--batch-size",
        "128",
        "--train-eval-limit",
        "100",
        "--checkpoint-every",
        "0",
        "--results-dir",
        results,
    ];
    args.extend_from_slice(extra);
    let v = common::result_on_disk(&common::noprop(&args));
    for key in [
        "method",
        "dataset",
        "embedding",
        "epochs",
        "seed",
        "test_accuracy",
        "train_accuracy",
        "wall_seconds",
        "images_per_second",
        "peak_memory_bytes",
        "peak_rss_bytes",
        "result_path",
    ] {
        assert!(!v[key].is_null(), "{method}: RESULT is missing `{key}`");
    }
    assert_eq!(v["method"], method);
    assert_eq!(v["per_epoch"].as_array().map(Vec::len), Some(2));
    v
}

#[test]
fn baselines_learn_real_digits() {
    let mut failures = Vec::new();
    for (method, extra, bar) in [
        ("adjoint", &["--steps", "20"][..], 0.90),
        ("backprop", &[][..], 0.45),
    ] {
        let v = train(method, extra);
        let acc = v["test_accuracy"].as_f64().expect("test_accuracy");
        eprintln!(
            "{method}: test accuracy {acc:.4} after 2 epochs ({:.1} s training, {:.0} img/s, peak heap {:.0} MB)",
            v["train_seconds"].as_f64().unwrap_or(0.0),
            v["images_per_second"].as_f64().unwrap_or(0.0),
            v["peak_memory_bytes"].as_f64().unwrap_or(0.0) / 1e6
        );
        if method == "adjoint" {
            assert_eq!(v["inference_steps"], 20);
            assert_eq!(
                v["last_epoch_state_recovery"]["unconverged_steps"], 0,
                "{v}"
            );
        }
        if acc < bar {
            failures.push(format!("{method}: {acc:.4} < {bar}"));
        }
    }
    assert!(failures.is_empty(), "below the bars: {failures:?}");
}
