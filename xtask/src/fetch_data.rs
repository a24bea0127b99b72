//! `cargo xtask fetch-data <mnist|fashion-mnist|cifar10|cifar100|tiny-imagenet|all>`:
//! downloads datasets listed in `datasets/manifest.json`, verifies them and
//! (for CIFAR and Tiny ImageNet) extracts them. `all` is the four of Table 1
//! (Tiny ImageNet's 240 MB archive is fetched only when named). All logic lives in `noprop_datasets::fetch`.

use anyhow::Context;
use noprop_datasets::{fetch, DatasetName, FetchOptions};
use std::path::PathBuf;

/// Arguments of `cargo xtask fetch-data`.
#[derive(clap::Args, Debug)]
pub struct FetchDataArgs {
    /// Dataset to download.
    #[arg(value_parser = ["mnist", "fashion-mnist", "cifar10", "cifar100", "tiny-imagenet", "all"])]
    pub dataset: String,
    /// Data root; dataset `d` goes to `<data-dir>/<d>/` (default: the workspace's `datasets/`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Skip size and checksum verification.
    #[arg(long)]
    pub no_verify: bool,
    /// Download again even when a verified copy is present.
    #[arg(long)]
    pub force: bool,
    /// Mirror: fetch every file from `<base-url>/<file name>` instead of the manifest URLs.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Hide progress bars and status lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `fetch-data`.
pub fn run(args: FetchDataArgs) -> anyhow::Result<()> {
    let names: Vec<DatasetName> = if args.dataset == "all" {
        vec![
            DatasetName::Mnist,
            DatasetName::FashionMnist,
            DatasetName::Cifar10,
            DatasetName::Cifar100,
        ]
    } else {
        vec![args.dataset.parse()?]
    };
    let data_dir = args.data_dir.unwrap_or_else(|| {
        // xtask lives in <workspace>/xtask.
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("datasets")
    });
    let options = FetchOptions {
        verify: !args.no_verify,
        force: args.force,
        progress: !args.quiet,
        base_url: args.base_url,
        ..FetchOptions::new(data_dir)
    };
    for name in names {
        let dir = fetch(name, &options).with_context(|| format!("fetching {name}"))?;
        if !args.quiet {
            eprintln!("{name}: ready in {}", dir.display());
        }
    }
    Ok(())
}
