//! `cargo xtask bench pytorch --row ROW`: one row of the "against PyTorch"
//! table, ours and the PyTorch transcription in `benches/peers/` run in the
//! same invocation, alternating for `--rounds` rounds (the fastest round of
//! each side is kept). Each run merges its row into
//! `docs/results/pytorch.json`, so every row carries its own host, revision
//! and date, and the ratio in it compares two numbers measured minutes
//! apart.
//!
//! Training rows compare the first epoch's training seconds (both sides
//! exclude evaluation); inference rows compare the seconds of classifying
//! the test set at 1000 steps with the image path run once per image, on a
//! network trained for a few mini-batches (inference cost does not depend on
//! the weights).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use super::capture::{host, python, results_dir, run_capture, write_json};
use super::BenchArgs;
use crate::run_bin::{build_release, workspace_root};

/// FLOPs of one 1000-step inference step for one image with the image path
/// cached, for the paper's CT/FM network with a one-hot embedding
/// (`d` = 10) and 10 classes (`crates/models/src/ct_net.rs`): the label path
/// FC(d → 256), the label block `W1_z` of the first fusion layer
/// (256 → 256; its image block is the cached `P`, its time block is shared
/// by every image of a step), fc2 (256 → 128) and fc3 (128 → 10), at two
/// FLOPs per multiply-add. Bias adds, ReLUs and the update of `z` are left
/// out, so this is the dense step's floor (our steps fold the label layer
/// into `W1_z` and do fewer: docs/PERFORMANCE.md round 11).
const STEP_FLOP_PER_IMAGE: f64 =
    2.0 * (10.0 * 256.0 + 256.0 * 256.0 + 256.0 * 128.0 + 128.0 * 10.0);

/// What a row times.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// The first epoch's `train_seconds` of `noprop train` and of the peer.
    Train,
    /// `inference_seconds` of `noprop eval --steps 1000` on a checkpoint
    /// trained for a few mini-batches, and the peer's `infer` seconds.
    Infer,
}

/// One row of the table: our `noprop` arguments, the peer script and its
/// arguments, and the bar (PyTorch seconds / ours) of issue 17.
struct Row {
    name: &'static str,
    what: &'static str,
    kind: Kind,
    bar: f64,
    ours: &'static [&'static str],
    peer_script: &'static str,
    peer: &'static [&'static str],
}

/// The rows, in the order of the table.
const ROWS: &[Row] = &[
    Row {
        name: "fm-infer",
        what: "NoProp-FM 1000-step inference, 10k Fashion-MNIST test images, image path cached",
        kind: Kind::Infer,
        bar: 2.3,
        ours: &["--method", "noprop-fm", "--dataset", "fashion-mnist"],
        peer_script: "noprop_cont_torch.py",
        peer: &[
            "infer",
            "--method",
            "fm",
            "--dataset",
            "fashion-mnist",
            "--steps",
            "1000",
            "--train-batches",
            "10",
        ],
    },
    Row {
        name: "ct-infer",
        what: "NoProp-CT 1000-step inference, 2k real digits (mnist-test-split), image path cached",
        kind: Kind::Infer,
        bar: 2.3,
        ours: &["--method", "noprop-ct", "--dataset", "mnist-test-split"],
        peer_script: "noprop_cont_torch.py",
        peer: &[
            "infer",
            "--method",
            "ct",
            "--dataset",
            "mnist-test-split",
            "--steps",
            "1000",
            "--train-batches",
            "10",
        ],
    },
    Row {
        name: "dt-train",
        what: "NoProp-DT training, one epoch of 20k Fashion-MNIST images",
        kind: Kind::Train,
        bar: 1.5,
        ours: &[
            "--method",
            "noprop-dt",
            "--dataset",
            "fashion-mnist",
            "--limit-train",
            "20000",
        ],
        peer_script: "noprop_dt_torch.py",
        peer: &["epoch", "--epochs", "1", "--limit-train", "20000"],
    },
    Row {
        name: "adjoint-train",
        what: "adjoint training (20 Euler steps), one epoch of 8k digits (mnist-test-split)",
        kind: Kind::Train,
        bar: 1.25,
        ours: &[
            "--method",
            "adjoint",
            "--dataset",
            "mnist-test-split",
            "--steps",
            "20",
        ],
        peer_script: "baselines_torch.py",
        peer: &[
            "train",
            "--method",
            "adjoint",
            "--dataset",
            "mnist-test-split",
            "--steps",
            "20",
        ],
    },
    Row {
        name: "ct-train",
        what: "NoProp-CT training, one epoch of 8k digits (mnist-test-split)",
        kind: Kind::Train,
        bar: 1.25,
        ours: &["--method", "noprop-ct", "--dataset", "mnist-test-split"],
        peer_script: "noprop_cont_torch.py",
        peer: &["train", "--method", "ct", "--dataset", "mnist-test-split"],
    },
    Row {
        name: "fm-train",
        what: "NoProp-FM training, one Fashion-MNIST epoch (60k images)",
        kind: Kind::Train,
        bar: 1.25,
        ours: &["--method", "noprop-fm", "--dataset", "fashion-mnist"],
        peer_script: "noprop_cont_torch.py",
        peer: &["train", "--method", "fm", "--dataset", "fashion-mnist"],
    },
    Row {
        name: "backprop-train",
        what: "back-propagation (Eqs. 17–19) training, one epoch of 8k digits (mnist-test-split)",
        kind: Kind::Train,
        bar: 1.5,
        ours: &["--method", "backprop", "--dataset", "mnist-test-split"],
        peer_script: "baselines_torch.py",
        peer: &[
            "train",
            "--method",
            "backprop",
            "--dataset",
            "mnist-test-split",
        ],
    },
];

