//! Renders a run directory (its `plan.json` and the JSON each cell wrote)
//! into `REPORT.md`: Table 1 beside the paper's values, Table 3 (peak
//! memory), Table 5 (parameter counts), Figure 4 (SVG + CSV), Figures 6
//! and 7 (bar charts + CSV + tables beside the paper's values), the
//! back-propagation-free relatives ([`super::relatives`]) and every cell
//! that did not run, with the reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use super::bars::{self, Bar};
use super::figure::{self, Point};
use super::paper;
use super::params::ParamRow;
use super::plan::{Cell, Mode, RunPlan, CLASSIFIERS, EMBEDDINGS, INITS, TABLE2_DATASET};
use super::relatives;

/// What became of one planned cell.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Finished: the result JSON `noprop train` wrote.
    Done(Box<Value>),
    /// The subprocess failed: its exit status and the last lines of its log.
    Failed {
        /// Exit status as text.
        status: String,
        /// Last lines of stderr.
        tail: Vec<String>,
    },
    /// Not finished (not started yet, or interrupted: a re-run resumes it).
    Pending,
}

/// Path of a cell's result JSON.
pub fn result_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Path of a cell's failure record.
pub fn failure_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.failed.json"))
}

/// Reads the outcome of `cell` from `dir`.
pub fn outcome(dir: &Path, cell: &Cell) -> Result<Outcome> {
    let done = result_path(dir, &cell.id);
    if done.exists() {
        let text = std::fs::read_to_string(&done)
            .with_context(|| format!("reading {}", done.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a result JSON", done.display()))?;
        return Ok(Outcome::Done(Box::new(v)));
    }
    let failed = failure_path(dir, &cell.id);
    if failed.exists() {
        let text = std::fs::read_to_string(&failed)
            .with_context(|| format!("reading {}", failed.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a failure record", failed.display()))?;
        return Ok(Outcome::Failed {
            status: v["status"].as_str().unwrap_or("?").to_string(),
            tail: v["tail"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(Outcome::Pending)
}

/// Mean and standard error (sample standard deviation / √n; `None` for n < 2).
pub fn mean_se(values: &[f64]) -> Option<(f64, Option<f64>)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return Some((mean, None));
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, Some((var / n).sqrt())))
}

pub(super) fn fmt_pct(ms: Option<(f64, Option<f64>)>) -> String {
    match ms {
        None => "—".into(),
        Some((m, Some(se))) => format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * se),
        Some((m, None)) => format!("{:.2}", 100.0 * m),
    }
}

fn fmt_diff(ours: Option<(f64, Option<f64>)>, paper: Option<paper::Published>) -> String {
    match (ours, paper) {
        (Some((m, _)), Some(p)) => format!("{:+.2}", 100.0 * m - p.mean),
        _ => "—".into(),
    }
}

fn fmt_paper(p: Option<paper::Published>) -> String {
    p.map_or("—".into(), |p| format!("{} ± {}", p.mean, p.se))
}

/// `s` made safe for one Markdown table cell: one line, pipes escaped.
pub(super) fn cell_text(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

pub(super) fn gb(bytes: Option<f64>) -> String {
    bytes.map_or("—".into(), |b| format!("{:.2}", b / 1e9))
}

fn method_title(m: &str) -> &str {
    match m {
        "backprop" => "Backprop",
        "noprop-dt" => "NoProp-DT",
        "adjoint" => "Adjoint",
        "noprop-ct" => "NoProp-CT",
        "noprop-fm" => "NoProp-FM",
        other => other,
    }
}

/// The cells of one table row, with their outcomes.
pub(super) struct Group<'a> {
    pub(super) cells: Vec<(&'a Cell, &'a Outcome)>,
}

impl Group<'_> {
    pub(super) fn done(&self) -> impl Iterator<Item = &Value> {
        self.cells.iter().filter_map(|(_, o)| match o {
            Outcome::Done(v) => Some(v.as_ref()),
            _ => None,
        })
    }

    pub(super) fn test_values(&self) -> Vec<f64> {
        self.done()
            .flat_map(|v| match v["test_accuracy_runs"].as_array() {
                Some(runs) => runs.iter().filter_map(Value::as_f64).collect::<Vec<_>>(),
                None => v["test_accuracy"].as_f64().into_iter().collect(),
            })
            .collect()
    }

    fn train_values(&self) -> Vec<f64> {
        self.done()
            .filter_map(|v| v["train_accuracy"].as_f64())
            .collect()
    }

    pub(super) fn status(&self) -> String {
        let n = self.cells.len();
        let done = self.done().count();
        let failed = self
            .cells
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed { .. }))
            .count();
        let mut s = format!("{done}/{n} done");
        if failed > 0 {
            let _ = write!(s, ", {failed} failed");
        }
        if done + failed < n {
            let _ = write!(s, ", {} pending", n - done - failed);
        }
        s
    }

    pub(super) fn max_of(&self, key: &str) -> Option<f64> {
        self.done()
            .filter_map(|v| v[key].as_f64())
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))))
    }
}

/// Renders the report of the run in `dir`. Writes `fig4.svg` and `fig4.csv`
/// there when Figure 4 is asked for; returns the Markdown.
pub fn render(dir: &Path, params: Option<&[ParamRow]>) -> Result<String> {
    let plan_path = dir.join("plan.json");
    let plan: RunPlan = serde_json::from_str(
        &std::fs::read_to_string(&plan_path)
            .with_context(|| format!("reading {}", plan_path.display()))?,
    )
    .with_context(|| format!("{}: not a reproduction plan", plan_path.display()))?;
    let outcomes: Vec<Outcome> = plan
        .cells
        .iter()
        .map(|c| outcome(dir, c))
        .collect::<Result<_>>()?;
    let mut md = String::new();
    header(&mut md, &plan, &outcomes);
    let wants = |t: &str| plan.tables.iter().any(|x| x == t);
    if wants("table1") {
        table1(&mut md, &plan, &outcomes);
    }
    if wants("table2") {
        table2(&mut md, &plan, &outcomes);
    }
    if wants("table3") {
        table3(&mut md, &plan, &outcomes);
    }
    if wants("table5") {
        table5(&mut md, params);
    }
    if wants("fig4") {
        fig4(&mut md, dir, &plan, &outcomes)?;
    }
    if wants("fig6") {
        fig6(&mut md, dir, &plan, &outcomes)?;
    }
    if wants("fig7") {
        fig7(&mut md, dir, &plan, &outcomes)?;
    }
    if wants(relatives::TABLE) {
        relatives::render(&mut md, dir, &plan, &outcomes)?;
    }
    cells_table(&mut md, &plan, &outcomes);
    not_run(&mut md, &plan, &outcomes);
    Ok(md)
}

