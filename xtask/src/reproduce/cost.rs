//! How long a cell should take: a per-cell wall-time estimate, split by
//! phase (start-up, each epoch's training and evaluation, the final
//! evaluation), from the cell's method, embedding, dataset size, epochs and
//! steps.
//!
//! The per-image costs are calibrated on the committed QUICK run
//! (`docs/REPRODUCTION.md`, "Cells" table: 13 Fashion-MNIST cells, 2 CPU
//! threads). They are a prior, not a promise: another machine, a GPU or a
//! faster revision shifts every cell by a similar factor, which the live
//! display measures on the finished work and applies to what is left (see
//! [`super::live`]).
//!
//! Shape of the model (milliseconds per image, Fashion-MNIST shapes):
//!
//! * training scales with T for backprop and NoProp-DT (T blocks per
//!   image), with the Euler steps for the adjoint (forward and backward ODE
//!   solves), and not at all for CT/FM (one sampled time per image);
//! * evaluation costs a fixed part (CT/FM: the cached image path) plus a
//!   part per inference step; the prototype embedding runs a second conv
//!   stack per step, about doubling DT's cost and dominating CT/FM's;
//! * CIFAR's 3×32×32 images cost [`CIFAR_FACTOR`] times more than 1×28×28
//!   (the DT block step in `docs/results/dt_step.json`).

use super::plan::{image_dim, Cell};
use super::progress::{Phase, Progress};

/// Seconds to start `noprop train` and load the data.
const STARTUP_SECONDS: f64 = 2.5;

/// Cost of a 3×32×32 image relative to a 1×28×28 one (DT block step:
/// 2037.7 vs 1412.8 images/s in `docs/results/dt_step.json`).
pub const CIFAR_FACTOR: f64 = 1.44;

/// Training and evaluation images of a dataset's full splits.
fn split_sizes(dataset: &str) -> (usize, usize) {
    match dataset {
        "cifar10" | "cifar100" => (50_000, 10_000),
        "mnist-test-split" => (8_000, 2_000),
        // mnist, fashion-mnist, and anything new with their shape.
        _ => (60_000, 10_000),
    }
}

/// Milliseconds to train on one image (Fashion-MNIST shapes).
fn train_ms(method: &str, prototype: bool, steps: f64) -> f64 {
    match method {
        // QUICK, T = 10: 59.1 s (one-hot, dim20) and 111.3 s (prototype)
        // for 10,000 images.
        "backprop" => steps * if prototype { 1.113 } else { 0.591 },
        // 54.5 s and 110.4 s for 10,000 images.
        "noprop-dt" => steps * if prototype { 1.104 } else { 0.545 },
        // 9.1 s for 10,000 images at 20 Euler steps; `bench baselines`
        // adds about 12 µs per image and step up to 1000 steps.
        "adjoint" => 0.66 + 0.0123 * steps,
        // CT/FM: 12.2 s and 22.4 s for 20,000 images, whatever the steps.
        _ => {
            if prototype {
                1.12
            } else {
                0.61
            }
        }
    }
}

/// Milliseconds to evaluate one image at `steps` inference steps.
fn eval_ms(method: &str, prototype: bool, steps: f64) -> f64 {
    // QUICK evaluates 21,000 images per cell: 11,000 after the epoch
    // (test split + 1,000 training images) and 10,000 at the end; what
    // the wall time has beyond training and start-up is theirs.
    match method {
        // 85.9 s (mean of the three embeddings) at T = 10.
        "backprop" => 0.40 * steps,
        // 78.0 s (one-hot, dim20) and 151.7 s (prototype) at T = 10.
        "noprop-dt" => steps * if prototype { 0.72 } else { 0.36 },
        // 5.3 s at 20 Euler steps.
        "adjoint" => 0.0125 * steps,
        // CT/FM, 11,000 images at 10 steps and 10,000 at 50: about 6 s;
        // `bench ct-fm` measures 4.3 µs per image and step (1000 steps,
        // image path cached). Prototype (5 and 20 steps): about 132 s.
        _ => 0.15 + steps * if prototype { 0.51 } else { 0.0043 },
    }
}

/// A cell's estimated wall time, by phase, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellCost {
    /// Process start and data loading.
    pub startup: f64,
    /// One epoch of training mini-batches.
    pub train_epoch: f64,
    /// One per-epoch evaluation (test split and train-accuracy subset).
    pub eval_epoch: f64,
    /// The final evaluation (every stochastic inference run).
    pub final_eval: f64,
    /// Epochs.
    pub epochs: usize,
}

impl CellCost {
    /// Estimated seconds of the whole cell.
    pub fn total(&self) -> f64 {
        self.startup + self.epochs as f64 * (self.train_epoch + self.eval_epoch) + self.final_eval
    }

