//! `--tables relatives`: the back-propagation-free relatives of NoProp
//! (issue 16, docs/RELATIVES.md) in the reproduction — their cells, the
//! table of ours beside the published numbers, the accuracy-against-time
//! plot (every relative and NoProp-DT/CT/FM and back-prop, one-hot), and
//! gradient boosting's accuracy against the number of active stages.
//!
//! Cells: every relative (`backprop-mlp`, `ccl`, `dfa`, `drtp`,
//! `forward-forward`, `grad-boost`) on each dataset of the run — plus
//! Fashion-MNIST, the dataset of CCL's Table 1, when the datasets were not
//! named with `--datasets` — and two reference cells, the back-prop MLP of
//! Forward-Forward's widths (`ff-width`) and of gradient boosting's merged
//! width (`boost-width`, `T·J` ReLUs in one layer), so that each relative has
//! its own matched end-to-end row. The plot needs NoProp-DT/CT/FM and
//! back-prop (one-hot) on the same datasets: their Table 3 cells are added
//! where the run does not already train them.
//!
//! Budgets ([`budget`]): full is CCL's Table 1 training length (100 epochs,
//! batch 256, the authors' `yaml/mlp/fmnist_ccl.yaml`) for every relative,
//! Forward-Forward with Hinton's 4×2000 MLP, gradient boosting 10 stages
//! of 10 epochs. QUICK: 3 epochs (gradient boosting: 10 one-epoch stages)
//! of the whole training split — a few minutes for all of them on 2 cores
//! (Forward-Forward 4×500 most of it), labelled QUICK; on 10,000 images
//! Forward-Forward's 120 steps left it at 0.31 on Fashion-MNIST, a number
//! about too few steps rather than the method. Micro: one epoch of 256
//! images.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::figure::{self, Point};
use super::plan::{self, Budget, Cell, Mode, PlanRequest, Skipped};
use super::report::{self, cell_text, fmt_pct, gb, select, Group, Outcome};

/// The name `--tables` knows this section by.
pub const TABLE: &str = "relatives";

/// The relatives, in the order of their rows (`noprop --method` names).
pub const RELATIVES: [&str; 6] = [
    "backprop-mlp",
    "ccl",
    "dfa",
    "drtp",
    "forward-forward",
    "grad-boost",
];

/// The dataset of CCL's Table 1 numbers (and of issue 16's bars).
pub const FASHION: &str = "fashion-mnist";

/// Variant of the back-prop MLP with Forward-Forward's hidden widths.
pub const FF_WIDTH: &str = "ff-width";
/// Variant of the back-prop MLP with gradient boosting's merged width.
pub const BOOST_WIDTH: &str = "boost-width";

/// The datasets of the table's columns, in order.
const TABLE_DATASETS: [&str; 4] = ["mnist", "fashion-mnist", "cifar10", "cifar100"];

/// Batch size of every relative cell: CCL's (`batchsize: 256` in its
/// released `yaml/mlp/*.yaml`).
const BATCH: usize = 256;

/// Gradient boosting's stages `T` (the method's default, 10 of 32 units).
const BOOST_STAGES: usize = 10;
/// Gradient boosting's units per stage `J`.
const BOOST_UNITS: usize = 32;

/// Whether `method` is one of the relatives.
pub fn is_relative(method: &str) -> bool {
    RELATIVES.contains(&method)
}

/// Whether `variant` is one of this section's reference cells.
pub fn is_reference(variant: &str) -> bool {
    variant == FF_WIDTH || variant == BOOST_WIDTH
}

/// A published test accuracy (%) and where it is printed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Published {
    /// Method (`noprop --method` name).
    pub method: &'static str,
    /// Dataset.
    pub dataset: &'static str,
    /// Test accuracy (%).
    pub value: f64,
    /// The paper and table.
    pub source: &'static str,
}

const CCL_TABLE1: &str =
    "CCL paper (Kao & Hariharan, NeurIPS 2024, arXiv 2409.19841), Table 1, MLP";

/// Every published number the section prints, as issue 16 and the NoProp
/// paper quote them. The other cells of CCL's Table 1 (MNIST, CIFAR-10,
/// CIFAR-100) and the DFA, DRTP and boosting papers' own numbers are not
/// transcribed in this repository, so they are printed as `–`.
pub const PUBLISHED: [Published; 5] = [
    Published {
        method: "backprop-mlp",
        dataset: "fashion-mnist",
        value: 89.58,
        source: CCL_TABLE1,
    },
    Published {
        method: "ccl",
        dataset: "fashion-mnist",
        value: 88.58,
        source: CCL_TABLE1,
    },
    Published {
        method: "dfa",
        dataset: "fashion-mnist",
        value: 87.35,
        source: CCL_TABLE1,
    },
    Published {
        method: "drtp",
        dataset: "fashion-mnist",
        value: 82.03,
        source: CCL_TABLE1,
    },
    Published {
        method: "forward-forward",
        dataset: "mnist",
        value: 98.63,
        source: "NoProp paper (arXiv 2503.24322) Table 1, quoting Hinton 2022 (arXiv 2212.13345): 4×2000 ReLU MLP",
    },
];