fn header(md: &mut String, plan: &RunPlan, outcomes: &[Outcome]) {
    let banner = plan.mode.banner();
    if banner.is_empty() {
        let _ = writeln!(md, "# NoProp reproduction — the paper's setting (full)\n");
    } else {
        let _ = writeln!(
            md,
            "# NoProp reproduction — {banner}\n\n> **{banner}**: reduced epochs, steps and training \
             set (below). These numbers are NOT the paper's setting and must not be compared \
             with Table 1 as equals; run `cargo xtask reproduce --full` on a GPU for that.\n"
        );
    }
    let host = &plan.host;
    let done = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Done(_)))
        .count();
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| mode | {} |", plan.mode.as_str());
    let _ = writeln!(
        md,
        "| machine | {} — {}, {} threads |",
        host["hostname"].as_str().unwrap_or("?"),
        host["cpu"].as_str().unwrap_or("?"),
        host["threads"]
    );
    let _ = writeln!(md, "| device | {} |", plan.device);
    for d in &plan.datasets {
        let _ = writeln!(
            md,
            "| dataset {} | {} — {} |",
            d.name,
            if d.used { "used" } else { "not used" },
            cell_text(&d.note)
        );
    }
    let mut budgets: BTreeMap<String, String> = BTreeMap::new();
    for c in &plan.cells {
        let b = &c.budget;
        let steps = match c.method.as_str() {
            m if relatives::is_relative(m) => relatives::setting(c),
            "backprop" | "noprop-dt" => format!("T = {}", b.steps),
            "adjoint" => format!("{} Euler steps", b.steps),
            _ => match b.eval_steps {
                Some(e) => format!("{} inference steps ({e} per-epoch)", b.steps),
                None => format!("{} inference steps", b.steps),
            },
        };
        let subset = b.limit_train.map_or("all training images".into(), |n| {
            format!("first {n} training images")
        });
        let test = b
            .limit_test
            .map_or(String::new(), |n| format!(", first {n} test images"));
        let key = match c.variant.as_deref() {
            None => method_title(&c.method).to_string(),
            Some(v) if relatives::is_reference(v) => format!("{} ({v})", c.method),
            Some(_) => format!("{} (Figures 6, 7)", method_title(&c.method)),
        };
        budgets
            .entry(key)
            .or_insert(format!("{} epochs, {steps}, {subset}{test}", b.epochs));
    }
    for (m, b) in budgets {
        let _ = writeln!(md, "| {m} | {b} |");
    }
    let _ = writeln!(
        md,
        "| statistics | {} seed(s) × {} inference run(s) per cell (paper: 3 × 5) |",
        plan.seeds, plan.inference_runs
    );
    let _ = writeln!(md, "| cells | {done} of {} finished |", plan.cells.len());
    let _ = writeln!(md, "| git revision | {} |", plan.git_revision);
    let _ = writeln!(md, "| command | `{}` |\n", cell_text(&plan.command));
}

fn groups<'a>(
    plan: &'a RunPlan,
    outcomes: &'a [Outcome],
) -> BTreeMap<(String, usize, usize), Group<'a>> {
    // Table 1's methods, then the relatives (Table 3 lists both).
    let order = |m: &str| {
        super::plan::METHODS
            .iter()
            .chain(&relatives::RELATIVES)
            .position(|x| *x == m)
            .unwrap_or(99)
    };
    let eorder = |e: &str| {
        super::plan::EMBEDDINGS
            .iter()
            .position(|x| *x == e)
            .unwrap_or(99)
    };
    let mut g: BTreeMap<(String, usize, usize), Group> = BTreeMap::new();
    // The ablation cells (Figures 6, 7) have their own sections.
    for (c, o) in plan
        .cells
        .iter()
        .zip(outcomes)
        .filter(|(c, _)| c.variant.is_none())
    {
        g.entry((c.dataset.clone(), order(&c.method), eorder(&c.embedding)))
            .or_insert(Group { cells: vec![] })
            .cells
            .push((c, o));
    }
    g
}

fn table1(md: &mut String, plan: &RunPlan, outcomes: &[Outcome]) {
    let _ = writeln!(md, "## Table 1 — classification accuracy (%)\n");
    let _ = writeln!(
        md,
        "Mean ± standard error. Test: over seeds × inference runs; train: over seeds \
         (one inference run each, on the train subset named above). Δ = ours − paper, in \
         percentage points.{}\n",
        if plan.mode == Mode::Full {
            ""
        } else {
            " **Reduced setting: Δ measures how far a short run is from the converged paper \
             value, not a reproduction gap.**"
        }
    );
    let gs = groups(plan, outcomes);
    let mut current = String::new();
    for ((dataset, _, _), g) in &gs {
        let (c0, _) = g.cells[0];
        if !table_row_wanted(&c0.method, &c0.embedding)
            || dataset == TABLE2_DATASET
            || relatives::is_relative(&c0.method)
        {
            continue;
        }
        if *dataset != current {
            current = dataset.clone();
            let note = if paper::table1(dataset, "noprop-dt", "one-hot").is_none() {
                " (not in the paper: no paper column)"
            } else {
                ""
            };
            let _ = writeln!(md, "### {dataset}{note}\n");
            let _ = writeln!(
                md,
                "| method | embedding | train (ours) | train (paper) | Δ | test (ours) | test (paper) | Δ | cells |"
            );
            let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---|");
        }
        accuracy_row(md, g, paper::table1(dataset, &c0.method, &c0.embedding));
    }
    md.push('\n');
    let ct_prototype = plan
        .cells
        .iter()
        .any(|c| c.method == "noprop-ct" && c.embedding == "prototype");
    if ct_prototype && plan.mode != Mode::Full {
        let _ = writeln!(md, "{CT_PROTOTYPE_NOTE}\n");
    }
}

