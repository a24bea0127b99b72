//! `mpirun --allow-run-as-root --oversubscribe -np R noprop train …
//! --distributed block` on 1,024 real digits: the final checkpoint of R = 2
//! and R = 3 is bit-identical to the single process's, and a job whose rank 1
//! is killed mid-epoch stops, leaves its last checkpoint intact (readable by
//! `noprop eval` without MPI), and resumes — with another R — to the
//! uninterrupted run's tensors.
//!
//! Needs the `mpi` feature and `mpirun` (Open MPI): `cargo test --release -p
//! noprop --features mpi --test mpi`. Without them the test says why and
//! passes, unless `NOPROP_REQUIRE_MPI=1` (set by `cargo xtask ci`), where the
//! absence is a failure.

use std::path::Path;
use std::process::{Command, Output};

mod common;

/// Why the test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !cfg!(feature = "mpi") {
        return Some("noprop was built without the `mpi` feature".into());
    }
    match Command::new("mpirun").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`mpirun` (Open MPI) is not installed".into()),
    }
}

fn skip() -> bool {
    let Some(why) = unavailable() else {
        return false;
    };
    if std::env::var("NOPROP_REQUIRE_MPI").is_ok_and(|v| v == "1") {
        panic!("NOPROP_REQUIRE_MPI=1 but {why}");
    }
    eprintln!("skipped: {why}");
    true
}

fn train_args(results: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        "--dataset",
        "mnist-test-split",
        "--limit-train",
        "1024",
        "--limit-test",
        "200",
        "--train-eval-limit",
        "200",
        "--steps",
        "3",
        "--checkpoint-every",
        "2",
        "--seed",
        "5",
        "--results-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(results.to_str().expect("UTF-8 temp path").into());
    a.extend(["--name".into(), name.into()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// `mpirun -np ranks <program> <args>` from the crate directory.
fn mpirun(ranks: usize, program: &[&str], args: &[String]) -> Output {
    let out = Command::new("mpirun")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(ranks.to_string())
        .args(program)
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run mpirun");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn tensors(results: &Path, name: &str) -> Vec<u8> {
    common::checkpoint(&results.join(format!("checkpoints/{name}/last.safetensors"))).0
}

fn noprop() -> &'static str {
    env!("CARGO_BIN_EXE_noprop")
}

#[test]
fn block_parallel_is_bit_identical_across_ranks_and_survives_a_killed_rank() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let res = dir.path();
    // The single process, today's schedule.
    let one = common::result(&common::noprop(&train_args(res, "one", &[])));
    let reference = tensors(res, "one");
    for ranks in [2, 3] {
        let name = format!("r{ranks}");
        let out = mpirun(
            ranks,
            &[noprop()],
            &train_args(res, &name, &["--distributed", "block"]),
        );
        assert!(out.status.success(), "mpirun -np {ranks} failed");
        let r = common::result(&out);
        assert_eq!(r["test_accuracy"], one["test_accuracy"], "R = {ranks}");
        assert_eq!(r["distributed"]["ranks"], ranks);
        // Only rank 0 printed a result.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.matches("RESULT ").count(), 1, "{stdout}");
        assert!(
            tensors(res, &name) == reference,
            "R = {ranks}: checkpoint differs from the single process's"
        );
    }

    // Rank 1 is killed (SIGKILL) as soon as rank 0 has written the
    // checkpoint of mini-batch 2 (of 8): the job must stop, not hang.
    let ckpt = res.join("checkpoints/killed/last.safetensors");
    let args = train_args(res, "killed", &["--distributed", "block"]).join(" ");
    let script = format!(
        "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then {bin} {args} & pid=$!; \
         while [ ! -f {ck} ]; do sleep 0.02; done; kill -9 $pid; wait $pid; exit 137; \
         else exec {bin} {args}; fi",
        bin = noprop(),
        ck = ckpt.display()
    );
    let out = mpirun(2, &["sh", "-c", &script], &[]);
    assert!(!out.status.success(), "the job survived a killed rank");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .matches("RESULT ")
            .count()
            == 0,
        "the job finished before the kill"
    );
    // The checkpoint is intact: `noprop eval` reads it without MPI.
    let ev = common::noprop(&[
        "eval",
        "--dataset",
        "mnist-test-split",
        "--limit-test",
        "100",
        "--checkpoint",
        ckpt.to_str().expect("UTF-8"),
    ]);
    assert!(common::result(&ev)["test_accuracy"].is_number());
    // Resume with R = 3: the uninterrupted run's tensors.
    let out = mpirun(
        3,
        &[noprop()],
        &train_args(res, "killed", &["--distributed", "block", "--resume"]),
    );
    assert!(out.status.success(), "resume failed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resuming from"),
        "did not resume"
    );
    assert!(tensors(res, "killed") == reference, "resumed run differs");
}
