//! `cargo xtask` — project automation for noprop-rs.
//!
//! A thin debug binary (the alias in `.cargo/config.toml` is
//! `run --package xtask --`). Heavy work runs in release-built subprocesses.
//!
//! * `cargo xtask ci` runs exactly what `.ci/run` runs after its installs:
//!   formatting, clippy and the README's test command.
//! * `cargo xtask fetch-data <mnist|fashion-mnist|cifar10|cifar100|all>`
//!   downloads and verifies datasets.

mod ci;
mod fetch_data;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "noprop-rs project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the CI checks: fmt, clippy, then the test command of README.md.
    Ci(ci::CiArgs),
    /// Download and verify a dataset into ./datasets (or --data-dir).
    FetchData(fetch_data::FetchDataArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ci(args) => ci::run(args),
        Command::FetchData(args) => fetch_data::run(args),
    }
}