/// The published number of `method` on `dataset`, if any.
pub fn published(method: &str, dataset: &str) -> Option<Published> {
    PUBLISHED
        .iter()
        .copied()
        .find(|p| p.method == method && p.dataset == dataset)
}

/// Forward-Forward's hidden widths: Hinton's 4×2000 in full, the
/// method's default 4×500 otherwise.
fn ff_hidden(mode: Mode) -> &'static str {
    match mode {
        Mode::Full => "2000,2000,2000,2000",
        _ => "500,500,500,500",
    }
}

/// Epochs, subset and train-accuracy subset of a relative cell.
pub fn budget(mode: Mode, method: &str) -> Budget {
    let boost = method == "grad-boost";
    let (epochs, limit_train, train_eval_limit) = match mode {
        // CCL's Table 1: 100 epochs; boosting 10 stages × 10 epochs.
        Mode::Full => (100, None, 10_000),
        // Boosting needs an epoch per stage to train every stage.
        Mode::Quick if boost => (BOOST_STAGES, None, 1_000),
        Mode::Quick => (3, None, 1_000),
        Mode::Micro => (1, Some(256), 256),
    };
    Budget {
        epochs,
        steps: 0,
        eval_steps: None,
        limit_train,
        limit_test: None,
        train_eval_limit,
    }
}

/// The `noprop train` flags of a relative cell (`variant`: a reference
/// cell's). No `--inference-runs`: the relatives predict deterministically,
/// so one run per seed (repeats would shrink the s.e. without adding
/// information).
fn train_args(
    dataset: &str,
    method: &str,
    variant: Option<&str>,
    seed: u64,
    b: &Budget,
    mode: Mode,
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |k: &str, v: String| {
        a.push(k.to_string());
        a.push(v);
    };
    push("--method", method.into());
    push("--dataset", dataset.into());
    push("--epochs", b.epochs.to_string());
    push("--seed", seed.to_string());
    // The relatives are CPU-only methods (docs/RELATIVES.md).
    push("--device", "cpu".into());
    push("--batch-size", BATCH.to_string());
    if let Some(n) = b.limit_train {
        push("--limit-train", n.to_string());
    }
    if let Some(n) = b.limit_test {
        push("--limit-test", n.to_string());
    }
    push("--train-eval-limit", b.train_eval_limit.to_string());
    match (method, variant) {
        ("forward-forward", _) => push("--hidden", ff_hidden(mode).into()),
        ("grad-boost", _) => {
            push("--boost-stages", BOOST_STAGES.to_string());
            push(
                "--epochs-per-stage",
                (b.epochs / BOOST_STAGES).max(1).to_string(),
            );
        }
        (_, Some(FF_WIDTH)) => {
            push("--hidden", ff_hidden(mode).into());
            push("--activation", "relu".into());
        }
        (_, Some(BOOST_WIDTH)) => {
            push("--hidden", (BOOST_STAGES * BOOST_UNITS).to_string());
            push("--activation", "relu".into());
        }
        _ => {}
    }
    a
}

/// The datasets the relatives run on: the run's datasets, and Fashion-MNIST
/// (`fashion`: whether it can be used, or why not) when the datasets were
/// chosen by default and it is not among them.
pub fn datasets(
    run: &[(String, Result<(), String>)],
    named: bool,
    fashion: impl FnOnce() -> Result<(), String>,
) -> Vec<(String, Result<(), String>)> {
    let mut out: Vec<(String, Result<(), String>)> = run.to_vec();
    if !named && !out.iter().any(|(d, _)| d == FASHION) {
        out.push((FASHION.into(), fashion()));
    }
    out
}

