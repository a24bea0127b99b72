//! PyTorch interoperability of NoProp-DT checkpoints (docs/PYTORCH.md).
//!
//! Trains a small NoProp-DT checkpoint with the `noprop` binary (the first
//! 1,024 training images of `mnist-test-split`, batch 16, one epoch: 64 steps,
//! enough to reach about 77 % noise-free test accuracy, so that agreement is
//! not the trivial agreement of two constant predictors), evaluates it with
//! `noprop eval --no-inference-noise`, loads the same checkpoint into the
//! PyTorch transcription (`benches/peers/dt_checkpoint_torch.py`, which maps
//! every tensor and fails on any it cannot place) and evaluates it there on
//! the same 2,000 test images, also noise-free. The two accuracies must agree
//! within [`ACCURACY_TOLERANCE`] and the per-image predictions (ours from the
//! library, on the same checkpoint and data) within [`MIN_AGREEMENT`].
//!
//! Why the tolerances: noise-free inference (`z_0 = 0`, `ε_t = 0`, batch-norm
//! in evaluation mode) is a deterministic function of the image, computed in
//! f32 on both sides; only the order of floating-point sums differs (im2col +
//! GEMM here, PyTorch's own conv kernels there), which moves logits by about
//! 1e-6 relative. A prediction can flip only where the two largest class
//! scores are that close, which a 2,000-image test set hits a handful of
//! times at most. 0.5 % (10 images) and 99.5 % agreement leave room for that
//! and still catch any real mismatch: a wrong tensor mapping, a transposed
//! weight, other normalisation or schedule coefficients move accuracy by far
//! more (an untrained model scores about 10 %).
//!
//! Skips, saying why, when `python3 -c "import torch"` fails (torch is not
//! part of CI). The MNIST test files are the copy shipped in the
//! repository's `datasets/mnist-test/`; the folder is passed to `noprop`
//! (`--data-dir`) and to the script, so both read the same files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use noprop_datasets::{load, BatchBuf, BatchOptions, DatasetName, LoadOptions};
use noprop_models::NoPropDt;
use noprop_tensor::Tensor;