/// Under Table 1 of a reduced run with a NoProp-CT prototype cell.
const CT_PROTOTYPE_NOTE: &str = "**NoProp-CT with the prototype embedding** learns slowly: after an \
epoch or a few it is near chance (its training loss starts around 10⁵, because `d` is the image size \
and SNR′ weights the L2 term). The method does this on its own, not because of this implementation: \
our PyTorch transcription (`benches/peers/noprop_cont_torch.py`) learns as slowly, with the same \
training-loss curve. The two are side by side in docs/BENCHMARKS.md, section \"Fidelity\" \
(`cargo xtask bench fidelity`).";

/// One row of Table 1 or 2: method, embedding, then train and test
/// accuracy (ours, the paper's, Δ) and the cells' status.
fn accuracy_row(
    md: &mut String,
    g: &Group,
    published: Option<(paper::Published, paper::Published)>,
) {
    let (c0, _) = g.cells[0];
    let train = mean_se(&g.train_values());
    let test = mean_se(&g.test_values());
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        method_title(&c0.method),
        c0.embedding,
        fmt_pct(train),
        fmt_paper(published.map(|p| p.0)),
        fmt_diff(train, published.map(|p| p.0)),
        fmt_pct(test),
        fmt_paper(published.map(|p| p.1)),
        fmt_diff(test, published.map(|p| p.1)),
        g.status()
    );
}

/// Table 2 (v2): Tiny ImageNet, NoProp-DT and backprop, one-hot and
/// prototype, train and test accuracy beside the paper's.
fn table2(md: &mut String, plan: &RunPlan, outcomes: &[Outcome]) {
    let _ = writeln!(md, "## Table 2 — Tiny ImageNet, discrete time (%)\n");
    let _ = writeln!(
        md,
        "v2's Table 2: 200 classes, 64×64 images, the block's image path with a fourth conv \
         (256 channels, ReLU, 2×2 max-pool, dropout 0.2). The paper gives no \
         hyper-parameters for it; `--full` uses CIFAR's (150 epochs, T = 10). Mean ± s.e. as \
         in Table 1; Δ = ours − paper.{}\n",
        if plan.mode == Mode::Full {
            ""
        } else {
            " **Reduced setting: Δ measures how far a short run is from the converged paper \
             value, not a reproduction gap.**"
        }
    );
    let gs = groups(plan, outcomes);
    let rows: Vec<&Group> = gs
        .iter()
        .filter(|((d, _, _), _)| d == TABLE2_DATASET)
        .map(|(_, g)| g)
        .collect();
    if rows.is_empty() {
        let why = plan
            .datasets
            .iter()
            .find(|d| d.name == TABLE2_DATASET)
            .map_or(
                "Tiny ImageNet was not among the datasets".to_string(),
                |d| cell_text(&d.note),
            );
        let _ = writeln!(md, "Not run: {why}.\n");
        return;
    }
    let _ = writeln!(
        md,
        "| method | embedding | train (ours) | train (paper) | Δ | test (ours) | test (paper) | Δ | cells |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---|");
    for g in rows {
        let (c0, _) = g.cells[0];
        accuracy_row(md, g, paper::table2(&c0.method, &c0.embedding));
    }
    md.push('\n');
}

fn table_row_wanted(method: &str, embedding: &str) -> bool {
    method != "adjoint" || embedding == "one-hot"
}