/// Adds the relatives' cells on `datasets` to `cells` (and the ones that
/// cannot run to `skipped`), with the one-hot NoProp and back-prop cells the
/// plot needs where `cells` lacks them.
pub fn plan_cells(
    req: &PlanRequest,
    datasets: &[(String, Result<(), String>)],
    cells: &mut Vec<Cell>,
    skipped: &mut Vec<Skipped>,
) {
    let mut jobs: Vec<(&str, Option<&str>)> = RELATIVES.iter().map(|m| (*m, None)).collect();
    jobs.push(("backprop-mlp", Some(FF_WIDTH)));
    jobs.push(("backprop-mlp", Some(BOOST_WIDTH)));
    for (dataset, available) in datasets {
        for &(method, variant) in &jobs {
            let stem = match variant {
                None => format!("{dataset}-{method}-one-hot"),
                Some(v) => format!("{dataset}-{method}-one-hot-{v}"),
            };
            if let Err(why) = available {
                skipped.push(Skipped {
                    id: stem,
                    reason: why.clone(),
                });
                continue;
            }
            // The reference cells train for as long as the method they match.
            let b = match variant {
                Some(BOOST_WIDTH) => budget(req.mode, "grad-boost"),
                _ => budget(req.mode, method),
            };
            for seed in 0..req.seeds {
                let id = format!("{stem}-s{seed}");
                if cells.iter().any(|c| c.id == id) {
                    continue;
                }
                cells.push(Cell {
                    id,
                    dataset: dataset.clone(),
                    method: method.into(),
                    embedding: "one-hot".into(),
                    variant: variant.map(str::to_string),
                    seed,
                    budget: b.clone(),
                    args: train_args(dataset, method, variant, seed, &b, req.mode),
                });
            }
        }
    }
    // NoProp-DT/CT/FM and back-prop, one-hot: Table 3's cells on the same
    // datasets (the plot's other curves).
    let noprop = PlanRequest {
        tables: vec!["table3".into()],
        datasets: datasets
            .iter()
            .filter(|(_, a)| a.is_ok())
            .cloned()
            .collect(),
        methods: req
            .methods
            .iter()
            .filter(|m| *m != "adjoint")
            .cloned()
            .collect(),
        embeddings: vec!["one-hot".into()],
        ..req.clone()
    };
    for c in plan::plan(&noprop).0 {
        if !cells.iter().any(|x| x.id == c.id) {
            cells.push(c);
        }
    }
}

/// The hidden widths a relative cell trains (its `--hidden`, else the
/// method's default).
fn hidden_widths(c: &Cell) -> Vec<usize> {
    let given = c
        .args
        .windows(2)
        .find(|w| w[0] == "--hidden")
        .map(|w| w[1].split(',').filter_map(|x| x.parse().ok()).collect());
    match (given, c.method.as_str()) {
        (Some(h), _) => h,
        (None, "forward-forward") => vec![500; 4],
        (None, "grad-boost") => vec![BOOST_STAGES * BOOST_UNITS],
        (None, _) => vec![256; 5],
    }
}

/// Milliseconds per training image and per evaluated image of a relative
/// cell on 2 CPU threads (Fashion-MNIST shapes; the reproduction's time
/// estimate, [`super::cost`]): the multiply-adds of one forward pass
/// through the MLP (millions: 0.47 for 256×5, 1.15 for 4×500, 0.25 for
/// 320), times a per-method cost per million, measured on a QUICK run
/// (Fashion-MNIST, 30,000 training images at batch 256): back-prop MLPs
/// 2.1 s (256×5), 4.6 s (4×500) and 3.3 s (320, 100,000 images); CCL 2.4 s;
/// DFA and DRTP 2.9 s; Forward-Forward 8.7 s, and 18 s to evaluate 43,000
/// images (ten forward passes each, one per label); gradient boosting
/// 0.8 s for 100,000 images (one 32-unit stage trained at a time).
pub fn cost_ms(c: &Cell, image: usize) -> (f64, f64) {
    let mut w = vec![image];
    w.extend(hidden_widths(c));
    w.push(10);
    let mmacs = w.windows(2).map(|p| (p[0] * p[1]) as f64).sum::<f64>() / 1e6;
    let (train, eval) = match c.method.as_str() {
        "forward-forward" => (0.25, 0.37),
        "ccl" => (0.17, 0.03),
        "dfa" | "drtp" => (0.21, 0.03),
        "grad-boost" => (0.04, 0.03),
        _ => (0.15, 0.03),
    };
    (train * mmacs, eval * mmacs)
}

/// The hidden layers of a relative cell, in words (the report header).
pub fn setting(c: &Cell) -> String {
    let arg = |k: &str| c.args.windows(2).find(|w| w[0] == k).map(|w| w[1].clone());
    let hidden = match c.method.as_str() {
        "grad-boost" => format!(
            "{} stages of {BOOST_UNITS} ReLUs, {} epoch(s) each",
            arg("--boost-stages").unwrap_or_default(),
            arg("--epochs-per-stage").unwrap_or_default()
        ),
        "forward-forward" => format!("hidden {}", arg("--hidden").unwrap_or_default()),
        _ => match arg("--hidden") {
            Some(h) => format!("hidden {h} ReLU"),
            None => "hidden 256×5 (CCL's Table 1 MLP)".into(),
        },
    };
    format!(
        "{hidden}, batch {}",
        arg("--batch-size").unwrap_or_default()
    )
}

