//! Train NoProp-DT from Rust on 1,024 real digits for one epoch and print
//! the test accuracy — the library trainer in about ten lines.
//!
//! ```text
//! cargo run --release -p noprop-train --example train_small [-- METHOD]
//! ```
//!
//! METHOD is any of `noprop-dt` (default), `noprop-ct`, `noprop-fm`,
//! `backprop`, `adjoint`. Results and checkpoints go to a temporary folder.

use noprop_datasets::DatasetName;
use noprop_train::{MethodName, TerminalBars, TrainConfig, Trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let method: MethodName = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("noprop-dt")
        .parse()?;
    let results = std::env::temp_dir().join(format!("noprop-train-example-{}", std::process::id()));

    let mut config = TrainConfig::new(method, DatasetName::MnistTestSplit);
    config.limit_train = 1024;
    config.limit_test = 500;
    config.batch_size = 16; // 64 steps: enough to learn something from 1,024 images
    config.results_dir = results.clone();
    if matches!(
        method,
        MethodName::NopropCt | MethodName::NopropFm | MethodName::Adjoint
    ) {
        config.steps = Some(20); // inference (and adjoint training) steps
    }
    // On a rayon worker, every tensor op's parallel loop starts from inside
    // the pool (see `Trainer`'s docs on threads).
    let report = rayon::scope(|_| Trainer::new(config)?.observe(TerminalBars::new()).fit())?;

    let acc = report.test_accuracy.unwrap_or(0.0);
    println!(
        "{method}: test accuracy {acc:.4} after {} epoch(s)",
        report.history.len()
    );
    std::fs::remove_dir_all(&results)?;
    Ok(())
}
