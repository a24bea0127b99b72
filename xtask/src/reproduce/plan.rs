//! Which cells a reproduction runs, and with which `noprop train` flags.
//!
//! A *cell* is one dataset × method × embedding × seed training run. The
//! paper's Table 4 fixes the epochs and inference steps of every cell in
//! `--full`; `--quick` shrinks them to fit 30 minutes on two CPU cores, and
//! `--micro` (the CI smoke test) to about a minute.

use serde::{Deserialize, Serialize};

/// The five methods of Table 1, in the paper's row order.
pub const METHODS: [&str; 5] = ["backprop", "noprop-dt", "adjoint", "noprop-ct", "noprop-fm"];
/// The three class embeddings of Table 1.
pub const EMBEDDINGS: [&str; 3] = ["one-hot", "dim20", "prototype"];
/// Artefacts `--tables` can ask for.
pub const TABLES: [&str; 4] = ["table1", "table3", "table5", "fig4"];

/// How much of the paper's setting a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The paper's Table 4 hyper-parameters exactly.
    Full,
    /// A CPU preset of at most 30 minutes on 2 cores: fewer epochs, fewer
    /// inference steps, a training subset. Labelled QUICK everywhere.
    Quick,
    /// The CI smoke test: one epoch on a tiny subset.
    Micro,
}

impl Mode {
    /// `full`, `quick` or `micro`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
            Mode::Micro => "micro",
        }
    }

    /// The label printed on every output of a reduced run (empty for full).
    pub fn banner(self) -> &'static str {
        match self {
            Mode::Full => "",
            Mode::Quick => "QUICK",
            Mode::Micro => "MICRO (smoke test)",
        }
    }
}

/// The hyper-parameters of one cell that differ between modes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Training epochs.
    pub epochs: usize,
    /// T for DT and backprop; inference steps for CT/FM; Euler steps (train
    /// and inference) for the adjoint.
    pub steps: usize,
    /// CT/FM: inference steps of the per-epoch evaluations.
    pub eval_steps: Option<usize>,
    /// Training images used (`None`: all).
    pub limit_train: Option<usize>,
    /// Images of the train split on which train accuracy is measured (0: all).
    pub train_eval_limit: usize,
}

/// Table 4 of the paper: epochs and timesteps per dataset and method.
pub fn paper_budget(dataset: &str, method: &str) -> Budget {
    let cifar = dataset.starts_with("cifar");
    let (epochs, steps) = match (method, dataset) {
        ("backprop" | "noprop-dt", _) if cifar => (150, 10),
        ("backprop" | "noprop-dt", _) => (100, 10),
        ("adjoint", _) if cifar => (4, 1000),
        ("adjoint", _) => (2, 1000),
        ("noprop-ct" | "noprop-fm", "cifar10") => (500, 1000),
        ("noprop-ct" | "noprop-fm", "cifar100") => (1000, 1000),
        _ => (100, 1000),
    };
    Budget {
        epochs,
        steps,
        eval_steps: None,
        limit_train: None,
        train_eval_limit: 0,
    }
}

/// The reduced budget of `--quick` and `--micro`.
///
/// QUICK (sized on 2 cores with Fashion-MNIST shapes, where one
/// 10,000-image NoProp-DT epoch takes about 70 s and evaluating the 10,000
/// test images through its T = 10 blocks about 40 s): DT and backprop keep
/// T = 10 and see one epoch of the first 10,000 training images; CT and FM
/// train faster, so they see one epoch of 20,000, with 50 inference steps
/// instead of 1000 (10 for the per-epoch evaluation) — 20 (5) with the
/// prototype embedding, whose label path is a second conv stack run at
/// every step; the adjoint uses 20 Euler steps instead of 1000 (as its
/// learning check) on 10,000 images. Every test accuracy is still measured
/// on the full test split.
pub fn reduced_budget(mode: Mode, method: &str, embedding: &str) -> Budget {
    match mode {
        Mode::Full => unreachable!("full mode uses paper_budget"),
        Mode::Quick => {
            let prototype = embedding == "prototype";
            let (steps, eval_steps, limit) = match method {
                "backprop" | "noprop-dt" => (10, None, 10_000),
                "adjoint" => (20, None, 10_000),
                _ if prototype => (20, Some(5), 20_000),
                _ => (50, Some(10), 20_000),
            };
            Budget {
                epochs: 1,
                steps,
                eval_steps,
                limit_train: Some(limit),
                train_eval_limit: 1_000,
            }
        }
        Mode::Micro => {
            let steps = match method {
                "backprop" | "noprop-dt" => 10,
                "adjoint" => 4,
                _ => 10,
            };
            Budget {
                epochs: 1,
                steps,
                eval_steps: None,
                limit_train: Some(256),
                train_eval_limit: 256,
            }
        }
    }
}

