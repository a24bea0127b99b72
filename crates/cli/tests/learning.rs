//! Learning checks on real digits (issue bars): `mnist-test-split` is the
//! first 8,000 images of the real MNIST test set for training and the last
//! 2,000 for evaluation. Seed 0, T = 10, batch 128, `--order batch`, the
//! paper's optimiser settings (AdamW, lr 1e-3, wd 1e-3), 2 epochs.
//!
//! The MNIST test files are found through the usual search path
//! (`$NOPROP_DATA`, `../shared/data/mnist-test`, ...). Without them the
//! test fails with the loader's message listing where it looked: these
//! checks are the point of the suite and must not silently pass.

use std::process::Command;

fn train(embedding: &str, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_noprop"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
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
    ]);
    cmd.arg(dir.path()).args(extra);
    let out = cmd.output().expect("run noprop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "noprop train failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("some output");
    let json = last
        .strip_prefix("RESULT ")
        .expect("last line is RESULT {json}");
    let v: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
    // The JSON file it names exists and holds the same result.
    let path = v["result_path"].as_str().expect("result_path");
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("result file")).expect("json");
    assert_eq!(on_disk["test_accuracy"], v["test_accuracy"]);
    v
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