/// The row names, for `--help` and errors.
pub(super) fn row_names() -> Vec<&'static str> {
    ROWS.iter().map(|r| r.name).collect()
}

/// Flags that keep our training runs to what is timed: one epoch, no
/// checkpoints, a small training-accuracy subset and few evaluation steps
/// (evaluation is outside `train_seconds` but would lengthen the sitting).
const TRAIN_FLAGS: &[&str] = &[
    "--epochs",
    "1",
    "--seed",
    "0",
    "--checkpoint-every",
    "0",
    "--train-eval-limit",
    "100",
    "--limit-test",
    "500",
];

/// Run `--row` (or every row for `all`), then merge the results into
/// `docs/results/pytorch.json`.
pub(super) fn pytorch(a: &BenchArgs) -> Result<()> {
    let rows: Vec<&Row> = match a.row.as_deref() {
        None | Some("all") => ROWS.iter().collect(),
        Some(name) => match ROWS.iter().find(|r| r.name == name) {
            Some(r) => vec![r],
            None => bail!(
                "unknown row `{name}` (one of: {}, all)",
                row_names().join(", ")
            ),
        },
    };
    let bin = build_release("noprop", "noprop")?;
    for row in rows {
        let measured = measure(a, &bin, row)?;
        merge(row.name, measured)?;
    }
    Ok(())
}