fn table3(md: &mut String, plan: &RunPlan, outcomes: &[Outcome]) {
    let _ = writeln!(md, "## Table 3 — peak training memory, one-hot (GB)\n");
    let _ = writeln!(
        md,
        "Ours: the training process's peak heap (a counting global allocator's high-water \
         mark) and peak RSS (VmHWM) at batch 128 on the CPU; on a CUDA device, peak device \
         memory. The paper's figure is \"process GPU memory allocated\" on its GPU — a \
         different quantity, printed for scale. Max over seeds.{}\n",
        if plan.cells.iter().any(|c| relatives::is_relative(&c.method)) {
            " The back-propagation-free relatives (docs/RELATIVES.md) are MLPs trained at \
             batch 256."
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "| dataset | method | heap peak (ours) | RSS peak (ours) | device peak (ours) | paper (GPU) |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
    for ((dataset, _, _), g) in groups(plan, outcomes) {
        let (c0, _) = g.cells[0];
        if c0.embedding != "one-hot" {
            continue;
        }
        let _ = writeln!(
            md,
            "| {dataset} | {} | {} | {} | {} | {} |",
            method_title(&c0.method),
            gb(g.max_of("peak_memory_bytes")),
            gb(g.max_of("peak_rss_bytes")),
            gb(g.max_of("peak_device_memory_bytes")),
            paper::table3_gb(&dataset, &c0.method).map_or("—".into(), |v| format!("{v:.2}"))
        );
    }
    md.push('\n');
}

fn table5(md: &mut String, params: Option<&[ParamRow]>) {
    let _ = writeln!(md, "## Table 5 — parameters per block\n");
    let Some(rows) = params else {
        let _ = writeln!(md, "(not computed)\n");
        return;
    };
    let _ = writeln!(
        md,
        "Counted on the models as built (trainable scalars of one DT block; of the CT/FM \
         network), beside the paper's rounded millions.\n"
    );
    let _ = writeln!(
        md,
        "| dataset | embedding | label dim | DT (ours) | DT (paper) | CT (ours) | CT (paper) |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|");
    let mut gaps = Vec::new();
    for r in rows {
        let p = paper::table5_millions(r.dataset, r.embedding);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} ({:.2}M) | {} | {} | {} |",
            r.dataset,
            r.embedding,
            r.label_dim,
            r.dt,
            r.dt as f64 / 1e6,
            p.map_or("—".into(), |p| format!("{:.2}M", p.0)),
            r.ct.map_or("—".into(), |ct| format!("{ct} ({:.2}M)", ct as f64 / 1e6)),
            p.and_then(|p| p.1)
                .map_or("—".into(), |v| format!("{v:.2}M")),
        );
        if let Some((paper_dt, _)) = p {
            // The paper rounds to 0.01M: a count off by more than half of
            // that is a different architecture.
            let ours = r.dt as f64 / 1e6;
            if (ours - paper_dt).abs() > 0.005 {
                gaps.push(format!(
                    "{} {}: ours {:.3}M, paper {:.2}M ({:+.3}M)",
                    r.dataset,
                    r.embedding,
                    ours,
                    paper_dt,
                    paper_dt - ours
                ));
            }
        }
    }
    md.push('\n');
    if !gaps.is_empty() {
        let _ = writeln!(
            md,
            "**Open: DT counts that do not match the paper's rounding** — {}. Tiny \
             ImageNet's v2 architecture is given in one sentence (a 256-channel conv + ReLU + \
             2×2 max-pool + dropout 0.2 \"inserted before concatenation\"); ours puts it after \
             the third conv with a 3×3 kernel and padding 0 (`ConvStack::Four`). Both Tiny \
             ImageNet gaps fit one constant: the paper's rounding intervals (2.445–2.455M, \
             4.295–4.305M) put it between 49k and 52k parameters for both embeddings, so it is \
             not in the image path (the prototype block has two of them). One more \
             200 ↔ 256 fully connected layer (200·256 + 256 = 51,456) would fit; the text \
             describes none. Not explained: the architecture is kept as the text says.\n",
            gaps.join("; ")
        );
    }
}

fn fig4(md: &mut String, dir: &Path, plan: &RunPlan, outcomes: &[Outcome]) -> Result<()> {
    let _ = writeln!(
        md,
        "## Figure 4 — test accuracy vs cumulative training time (one-hot)\n"
    );
    let mut points = Vec::new();
    for (c, o) in plan.cells.iter().zip(outcomes) {
        let Outcome::Done(v) = o else { continue };
        if c.embedding != "one-hot"
            || !matches!(c.method.as_str(), "noprop-ct" | "noprop-fm" | "adjoint")
        {
            continue;
        }
        for e in v["per_epoch"].as_array().into_iter().flatten() {
            if let (Some(epoch), Some(t), Some(acc)) = (
                e["epoch"].as_u64(),
                e["cumulative_train_seconds"].as_f64(),
                e["test_accuracy"].as_f64(),
            ) {
                points.push(Point {
                    dataset: c.dataset.clone(),
                    method: c.method.clone(),
                    seed: c.seed,
                    epoch: epoch as usize,
                    seconds: t,
                    test_accuracy: acc,
                });
            }
        }
    }
    if points.is_empty() {
        let _ = writeln!(md, "No finished CT, FM or adjoint cell: nothing to plot.\n");
        return Ok(());
    }
    let csv_path = dir.join("fig4.csv");
    std::fs::write(&csv_path, figure::csv(&points))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let title = match plan.mode.banner() {
        "" => "Figure 4 (full)".to_string(),
        b => format!("Figure 4 — {b}, not the paper's setting"),
    };
    figure::svg(&points, &title, &dir.join("fig4.svg"))?;
    let _ = writeln!(
        md,
        "![Figure 4](fig4.svg)\n\nLine: mean over seeds after each epoch; band: lowest to \
         highest seed. Per-epoch points: [fig4.csv](fig4.csv) ({} rows). Time excludes \
         evaluation.\n",
        points.len()
    );
    Ok(())
}

/// The cells of `plan` that `pick` selects, with their outcomes.
pub(super) fn select<'a>(
    plan: &'a RunPlan,
    outcomes: &'a [Outcome],
    pick: impl Fn(&Cell) -> bool,
) -> Group<'a> {
    Group {
        cells: plan
            .cells
            .iter()
            .zip(outcomes)
            .filter(|(c, _)| pick(c))
            .collect(),
    }
}

/// The datasets of `plan`'s cells, in plan order.
fn cell_datasets(plan: &RunPlan) -> Vec<&str> {
    let mut d: Vec<&str> = Vec::new();
    for c in &plan.cells {
        if !d.contains(&c.dataset.as_str()) {
            d.push(&c.dataset);
        }
    }
    d
}

/// `mean ± s.e.` of a group's test values as a bar (percent).
fn bar(panel: &str, group: &str, series: &str, g: &Group) -> Option<Bar> {
    let values = g.test_values();
    let (mean, se) = mean_se(&values)?;
    Some(Bar {
        panel: panel.into(),
        group: group.into(),
        series: series.into(),
        mean: 100.0 * mean,
        se: se.map(|e| 100.0 * e),
        n: values.len(),
    })
}

fn fmt_paper_approx(p: Option<paper::Published>, approx: bool) -> String {
    match p {
        Some(p) if approx => format!("≈{} ± {}", p.mean, p.se),
        other => fmt_paper(other),
    }
}

/// Writes `<name>.svg` and `<name>.csv` of `bars` into `dir` and links them.
fn write_bars(
    md: &mut String,
    dir: &Path,
    name: &str,
    title: &str,
    bars_: &[Bar],
    series: &[&str],
) -> Result<()> {
    let csv_path = dir.join(format!("{name}.csv"));
    std::fs::write(&csv_path, bars::csv(bars_))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let svg_path = dir.join(format!("{name}.svg"));
    std::fs::write(
        &svg_path,
        bars::svg(bars_, title, series, "test accuracy (%)"),
    )
    .with_context(|| format!("writing {}", svg_path.display()))?;
    let _ = writeln!(
        md,
        "![{title}]({name}.svg)\n\nBars: mean test accuracy over seeds × inference runs; error bars: ± standard error (none with a single value). Every bar: [{name}.csv]({name}.csv).\n"
    );
    Ok(())
}