/// One training run of the reproduction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `<dataset>-<method>-<embedding>-s<seed>`: the run name, the result
    /// file's stem and the checkpoint directory.
    pub id: String,
    /// Dataset name as `noprop --dataset` spells it.
    pub dataset: String,
    /// Method name as `noprop --method` spells it.
    pub method: String,
    /// Embedding name as `noprop --embedding` spells it.
    pub embedding: String,
    /// Seed.
    pub seed: u64,
    /// Epochs, steps and subset.
    pub budget: Budget,
    /// The `noprop train` arguments (without the binary and `train`).
    pub args: Vec<String>,
}

/// A cell the run does not train, and why (shown in the report).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The cell's id (seed omitted when the reason covers every seed).
    pub id: String,
    /// Why it is not run.
    pub reason: String,
}

/// A dataset considered by the run, and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetChoice {
    /// Dataset name.
    pub name: String,
    /// Whether its cells run.
    pub used: bool,
    /// Why it was chosen or left out (shown in the report header).
    pub note: String,
}

/// Everything a run decided before training: written as `plan.json` in the
/// run directory, read back by the renderer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunPlan {
    /// Mode.
    pub mode: Mode,
    /// The command line that made the plan.
    pub command: String,
    /// Artefacts asked for.
    pub tables: Vec<String>,
    /// Seeds per cell.
    pub seeds: u64,
    /// Stochastic inference runs per cell.
    pub inference_runs: usize,
    /// Device requested for the cells.
    pub device: String,
    /// Datasets considered.
    pub datasets: Vec<DatasetChoice>,
    /// Cells to train.
    pub cells: Vec<Cell>,
    /// Cells left out, with reasons.
    pub skipped: Vec<Skipped>,
    /// Host description (name, CPU, threads).
    pub host: serde_json::Value,
    /// `git rev-parse` of the workspace.
    pub git_revision: String,
    /// Seconds since the Unix epoch when the plan was made.
    pub created_unix: u64,
}

/// The choices that shape a plan.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    /// Mode.
    pub mode: Mode,
    /// Artefacts asked for (subset of [`TABLES`]).
    pub tables: Vec<String>,
    /// Datasets to run, each with `Ok(())` or the reason it cannot run.
    pub datasets: Vec<(String, Result<(), String>)>,
    /// Methods asked for.
    pub methods: Vec<String>,
    /// Embeddings asked for.
    pub embeddings: Vec<String>,
    /// Seeds per cell.
    pub seeds: u64,
    /// Stochastic inference runs per cell.
    pub inference_runs: usize,
    /// `--device` passed to every cell.
    pub device: String,
}

/// Whether `table` needs the (method, embedding) cell.
fn table_needs(table: &str, method: &str, embedding: &str) -> bool {
    match table {
        // Table 1: every row; the adjoint row is one-hot only.
        "table1" => method != "adjoint" || embedding == "one-hot",
        // Table 3: one-hot runs of every method record peak memory.
        "table3" => embedding == "one-hot",
        // Figure 4: CT, FM and the adjoint, one-hot.
        "fig4" => embedding == "one-hot" && matches!(method, "noprop-ct" | "noprop-fm" | "adjoint"),
        // Table 5 is computed from the model definitions: no training.
        _ => false,
    }
}