/// `--rounds` alternating rounds of ours and the peer on `row`.
fn measure(a: &BenchArgs, bin: &Path, row: &Row) -> Result<Value> {
    let tmp = std::env::temp_dir().join(format!("noprop-bench-pytorch-{}", row.name));
    let checkpoint = match row.kind {
        Kind::Infer => Some(short_checkpoint(bin, &tmp, row)?),
        Kind::Train => None,
    };
    let script = workspace_root().join("benches/peers").join(row.peer_script);
    let (mut ours, mut peer): (Vec<Value>, Vec<Value>) = (Vec::new(), Vec::new());
    for round in 1..=a.rounds.max(1) {
        eprintln!("pytorch {}: round {round}, ours", row.name);
        ours.push(run_ours(bin, &tmp, row, checkpoint.as_deref())?);
        eprintln!("pytorch {}: round {round}, PyTorch", row.name);
        let out = run_capture(
            python(&a.python, &script)
                .args(row.peer)
                .args(["--threads", "2"]),
            row.peer_script,
        )?;
        peer.push(peer_record(&out, row)?);
    }
    let best = |v: &[Value]| -> Result<Value> {
        v.iter()
            .min_by(|x, y| f(&x["seconds"]).total_cmp(&f(&y["seconds"])))
            .cloned()
            .context("no round measured")
    };
    let (o, p) = (best(&ours)?, best(&peer)?);
    let ratio = f(&p["seconds"]) / f(&o["seconds"]);
    let floor = match row.kind {
        Kind::Infer => floor(row, f(&o["seconds"]), &p)?,
        Kind::Train => Value::Null,
    };
    eprintln!(
        "pytorch {}: ours {:.2} s, PyTorch {:.2} s, ratio {ratio:.2} (bar {:.2})",
        row.name,
        f(&o["seconds"]),
        f(&p["seconds"]),
        row.bar
    );
    Ok(json!({
        "host": host(),
        "threads": 2,
        "what": row.what,
        "rounds": a.rounds.max(1),
        "bar": row.bar,
        "ours_seconds": o["seconds"],
        "pytorch_seconds": p["seconds"],
        "ratio": ratio,
        "ours_rounds": ours.iter().map(|r| r["seconds"].clone()).collect::<Vec<_>>(),
        "pytorch_rounds": peer.iter().map(|r| r["seconds"].clone()).collect::<Vec<_>>(),
        "ours_command": format!("noprop {}", ours_args(row, checkpoint.as_deref()).join(" ")),
        "pytorch_command": format!("python3 benches/peers/{} {} --threads 2", row.peer_script, row.peer.join(" ")),
        "ours": o["record"],
        "pytorch": p["record"],
        "floor": floor,
    }))
}

/// An inference row against the arithmetic floor: its FLOPs (the peer's
/// image and step counts times [`STEP_FLOP_PER_IMAGE`]) over the FMA peak
/// of two threads, measured now by `fma_peak`; and the GFLOP/s that ours
/// ran at and that the bar asks for.
fn floor(row: &Row, ours_seconds: f64, peer: &Value) -> Result<Value> {
    let rec = &peer["record"];
    let (images, steps) = (f(&rec["images"]), f(&rec["steps"]));
    if !(images > 0.0 && steps > 0.0) {
        bail!(
            "{} printed no image or step count for {}",
            row.peer_script,
            row.name
        );
    }
    if rec["embedding"] != "one-hot" {
        bail!(
            "{}: STEP_FLOP_PER_IMAGE counts a one-hot embedding, the peer ran {}",
            row.name,
            rec["embedding"]
        );
    }
    let gflop = images * steps * STEP_FLOP_PER_IMAGE / 1e9;
    eprintln!("pytorch {}: the FMA peak of 2 threads", row.name);
    let bin = build_release("noprop-benches", "fma_peak")?;
    let out = run_capture(Command::new(bin).env("THREADS", "2"), "fma_peak")?;
    let peak = out.into_iter().last().context("no line from fma_peak")?;
    let peak_gflops = f(&peak["gflops"]);
    let bar_seconds = f(&peer["seconds"]) / row.bar;
    eprintln!(
        "pytorch {}: {gflop:.1} GFLOP; FMA peak {peak_gflops:.1} GFLOP/s (floor {:.2} s); ours {:.1} GFLOP/s; the bar needs {:.1} GFLOP/s",
        row.name,
        gflop / peak_gflops,
        gflop / ours_seconds,
        gflop / bar_seconds
    );
    Ok(json!({
        "gflop": gflop,
        "flop_per_image_step": STEP_FLOP_PER_IMAGE,
        "images": images,
        "steps": steps,
        "fma_peak": peak,
        "floor_seconds": gflop / peak_gflops,
        "ours_gflops": gflop / ours_seconds,
        "bar_seconds": bar_seconds,
        "bar_gflops": gflop / bar_seconds,
    }))
}

/// A JSON number as `f64` (NaN when absent).
fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Our command line for `row` (the `eval` of `checkpoint` for inference rows).
fn ours_args(row: &Row, checkpoint: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    match (row.kind, checkpoint) {
        (Kind::Infer, Some(ckpt)) => {
            v.extend(["eval", "--checkpoint", ckpt, "--steps", "1000"].map(String::from));
            // `--dataset NAME` of the row (its method flag is for training).
            let ds = row.ours.iter().position(|a| *a == "--dataset");
            if let Some(i) = ds {
                v.extend(row.ours[i..i + 2].iter().map(|s| s.to_string()));
            }
        }
        _ => {
            v.push("train".into());
            v.extend(row.ours.iter().map(|s| s.to_string()));
            v.extend(TRAIN_FLAGS.iter().map(|s| s.to_string()));
        }
    }
    v
}

