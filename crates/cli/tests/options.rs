//! The command line a user meets first: typos get suggestions, invalid
//! combinations fail before any data is read, help has examples, old switch
//! spellings still work with a deprecation note, and `noprop data check`
//! reports a dataset's state.

mod common;

use std::process::{Command, Output};

use common::{noprop, result};

/// Runs `noprop <args>` and returns its output whatever the exit status.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_noprop"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run noprop")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn typos_are_answered_with_the_closest_value() {
    let o = run(&[
        "train",
        "--method",
        "nprop-dt",
        "--dataset",
        "mnist-test-split",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("a similar value exists: 'noprop-dt'"), "{e}");
    assert!(e.contains("possible values: noprop-dt, noprop-ct"), "{e}");

    let o = run(&["train", "--dataset", "fashon-mnist"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("did you mean `fashion-mnist`"),
        "{}",
        stderr(&o)
    );

    let o = run(&[
        "train",
        "--dataset",
        "mnist-test-split",
        "--sampler",
        "eulr",
    ]);
    assert!(stderr(&o).contains("'euler'"), "{}", stderr(&o));
}

#[test]
fn invalid_combinations_fail_before_loading_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = dir.path().join("nowhere");
    let o = run(&[
        "train",
        "--method",
        "noprop-fm",
        "--sampler",
        "ancestral",
        "--dataset",
        "mnist-test-split",
        "--data-dir",
        nowhere.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("use --sampler euler or heun"), "{e}");
    assert!(
        !e.contains("loaded"),
        "validation must come before the data: {e}"
    );

    let o = run(&[
        "train",
        "--method",
        "backprop",
        "--order",
        "paper",
        "--dataset",
        "mnist-test-split",
    ]);
    assert!(
        stderr(&o).contains("--order applies to noprop-dt only"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn every_help_has_examples() {
    for args in [
        &["--help"][..],
        &["train", "--help"],
        &["eval", "--help"],
        &["data", "check", "--help"],
    ] {
        let o = run(args);
        assert!(o.status.success());
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("Examples:\n  noprop "), "{args:?}: {out}");
    }
    let o = run(&["train", "--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    for m in ["noprop-dt", "noprop-ct", "noprop-fm", "backprop", "adjoint"] {
        assert!(out.contains(&format!("- {m}:")), "--help lists {m}: {out}");
    }
    assert!(out.contains("--no-inference-noise"));
    assert!(
        !out.contains("--inference-noise <"),
        "deprecated spelling stays hidden"
    );
}

#[test]
fn deprecated_switch_spelling_still_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = noprop(&[
        "train",
        "--method",
        "noprop-dt",
        "--dataset",
        "mnist-test-split",
        "--limit-train",
        "256",
        "--limit-test",
        "100",
        "--train-eval-limit",
        "100",
        "--steps",
        "2",
        "--inference-noise",
        "off",
        "--results-dir",
        dir.path().to_str().expect("utf-8"),
    ]);
    assert!(stderr(&out).contains("--inference-noise on|off is deprecated"));
    let r = result(&out);
    assert_eq!(r["inference_noise"], false);
    // The same checkpoint evaluated noise-free twice gives the same answer.
    let ckpt = r["checkpoint"].as_str().expect("checkpoint");
    let a = result(&noprop(&[
        "eval",
        "--dataset",
        "mnist-test-split",
        "--checkpoint",
        ckpt,
        "--no-inference-noise",
        "--limit-test",
        "100",
    ]));
    let b = result(&noprop(&[
        "eval",
        "--dataset",
        "mnist-test-split",
        "--checkpoint",
        ckpt,
        "--inference-noise",
        "off",
        "--limit-test",
        "100",
    ]));
    assert_eq!(a["test_accuracy"], b["test_accuracy"]);
    assert_eq!(a["test_accuracy"], r["test_accuracy"]);
}

#[test]
fn data_check_reports_the_shipped_digits_and_a_corrupt_copy() {
    let o = noprop(&["data", "check", "--dataset", "mnist-test-split"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("mnist-test-split: ok"), "{out}");
    assert!(out.contains("verified"), "{out}");
    assert!(out.contains("train: 8,000 images"), "{out}");

    // A copy with one flipped byte in an explicit --data-dir is reported,
    // naming the file, and the command fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist-test");
    let dst = dir.path().join("mnist-test");
    std::fs::create_dir_all(&dst).expect("mkdir");
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(src.join(f), dst.join(f)).expect("copy");
    }
    // Flip a byte inside the decompressed payload: rewrite the labels.
    let labels = dst.join("t10k-labels-idx1-ubyte.gz");
    let raw = {
        use std::io::Read;
        let mut d = gunzip(&labels);
        let mut v = Vec::new();
        d.read_to_end(&mut v).expect("read");
        v
    };
    let mut raw = raw;
    let last = raw.len() - 1;
    raw[last] = (raw[last] + 1) % 10;
    std::fs::remove_file(&labels).expect("rm");
    std::fs::write(dst.join("t10k-labels-idx1-ubyte"), &raw).expect("write");
    let o = run(&[
        "data",
        "check",
        "--dataset",
        "mnist-test-split",
        "--data-dir",
        dir.path().to_str().expect("utf-8"),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("t10k-labels-idx1-ubyte"), "{out}");
    assert!(out.to_lowercase().contains("mismatch"), "{out}");
}

/// Decompress with the system `gzip` (keeps this crate free of a gzip dependency).
fn gunzip(path: &std::path::Path) -> std::io::Cursor<Vec<u8>> {
    let o = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("gzip");
    assert!(o.status.success());
    std::io::Cursor::new(o.stdout)
}