pub(super) fn figure_title(plan: &RunPlan, figure: &str) -> String {
    match plan.mode.banner() {
        "" => format!("{figure} (full)"),
        b => format!("{figure} — {b}, not the paper's setting"),
    }
}

fn fig6(md: &mut String, dir: &Path, plan: &RunPlan, outcomes: &[Outcome]) -> Result<()> {
    let _ = writeln!(
        md,
        "## Figure 6 — class probabilities: softmax (Eq. 14) vs posterior (Eqs. 15–16), NoProp-DT\n"
    );
    // QUICK trains its own softmax cells (the ablation budget); otherwise
    // the softmax bars are Table 1's NoProp-DT cells.
    let own_softmax = plan
        .cells
        .iter()
        .any(|c| c.variant.as_deref() == Some("softmax"));
    let mut all = Vec::new();
    let mut rows = String::new();
    for dataset in cell_datasets(plan) {
        for embedding in EMBEDDINGS {
            let groups: Vec<Group> = CLASSIFIERS
                .iter()
                .map(|cls| {
                    select(plan, outcomes, |c| {
                        c.dataset == dataset
                            && c.method == "noprop-dt"
                            && c.embedding == embedding
                            && match *cls {
                                "posterior" => c.variant.as_deref() == Some("posterior"),
                                _ if own_softmax => c.variant.as_deref() == Some("softmax"),
                                _ => c.variant.is_none(),
                            }
                    })
                })
                .collect();
            if groups.iter().all(|g| g.cells.is_empty()) {
                continue;
            }
            let ours: Vec<Option<(f64, Option<f64>)>> =
                groups.iter().map(|g| mean_se(&g.test_values())).collect();
            for (cls, g) in CLASSIFIERS.iter().zip(&groups) {
                all.extend(bar(dataset, embedding, cls, g));
            }
            let diff = match (ours[0], ours[1]) {
                (Some((s, _)), Some((p, _))) => format!("{:+.2}", 100.0 * (p - s)),
                _ => "—".into(),
            };
            let published = paper::fig6(dataset, embedding);
            let status: Vec<String> = groups.iter().map(Group::status).collect();
            let _ = writeln!(
                rows,
                "| {dataset} | {embedding} | {} | {} | {diff} | {} | {} | {} |",
                fmt_pct(ours[0]),
                fmt_pct(ours[1]),
                fmt_paper(published.map(|p| p.0)),
                fmt_paper_approx(published.map(|p| p.1), true),
                status.join("; ")
            );
        }
    }
    if all.is_empty() {
        let _ = writeln!(md, "No finished Figure 6 cell: nothing to plot.\n");
    } else {
        let title = figure_title(plan, "Figure 6");
        write_bars(md, dir, "fig6", &title, &all, &CLASSIFIERS)?;
    }
    if !rows.is_empty() {
        let _ = writeln!(
            md,
            "Test accuracy (%), mean ± s.e.; the paper's columns only for its datasets (≈: read off the paper's plot).\n\n| dataset | embedding | softmax (ours) | posterior (ours) | posterior − softmax | softmax (paper) | posterior (paper) | cells (softmax; posterior) |\n|---|---|---:|---:|---:|---:|---:|---|\n{rows}"
        );
    }
    let _ = writeln!(
        md,
        "The paper's Figure 6 (NoProp-DT test accuracy, %; softmax = Table 1, posterior read off the plot; it finds no consistent winner):\n\n| dataset | embedding | softmax | posterior |\n|---|---|---:|---:|"
    );
    for dataset in ["mnist", "cifar10", "cifar100"] {
        for embedding in EMBEDDINGS {
            let p = paper::fig6(dataset, embedding);
            let _ = writeln!(
                md,
                "| {dataset} | {embedding} | {} | {} |",
                fmt_paper(p.map(|p| p.0)),
                fmt_paper_approx(p.map(|p| p.1), true)
            );
        }
    }
    md.push('\n');
    Ok(())
}

fn fig7(md: &mut String, dir: &Path, plan: &RunPlan, outcomes: &[Outcome]) -> Result<()> {
    let _ = writeln!(
        md,
        "## Figure 7 — embedding initialisation at the image dimension, NoProp-DT\n"
    );
    let mut all = Vec::new();
    let mut rows = String::new();
    for dataset in cell_datasets(plan) {
        for init in INITS {
            let variant = format!("init-{init}");
            let g = select(plan, outcomes, |c| {
                c.dataset == dataset && c.variant.as_deref() == Some(variant.as_str())
            });
            let Some((c0, _)) = g.cells.first() else {
                continue;
            };
            let ours = mean_se(&g.test_values());
            all.extend(bar(dataset, init, "NoProp-DT", &g));
            let published = paper::fig7(dataset, init);
            let _ = writeln!(
                rows,
                "| {dataset} | {} | {init} | {} | {} | {} | {} |",
                c0.embedding,
                fmt_pct(ours),
                fmt_paper_approx(published, init != "prototype"),
                fmt_diff(ours, published),
                g.status()
            );
        }
    }
    if all.is_empty() {
        let _ = writeln!(md, "No finished Figure 7 cell: nothing to plot.\n");
    } else {
        let title = figure_title(plan, "Figure 7");
        write_bars(md, dir, "fig7", &title, &all, &["NoProp-DT"])?;
    }
    if !rows.is_empty() {
        let _ = writeln!(
            md,
            "Test accuracy (%), mean ± s.e., `--embedding dimN --embedding-init <init>` with N the image size; the paper's column only for its datasets (≈: read off its plot; its prototype bar is Table 1's).\n\n| dataset | embedding | init | ours | paper | Δ | cells |\n|---|---|---|---:|---:|---:|---|\n{rows}"
        );
    }
    let _ = writeln!(
        md,
        "The paper's Figure 7 (NoProp-DT test accuracy, %):\n\n| dataset | orthogonal | prototype | random |\n|---|---:|---:|---:|"
    );
    for dataset in ["mnist", "cifar10", "cifar100"] {
        let v: Vec<String> = INITS
            .iter()
            .map(|i| fmt_paper_approx(paper::fig7(dataset, i), *i != "prototype"))
            .collect();
        let _ = writeln!(md, "| {dataset} | {} |", v.join(" | "));
    }
    md.push('\n');
    Ok(())
}

