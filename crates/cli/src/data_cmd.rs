//! `noprop data check`: locate, verify and summarise datasets without training.

use std::path::PathBuf;

use anyhow::{bail, Result};
use noprop_datasets::{check, check_all, LoadOptions};
use noprop_train::DatasetArg;

/// Dataset subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Locate a dataset's files, verify their checksums and summarise them
    /// (counts per split and class, image shape) — what to run when a load fails.
    #[command(
        after_help = "Examples:\n  noprop data check --dataset mnist-test-split\n  noprop data check --data-dir ~/data --dataset cifar10\n  noprop data check            # every dataset"
    )]
    Check(CheckArgs),
}

/// Options of `noprop data check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The dataset to check [default: every dataset].
    #[arg(long)]
    pub dataset: Option<DatasetArg>,
    /// A dataset root searched before the default places.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Print each dataset's report; fail if a requested dataset has a problem.
pub fn run(c: DataCommand) -> Result<()> {
    let DataCommand::Check(a) = c;
    let opts = match &a.data_dir {
        Some(d) => LoadOptions::with_data_dir(d),
        None => LoadOptions::default(),
    };
    match a.dataset {
        Some(d) => {
            let report = check(d.0, &opts);
            println!("{report}");
            if !report.is_ok() {
                bail!("{} has problems (see above)", d);
            }
        }
        None => {
            // Over every dataset a missing one is normal; only report.
            for report in check_all(&opts) {
                println!("{report}");
            }
        }
    }
    Ok(())
}