/// One run of ours: `{"seconds", "record"}`.
fn run_ours(bin: &Path, tmp: &Path, row: &Row, checkpoint: Option<&str>) -> Result<Value> {
    let mut cmd = Command::new(bin);
    cmd.env("RAYON_NUM_THREADS", "2")
        .args(ours_args(row, checkpoint));
    if row.kind == Kind::Train {
        cmd.arg("--results-dir").arg(tmp);
    }
    let out = run_capture(&mut cmd, "noprop")?;
    let rec = out
        .into_iter()
        .last()
        .context("no RESULT line from noprop")?;
    let seconds = match row.kind {
        Kind::Train => rec["per_epoch"][0]["train_seconds"].clone(),
        Kind::Infer => rec["inference_seconds"].clone(),
    };
    if !seconds.is_number() {
        bail!("noprop's RESULT has no seconds for {}: {rec}", row.name);
    }
    let mut keep = Map::new();
    for k in [
        "method",
        "dataset",
        "train_images",
        "test_images",
        "images_per_second",
        "test_accuracy",
        "steps",
        "inference_seconds",
        "peak_rss_bytes",
    ] {
        if let Some(v) = rec.get(k) {
            keep.insert(k.into(), v.clone());
        }
    }
    Ok(json!({"seconds": seconds, "record": keep}))
}

/// The peer's record for `row`: the first epoch's line (training) or the
/// `cont_infer` line (inference), as `{"seconds", "record"}`.
fn peer_record(out: &[Value], row: &Row) -> Result<Value> {
    let rec = match row.kind {
        Kind::Train => out.iter().find(|v| v["epoch"] == 1),
        Kind::Infer => out.iter().find(|v| v["bench"] == "cont_infer"),
    }
    .with_context(|| format!("{} printed no record for {}", row.peer_script, row.name))?;
    let seconds = match row.kind {
        Kind::Train => rec["train_seconds"].clone(),
        Kind::Infer => rec["seconds"].clone(),
    };
    Ok(json!({"seconds": seconds, "record": rec}))
}

/// Train `row`'s method for 10 mini-batches and return the checkpoint path.
fn short_checkpoint(bin: &Path, tmp: &Path, row: &Row) -> Result<String> {
    eprintln!("pytorch {}: a 10-batch checkpoint to time", row.name);
    let out = run_capture(
        Command::new(bin)
            .env("RAYON_NUM_THREADS", "2")
            .arg("train")
            .args(row.ours)
            .args([
                "--epochs",
                "1",
                "--limit-train",
                "1280",
                "--limit-test",
                "100",
                "--train-eval-limit",
                "100",
                "--eval-steps",
                "10",
                "--steps",
                "10",
                "--seed",
                "0",
                "--name",
                &format!("pytorch-{}", row.name),
                "--results-dir",
            ])
            .arg(tmp),
        "noprop train (checkpoint to time)",
    )?;
    let rec = out.into_iter().last().context("no RESULT line")?;
    Ok(rec["checkpoint"]
        .as_str()
        .context("RESULT has no checkpoint")?
        .to_string())
}

/// Put `row` into `docs/results/pytorch.json`, keeping the other rows.
fn merge(row: &str, measured: Value) -> Result<()> {
    let path = results_dir().join("pytorch.json");
    let mut all: Value = match std::fs::read_to_string(&path) {
        Ok(s) => {
            serde_json::from_str(&s).with_context(|| format!("{} is not JSON", path.display()))?
        }
        Err(_) => json!({"rows": {}}),
    };
    all["rows"][row] = measured;
    write_json("pytorch.json", &all)
}

/// The rows' order, for the report.
pub(super) fn order() -> Vec<(&'static str, &'static str, f64)> {
    ROWS.iter().map(|r| (r.name, r.what, r.bar)).collect()
}