/// The table title of a relative cell's method (and reference variant).
fn title(method: &str, variant: Option<&str>) -> String {
    match (method, variant) {
        ("backprop-mlp", Some(FF_WIDTH)) => "backprop-mlp (Forward-Forward's MLP, ReLU)".into(),
        ("backprop-mlp", Some(BOOST_WIDTH)) => {
            format!(
                "backprop-mlp ({} ReLUs, boosting's merged width)",
                BOOST_STAGES * BOOST_UNITS
            )
        }
        ("backprop-mlp", None) => "backprop-mlp (CCL's MLP)".into(),
        ("backprop", _) => "Backprop (NoProp's CNN)".into(),
        ("noprop-dt", _) => "NoProp-DT".into(),
        ("noprop-ct", _) => "NoProp-CT".into(),
        ("noprop-fm", _) => "NoProp-FM".into(),
        (m, _) => m.into(),
    }
}

/// Mean of a group's values, `None` when it has none.
fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Renders the section into `md`, writing `relatives.svg` and
/// `relatives.csv` into `dir`.
pub fn render(
    md: &mut String,
    dir: &Path,
    plan: &plan::RunPlan,
    outcomes: &[Outcome],
) -> Result<()> {
    let _ = writeln!(
        md,
        "## Back-propagation-free relatives (docs/RELATIVES.md)\n"
    );
    if plan.mode != Mode::Full {
        let _ = writeln!(
            md,
            "**{}: reduced epochs and training set; the published numbers are after 100 epochs \
             (CCL's Table 1) and are printed for scale, not as a reproduction target.**\n",
            plan.mode.banner()
        );
    }
    let one_hot = |c: &Cell| c.embedding == "one-hot";
    let mut datasets: Vec<String> = TABLE_DATASETS.iter().map(|s| s.to_string()).collect();
    for c in plan.cells.iter().filter(|c| is_relative(&c.method)) {
        if !datasets.contains(&c.dataset) {
            datasets.push(c.dataset.clone());
        }
    }
    let _ = writeln!(
        md,
        "Test accuracy (%), mean ± s.e. over seeds; Δ = ours − published (percentage points); \
         time: training seconds (evaluation excluded), mean over seeds; heap: the training \
         process's peak heap (max over seeds, as Table 3). `–`: no published number \
         transcribed here.\n"
    );
    let _ = writeln!(
        md,
        "| method | dataset | test (ours) | published | Δ | train s | peak heap GB | cells |\n|---|---|---:|---:|---:|---:|---:|---|"
    );
    let mut rows: Vec<(String, Option<String>)> =
        RELATIVES.iter().map(|m| (m.to_string(), None)).collect();
    rows.push(("backprop-mlp".into(), Some(FF_WIDTH.into())));
    rows.push(("backprop-mlp".into(), Some(BOOST_WIDTH.into())));
    for m in ["backprop", "noprop-dt", "noprop-ct", "noprop-fm"] {
        rows.push((m.into(), None));
    }
    let mut sources: Vec<&str> = Vec::new();
    for (method, variant) in &rows {
        for dataset in &datasets {
            let g = select(plan, outcomes, |c| {
                c.dataset == *dataset && c.method == *method && c.variant == *variant && one_hot(c)
            });
            let p = if variant.is_none() {
                published(method, dataset)
            } else {
                None
            };
            // NoProp rows only beside relatives that ran on the dataset.
            let relatives_here = plan
                .cells
                .iter()
                .any(|c| c.dataset == *dataset && is_relative(&c.method));
            if g.cells.is_empty() && (p.is_none() || !is_relative(method)) {
                continue;
            }
            if !is_relative(method) && !relatives_here {
                continue;
            }
            let ours = report::mean_se(&g.test_values());
            let diff = match (ours, p) {
                (Some((m, _)), Some(p)) => format!("{:+.2}", 100.0 * m - p.value),
                _ => "—".into(),
            };
            let secs: Vec<f64> = g
                .done()
                .filter_map(|v| v["train_seconds"].as_f64())
                .collect();
            let pub_text = match p {
                Some(p) => {
                    if !sources.contains(&p.source) {
                        sources.push(p.source);
                    }
                    let k = sources.iter().position(|s| *s == p.source).unwrap_or(0) + 1;
                    format!("{:.2} [{k}]", p.value)
                }
                None => "–".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {dataset} | {} | {pub_text} | {diff} | {} | {} | {} |",
                title(method, variant.as_deref()),
                if g.cells.is_empty() {
                    "not run".into()
                } else {
                    fmt_pct(ours)
                },
                mean(&secs).map_or("—".into(), |s| format!("{s:.1}")),
                gb(g.max_of("peak_memory_bytes")),
                if g.cells.is_empty() {
                    "—".into()
                } else {
                    g.status()
                }
            );
        }
    }
    md.push('\n');
    for (k, s) in sources.iter().enumerate() {
        let _ = writeln!(md, "[{}] {}.  ", k + 1, cell_text(s));
    }
    let _ = writeln!(
        md,
        "\nCCL's Table 1 trains the authors' networks with their optimisers (SGD for CCL; \
         no biases); ours train every relative with AdamW on the same pipeline \
         (docs/RELATIVES.md, \"What they share\").\n"
    );
    plot(md, dir, plan, outcomes)?;
    boosting(md, plan, outcomes);
    Ok(())
}

