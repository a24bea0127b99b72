//! `cargo xtask reproduce`: the paper's tables and figure, side by side
//! with ours.
//!
//! 1. Choose the datasets (found locally, else fetched; `--quick` falls back
//!    from MNIST to Fashion-MNIST and says so).
//! 2. Plan the cells (dataset × method × embedding × seed) that the asked-for
//!    tables need, with Table 4's budgets (`--full`) or a reduced preset
//!    (`--quick`), and write `plan.json` into the run directory.
//! 3. Run each cell as a subprocess of the release `noprop train`. A crashed
//!    cell is recorded (`<cell>.failed.json`, log in `logs/`) and the rest go
//!    on; a finished cell (its `<cell>.json` exists for the same flags) is
//!    skipped on a re-run; an interrupted cell continues from its checkpoint
//!    with `--resume` ([`cells`], [`child`]). While they run, one status line
//!    shows the cell, its epoch and batch (the [`progress`] lines of
//!    `noprop train`), and the time left for the whole run, estimated per
//!    cell ([`cost`]) and rescaled by the speed observed ([`live`]).
//! 4. Render `REPORT.md` (+ `fig4`, `fig6`, `fig7`, `relatives` `.svg` and `.csv`) in the run directory;
//!    with `--update-docs`, also copy it to `docs/REPRODUCTION.md`.

pub mod bars;
mod cells;
mod child;
pub mod cost;
pub mod figure;
pub mod live;
pub mod paper;
pub mod params;
pub mod plan;
pub mod progress;
pub mod relatives;
pub mod report;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use noprop_datasets::{fetch, locate, DatasetName, FetchOptions, LoadOptions};

use crate::run_bin::{build_release, build_release_with, cpu_model, git_revision, workspace_root};
use plan::{DatasetChoice, Mode, PlanRequest, RunPlan, EMBEDDINGS, METHODS, TABLES};

/// Options of `cargo xtask reproduce`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReproduceArgs {
    /// CPU preset: every method and embedding on one dataset, at most 30
    /// minutes on 2 cores; labelled QUICK everywhere (the default).
    #[arg(long, conflicts_with_all = ["full", "micro"])]
    pub quick: bool,
    /// The paper's Table 4 hyper-parameters exactly (GPU recommended).
    #[arg(long, conflicts_with = "micro")]
    pub full: bool,
    /// Smoke-test preset: one epoch on 256 images (used by the tests).
    #[arg(long, hide = true)]
    pub micro: bool,
    /// Artefacts: table1, table2, table3, table5, fig4, fig6, fig7,
    /// relatives (comma-separated; default all). Table 2 runs on Tiny
    /// ImageNet only: fetched by --full, used by --quick only if already on
    /// disk.
    #[arg(long, value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
    /// Datasets (default: full: mnist,cifar10,cifar100; quick: mnist, else fashion-mnist).
    #[arg(long, value_delimiter = ',')]
    pub datasets: Option<Vec<String>>,
    /// Methods: backprop, noprop-dt, adjoint, noprop-ct, noprop-fm (default all).
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<String>>,
    /// Embeddings: one-hot, dim20, prototype (default all).
    #[arg(long, value_delimiter = ',')]
    pub embeddings: Option<Vec<String>>,
    /// Seeds per cell (default: full 3, quick 1).
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Stochastic inference runs per cell (default: full 5, quick 1).
    #[arg(long)]
    pub inference_runs: Option<usize>,
    /// Device for every cell: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Continue interrupted cells from their checkpoints (finished cells are
    /// always skipped; without this flag an interrupted cell starts over).
    #[arg(long)]
    pub resume: bool,
    /// Run directory (default: `results/<mode>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also copy the report to docs/REPRODUCTION.md and its figure to
    /// docs/reproduction/ (refreshing the committed report; by default only
    /// the run directory is written).
    #[arg(long)]
    pub update_docs: bool,
    /// Deprecated and without effect: leaving docs/ alone is now the
    /// default (see --update-docs).
    #[arg(long, hide = true, conflicts_with = "update_docs")]
    pub no_docs: bool,
    /// Only render the report of an existing run directory (honours
    /// --update-docs).
    #[arg(long)]
    pub render_only: bool,
    /// Dataset root searched first (and where fetched data goes).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use this `noprop` binary instead of building it.
    #[arg(long, hide = true)]
    pub noprop_bin: Option<PathBuf>,
    /// Run every cell under `mpirun -np R` (builds noprop with MPI):
    /// NoProp-DT cells block-parallel, the others data-parallel
    /// (docs/DISTRIBUTED.md).
    #[arg(long, value_name = "R")]
    pub mpi: Option<usize>,
}