/// The cell list and the cells left out (with reasons).
pub fn plan(req: &PlanRequest) -> (Vec<Cell>, Vec<Skipped>) {
    let mut cells = Vec::new();
    let mut skipped = Vec::new();
    for (dataset, available) in &req.datasets {
        for method in METHODS {
            for embedding in EMBEDDINGS {
                let needed = req.tables.iter().any(|t| table_needs(t, method, embedding));
                if !needed {
                    continue;
                }
                let stem = format!("{dataset}-{method}-{embedding}");
                if !req.methods.iter().any(|m| m == method) {
                    skipped.push(Skipped {
                        id: stem,
                        reason: format!("--methods leaves out {method}"),
                    });
                    continue;
                }
                if !req.embeddings.iter().any(|e| e == embedding) {
                    skipped.push(Skipped {
                        id: stem,
                        reason: format!("--embeddings leaves out {embedding}"),
                    });
                    continue;
                }
                if let Err(why) = available {
                    skipped.push(Skipped {
                        id: stem,
                        reason: why.clone(),
                    });
                    continue;
                }
                let budget = match req.mode {
                    Mode::Full => paper_budget(dataset, method),
                    m => reduced_budget(m, method, embedding),
                };
                for seed in 0..req.seeds {
                    let id = format!("{stem}-s{seed}");
                    let args = train_args(dataset, method, embedding, seed, &budget, req);
                    cells.push(Cell {
                        id,
                        dataset: dataset.clone(),
                        method: method.to_string(),
                        embedding: embedding.to_string(),
                        seed,
                        budget: budget.clone(),
                        args,
                    });
                }
            }
        }
    }
    (cells, skipped)
}

/// The `noprop train` flags of one cell (results dir and name are added by
/// the runner).
fn train_args(
    dataset: &str,
    method: &str,
    embedding: &str,
    seed: u64,
    b: &Budget,
    req: &PlanRequest,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "--method",
        method,
        "--dataset",
        dataset,
        "--embedding",
        embedding,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut push = |k: &str, v: String| {
        a.push(k.to_string());
        a.push(v);
    };
    push("--epochs", b.epochs.to_string());
    push("--seed", seed.to_string());
    push("--device", req.device.clone());
    push("--steps", b.steps.to_string());
    if let Some(e) = b.eval_steps {
        push("--eval-steps", e.to_string());
    }
    if let Some(n) = b.limit_train {
        push("--limit-train", n.to_string());
    }
    push("--train-eval-limit", b.train_eval_limit.to_string());
    push("--inference-runs", req.inference_runs.to_string());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(mode: Mode, tables: &[&str]) -> PlanRequest {
        PlanRequest {
            mode,
            tables: tables.iter().map(|s| s.to_string()).collect(),
            datasets: vec![
                ("mnist".into(), Ok(())),
                ("cifar10".into(), Err("not found".into())),
            ],
            methods: METHODS.iter().map(|s| s.to_string()).collect(),
            embeddings: EMBEDDINGS.iter().map(|s| s.to_string()).collect(),
            seeds: 3,
            inference_runs: 5,
            device: "cpu".into(),
        }
    }

    #[test]
    fn full_table1_has_thirteen_rows_per_dataset_and_paper_epochs() {
        let (cells, skipped) = plan(&req(Mode::Full, &["table1"]));
        // 4 methods × 3 embeddings + adjoint one-hot = 13 rows, × 3 seeds.
        assert_eq!(cells.len(), 13 * 3);
        assert_eq!(skipped.len(), 13, "every cifar10 row is skipped");
        assert!(skipped.iter().all(|s| s.reason == "not found"));
        let ct = cells
            .iter()
            .find(|c| c.id == "mnist-noprop-ct-one-hot-s2")
            .expect("CT cell");
        assert_eq!((ct.budget.epochs, ct.budget.steps), (100, 1000));
        let adj = cells
            .iter()
            .find(|c| c.method == "adjoint")
            .expect("adjoint");
        assert_eq!((adj.budget.epochs, adj.budget.steps), (2, 1000));
        assert!(ct.args.windows(2).any(|w| w == ["--inference-runs", "5"]));
    }

    #[test]
    fn fig4_alone_runs_only_continuous_time_one_hot() {
        let (cells, _) = plan(&req(Mode::Quick, &["fig4"]));
        let mut methods: Vec<&str> = cells.iter().map(|c| c.method.as_str()).collect();
        methods.dedup();
        assert_eq!(methods, ["adjoint", "noprop-ct", "noprop-fm"]);
        assert!(cells.iter().all(|c| c.embedding == "one-hot"));
        assert!(cells.iter().all(|c| c.budget.limit_train
            == Some(if c.method == "adjoint" {
                10_000
            } else {
                20_000
            })));
    }

    #[test]
    fn filters_become_reasons() {
        let mut r = req(Mode::Quick, &["table1"]);
        r.methods = vec!["noprop-dt".into()];
        r.datasets.truncate(1);
        let (cells, skipped) = plan(&r);
        assert_eq!(cells.len(), 3 * 3);
        assert!(skipped
            .iter()
            .any(|s| s.id == "mnist-backprop-dim20" && s.reason.contains("--methods")));
    }
}