/// Test accuracy against cumulative training time, one-hot, every method
/// on each dataset where the relatives ran; x on a log₁₀ scale (the
/// methods' costs span orders of magnitude).
fn plot(md: &mut String, dir: &Path, plan: &plan::RunPlan, outcomes: &[Outcome]) -> Result<()> {
    let _ = writeln!(md, "### Test accuracy against training time (one-hot)\n");
    let rel_datasets: Vec<&str> = plan
        .cells
        .iter()
        .filter(|c| is_relative(&c.method))
        .map(|c| c.dataset.as_str())
        .collect();
    let mut points = Vec::new();
    for (c, o) in plan.cells.iter().zip(outcomes) {
        let Outcome::Done(v) = o else { continue };
        if c.embedding != "one-hot"
            || c.variant.is_some()
            || c.method == "adjoint"
            || !rel_datasets.contains(&c.dataset.as_str())
        {
            continue;
        }
        points.extend(epoch_points(c, v));
    }
    if points.is_empty() {
        let _ = writeln!(
            md,
            "No finished cell on the relatives' datasets: nothing to plot.\n"
        );
        return Ok(());
    }
    let csv_path = dir.join("relatives.csv");
    std::fs::write(&csv_path, figure::csv(&points))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let logged: Vec<Point> = points
        .iter()
        .map(|p| Point {
            seconds: p.seconds.max(1e-3).log10(),
            ..p.clone()
        })
        .collect();
    let title = report::figure_title(plan, "Relatives: test accuracy vs training time");
    figure::svg_with_x(
        &logged,
        &title,
        "log10 cumulative training time (s)",
        // Ten curves: room for the legend.
        (760, 560),
        &dir.join("relatives.svg"),
    )?;
    let _ = writeln!(
        md,
        "![Relatives: test accuracy vs training time](relatives.svg)\n\nLine: mean over seeds \
         after each epoch (x: log₁₀ of the cumulative training seconds, evaluation excluded, \
         2 CPU threads unless the header says otherwise); band: lowest to highest seed. Every \
         point: [relatives.csv](relatives.csv) ({} rows, seconds not logged).\n",
        points.len()
    );
    Ok(())
}

/// A finished cell's per-epoch points.
fn epoch_points(c: &Cell, v: &Value) -> Vec<Point> {
    v["per_epoch"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(Point {
                dataset: c.dataset.clone(),
                method: c.method.clone(),
                seed: c.seed,
                epoch: e["epoch"].as_u64()? as usize,
                seconds: e["cumulative_train_seconds"].as_f64()?,
                test_accuracy: e["test_accuracy"].as_f64()?,
            })
        })
        .collect()
}