impl ReproduceArgs {
    fn mode(&self) -> Mode {
        if self.full {
            Mode::Full
        } else if self.micro {
            Mode::Micro
        } else {
            Mode::Quick
        }
    }
}

/// Runs `cargo xtask reproduce`.
pub fn run(args: ReproduceArgs) -> Result<()> {
    run_in(args, &workspace_root())
}

/// [`run`] with `root` as the workspace root (where `results/` and, with
/// `--update-docs`, `docs/` are written).
fn run_in(args: ReproduceArgs, root: &Path) -> Result<()> {
    let mode = args.mode();
    if args.no_docs {
        eprintln!(
            "warning: --no-docs is deprecated and has no effect: reproduce now leaves docs/ \
             alone unless --update-docs is given"
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("results").join(mode.as_str()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if !args.render_only {
        let plan = make_plan(&args, mode)?;
        let path = out.join("plan.json");
        write_atomic(&path, serde_json::to_string_pretty(&plan)?.as_bytes())?;
        let bin = match &args.noprop_bin {
            Some(b) => b.clone(),
            // `auto` and `cuda` need the CUDA backend compiled in (it builds
            // without a toolkit; without a GPU `auto` then picks the CPU).
            None if args.device == "cpu" && args.mpi.is_none() => {
                build_release("noprop", "noprop")?
            }
            None if args.device == "cpu" => build_release_with("noprop", "noprop", &["mpi"])?,
            None if args.mpi.is_none() => build_release_with("noprop", "noprop", &["cuda"])?,
            None => build_release_with("noprop", "noprop", &["cuda", "mpi"])?,
        };
        if args.mpi == Some(0) {
            anyhow::bail!("--mpi 0: expected a rank count ≥ 1");
        }
        cells::run_cells(&plan, &out, &bin, args.resume, args.mpi)?;
    }
    let report = render_report(&out, args.update_docs, root)?;
    eprintln!("report: {}", report.display());
    if args.update_docs {
        eprintln!(
            "updated {} (figure under {})",
            root.join("docs").join("REPRODUCTION.md").display(),
            root.join("docs").join("reproduction").display()
        );
    }
    Ok(())
}

/// Renders `<out>/REPORT.md` (and, with `docs`, `docs/REPRODUCTION.md`
/// with its figure under `docs/reproduction/`); returns the report's path.
pub fn render_report(out: &Path, docs: bool, root: &Path) -> Result<PathBuf> {
    let rows = params::table5()?;
    let md = report::render(out, Some(&rows))?;
    let path = out.join("REPORT.md");
    write_atomic(&path, md.as_bytes())?;
    if docs {
        let fig_dir = root.join("docs").join("reproduction");
        std::fs::create_dir_all(&fig_dir)?;
        for f in FIGURE_FILES {
            let src = out.join(f);
            if src.exists() {
                std::fs::copy(&src, fig_dir.join(f))
                    .with_context(|| format!("copying {}", src.display()))?;
            }
        }
        let md = ["fig4", "fig6", "fig7", "relatives"]
            .iter()
            .fold(md, |md, f| {
                md.replace(&format!("]({f}."), &format!("](reproduction/{f}."))
            });
        write_atomic(&root.join("docs").join("REPRODUCTION.md"), md.as_bytes())?;
    }
    Ok(path)
}

/// The figure files a report links, copied beside `docs/REPRODUCTION.md`.
const FIGURE_FILES: [&str; 8] = [
    "fig4.svg",
    "fig4.csv",
    "fig6.svg",
    "fig6.csv",
    "fig7.svg",
    "fig7.csv",
    "relatives.svg",
    "relatives.csv",
];

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn check_names(what: &str, given: &[String], known: &[&str]) -> Result<()> {
    for g in given {
        if !known.contains(&g.as_str()) {
            bail!(
                "unknown {what} `{g}` (expected one of: {})",
                known.join(", ")
            );
        }
    }
    Ok(())
}

/// Finds `name` locally or fetches it; `Err` carries the reason it is unusable.
fn find_or_fetch(name: DatasetName, args: &ReproduceArgs) -> Result<String, String> {
    let opts = match &args.data_dir {
        Some(d) => LoadOptions::with_data_dir(d),
        None => LoadOptions::default(),
    };
    if let Ok(found) = locate(name, &opts) {
        return Ok(format!("found in {}", found.dir.display()));
    }
    if name == DatasetName::MnistTestSplit {
        return Err("the MNIST test set was not found".into());
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| workspace_root().join("datasets"));
    eprintln!(
        "{name}: not found locally; trying to download it into {}",
        data_dir.display()
    );
    match fetch(name, &FetchOptions::new(data_dir)) {
        Ok(dir) => Ok(format!("downloaded into {}", dir.display())),
        Err(e) => {
            // The loader's message names every mirror tried; keep the gist.
            let why = e.to_string();
            let why = why.lines().last().unwrap_or("").trim();
            let short: String = why.chars().take(160).collect();
            Err(format!(
                "not found locally and the download failed (last error: {short}{}); \
                 fetch it with `{}`",
                if why.chars().count() > 160 { "…" } else { "" },
                name.fetch_command()
            ))
        }
    }
}

fn parse_dataset(s: &str) -> Result<DatasetName> {
    s.parse()
        .map_err(|e| anyhow::anyhow!("unknown dataset `{s}`: {e}"))
}

/// Decides datasets and cells.
fn make_plan(args: &ReproduceArgs, mode: Mode) -> Result<RunPlan> {
    let tables = args
        .tables
        .clone()
        .unwrap_or_else(|| TABLES.iter().map(|s| s.to_string()).collect());
    check_names("table", &tables, &TABLES)?;
    let methods = args
        .methods
        .clone()
        .unwrap_or_else(|| METHODS.iter().map(|s| s.to_string()).collect());
    check_names("method", &methods, &METHODS)?;
    let embeddings = args
        .embeddings
        .clone()
        .unwrap_or_else(|| EMBEDDINGS.iter().map(|s| s.to_string()).collect());
    check_names("embedding", &embeddings, &EMBEDDINGS)?;

    let mut choices: Vec<DatasetChoice> = Vec::new();
    match (&args.datasets, mode) {
        (Some(list), _) => {
            for d in list {
                let name = parse_dataset(d)?;
                let r = find_or_fetch(name, args);
                choices.push(DatasetChoice {
                    name: name.as_str().into(),
                    used: r.is_ok(),
                    note: r.unwrap_or_else(|e| e),
                });
            }
        }
        (None, Mode::Full) => {
            for name in [
                DatasetName::Mnist,
                DatasetName::Cifar10,
                DatasetName::Cifar100,
            ] {
                let r = find_or_fetch(name, args);
                choices.push(DatasetChoice {
                    name: name.as_str().into(),
                    used: r.is_ok(),
                    note: r.unwrap_or_else(|e| e),
                });
            }
        }
        (None, _) => {
            // MNIST if present or fetchable, else Fashion-MNIST, else the
            // real MNIST test set split 8,000 / 2,000.
            let mnist = find_or_fetch(DatasetName::Mnist, args);
            let mnist_ok = mnist.is_ok();
            choices.push(DatasetChoice {
                name: "mnist".into(),
                used: mnist_ok,
                note: mnist.unwrap_or_else(|e| e),
            });
            if !mnist_ok {
                for fallback in [DatasetName::FashionMnist, DatasetName::MnistTestSplit] {
                    let r = find_or_fetch(fallback, args);
                    let ok = r.is_ok();
                    choices.push(DatasetChoice {
                        name: fallback.as_str().into(),
                        used: ok,
                        note: match r {
                            Ok(n) => format!("{n}; used because MNIST is unavailable"),
                            Err(e) => e,
                        },
                    });
                    if ok {
                        break;
                    }
                }
            }
        }
    }
    // Table 2 is Tiny ImageNet's alone: add it when no --datasets were
    // given. QUICK never downloads it (a 248 MB archive).
    if args.datasets.is_none() && tables.iter().any(|t| t == "table2") {
        let name = DatasetName::TinyImagenet;
        let r = if mode == Mode::Full {
            find_or_fetch(name, args)
        } else {
            let opts = match &args.data_dir {
                Some(d) => LoadOptions::with_data_dir(d),
                None => LoadOptions::default(),
            };
            locate(name, &opts)
                .map(|found| format!("found in {}", found.dir.display()))
                .map_err(|_| {
                    format!(
                        "not found locally; {} does not download it (a 248 MB archive): fetch it with `{}`",
                        mode.banner(),
                        name.fetch_command()
                    )
                })
        };
        choices.push(DatasetChoice {
            name: name.as_str().into(),
            used: r.is_ok(),
            note: match r {
                Ok(n) => format!("{n}; for Table 2 only"),
                Err(e) => format!("{e} (Table 2 only)"),
            },
        });
    }
    for c in &choices {
        eprintln!(
            "dataset {}: {} — {}",
            c.name,
            if c.used { "used" } else { "not used" },
            c.note
        );
    }
    let (seeds, runs) = match mode {
        Mode::Full => (3, 5),
        _ => (1, 1),
    };
    let req = PlanRequest {
        mode,
        tables: tables.clone(),
        datasets: choices
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    if c.used {
                        Ok(())
                    } else {
                        Err(format!("dataset {}: {}", c.name, c.note))
                    },
                )
            })
            .collect(),
        methods,
        embeddings,
        seeds: args.seeds.unwrap_or(seeds),
        inference_runs: args.inference_runs.unwrap_or(runs),
        device: args.device.clone(),
    };
    let (mut cells, mut skipped) = plan::plan(&req);
    if tables.iter().any(|t| t == relatives::TABLE) {
        // Tiny ImageNet is Table 2's alone (the relatives' papers have no
        // number there).
        let run: Vec<(String, Result<(), String>)> = req
            .datasets
            .iter()
            .filter(|(d, _)| d != plan::TABLE2_DATASET)
            .cloned()
            .collect();
        let on = relatives::datasets(&run, args.datasets.is_some(), || {
            let r = find_or_fetch(DatasetName::FashionMnist, args);
            choices.push(DatasetChoice {
                name: relatives::FASHION.into(),
                used: r.is_ok(),
                note: match &r {
                    Ok(n) => format!("{n}; for the relatives (CCL's Table 1 dataset)"),
                    Err(e) => e.clone(),
                },
            });
            r.map(|_| ())
                .map_err(|e| format!("dataset {}: {e}", relatives::FASHION))
        });
        relatives::plan_cells(&req, &on, &mut cells, &mut skipped);
    }
    if let Some(d) = &args.data_dir {
        for c in &mut cells {
            c.args.push("--data-dir".into());
            c.args.push(d.display().to_string());
        }
    }
    let command = std::iter::once("cargo xtask reproduce".to_string())
        .chain(std::env::args().skip(2))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(RunPlan {
        mode,
        command,
        tables,
        seeds: req.seeds,
        inference_runs: req.inference_runs,
        device: args.device.clone(),
        datasets: choices,
        cells,
        skipped,
        host: host_info(),
        git_revision: git_revision(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    })
}

fn host_info() -> serde_json::Value {
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    serde_json::json!({"hostname": hostname, "cpu": cpu_model(), "threads": threads})
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `cargo xtask reproduce <args>` as clap parses it.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReproduceArgs,
    }

    fn parse(args: &[&str]) -> Result<ReproduceArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("reproduce").chain(args.iter().copied()))
            .map(|c| c.args)
    }

    /// A run directory whose plan has no cells, and a figure to copy.
    fn empty_run(out: &Path) {
        std::fs::create_dir_all(out).expect("mkdir");
        let plan = RunPlan {
            mode: Mode::Micro,
            command: "cargo xtask reproduce --micro".into(),
            tables: vec!["table1".into()],
            seeds: 1,
            inference_runs: 1,
            device: "cpu".into(),
            datasets: Vec::new(),
            cells: Vec::new(),
            skipped: Vec::new(),
            host: serde_json::json!({}),
            git_revision: "test".into(),
            created_unix: 0,
        };
        std::fs::write(
            out.join("plan.json"),
            serde_json::to_string(&plan).expect("plan json"),
        )
        .expect("write plan");
        std::fs::write(out.join("fig4.svg"), "<svg/>").expect("write svg");
    }

    #[test]
    fn docs_are_written_only_with_update_docs() {
        let root = tempfile::tempdir().expect("tempdir");
        let out = root.path().join("results").join("micro");
        empty_run(&out);
        let out_s = out.to_str().expect("utf-8 path");
        let docs = root.path().join("docs");

        run_in(
            parse(&["--render-only", "--out", out_s]).expect("args"),
            root.path(),
        )
        .expect("render");
        assert!(out.join("REPORT.md").exists());
        assert!(!docs.exists(), "the default run wrote docs/");

        // The deprecated flag is still accepted and changes nothing.
        let old = parse(&["--render-only", "--no-docs", "--out", out_s]).expect("--no-docs");
        assert!(old.no_docs && !old.update_docs);
        run_in(old, root.path()).expect("render --no-docs");
        assert!(!docs.exists(), "--no-docs wrote docs/");

        run_in(
            parse(&["--render-only", "--update-docs", "--out", out_s]).expect("args"),
            root.path(),
        )
        .expect("render --update-docs");
        let report = std::fs::read_to_string(out.join("REPORT.md")).expect("report");
        let copied = std::fs::read_to_string(docs.join("REPRODUCTION.md")).expect("docs copy");
        assert_eq!(copied, report.replace("](fig4.", "](reproduction/fig4."));
        assert_eq!(
            std::fs::read_to_string(docs.join("reproduction").join("fig4.svg")).expect("svg"),
            "<svg/>"
        );
    }

    #[test]
    fn update_docs_and_no_docs_conflict() {
        assert!(parse(&["--update-docs"]).expect("parses").update_docs);
        assert!(!parse(&[]).expect("parses").update_docs);
        let err = parse(&["--update-docs", "--no-docs"]).expect_err("conflict");
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    /// The CI smoke test: the micro preset on the real-digit split runs
    /// every method and embedding through the release `noprop` binary and
    /// produces every artefact. It needs `target/release/noprop`, which
    /// `cargo test --workspace --release` builds (the `noprop` package's
    /// integration tests require it).
    #[test]
    fn micro_preset_produces_every_artefact() {
        let exe = std::env::current_exe().expect("current exe");
        // target/release/deps/xtask-<hash> → target/release/noprop
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("noprop"))
            .expect("target dir");
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --release -p noprop` (or the whole \
             `cargo test --workspace --release`) first",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let args = ReproduceArgs {
            quick: false,
            full: false,
            micro: true,
            tables: None,
            datasets: Some(vec!["mnist-test-split".into()]),
            methods: None,
            // One embedding keeps the test near a minute; the prototype
            // cells (a second conv path per step) would add minutes.
            embeddings: Some(vec!["one-hot".into()]),
            seeds: None,
            inference_runs: Some(2),
            device: "cpu".into(),
            resume: false,
            out: Some(dir.path().to_path_buf()),
            update_docs: false,
            no_docs: false,
            render_only: false,
            data_dir: None,
            noprop_bin: Some(bin),
            mpi: None,
        };
        run(args.clone()).expect("reproduce --micro");
        let report = std::fs::read_to_string(dir.path().join("REPORT.md")).expect("report");
        assert!(report.contains("MICRO"), "{report}");
        for section in [
            "## Table 1",
            "## Table 3",
            "## Table 5",
            "## Figure 4",
            "## Figure 6",
            "## Figure 7",
            "## Back-propagation-free relatives",
        ] {
            assert!(report.contains(section), "{section} missing:\n{report}");
        }
        for f in [
            "fig4.svg",
            "fig4.csv",
            "fig6.svg",
            "fig6.csv",
            "relatives.svg",
            "relatives.csv",
        ] {
            assert!(dir.path().join(f).exists(), "{f} missing");
        }
        let plan: RunPlan = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("plan.json")).expect("plan"),
        )
        .expect("plan json");
        // Five one-hot rows, Figure 6's one-hot posterior cell (its
        // softmax bar is Table 1's DT cell), and the six relatives with
        // their two matched back-prop MLPs (--datasets names the dataset,
        // so Fashion-MNIST is not added).
        assert_eq!(plan.cells.len(), 6 + 8);
        // Eight Table 1 rows, Figure 6's dim20 and prototype cells (2 × 2)
        // and Figure 7's three (image-dimension embeddings) left out by
        // --embeddings.
        assert_eq!(plan.skipped.len(), 8 + 4 + 3);
        assert!(report.contains("--embeddings leaves out dim20"), "{report}");
        // Every finished cell's JSON has the fields the report reads.
        let mut finished = 0;
        for c in &plan.cells {
            let p = report::result_path(dir.path(), &c.id);
            if let Ok(text) = std::fs::read_to_string(&p) {
                let v: serde_json::Value = serde_json::from_str(&text).expect("result json");
                // The relatives are deterministic at inference: one run
                // (repeats would shrink their s.e. without new information).
                let runs = if relatives::is_relative(&c.method) {
                    1
                } else {
                    2
                };
                assert_eq!(
                    v["test_accuracy_runs"].as_array().map(Vec::len),
                    Some(runs),
                    "{}",
                    c.id
                );
                assert!(v["peak_memory_bytes"].as_f64().is_some_and(|b| b > 0.0));
                finished += 1;
            }
        }
        assert_eq!(finished, 6 + 8, "only {finished} cells finished:\n{report}");
        // A re-run skips every finished cell: their results stay untouched.
        let dt = report::result_path(dir.path(), "mnist-test-split-noprop-dt-one-hot-s0");
        let before = std::fs::read(&dt).expect("DT result");
        let mtime = std::fs::metadata(&dt)
            .and_then(|m| m.modified())
            .expect("mtime");
        run(args).expect("re-run");
        assert_eq!(std::fs::read(&dt).expect("DT result"), before);
        assert_eq!(
            std::fs::metadata(&dt)
                .and_then(|m| m.modified())
                .expect("mtime"),
            mtime
        );
        let again = std::fs::read_to_string(dir.path().join("REPORT.md")).expect("report");
        assert!(again.contains("## Table 1"));
    }
}