/// Largest allowed difference of the two noise-free test accuracies.
const ACCURACY_TOLERANCE: f64 = 0.005;
/// Smallest allowed fraction of identical noise-free predictions.
const MIN_AGREEMENT: f64 = 0.995;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> String {
    std::env::var("NOPROP_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `Err(why)` when torch cannot be imported.
fn torch_importable() -> Result<(), String> {
    let out = Command::new(python())
        .args(["-c", "import torch, numpy; print(torch.__version__)"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(stderr
        .lines()
        .last()
        .unwrap_or("exit status without a message")
        .to_string())
}

/// The MNIST test files shipped in the repository.
fn mnist_test_dir() -> PathBuf {
    let d = workspace().join("datasets/mnist-test");
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        assert!(d.join(f).is_file(), "{} is missing", d.join(f).display());
    }
    std::fs::canonicalize(&d).unwrap_or(d)
}

fn find_checkpoint(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            if let Some(found) = find_checkpoint(&p) {
                return Some(found);
            }
        } else if p.file_name().is_some_and(|n| n == "last.safetensors") {
            return Some(p);
        }
    }
    None
}

/// Our noise-free predictions on the test split, through the library.
fn our_predictions(ckpt: &Path, data: &Path) -> (Vec<usize>, Vec<usize>) {
    let (mut model, meta) = NoPropDt::load(ckpt).expect("load checkpoint");
    let tt = load(
        DatasetName::MnistTestSplit,
        &LoadOptions::with_data_dir(data),
    )
    .expect("load mnist-test-split");
    // The normalisation training used (of the first 1,024 training images),
    // recorded in the checkpoint; `noprop eval` uses it too.
    let norm = noprop_train::recorded_normalization(ckpt, &meta)
        .expect("normalization metadata")
        .expect("recorded by noprop train");
    assert_ne!(
        norm,
        tt.normalization(),
        "a subset's statistics differ from the whole split's"
    );
    let mut batches = tt
        .test
        .batches(BatchOptions::new(500).normalize(norm))
        .expect("batches");
    let mut buf = BatchBuf::new();
    let (mut pred, mut labels) = (Vec::new(), Vec::new());
    while batches.next_into(&mut buf) {
        let x = Tensor::from_slice(buf.images(), &buf.shape()).expect("tensor");
        pred.extend(model.predict(&x, false, 0).expect("predict"));
        labels.extend(buf.labels().iter().map(|&l| l as usize));
    }
    (pred, labels)
}

#[test]
fn pytorch_loads_a_noprop_dt_checkpoint_and_agrees_without_noise() {
    if let Err(why) = torch_importable() {
        eprintln!("skipped: torch not importable: {why}");
        return;
    }
    let data = mnist_test_dir();
    let data_arg = data.to_str().expect("UTF-8 data path");
    let dir = tempfile::tempdir().expect("tempdir");
    let results = dir.path().join("results");
    let results_arg = results.to_str().expect("UTF-8 temp path");

    let train = common::result(&common::noprop(&[
        "train",
        "--method",
        "noprop-dt",
        "--dataset",
        "mnist-test-split",
        "--data-dir",
        data_arg,
        "--limit-train",
        "1024",
        "--batch-size",
        "16",
        "--limit-test",
        "500",
        "--epochs",
        "1",
        "--seed",
        "0",
        "--train-eval-limit",
        "100",
        "--checkpoint-every",
        "0",
        "--results-dir",
        results_arg,
    ]));
    let ckpt = train["checkpoint"]
        .as_str()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| find_checkpoint(&results))
        .expect("the run's last.safetensors");
    let ckpt_arg = ckpt.to_str().expect("UTF-8 checkpoint path");

    let eval = common::result(&common::noprop(&[
        "eval",
        "--checkpoint",
        ckpt_arg,
        "--dataset",
        "mnist-test-split",
        "--data-dir",
        data_arg,
        "--no-inference-noise",
    ]));
    let ours = eval["test_accuracy"].as_f64().expect("test_accuracy");

    let (pred, labels) = our_predictions(&ckpt, &data);
    let lib_acc =
        pred.iter().zip(&labels).filter(|(p, y)| p == y).count() as f64 / labels.len() as f64;
    let ref_path = dir.path().join("ours.json");
    std::fs::write(&ref_path, serde_json::to_string(&pred).expect("json")).expect("write");

    let script = workspace().join("benches/peers/dt_checkpoint_torch.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(&ckpt)
        .args(["--data", data_arg, "--split", "mnist-test-split"])
        .args(["--noise", "both", "--runs", "1", "--threads", "1"])
        .args(["--norm-limit-train", "1024"])
        .arg("--reference-predictions")
        .arg(&ref_path)
        .output()
        .expect("run the PyTorch script");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed: {stderr}",
        script.display()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let torch: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("JSON line")).expect("JSON");
    let theirs = torch["noise_free_accuracy"]
        .as_f64()
        .expect("noise_free_accuracy");
    let agreement = torch["agreement"].as_f64().expect("agreement");
    eprintln!(
        "noise-free test accuracy on {} images: noprop eval {ours:.4} (library {lib_acc:.4}), \
         PyTorch {theirs:.4}; agreement {agreement:.4} ({} differ); PyTorch with noise {:.4}",
        labels.len(),
        torch["disagreements"],
        torch["noisy_accuracy"].as_f64().unwrap_or(f64::NAN)
    );
    assert_eq!(torch["test_images"].as_u64(), Some(labels.len() as u64));
    assert!(
        (ours - theirs).abs() <= ACCURACY_TOLERANCE,
        "noise-free accuracy: noprop eval {ours}, PyTorch {theirs}"
    );
    assert!(
        agreement >= MIN_AGREEMENT,
        "only {agreement} of the noise-free predictions agree"
    );
    // The checkpoint learned something, so agreement is not trivial.
    assert!(ours > 0.5, "noise-free accuracy {ours} after one epoch");
}