/// Gradient boosting's test accuracy with the first `k` stages active,
/// `k = 1…T`, beside the same-width network trained end to end.
///
/// Stage `k` trains during epochs `((k−1)·E, k·E]` and is frozen
/// afterwards, and prediction uses the stages trained so far, so the test
/// accuracy evaluated after epoch `k·E` is the accuracy of the first `k`
/// stages — the paper's "switch off the last-trained units", read off the
/// per-epoch evaluations (`Relative::predict_stages` computes the same from
/// a checkpoint).
fn boosting(md: &mut String, plan: &plan::RunPlan, outcomes: &[Outcome]) {
    let _ = writeln!(
        md,
        "### Gradient boosting: accuracy against active stages\n"
    );
    let mut any = false;
    let mut datasets: Vec<&str> = Vec::new();
    for c in plan.cells.iter().filter(|c| c.method == "grad-boost") {
        if !datasets.contains(&c.dataset.as_str()) {
            datasets.push(&c.dataset);
        }
    }
    for dataset in datasets {
        let g = select(plan, outcomes, |c| {
            c.dataset == dataset && c.method == "grad-boost"
        });
        let stages = stage_accuracies(&g);
        if stages.is_empty() {
            continue;
        }
        any = true;
        let reference = select(plan, outcomes, |c| {
            c.dataset == dataset && c.variant.as_deref() == Some(BOOST_WIDTH)
        });
        let _ = writeln!(
            md,
            "{dataset} (test accuracy %, mean ± s.e. over seeds; {}):\n\n| active stages | hidden units | grad-boost | {} |\n|---:|---:|---:|---:|",
            g.status(),
            title("backprop-mlp", Some(BOOST_WIDTH))
        );
        let end_to_end = fmt_pct(report::mean_se(&reference.test_values()));
        let n = stages.len();
        for (k, accs) in stages.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                k + 1,
                (k + 1) * BOOST_UNITS,
                fmt_pct(report::mean_se(accs)),
                if k + 1 == n { end_to_end.as_str() } else { "" }
            );
        }
        md.push('\n');
    }
    if !any {
        let _ = writeln!(md, "No finished grad-boost cell.\n");
    }
}

