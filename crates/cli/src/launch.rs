//! How this process was started: alone, or as one rank of an `mpirun` job
//! (detected from the launcher's environment), and the communicator and
//! per-rank logging that follow.

use std::io::IsTerminal;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, Result};
use noprop_train::comm::{Communicator, SingleProcess};
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// `(rank, size)` from the environment an MPI launcher sets (Open MPI, or a
/// PMI/PMIx launcher such as Slurm's); `None` when not started by one.
pub fn launcher_rank() -> Option<(usize, usize)> {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok()?.parse::<usize>().ok())
    };
    let size = var(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"])?;
    let rank = var(&["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]).unwrap_or(0);
    Some((rank, size))
}

/// The communicator of this run: MPI's world when started by `mpirun` or
/// asked to distribute (with the `mpi` feature), a single process otherwise.
pub fn communicator(distributed: bool) -> Result<Rc<dyn Communicator>> {
    let launched = launcher_rank();
    #[cfg(feature = "mpi")]
    if distributed || launched.is_some_and(|(_, size)| size > 1) {
        let comm = noprop_train::comm::MpiComm::init()?;
        return Ok(Rc::new(comm));
    }
    #[cfg(not(feature = "mpi"))]
    if let Some((_, size)) = launched.filter(|(_, size)| *size > 1) {
        anyhow::bail!(
            "started by mpirun as one of {size} ranks, but this noprop was built without MPI: \
             build it with `cargo build --release -p noprop --features mpi` (needs libopenmpi-dev and libclang-dev)"
        );
    }
    let _ = distributed;
    Ok(Rc::new(SingleProcess::new()))
}

/// Log to the terminal (rank 0 at `info`, other ranks at `warn` unless
/// `NOPROP_LOG` says otherwise), and with `rank_log` every rank also to
/// `rank_log/rank-R.log`.
pub fn init_logging(rank_log: Option<&Path>) -> Result<()> {
    let rank = launcher_rank().map_or(0, |(r, _)| r);
    let default = if rank == 0 { "info" } else { "warn" };
    let filter = |level: &str| {
        tracing_subscriber::EnvFilter::try_from_env("NOPROP_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
    };
    match rank_log {
        None => tracing_subscriber::fmt()
            .with_env_filter(filter(default))
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the log folder {}", dir.display()))?;
            let path = dir.join(format!("rank-{rank}.log"));
            let file = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let file = Arc::new(file);
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter("info"))
                .with_ansi(false);
            if rank == 0 {
                builder.with_writer(std::io::stderr.and(file)).init();
            } else {
                builder.with_writer(file).init();
            }
        }
    }
    Ok(())
}
