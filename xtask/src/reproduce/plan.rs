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
pub const TABLES: [&str; 8] = [
    "table1",
    "table2",
    "table3",
    "table5",
    "fig4",
    "fig6",
    "fig7",
    "relatives",
];
/// The dataset of Table 2 (v2), and only of Table 2.
pub const TABLE2_DATASET: &str = "tiny-imagenet";
/// Figure 6's classifiers (`--classifier`): Eq. 14 and Eqs. 15–16.
pub const CLASSIFIERS: [&str; 2] = ["softmax", "posterior"];
/// Figure 7's starts of an image-dimension embedding (`--embedding-init`).
pub const INITS: [&str; 3] = ["orthogonal", "prototype", "random"];

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
    /// Test images used (`None`: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_test: Option<usize>,
    /// Images of the train split on which train accuracy is measured (0: all).
    pub train_eval_limit: usize,
}

/// Table 4 of the paper: epochs and timesteps per dataset and method.
///
/// Tiny ImageNet's are not given (v2 lists none for Table 2); it gets
/// CIFAR's (150 epochs, T = 10 for DT and backprop), the setting of the
/// paper's other colour-image datasets.
pub fn paper_budget(dataset: &str, method: &str) -> Budget {
    let cifar = dataset.starts_with("cifar") || dataset == TABLE2_DATASET;
    let (epochs, steps) = match (method, dataset) {
        ("backprop" | "noprop-dt", _) if cifar => (150, 10),
        ("backprop" | "noprop-dt", _) => (100, 10),
        ("adjoint", _) if cifar => (4, 1000),
        ("adjoint", _) => (2, 1000),
        ("noprop-ct" | "noprop-fm", "cifar10") => (500, 1000),
        ("noprop-ct" | "noprop-fm", "cifar100") => (1000, 1000),
        _ => (100, 1000),
    };
    // CT/FM: `noprop train`'s per-epoch default (100 steps,
    // `noprop_train::methods::EPOCH_EVAL_STEPS`; the final
    // evaluation keeps the paper's 1000), written out for the report.
    let eval_steps = matches!(method, "noprop-ct" | "noprop-fm").then_some(100);
    Budget {
        epochs,
        steps,
        eval_steps,
        limit_train: None,
        limit_test: None,
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
                limit_test: None,
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
                limit_test: None,
                train_eval_limit: 256,
            }
        }
    }
}

/// The budget of the NoProp-DT ablation cells (Figures 6 and 7).
///
/// Full: Table 4's (the same cells as Table 1). QUICK: nine extra cells
/// must fit beside Table 1's, so each sees one epoch of the first
/// [`ABLATION_QUICK_TRAIN`] training images at T = 10 and is tested on the
/// first [`ABLATION_QUICK_TEST`] test images — a smoke-scale comparison,
/// labelled QUICK. Micro: the micro budget.
pub fn ablation_budget(mode: Mode, dataset: &str, embedding: &str) -> Budget {
    match mode {
        Mode::Full => paper_budget(dataset, "noprop-dt"),
        Mode::Quick => Budget {
            epochs: 1,
            steps: 10,
            eval_steps: None,
            limit_train: Some(ABLATION_QUICK_TRAIN),
            limit_test: Some(ABLATION_QUICK_TEST),
            train_eval_limit: 500,
        },
        Mode::Micro => reduced_budget(mode, "noprop-dt", embedding),
    }
}

/// The reduced budget of a Table 2 (Tiny ImageNet) cell: QUICK trains one
/// epoch on the first [`TABLE2_QUICK_TRAIN`] training images (10 per class;
/// a 64×64 image costs about 5× a CIFAR one) at T = 10 and tests on the
/// first [`TABLE2_QUICK_TEST`] validation images — a smoke-scale run,
/// labelled QUICK; micro uses the micro budget.
pub fn table2_budget(mode: Mode, method: &str, embedding: &str) -> Budget {
    match mode {
        Mode::Full => paper_budget(TABLE2_DATASET, method),
        Mode::Quick => Budget {
            epochs: 1,
            steps: 10,
            eval_steps: None,
            limit_train: Some(TABLE2_QUICK_TRAIN),
            limit_test: Some(TABLE2_QUICK_TEST),
            train_eval_limit: 500,
        },
        Mode::Micro => reduced_budget(mode, method, embedding),
    }
}

/// Training images of a QUICK Table 2 cell.
pub const TABLE2_QUICK_TRAIN: usize = 2_000;
/// Test images of a QUICK Table 2 cell.
pub const TABLE2_QUICK_TEST: usize = 2_000;

/// Training images of a QUICK ablation cell.
pub const ABLATION_QUICK_TRAIN: usize = 3_000;
/// Test images of a QUICK ablation cell.
pub const ABLATION_QUICK_TEST: usize = 1_000;