/// Per stage `k` (index `k − 1`), the test accuracy of every finished
/// grad-boost cell of `g` after its stage `k`, read from its `config`
/// (`stages`, `epochs_per_stage`) and `per_epoch`.
fn stage_accuracies(g: &Group) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = Vec::new();
    for v in g.done() {
        let per_stage = v["config"]["epochs_per_stage"].as_u64().unwrap_or(1).max(1);
        let stages = v["config"]["stages"].as_u64().unwrap_or(0);
        let epochs: Vec<(u64, f64)> = v["per_epoch"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["epoch"].as_u64()?, e["test_accuracy"].as_f64()?)))
            .collect();
        for k in 1..=stages {
            let Some(&(_, acc)) = epochs.iter().find(|(e, _)| *e == k * per_stage) else {
                break;
            };
            if out.len() < k as usize {
                out.push(Vec::new());
            }
            out[k as usize - 1].push(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::plan::{DatasetChoice, RunPlan, EMBEDDINGS, METHODS};
    use super::*;
    use serde_json::json;

    fn req(mode: Mode, seeds: u64) -> PlanRequest {
        PlanRequest {
            mode,
            tables: vec![TABLE.into()],
            datasets: vec![("mnist".into(), Err("mnist missing".into()))],
            methods: METHODS.iter().map(|s| s.to_string()).collect(),
            embeddings: EMBEDDINGS.iter().map(|s| s.to_string()).collect(),
            seeds,
            inference_runs: 1,
            device: "auto".into(),
        }
    }

    fn flag<'a>(c: &'a Cell, k: &str) -> Option<&'a str> {
        c.args.windows(2).find(|w| w[0] == k).map(|w| w[1].as_str())
    }

    #[test]
    fn full_plan_uses_ccl_table1_length_and_adds_fashion_mnist() {
        let r = req(Mode::Full, 3);
        let ds = datasets(&r.datasets, false, || Ok(()));
        assert_eq!(ds.len(), 2);
        let (mut cells, mut skipped) = (Vec::new(), Vec::new());
        plan_cells(&r, &ds, &mut cells, &mut skipped);
        // 8 relative cells × 3 seeds, and DT, CT, FM, backprop one-hot × 3
        // seeds, on Fashion-MNIST; MNIST's 8 relative stems skipped.
        assert_eq!(cells.len(), (8 + 4) * 3);
        assert_eq!(skipped.len(), 8);
        assert!(skipped.iter().all(|s| s.reason == "mnist missing"));
        let ccl = cells
            .iter()
            .find(|c| c.id == "fashion-mnist-ccl-one-hot-s2")
            .expect("ccl cell");
        assert_eq!(flag(ccl, "--epochs"), Some("100"));
        assert_eq!(flag(ccl, "--batch-size"), Some("256"));
        assert_eq!(flag(ccl, "--device"), Some("cpu"));
        assert_eq!(flag(ccl, "--limit-train"), None);
        assert_eq!(flag(ccl, "--steps"), None, "relatives reject --steps");
        let ff = cells
            .iter()
            .find(|c| c.id == "fashion-mnist-forward-forward-one-hot-s0")
            .expect("ff cell");
        assert_eq!(flag(ff, "--hidden"), Some("2000,2000,2000,2000"));
        let boost = cells
            .iter()
            .find(|c| c.id == "fashion-mnist-grad-boost-one-hot-s0")
            .expect("boost cell");
        assert_eq!(flag(boost, "--epochs-per-stage"), Some("10"));
        let same = cells
            .iter()
            .find(|c| c.id == "fashion-mnist-backprop-mlp-one-hot-boost-width-s0")
            .expect("same-width cell");
        assert_eq!(flag(same, "--hidden"), Some("320"));
        assert_eq!(flag(same, "--epochs"), Some("100"));
        let dt = cells
            .iter()
            .find(|c| c.id == "fashion-mnist-noprop-dt-one-hot-s0")
            .expect("DT cell for the plot");
        assert_eq!(dt.budget.epochs, 100);
        // Named datasets are used as they are.
        assert_eq!(datasets(&r.datasets, true, || Ok(())).len(), 1);
    }

    #[test]
    fn quick_plan_is_short_and_reuses_table1_cells() {
        let mut r = req(Mode::Quick, 1);
        r.datasets = vec![(FASHION.into(), Ok(()))];
        r.tables = vec!["table1".into(), TABLE.into()];
        let (mut cells, mut skipped) = plan::plan(&r);
        let before = cells.len();
        plan_cells(&r, &r.datasets.clone(), &mut cells, &mut skipped);
        // Table 1 already has the one-hot NoProp cells: only the 8 relatives are new.
        assert_eq!(cells.len(), before + 8);
        for c in &cells[before..] {
            assert_eq!(c.budget.limit_train, None, "{}", c.id);
            assert_eq!(flag(c, "--limit-train"), None, "{}", c.id);
            let epochs = if c.method == "grad-boost" || c.variant.as_deref() == Some(BOOST_WIDTH) {
                10
            } else {
                3
            };
            assert_eq!(c.budget.epochs, epochs, "{}", c.id);
        }
        let ff = cells
            .iter()
            .find(|c| c.id == "fashion-mnist-backprop-mlp-one-hot-ff-width-s0")
            .expect("ff-width");
        assert_eq!(flag(ff, "--hidden"), Some("500,500,500,500"));
        assert_eq!(flag(ff, "--activation"), Some("relu"));
        assert!(setting(ff).contains("500,500,500,500 ReLU, batch 256"));
    }

    fn result(epochs: &[(u64, f64, f64)], heap: f64, config: Value) -> Value {
        let last = epochs.last().copied().unwrap_or((0, 0.0, 0.0));
        json!({
            "test_accuracy": last.2,
            "test_accuracy_runs": [last.2],
            "train_seconds": last.1,
            "peak_memory_bytes": heap,
            "config": config,
            "per_epoch": epochs.iter().map(|(e, t, a)| json!({
                "epoch": e, "cumulative_train_seconds": t, "test_accuracy": a
            })).collect::<Vec<_>>(),
        })
    }

    /// Made-up results (to check the rendering): two CCL seeds, one
    /// grad-boost run of 3 stages × 2 epochs, its same-width reference,
    /// a NoProp-DT cell, and a pending DFA cell.
    #[test]
    fn renders_table_plot_and_stages_from_synthetic_cells() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = req(Mode::Quick, 2);
        r.datasets = vec![(FASHION.into(), Ok(()))];
        let (mut cells, mut skipped) = (Vec::new(), Vec::new());
        plan_cells(&r, &r.datasets.clone(), &mut cells, &mut skipped);
        let plan = RunPlan {
            mode: Mode::Quick,
            command: "cargo xtask reproduce --tables relatives,table1,table3".into(),
            tables: vec![TABLE.into(), "table1".into(), "table3".into()],
            seeds: 2,
            inference_runs: 1,
            device: "cpu".into(),
            datasets: vec![DatasetChoice {
                name: FASHION.into(),
                used: true,
                note: "found".into(),
            }],
            cells,
            skipped,
            host: json!({"hostname": "fixture", "cpu": "test cpu", "threads": 2}),
            git_revision: "abc123".into(),
            created_unix: 0,
        };
        std::fs::write(
            dir.path().join("plan.json"),
            serde_json::to_string(&plan).expect("plan"),
        )
        .expect("write plan");
        let w = |id: &str, v: Value| {
            std::fs::write(
                report::result_path(dir.path(), id),
                serde_json::to_string(&v).expect("json"),
            )
            .expect("write")
        };
        w(
            "fashion-mnist-ccl-one-hot-s0",
            result(&[(1, 10.0, 0.80), (2, 20.0, 0.86)], 2e8, json!({})),
        );
        w(
            "fashion-mnist-ccl-one-hot-s1",
            result(&[(1, 12.0, 0.82), (2, 22.0, 0.88)], 3e8, json!({})),
        );
        let boost = [
            (1, 1.0, 0.70),
            (2, 2.0, 0.75),
            (3, 3.0, 0.78),
            (4, 4.0, 0.80),
            (5, 5.0, 0.81),
            (6, 6.0, 0.82),
        ];
        let cfg = json!({"stages": 3, "epochs_per_stage": 2});
        w(
            "fashion-mnist-grad-boost-one-hot-s0",
            result(&boost, 1e8, cfg),
        );
        w(
            "fashion-mnist-backprop-mlp-one-hot-boost-width-s0",
            result(&[(1, 3.0, 0.85), (2, 6.0, 0.87)], 1e8, json!({})),
        );
        w(
            "fashion-mnist-noprop-dt-one-hot-s0",
            result(&[(1, 100.0, 0.80)], 4e8, json!({})),
        );
        let md = report::render(dir.path(), None).expect("render");
        assert!(md.contains("## Back-propagation-free relatives"), "{md}");
        assert!(md.contains("QUICK: reduced epochs"), "{md}");
        // CCL: .86 and .88 → 87.00 ± 1.00; published 88.58 → Δ −1.58; time
        // mean (20 + 22)/2 = 21.0 s; heap max 0.30 GB.
        assert!(
            md.contains("| ccl | fashion-mnist | 87.00 ± 1.00 | 88.58 [1] | -1.58 | 21.0 | 0.30 | 2/2 done |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| dfa | fashion-mnist | — | 87.35 [1] | — | — | — | 0/2 done, 2 pending |"
            ),
            "{md}"
        );
        // Forward-Forward's MNIST number is printed although MNIST did not run.
        assert!(
            md.contains("| forward-forward | mnist | not run | 98.63 [2] | — | — | — | — |"),
            "{md}"
        );
        assert!(md.contains("| NoProp-DT | fashion-mnist | 80.00 | – | — | 100.0 | 0.40 | 1/2 done, 1 pending |"), "{md}");
        assert!(md.contains("[1] CCL paper"), "{md}");
        // Stages: accuracy after epochs 2, 4, 6; the reference on the last row.
        assert!(md.contains("| 1 | 32 | 75.00 |  |"), "{md}");
        assert!(md.contains("| 3 | 96 | 82.00 | 87.00 |"), "{md}");
        // The plot: every finished one-hot cell without a variant, per epoch.
        let csv = std::fs::read_to_string(dir.path().join("relatives.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 1 + 2 + 2 + 6 + 1, "{csv}");
        let svg = std::fs::read_to_string(dir.path().join("relatives.svg")).expect("svg");
        for m in ["ccl", "grad-boost", "noprop-dt", "QUICK"] {
            assert!(svg.contains(m), "{m} missing from the SVG");
        }
        // Table 3 lists the relatives' peak heap beside NoProp's (max over
        // seeds), the reference cells not, and says the batch differs.
        assert!(md.contains("| fashion-mnist | NoProp-DT | 0.40 |"), "{md}");
        assert!(
            md.contains("| fashion-mnist | ccl | 0.30 | — | — | — |"),
            "{md}"
        );
        assert!(md.contains("MLPs trained at batch 256"), "{md}");
        let table3 = &md[md.find("## Table 3").expect("table 3")..];
        let table3 = &table3[..table3.find("\n## ").unwrap_or(table3.len())];
        assert!(!table3.contains("boost-width"), "{table3}");
        // Table 1 lists NoProp-DT but none of the relatives.
        let table1 =
            &md[md.find("## Table 1").expect("table 1")..md.find("## Table 3").expect("3")];
        assert!(table1.contains("| NoProp-DT | one-hot |"), "{table1}");
        for m in RELATIVES {
            assert!(!table1.contains(m), "{m} in Table 1:\n{table1}");
        }
    }

    #[test]
    fn stage_accuracies_stop_at_the_last_finished_stage() {
        let v = result(
            &[(1, 1.0, 0.5), (2, 2.0, 0.6), (3, 3.0, 0.7)],
            1.0,
            json!({"stages": 10, "epochs_per_stage": 1}),
        );
        let cell = Cell {
            id: "x".into(),
            dataset: FASHION.into(),
            method: "grad-boost".into(),
            embedding: "one-hot".into(),
            variant: None,
            seed: 0,
            budget: budget(Mode::Micro, "grad-boost"),
            args: vec![],
        };
        let o = Outcome::Done(Box::new(v));
        let g = Group {
            cells: vec![(&cell, &o)],
        };
        assert_eq!(stage_accuracies(&g), vec![vec![0.5], vec![0.6], vec![0.7]]);
    }
}
