//! NoProp-CT / NoProp-FM through the `noprop` binary on real digits
//! (`mnist-test-split`: the first 8,000 MNIST test images train, the last
//! 2,000 are held out), seed 0, batch 128, Adam lr 1e-3 with coupled L2 1e-3,
//! final inference with 1,000 steps (ancestral for CT, Euler for FM). The
//! issue's bars: CT one-hot ≥ 0.70 after 10 epochs, FM one-hot ≥ 0.96 after
//! 5, FM dim=20 (learned, anchor CE on) ≥ 0.97 after 10. Per-epoch
//! evaluations use 10 steps to keep CI time down; the bars apply to the
//! final 1,000-step accuracy.
//!
//! Also: `--resume` after an interruption reproduces an uninterrupted CT run
//! bit for bit, learnable schedule and its optimiser state included, and
//! `noprop eval` gives the same accuracy with and without image-path caching.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

mod common;
use common::result;

/// `noprop <args> --results-dir <results>`, asserting success.
fn noprop(args: &[&str], results: &Path) -> Output {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend([OsStr::new("--results-dir"), results.as_os_str()]);
    common::noprop(&all)
}

#[test]
fn noprop_ct_and_fm_learn_real_digits() {
    let cases = [
        ("noprop-fm", "one-hot", "5", 0.96),
        ("noprop-fm", "dim20", "10", 0.97),
        ("noprop-ct", "one-hot", "10", 0.70),
    ];
    let mut failures = Vec::new();
    for (method, embedding, epochs, bar) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = noprop(
            &[
                "train",
                "--method",
                method,
                "--dataset",
                "mnist-test-split",
                "--embedding",
                embedding,
                "--epochs",
                epochs,
                "--seed",
                "0",
                "--batch-size",
                "128",
                "--steps",
                "1000",
                "--eval-steps",
                "10",
                "--train-eval-limit",
                "100",
                "--checkpoint-every",
                "0",
            ],
            dir.path(),
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        let v = result(&out);
        let acc = v["test_accuracy"].as_f64().expect("test_accuracy");
        eprintln!(
            "{method} {embedding}: test accuracy {acc:.4} after {epochs} epochs \
             ({:.1} s training, {:.1} s for 1000-step inference on 2000 images, sampler {})",
            v["train_seconds"].as_f64().unwrap_or(0.0),
            v["inference_seconds"].as_f64().unwrap_or(0.0),
            v["sampler"]
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
            "inference_seconds",
        ] {
            assert!(!v[key].is_null(), "RESULT is missing `{key}`");
        }
        assert_eq!(v["method"], method);
        assert_eq!(v["inference_steps"], 1000);
        let path = v["result_path"].as_str().expect("result_path");
        let on_disk: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("result file"))
                .expect("json");
        assert_eq!(on_disk["test_accuracy"], v["test_accuracy"]);
        if acc < bar {
            failures.push(format!("{method} {embedding}: {acc:.4} < {bar}"));
        }
    }
    assert!(failures.is_empty(), "below the bars: {failures:?}");
}

fn resume_run(results: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--method",
        "noprop-ct",
        "--dataset",
        "mnist-test-split",
        "--embedding",
        "dim20",
        "--epochs",
        "2",
        "--steps",
        "6",
        "--limit-train",
        "640",
        "--train-eval-limit",
        "100",
        "--checkpoint-every",
        "3",
        "--seed",
        "3",
    ];
    args.extend_from_slice(extra);
    noprop(&args, results)
}

fn payload(results: &Path) -> Vec<u8> {
    let (bytes, header) = common::checkpoint(
        &results.join("checkpoints/noprop-ct-mnist-test-split-dim20-s3/last.safetensors"),
    );
    // The learnable schedule and its Adam moments are part of the state.
    for k in [
        "schedule.params",
        "opt.schedule.params.exp_avg",
        "opt.schedule.params.exp_avg_sq",
    ] {
        assert!(header.get(k).is_some(), "checkpoint lacks `{k}`");
    }
    bytes
}

#[test]
fn interrupted_and_resumed_ct_run_matches_uninterrupted_run() {
    let full = tempfile::tempdir().expect("tempdir");
    let split = tempfile::tempdir().expect("tempdir");
    let a = resume_run(full.path(), &[]);
    resume_run(split.path(), &["--stop-after", "7"]);
    let b = resume_run(split.path(), &["--resume"]);
    assert!(
        payload(full.path()) == payload(split.path()),
        "checkpoints differ"
    );
    let per_epoch = |o: &Output| -> Vec<serde_json::Value> {
        result(o)["per_epoch"]
            .as_array()
            .expect("per_epoch")
            .iter()
            .map(|e| e["test_accuracy"].clone())
            .collect()
    };
    assert_eq!(per_epoch(&a), per_epoch(&b));
    assert_eq!(result(&a)["test_accuracy"], result(&b)["test_accuracy"]);
    assert_eq!(result(&a)["schedule_gamma0"], result(&b)["schedule_gamma0"]);

    // `noprop eval`: caching changes nothing; Heun and the ODE path run.
    let ckpt = full
        .path()
        .join("checkpoints/noprop-ct-mnist-test-split-dim20-s3/last.safetensors");
    let ckpt = ckpt.to_str().expect("utf-8 path");
    let ev = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--checkpoint",
            ckpt,
            "--dataset",
            "mnist-test-split",
            "--steps",
            "5",
        ];
        args.extend_from_slice(extra);
        let out = common::noprop(&args);
        result(&out)
    };
    let on = ev(&[]);
    let off = ev(&["--no-image-cache"]);
    assert_eq!(on["test_accuracy"], off["test_accuracy"]);
    assert_eq!(on["method"], "noprop-ct");
    for s in ["euler", "heun"] {
        let r = ev(&["--sampler", s]);
        assert_eq!(r["sampler"], s);
        assert!(r["test_accuracy"].as_f64().expect("accuracy") >= 0.0);
    }
}
