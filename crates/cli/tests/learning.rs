//! Learning checks on real digits (issue bars): `mnist-test-split` is the
//! first 8,000 images of the real MNIST test set for training and the last
//! 2,000 for evaluation. Seed 0, T = 10, batch 128, `--order batch`, the
//! paper's optimiser settings (AdamW, lr 1e-3, wd 1e-3), 2 epochs.
//!
//! The MNIST test files ship with the repository in `datasets/mnist-test`,
//! the first default place the loader searches. Without them the
//! test fails with the loader's message listing where it looked: these
//! checks are the point of the suite and must not silently pass.

mod common;

fn train(embedding: &str, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let results = dir.path().to_str().expect("UTF-8 temp path");
    let mut args = vec![
        "train",
        "--method",
        "noprop-dt",
        "--dataset",
        "mnist-test-split",
        "--embedding",
        embedding,
        "--epochs",
        "2",
        "--seed",
        "0",
        "--order",
        "batch",
        "--train-eval-limit",
        "500",
        "--checkpoint-every",
        "0",
        "--results-dir",
        results,
    ];
    args.extend_from_slice(extra);
    common::result_on_disk(&common::noprop(&args))
}

#[test]
fn noprop_dt_learns_real_digits_one_hot_and_prototype() {
    for (embedding, bar) in [("one-hot", 0.95), ("prototype", 0.95)] {
        let v = train(embedding, &[]);
        let acc = v["test_accuracy"].as_f64().expect("test_accuracy");
        eprintln!(
            "NoProp-DT {embedding}: test accuracy {acc:.4} after 2 epochs ({:.0} img/s)",
            v["images_per_second"].as_f64().unwrap_or(0.0)
        );
        for key in [
            "method",
            "dataset",
            "embedding",
            "epochs",
            "seed",
            "train_accuracy",
            "wall_seconds",
            "images_per_second",
            "peak_memory_bytes",
            "result_path",
        ] {
            assert!(!v[key].is_null(), "RESULT is missing `{key}`");
        }
        assert_eq!(v["per_epoch"].as_array().map(Vec::len), Some(2));
        assert!(
            acc >= bar,
            "{embedding}: test accuracy {acc} is below the bar {bar}"
        );
    }
}