    /// Estimated seconds of the cell's work done when `noprop train`
    /// reports `p` (clamped to the cell's epochs; at most [`Self::total`]).
    pub fn position(&self, p: &Progress) -> f64 {
        let epoch_cost = self.train_epoch + self.eval_epoch;
        let before = |epoch: u64| {
            let full = (epoch.saturating_sub(1) as usize).min(self.epochs);
            self.startup + full as f64 * epoch_cost
        };
        let pos = match p.phase {
            Phase::Train => before(p.epoch) + self.train_epoch * p.fraction(),
            Phase::Eval => before(p.epoch) + self.train_epoch + self.eval_epoch * p.fraction(),
            Phase::Final => {
                self.startup + self.epochs as f64 * epoch_cost + self.final_eval * p.fraction()
            }
        };
        pos.min(self.total())
    }

    /// Estimated seconds of the cell's work done once epoch `k` (1-based)
    /// and its evaluation have ended.
    pub fn after_epoch(&self, k: u64) -> f64 {
        let k = (k as usize).min(self.epochs);
        self.startup + k as f64 * (self.train_epoch + self.eval_epoch)
    }
}

/// The estimate for `cell` with `inference_runs` final evaluation runs.
pub fn estimate(cell: &Cell, inference_runs: usize) -> CellCost {
    let b = &cell.budget;
    let (full_train, full_test) = split_sizes(&cell.dataset);
    let train = b.limit_train.map_or(full_train, |n| n.min(full_train));
    let test = b.limit_test.map_or(full_test, |n| n.min(full_test));
    let train_eval = match b.train_eval_limit {
        0 => train,
        n => n.min(train),
    };
    // An embedding of the image dimension (prototype, or Figure 7's dimN)
    // takes the second conv stack.
    let prototype = cell.embedding == "prototype"
        || cell.embedding == format!("dim{}", image_dim(&cell.dataset));
    let image = if cell.dataset.starts_with("cifar") {
        CIFAR_FACTOR
    } else {
        1.0
    };
    let steps = b.steps as f64;
    let eval_steps = b.eval_steps.map_or(steps, |s| s as f64);
    let ms = |images: usize, per_image: f64| images as f64 * per_image * image / 1e3;
    if super::relatives::is_relative(&cell.method) {
        let (train_ms, eval_ms) = super::relatives::cost_ms(cell, image_dim(&cell.dataset));
        return CellCost {
            startup: STARTUP_SECONDS,
            train_epoch: ms(train, train_ms) / image,
            eval_epoch: ms(test + train_eval, eval_ms) / image,
            final_eval: ms(test, eval_ms) / image,
            epochs: b.epochs,
        };
    }
    CellCost {
        startup: STARTUP_SECONDS,
        train_epoch: ms(train, train_ms(&cell.method, prototype, steps)),
        eval_epoch: ms(
            test + train_eval,
            eval_ms(&cell.method, prototype, eval_steps),
        ),
        final_eval: ms(
            test * inference_runs.max(1),
            eval_ms(&cell.method, prototype, steps),
        ),
        epochs: b.epochs,
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::{plan, Mode, PlanRequest, EMBEDDINGS, METHODS};
    use super::*;

    /// The cells of a plan for `dataset` in `mode` (Tables 1, 3, 5, Figure 4).
    fn cells(mode: Mode, dataset: &str, inference_runs: usize) -> Vec<Cell> {
        cells_for(
            mode,
            dataset,
            inference_runs,
            &["table1", "table3", "table5", "fig4"],
        )
    }

    fn cells_for(mode: Mode, dataset: &str, inference_runs: usize, tables: &[&str]) -> Vec<Cell> {
        let req = PlanRequest {
            mode,
            tables: tables.iter().map(|s| s.to_string()).collect(),
            datasets: vec![(dataset.into(), Ok(()))],
            methods: METHODS.iter().map(|s| s.to_string()).collect(),
            embeddings: EMBEDDINGS.iter().map(|s| s.to_string()).collect(),
            seeds: 1,
            inference_runs,
            device: "cpu".into(),
        };
        plan(&req).0
    }

    /// Wall seconds of every cell of the committed QUICK run
    /// (`docs/REPRODUCTION.md`, "Cells", revision 382a3e8).
    const QUICK_WALL: [(&str, f64); 13] = [
        ("fashion-mnist-backprop-one-hot-s0", 151.1),
        ("fashion-mnist-backprop-dim20-s0", 137.1),
        ("fashion-mnist-backprop-prototype-s0", 199.1),
        ("fashion-mnist-noprop-dt-one-hot-s0", 137.2),
        ("fashion-mnist-noprop-dt-dim20-s0", 127.7),
        ("fashion-mnist-noprop-dt-prototype-s0", 264.6),
        ("fashion-mnist-adjoint-one-hot-s0", 16.9),
        ("fashion-mnist-noprop-ct-one-hot-s0", 20.3),
        ("fashion-mnist-noprop-ct-dim20-s0", 21.4),
        ("fashion-mnist-noprop-ct-prototype-s0", 158.4),
        ("fashion-mnist-noprop-fm-one-hot-s0", 21.1),
        ("fashion-mnist-noprop-fm-dim20-s0", 21.5),
        ("fashion-mnist-noprop-fm-prototype-s0", 155.8),
    ];

    #[test]
    fn quick_estimates_match_the_measured_quick_run() {
        let cells = cells(Mode::Quick, "fashion-mnist", 1);
        assert_eq!(cells.len(), QUICK_WALL.len());
        let (mut est_total, mut wall_total) = (0.0, 0.0);
        for (id, wall) in QUICK_WALL {
            let cell = cells.iter().find(|c| c.id == id).expect(id);
            let est = estimate(cell, 1).total();
            // Each cell within 10 % (one-hot and dim20 share an estimate;
            // their measured times differ by up to 10 %)...
            assert!(
                (est / wall - 1.0).abs() < 0.10,
                "{id}: estimated {est:.1} s, measured {wall} s"
            );
            est_total += est;
            wall_total += wall;
        }
        // ...and the whole run within 3 %.
        assert!(
            (est_total / wall_total - 1.0).abs() < 0.03,
            "run: estimated {est_total:.0} s, measured {wall_total:.0} s"
        );
    }

    #[test]
    fn full_mode_costs_grow_with_epochs_steps_and_image_size() {
        let mnist = cells(Mode::Full, "mnist", 5);
        let cifar = cells(Mode::Full, "cifar10", 5);
        let find = |cs: &[Cell], id: &str| estimate(cs.iter().find(|c| c.id == id).expect(id), 5);
        let dt = find(&mnist, "mnist-noprop-dt-one-hot-s0");
        // 100 epochs of 60,000 images at T = 10; 5 final runs of 10,000.
        assert_eq!(dt.epochs, 100);
        assert!((dt.train_epoch - 60_000.0 * 5.45e-3).abs() < 1e-6);
        assert!((dt.final_eval - 5.0 * 10_000.0 * 3.6e-3).abs() < 1e-6);
        // The train-accuracy subset is the whole training split in full.
        assert!((dt.eval_epoch - 70_000.0 * 3.6e-3).abs() < 1e-6);
        let dt_cifar = find(&cifar, "cifar10-noprop-dt-one-hot-s0");
        assert_eq!(dt_cifar.epochs, 150);
        let per_image = |c: CellCost, n: f64| c.train_epoch / n;
        assert!(
            (per_image(dt_cifar, 50_000.0) / per_image(dt, 60_000.0) - CIFAR_FACTOR).abs() < 1e-9
        );
        // 1000 Euler steps make the adjoint's epoch costlier than DT's.
        let adj = find(&mnist, "mnist-adjoint-one-hot-s0");
        assert!(adj.train_epoch > dt.train_epoch);
        // CT/FM's 1000-step evaluations outweigh their training.
        let ct = find(&mnist, "mnist-noprop-ct-one-hot-s0");
        assert!(ct.eval_epoch > ct.train_epoch);
    }

    #[test]
    fn quick_ablation_cells_are_small_and_image_dim_ones_cost_more() {
        let cells = cells_for(Mode::Quick, "fashion-mnist", 1, &["fig6", "fig7"]);
        assert_eq!(cells.len(), 9);
        let est = |id: &str| estimate(cells.iter().find(|c| c.id == id).expect(id), 1);
        let one_hot = est("fashion-mnist-noprop-dt-one-hot-posterior-s0");
        let dim784 = est("fashion-mnist-noprop-dt-dim784-init-random-s0");
        // 3,000 training images at T = 10; 1,000 test images at the end.
        assert!((one_hot.train_epoch - 3_000.0 * 5.45e-3).abs() < 1e-6);
        assert!((one_hot.final_eval - 1_000.0 * 3.6e-3).abs() < 1e-6);
        assert!((dim784.train_epoch / one_hot.train_epoch - 1.104 / 0.545).abs() < 1e-9);
        // The nine cells together: under ten minutes at the reference speed.
        let total: f64 = cells.iter().map(|c| estimate(c, 1).total()).sum();
        assert!(total < 600.0, "{total:.0} s");
    }

    #[test]
    fn positions_follow_the_phases() {
        let c = CellCost {
            startup: 2.0,
            train_epoch: 10.0,
            eval_epoch: 4.0,
            final_eval: 6.0,
            epochs: 2,
        };
        assert_eq!(c.total(), 2.0 + 2.0 * 14.0 + 6.0);
        let p = |phase, epoch, done, total| Progress {
            phase,
            epoch,
            epochs: 2,
            done,
            total,
        };
        assert_eq!(c.position(&p(Phase::Train, 1, 0, 10)), 2.0);
        assert_eq!(c.position(&p(Phase::Train, 1, 5, 10)), 7.0);
        assert_eq!(c.position(&p(Phase::Eval, 1, 1, 4)), 13.0);
        assert_eq!(c.position(&p(Phase::Train, 2, 10, 10)), 26.0);
        assert_eq!(c.position(&p(Phase::Final, 2, 3, 6)), 33.0);
        assert_eq!(c.position(&p(Phase::Final, 2, 6, 6)), c.total());
        // A producer's epoch beyond the plan's is clamped, not extrapolated.
        assert_eq!(c.position(&p(Phase::Train, 9, 10, 10)), c.total());
        assert_eq!(c.after_epoch(1), 16.0);
        assert_eq!(c.after_epoch(7), 30.0);
    }
}