/// Every finished cell: its cost and result, and the run's total.
fn cells_table(md: &mut String, plan: &RunPlan, outcomes: &[Outcome]) {
    let _ = writeln!(md, "## Cells\n");
    let _ = writeln!(
        md,
        "| cell | epochs | train images | train s | wall s | img/s | test acc | peak heap GB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut total = 0.0;
    for (c, o) in plan.cells.iter().zip(outcomes) {
        let Outcome::Done(v) = o else { continue };
        let wall = v["wall_seconds"].as_f64().unwrap_or(0.0);
        total += wall;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.4} | {:.2} |",
            c.id,
            v["epochs"],
            v["train_images"],
            v["train_seconds"].as_f64().unwrap_or(f64::NAN),
            wall,
            v["images_per_second"].as_f64().unwrap_or(f64::NAN),
            v["test_accuracy"].as_f64().unwrap_or(f64::NAN),
            v["peak_memory_bytes"].as_f64().unwrap_or(f64::NAN) / 1e9
        );
    }
    let _ = writeln!(
        md,
        "\nTotal wall time of the finished cells: {:.1} min (each cell's process, \
         data loading and evaluation included; building excluded).\n",
        total / 60.0
    );
}

fn not_run(md: &mut String, plan: &RunPlan, outcomes: &[Outcome]) {
    let _ = writeln!(md, "## Cells not run\n");
    let mut any = false;
    let mut rows = String::new();
    // One row per reason: a missing dataset skips every cell at once.
    let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
    for s in &plan.skipped {
        match by_reason.iter_mut().find(|(r, _)| *r == s.reason) {
            Some((_, ids)) => ids.push(&s.id),
            None => by_reason.push((&s.reason, vec![&s.id])),
        }
    }
    for (reason, ids) in by_reason {
        any = true;
        let _ = writeln!(
            rows,
            "| {} | not run | {} |",
            ids.join(", "),
            cell_text(reason)
        );
    }
    for (c, o) in plan.cells.iter().zip(outcomes) {
        match o {
            Outcome::Done(_) => {}
            Outcome::Pending => {
                any = true;
                let _ = writeln!(
                    rows,
                    "| {} | pending | not finished (interrupted or not started); \
                     re-running the same command resumes it |",
                    c.id
                );
            }
            Outcome::Failed { status, tail } => {
                any = true;
                let last = tail
                    .iter()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| cell_text(l))
                    .unwrap_or_default();
                let _ = writeln!(rows, "| {} | failed ({status}) | {last} |", c.id);
            }
        }
    }
    if any {
        let _ = writeln!(md, "| cell | state | reason |\n|---|---|---|");
        md.push_str(&rows);
    } else {
        let _ = writeln!(md, "Every planned cell finished.");
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::super::plan::{Budget, DatasetChoice, Skipped};
    use super::*;
    use serde_json::json;

    fn cell(dataset: &str, method: &str, embedding: &str, seed: u64) -> Cell {
        Cell {
            id: format!("{dataset}-{method}-{embedding}-s{seed}"),
            dataset: dataset.into(),
            method: method.into(),
            embedding: embedding.into(),
            variant: None,
            seed,
            budget: Budget {
                epochs: 2,
                steps: 10,
                eval_steps: None,
                limit_train: Some(1000),
                limit_test: None,
                train_eval_limit: 500,
            },
            args: vec![],
        }
    }

    fn result(method: &str, runs: &[f64], train: f64, heap: f64) -> Value {
        json!({
            "method": method,
            "test_accuracy": runs.iter().sum::<f64>() / runs.len() as f64,
            "test_accuracy_runs": runs,
            "train_accuracy": train,
            "peak_memory_bytes": heap,
            "peak_rss_bytes": heap * 2.0,
            "per_epoch": [
                {"epoch": 1, "cumulative_train_seconds": 5.0, "test_accuracy": runs[0] - 0.1},
                {"epoch": 2, "cumulative_train_seconds": 10.0, "test_accuracy": runs[0]},
            ],
        })
    }

    /// A fixture run: DT one-hot with two seeds (done), FM one-hot done,
    /// CT one-hot failed, backprop one-hot pending, CIFAR-10 skipped.
    fn fixture(dir: &Path) {
        let cells = vec![
            cell("mnist", "noprop-dt", "one-hot", 0),
            cell("mnist", "noprop-dt", "one-hot", 1),
            cell("mnist", "noprop-fm", "one-hot", 0),
            cell("mnist", "noprop-ct", "one-hot", 0),
            cell("mnist", "backprop", "one-hot", 0),
        ];
        let plan = RunPlan {
            mode: Mode::Quick,
            command: "cargo xtask reproduce --quick".into(),
            tables: ["table1", "table3", "table5", "fig4"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            seeds: 2,
            inference_runs: 2,
            device: "cpu".into(),
            datasets: vec![DatasetChoice {
                name: "mnist".into(),
                used: true,
                note: "found in datasets/mnist".into(),
            }],
            cells,
            skipped: vec![Skipped {
                id: "cifar10-noprop-dt-one-hot".into(),
                reason: "cifar10 not found (cargo xtask fetch-data cifar10)".into(),
            }],
            host: json!({"hostname": "fixture", "cpu": "test cpu", "threads": 2}),
            git_revision: "abc123".into(),
            created_unix: 0,
        };
        let w = |name: String, v: Value| {
            std::fs::write(dir.join(name), serde_json::to_string(&v).expect("json")).expect("write")
        };
        w(
            "plan.json".into(),
            serde_json::to_value(&plan).expect("plan"),
        );
        w(
            "mnist-noprop-dt-one-hot-s0.json".into(),
            result("noprop-dt", &[0.99, 0.98], 0.995, 4e8),
        );
        w(
            "mnist-noprop-dt-one-hot-s1.json".into(),
            result("noprop-dt", &[0.97, 0.96], 0.985, 5e8),
        );
        w(
            "mnist-noprop-fm-one-hot-s0.json".into(),
            result("noprop-fm", &[0.95, 0.95], 0.96, 3e8),
        );
        w(
            "mnist-noprop-ct-one-hot-s0.failed.json".into(),
            json!({"status": "exit status: 1", "tail": ["error: NaN loss at epoch 1, step 7", ""]}),
        );
    }

    #[test]
    fn a_reduced_run_with_a_ct_prototype_cell_carries_the_note() {
        let dir = tempfile::tempdir().expect("tempdir");
        fixture(dir.path());
        let md = render(dir.path(), None).expect("render");
        assert!(
            !md.contains("NoProp-CT with the prototype embedding"),
            "{md}"
        );
        let p = dir.path().join("plan.json");
        let mut plan: RunPlan =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("plan");
        plan.cells.push(cell("mnist", "noprop-ct", "prototype", 0));
        std::fs::write(&p, serde_json::to_string(&plan).expect("json")).expect("write");
        let md = render(dir.path(), None).expect("render");
        assert!(md.contains(CT_PROTOTYPE_NOTE), "{md}");
    }

    #[test]
    fn renders_fixture_with_differences_failures_and_skips() {
        let dir = tempfile::tempdir().expect("tempdir");
        fixture(dir.path());
        let rows = vec![ParamRow {
            dataset: "mnist",
            embedding: "one-hot",
            label_dim: 10,
            dt: 919_946,
            ct: Some(867_722),
        }];
        let md = render(dir.path(), Some(&rows)).expect("render");
        // QUICK label in the title.
        assert!(md.starts_with("# NoProp reproduction — QUICK"), "{md}");
        // DT test: mean of [.99,.98,.97,.96] = 97.50, s.e. = sd/2 = 0.6455.. → 0.65;
        // paper 99.47 → Δ −1.97.
        assert!(
            md.contains("| NoProp-DT | one-hot | 99.00 ± 0.50 | 99.92 ± 0.01 | -0.92 | 97.50 ± 0.65 | 99.47 ± 0.05 | -1.97 | 2/2 done |"),
            "{md}"
        );
        // The failed CT cell: in the table and in "not run" with its last log line.
        assert!(md.contains("| NoProp-CT | one-hot | — | 97.88 ± 0.61 | — | — | 97.84 ± 0.71 | — | 0/1 done, 1 failed |"), "{md}");
        assert!(md.contains("| mnist-noprop-ct-one-hot-s0 | failed (exit status: 1) | error: NaN loss at epoch 1, step 7 |"), "{md}");
        assert!(
            md.contains("| mnist-backprop-one-hot-s0 | pending |"),
            "{md}"
        );
        assert!(
            md.contains("| cifar10-noprop-dt-one-hot | not run | cifar10 not found"),
            "{md}"
        );
        // Table 3: max heap over the two DT seeds, paper 0.49 GB.
        assert!(
            md.contains("| mnist | NoProp-DT | 0.50 | 1.00 | — | 0.49 |"),
            "{md}"
        );
        // The cells table sums the finished cells' wall times (none in the fixture).
        assert!(
            md.contains("Total wall time of the finished cells: 0.0 min"),
            "{md}"
        );
        // Table 5 row.
        assert!(
            md.contains(
                "| mnist | one-hot | 10 | 919946 (0.92M) | 0.92M | 867722 (0.87M) | 0.87M |"
            ),
            "{md}"
        );
        // Figure 4 from FM only (CT failed): 2 epochs → 2 CSV rows.
        let csv = std::fs::read_to_string(dir.path().join("fig4.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(dir.path().join("fig4.svg").exists());
    }

    /// Table 2 from synthetic Tiny ImageNet cells (made-up accuracies), a
    /// MNIST Table 1 cell kept out of it, and the "not run" line when Tiny
    /// ImageNet is missing.
    #[test]
    fn renders_table2_from_tiny_imagenet_cells_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cells = vec![
            cell("tiny-imagenet", "noprop-dt", "one-hot", 0),
            cell("tiny-imagenet", "backprop", "prototype", 0),
            cell("mnist", "noprop-dt", "one-hot", 0),
        ];
        let mut plan = RunPlan {
            mode: Mode::Full,
            command: "cargo xtask reproduce --full --tables table1,table2".into(),
            tables: vec!["table1".into(), "table2".into()],
            seeds: 1,
            inference_runs: 2,
            device: "cpu".into(),
            datasets: vec![],
            cells: cells.clone(),
            skipped: vec![],
            host: json!({"hostname": "fixture", "cpu": "test cpu", "threads": 2}),
            git_revision: "abc123".into(),
            created_unix: 0,
        };
        let write_plan = |plan: &RunPlan| {
            std::fs::write(
                dir.path().join("plan.json"),
                serde_json::to_string(plan).expect("plan"),
            )
            .expect("write plan")
        };
        write_plan(&plan);
        for (c, runs, train) in [
            (&cells[0], [0.26, 0.27], 0.70),
            (&cells[1], [0.30, 0.31], 0.99),
            (&cells[2], [0.99, 0.99], 0.99),
        ] {
            std::fs::write(
                result_path(dir.path(), &c.id),
                serde_json::to_string(&result(&c.method, &runs, train, 1e8)).expect("json"),
            )
            .expect("write result");
        }
        let md = render(dir.path(), None).expect("render");
        let t2 = &md[md.find("## Table 2").expect("table 2")..];
        let t2 = &t2[..t2.find("\n## ").unwrap_or(t2.len())];
        // DT one-hot: 26.50 ± 0.50 against 26.55 ± 0.4 → Δ −0.05.
        assert!(
            t2.contains("| NoProp-DT | one-hot | 70.00 | 69.78 ± 1.71 | +0.22 | 26.50 ± 0.50 | 26.55 ± 0.4 | -0.05 | 1/1 done |"),
            "{t2}"
        );
        assert!(
            t2.contains("| Backprop | prototype | 99.00 | 99.82 ± 0.02 |"),
            "{t2}"
        );
        assert!(!t2.contains("mnist"), "{t2}");
        // Table 1 has the MNIST cell and no Tiny ImageNet section.
        let t1 = &md[md.find("## Table 1").expect("table 1")..md.find("## Table 2").expect("t2")];
        assert!(
            t1.contains("### mnist") && !t1.contains("tiny-imagenet"),
            "{t1}"
        );

        // Without Tiny ImageNet the table says why.
        plan.cells.truncate(0);
        plan.datasets = vec![DatasetChoice {
            name: "tiny-imagenet".into(),
            used: false,
            note: "not found locally".into(),
        }];
        write_plan(&plan);
        let md = render(dir.path(), None).expect("render");
        assert!(md.contains("Not run: not found locally."), "{md}");
    }

    /// Synthetic ablation cells (made-up accuracies, to check the rendering):
    /// Figure 6 softmax/posterior and Figure 7 inits on MNIST, two seeds.
    #[test]
    fn renders_figures_6_and_7_from_synthetic_cells() {
        let dir = tempfile::tempdir().expect("tempdir");
        let with = |embedding: &str, variant: &str, seed: u64| {
            let mut c = cell("mnist", "noprop-dt", embedding, seed);
            c.id = format!("mnist-noprop-dt-{embedding}-{variant}-s{seed}");
            c.variant = Some(variant.into());
            c
        };
        let mut cells = Vec::new();
        for seed in 0..2 {
            for e in ["one-hot", "dim20", "prototype"] {
                cells.push(with(e, "softmax", seed));
                cells.push(with(e, "posterior", seed));
            }
            for i in ["orthogonal", "prototype", "random"] {
                cells.push(with("dim784", &format!("init-{i}"), seed));
            }
        }
        let plan = RunPlan {
            mode: Mode::Quick,
            command: "cargo xtask reproduce --quick --tables fig6,fig7".into(),
            tables: vec!["fig6".into(), "fig7".into()],
            seeds: 2,
            inference_runs: 2,
            device: "cpu".into(),
            datasets: vec![],
            cells: cells.clone(),
            skipped: vec![],
            host: json!({"hostname": "fixture", "cpu": "test cpu", "threads": 2}),
            git_revision: "abc123".into(),
            created_unix: 0,
        };
        std::fs::write(
            dir.path().join("plan.json"),
            serde_json::to_string(&plan).expect("plan"),
        )
        .expect("write plan");
        for c in &cells {
            // One-hot posterior seed 1 is left pending.
            if c.id == "mnist-noprop-dt-one-hot-posterior-s1" {
                continue;
            }
            let base = if c.variant.as_deref() == Some("posterior") {
                0.96
            } else {
                0.98
            };
            let runs = [
                base - 0.01 * c.seed as f64,
                base + 0.01 - 0.01 * c.seed as f64,
            ];
            std::fs::write(
                result_path(dir.path(), &c.id),
                serde_json::to_string(&result("noprop-dt", &runs, 0.99, 1e8)).expect("json"),
            )
            .expect("write result");
        }
        let md = render(dir.path(), None).expect("render");
        assert!(md.contains("## Figure 6"), "{md}");
        assert!(md.contains("## Figure 7"), "{md}");
        // Softmax values .98 .99 .97 .98 → 98.00 ± 0.41; posterior one-hot has
        // seed 0 only: .96 .97 → 96.50 ± 0.50; Δ −1.50; the paper's MNIST values.
        assert!(
            md.contains("| mnist | one-hot | 98.00 ± 0.41 | 96.50 ± 0.50 | -1.50 | 99.47 ± 0.05 | ≈99.46 ± 0.06 | 2/2 done; 1/2 done, 1 pending |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| mnist | dim784 | random | 98.00 ± 0.41 | ≈99.54 ± 0.03 | -1.54 | 2/2 done |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| mnist | dim784 | prototype | 98.00 ± 0.41 | 99.54 ± 0.04 |"),
            "{md}"
        );
        // The ablation cells stay out of Table 1's groups and the header
        // names their budget.
        assert!(md.contains("| NoProp-DT (Figures 6, 7) | 2 epochs"), "{md}");
        let svg6 = std::fs::read_to_string(dir.path().join("fig6.svg")).expect("fig6.svg");
        assert_eq!(svg6.matches("class=\"error-bar\"").count(), 6);
        assert!(svg6.contains("QUICK"));
        let csv7 = std::fs::read_to_string(dir.path().join("fig7.csv")).expect("fig7.csv");
        assert_eq!(csv7.lines().count(), 4, "{csv7}");
        assert!(
            csv7.contains("mnist,random,NoProp-DT,4,98.0000,0.4082"),
            "{csv7}"
        );
    }

    #[test]
    fn mean_se_matches_hand_values() {
        let (m, se) = mean_se(&[1.0, 2.0, 3.0, 4.0]).expect("some");
        assert!((m - 2.5).abs() < 1e-12);
        // sd = sqrt(5/3), se = sd/2.
        assert!((se.expect("se") - (5.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
        assert_eq!(mean_se(&[0.5]), Some((0.5, None)));
        assert_eq!(mean_se(&[]), None);
    }
}