/// `C·H·W` of a dataset's images: Figure 7's embedding dimension.
pub fn image_dim(dataset: &str) -> usize {
    match dataset {
        "cifar10" | "cifar100" => 3 * 32 * 32,
        "tiny-imagenet" => 3 * 64 * 64,
        // mnist, fashion-mnist, mnist-test-split.
        _ => 28 * 28,
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
    /// An ablation cell's setting (Figure 6: `softmax` or `posterior`;
    /// Figure 7: `init-orthogonal`, `init-prototype`, `init-random`);
    /// `None` for the cells of Table 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
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

/// Whether `table` needs the (dataset, method, embedding) cell.
fn table_needs(table: &str, dataset: &str, method: &str, embedding: &str) -> bool {
    let tiny = dataset == TABLE2_DATASET;
    match table {
        // Table 2: Tiny ImageNet only, DT and backprop, one-hot and prototype.
        "table2" => {
            tiny && matches!(method, "backprop" | "noprop-dt")
                && matches!(embedding, "one-hot" | "prototype")
        }
        // The other tables have no Tiny ImageNet column.
        _ if tiny => false,
        // Table 1: every row; the adjoint row is one-hot only.
        "table1" => method != "adjoint" || embedding == "one-hot",
        // Table 3: one-hot runs of every method record peak memory.
        "table3" => embedding == "one-hot",
        // Figure 4: CT, FM and the adjoint, one-hot.
        "fig4" => embedding == "one-hot" && matches!(method, "noprop-ct" | "noprop-fm" | "adjoint"),
        // Figures 6 and 7 add their own cells ([`ablation_cells`]).
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
                let needed = req
                    .tables
                    .iter()
                    .any(|t| table_needs(t, dataset, method, embedding));
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
                    _ if dataset == TABLE2_DATASET => table2_budget(req.mode, method, embedding),
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
                        variant: None,
                        seed,
                        budget: budget.clone(),
                        args,
                    });
                }
            }
        }
    }
    ablation_cells(req, &mut cells, &mut skipped);
    (cells, skipped)
}

/// The NoProp-DT cells of Figure 6 (softmax vs posterior classifier, each
/// embedding) and Figure 7 (an embedding of the image dimension started
/// orthogonally, from prototypes, or at random).
///
/// A Figure 6 softmax cell is the Table 1 NoProp-DT cell itself when the
/// budgets agree (full and micro), so it is trained once; QUICK gives the
/// ablations a smaller budget ([`ablation_budget`]) and so its own softmax
/// cells. Figure 7's cells are image-dimension embeddings, which
/// `--embeddings` names `prototype`.
fn ablation_cells(req: &PlanRequest, cells: &mut Vec<Cell>, skipped: &mut Vec<Skipped>) {
    let wants = |t: &str| req.tables.iter().any(|x| x == t);
    let method = "noprop-dt";
    let mut jobs: Vec<(String, String, Option<&str>, Vec<String>)> = Vec::new();
    // The paper's ablations are on MNIST and CIFAR; none on Tiny ImageNet.
    for (dataset, _) in req.datasets.iter().filter(|(d, _)| d != TABLE2_DATASET) {
        if wants("fig6") {
            for embedding in EMBEDDINGS {
                for classifier in CLASSIFIERS {
                    jobs.push((
                        dataset.clone(),
                        embedding.to_string(),
                        Some(classifier),
                        vec!["--classifier".into(), classifier.into()],
                    ));
                }
            }
        }
        if wants("fig7") {
            for init in INITS {
                jobs.push((
                    dataset.clone(),
                    format!("dim{}", image_dim(dataset)),
                    None,
                    vec!["--embedding-init".into(), init.into()],
                ));
            }
        }
    }
    for (dataset, embedding, classifier, extra) in jobs {
        let variant = match classifier {
            Some(c) => c.to_string(),
            None => format!("init-{}", extra[1]),
        };
        let stem = format!("{dataset}-{method}-{embedding}-{variant}");
        let filter_name = if classifier.is_some() {
            embedding.as_str()
        } else {
            "prototype"
        };
        let available = req
            .datasets
            .iter()
            .find(|(d, _)| *d == dataset)
            .map(|(_, a)| a.clone())
            .unwrap_or(Ok(()));
        let reason = if !req.methods.iter().any(|m| m == method) {
            Some(format!("--methods leaves out {method}"))
        } else if !req.embeddings.iter().any(|e| e == filter_name) {
            Some(format!("--embeddings leaves out {filter_name}"))
        } else {
            available.err()
        };
        if let Some(reason) = reason {
            skipped.push(Skipped { id: stem, reason });
            continue;
        }
        let budget = ablation_budget(req.mode, &dataset, &embedding);
        let table1_budget = match req.mode {
            Mode::Full => paper_budget(&dataset, method),
            m => reduced_budget(m, method, &embedding),
        };
        // Softmax is `noprop train`'s default: with Table 1's budget the
        // Table 1 cell is this cell (added here when Table 1 is not asked for).
        let reuse = classifier == Some("softmax") && budget == table1_budget;
        for seed in 0..req.seeds {
            let (id, variant, extra) = if reuse {
                (
                    format!("{dataset}-{method}-{embedding}-s{seed}"),
                    None,
                    vec![],
                )
            } else {
                (
                    format!("{stem}-s{seed}"),
                    Some(variant.clone()),
                    extra.clone(),
                )
            };
            if cells.iter().any(|c| c.id == id) {
                continue;
            }
            let mut args = train_args(&dataset, method, &embedding, seed, &budget, req);
            args.extend(extra);
            cells.push(Cell {
                id,
                dataset: dataset.clone(),
                method: method.to_string(),
                embedding: embedding.clone(),
                variant,
                seed,
                budget: budget.clone(),
                args,
            });
        }
    }
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
    if let Some(n) = b.limit_test {
        push("--limit-test", n.to_string());
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
    fn ablations_plan_their_own_cells() {
        // Full: Figure 6's softmax bars are Table 1's DT cells (trained once).
        let (cells, _) = plan(&req(Mode::Full, &["table1", "fig6", "fig7"]));
        assert_eq!(cells.len(), (13 + 3 + 3) * 3);
        let post = cells
            .iter()
            .find(|c| c.id == "mnist-noprop-dt-dim20-posterior-s1")
            .expect("posterior cell");
        assert_eq!(post.variant.as_deref(), Some("posterior"));
        assert_eq!(post.budget.epochs, 100);
        assert!(post
            .args
            .windows(2)
            .any(|w| w == ["--classifier", "posterior"]));
        let init = cells
            .iter()
            .find(|c| c.id == "mnist-noprop-dt-dim784-init-random-s0")
            .expect("fig7 cell");
        assert!(init.args.windows(2).any(|w| w == ["--embedding", "dim784"]));
        assert!(init
            .args
            .windows(2)
            .any(|w| w == ["--embedding-init", "random"]));

        // QUICK: smaller ablation cells, softmax ones of their own.
        let (cells, skipped) = plan(&req(Mode::Quick, &["fig6", "fig7"]));
        assert_eq!(cells.len(), 9 * 3);
        assert!(cells.iter().all(|c| c.variant.is_some()
            && c.budget.limit_train == Some(ABLATION_QUICK_TRAIN)
            && c.args.windows(2).any(|w| w == ["--limit-test", "1000"])));
        assert!(cells
            .iter()
            .any(|c| c.id == "mnist-noprop-dt-one-hot-softmax-s0"));
        assert!(skipped
            .iter()
            .any(|s| s.id == "cifar10-noprop-dt-dim3072-init-prototype"));

        // Figure 7 follows `--embeddings prototype`.
        let mut r = req(Mode::Quick, &["fig7"]);
        r.embeddings = vec!["one-hot".into()];
        let (cells, skipped) = plan(&r);
        assert!(cells.is_empty());
        assert!(skipped
            .iter()
            .any(|s| s.reason == "--embeddings leaves out prototype"));
    }

    #[test]
    fn table2_plans_tiny_imagenet_only_and_only_for_table2() {
        let mut r = req(Mode::Quick, &["table1", "table2", "fig6", "fig7"]);
        r.datasets = vec![("mnist".into(), Ok(())), ("tiny-imagenet".into(), Ok(()))];
        r.seeds = 1;
        let (cells, _) = plan(&r);
        let tiny: Vec<&Cell> = cells
            .iter()
            .filter(|c| c.dataset == "tiny-imagenet")
            .collect();
        let mut ids: Vec<&str> = tiny.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [
                "tiny-imagenet-backprop-one-hot-s0",
                "tiny-imagenet-backprop-prototype-s0",
                "tiny-imagenet-noprop-dt-one-hot-s0",
                "tiny-imagenet-noprop-dt-prototype-s0",
            ]
        );
        assert!(tiny
            .iter()
            .all(|c| c.budget.limit_train == Some(TABLE2_QUICK_TRAIN)
                && c.args.windows(2).any(|w| w == ["--limit-test", "2000"])));
        // MNIST gets Table 1 and the ablations, but no Table 2 cell.
        assert_eq!(
            cells.iter().filter(|c| c.dataset == "mnist").count(),
            13 + 9
        );
        // Full: CIFAR's 150 epochs.
        let mut r = req(Mode::Full, &["table2"]);
        r.datasets = vec![("tiny-imagenet".into(), Ok(()))];
        let (cells, _) = plan(&r);
        assert_eq!(cells.len(), 4 * 3);
        assert!(cells
            .iter()
            .all(|c| c.budget.epochs == 150 && c.budget.steps == 10));
        // Without Tiny ImageNet, Table 2 plans nothing.
        let (cells, _) = plan(&req(Mode::Quick, &["table2"]));
        assert!(cells.is_empty());
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
