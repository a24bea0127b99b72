//! The communication layer of distributed training: four collectives
//! (all-gather, all-reduce, broadcast, barrier) behind one small trait, with
//! a single-process implementation ([`SingleProcess`]), an in-process group
//! of threads ([`LocalGroup`], so that multi-rank schedules are testable
//! without `mpirun`) and, with the `mpi` feature, the MPI one
//! (`MpiComm`, Open MPI through the `mpi` crate).
//!
//! Every collective is deterministic: the all-reduce gathers every rank's
//! values and sums them in rank order 0, 1, …, R−1 on every rank, so all
//! ranks hold bit-identical sums and a run is reproducible for a given R
//! (an MPI reduction may associate differently from one call to the next).
//!
//! Each communicator counts the payload bytes this rank hands to the
//! collectives ([`Communicator::bytes_sent`]): the rank's own contribution
//! to an all-gather or all-reduce, the root's buffer of a broadcast. What the
//! MPI library puts on the wire for them depends on its algorithm (a ring
//! all-gather forwards every contribution R−1 times); `docs/DISTRIBUTED.md`
//! converts one to the other.

use std::cell::Cell;
use std::sync::{Arc, Barrier, Mutex};

use crate::error::{Error, Result};

/// The collectives a distributed schedule needs. Every rank of a group must
/// call the same collectives in the same order.
pub trait Communicator {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks R.
    fn size(&self) -> usize;
    /// This rank's index among the ranks on its node (shared memory), which
    /// picks its GPU (`local_rank mod n_gpus`, [`crate::gpu_for_rank`]).
    /// The default, right for every group on one node (a single process,
    /// threads of one process), is the rank itself.
    fn local_rank(&self) -> usize {
        self.rank()
    }
    /// Every rank's `mine`, in rank order (sizes may differ between ranks).
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>>;
    /// Make `data` on every rank a copy of `root`'s `data`.
    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) -> Result<()>;
    /// Wait until every rank has called it.
    fn barrier(&self) -> Result<()>;
    /// Payload bytes this rank has handed to the collectives so far.
    fn bytes_sent(&self) -> u64;
    /// What the communicator is, for logs and results (`single process`, `MPI, 2 ranks`).
    fn describe(&self) -> String;

    /// Stop every rank of the job after an error on this one (MPI_Abort:
    /// the others may be waiting in a collective). The default, for groups
    /// that end with their process, does nothing.
    fn abort(&self, code: i32) {
        let _ = code;
    }

    /// Whether this is rank 0 (the one that prints, writes results and checkpoints).
    fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Element-wise sum of `values` over the ranks, in rank order
    /// (deterministic: every rank computes `((v_0 + v_1) + v_2) + …`).
    fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        let mine: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.all_gather_bytes(&mine)?;
        for (r, bytes) in all.iter().enumerate() {
            if bytes.len() != mine.len() {
                return Err(Error::Distributed(format!(
                    "all-reduce: rank {r} contributed {} bytes, rank {} {}",
                    bytes.len(),
                    self.rank(),
                    mine.len()
                )));
            }
        }
        for (i, v) in values.iter_mut().enumerate() {
            *v = all
                .iter()
                .map(|b| f64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap_or([0; 8])))
                .fold(0.0, |acc, x| acc + x);
        }
        Ok(())
    }

    /// Check that every rank holds the same `digest` of `what` (an
    /// all-gather of one `u64`, the checksum all-reduce of the epoch end);
    /// a typed error naming the ranks that disagree otherwise.
    fn check_same(&self, digest: u64, what: &str) -> Result<()> {
        let all = self.all_gather_bytes(&digest.to_le_bytes())?;
        let digests: Vec<u64> = all
            .iter()
            .map(|b| u64::from_le_bytes(b.as_slice().try_into().unwrap_or([0; 8])))
            .collect();
        if digests.iter().all(|d| *d == digests[0]) {
            return Ok(());
        }
        let listed = digests
            .iter()
            .enumerate()
            .map(|(r, d)| format!("rank {r}: {d:016x}"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::Distributed(format!(
            "the ranks hold different {what} ({listed}); the run is no longer consistent and stops"
        )))
    }
}

/// One process alone (R = 1): every collective is a copy.
#[derive(Debug, Default)]
pub struct SingleProcess {
    sent: Cell<u64>,
}

impl SingleProcess {
    /// The communicator of a single process.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.sent.set(self.sent.get() + mine.len() as u64);
        Ok(vec![mine.to_vec()])
    }
    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) -> Result<()> {
        if root != 0 {
            return Err(Error::Distributed(format!(
                "broadcast from rank {root} in a single process"
            )));
        }
        self.sent.set(self.sent.get() + data.len() as u64);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn bytes_sent(&self) -> u64 {
        self.sent.get()
    }
    fn describe(&self) -> String {
        "single process".into()
    }
}

/// The shared side of a [`LocalGroup`].
struct Shared {
    slots: Mutex<Vec<Vec<u8>>>,
    barrier: Barrier,
}

/// R ranks as threads of one process (tests and single-node experiments
/// without MPI): [`LocalGroup::new`] returns one communicator per rank, to
/// be moved into its own thread.
pub struct LocalGroup {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
    sent: Cell<u64>,
}

impl LocalGroup {
    /// `size` communicators, rank 0 first.
    pub fn new(size: usize) -> Vec<LocalGroup> {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            slots: Mutex::new(vec![Vec::new(); size]),
            barrier: Barrier::new(size),
        });
        (0..size)
            .map(|rank| LocalGroup {
                rank,
                size,
                shared: shared.clone(),
                sent: Cell::new(0),
            })
            .collect()
    }

    fn slots(&self) -> Result<std::sync::MutexGuard<'_, Vec<Vec<u8>>>> {
        self.shared
            .slots
            .lock()
            .map_err(|_| Error::Distributed("a rank of the local group panicked".into()))
    }
}

impl Communicator for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.sent.set(self.sent.get() + mine.len() as u64);
        self.slots()?[self.rank] = mine.to_vec();
        self.shared.barrier.wait();
        let all = self.slots()?.clone();
        // Nobody writes the next collective's slot before everyone has read this one.
        self.shared.barrier.wait();
        Ok(all)
    }
    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) -> Result<()> {
        let mine = if self.rank == root {
            data.clone()
        } else {
            Vec::new()
        };
        let mut all = self.all_gather_bytes(&mine)?;
        if self.rank != root {
            self.sent.set(self.sent.get() - mine.len() as u64);
            *data = std::mem::take(&mut all[root]);
        }
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.shared.barrier.wait();
        Ok(())
    }
    fn bytes_sent(&self) -> u64 {
        self.sent.get()
    }
    fn describe(&self) -> String {
        format!("local group of {} threads", self.size)
    }
}

#[cfg(feature = "mpi")]
pub use mpi_comm::MpiComm;

#[cfg(feature = "mpi")]
mod mpi_comm {
    use std::cell::Cell;

    use mpi::datatype::PartitionMut;
    use mpi::environment::Universe;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};
    use mpi::Count;

    use super::Communicator;
    use crate::error::{Error, Result};

    /// `MPI_COMM_WORLD` of a process started by `mpirun` (Open MPI through
    /// the `mpi` crate). Dropping it finalises MPI.
    pub struct MpiComm {
        world: SimpleCommunicator,
        /// This rank's rank in its node's shared-memory communicator.
        local_rank: usize,
        sent: Cell<u64>,
        // Declared last: finalises MPI after `world` is dropped.
        _universe: Universe,
    }

    impl MpiComm {
        /// Initialise MPI (once per process); a process not started by
        /// `mpirun` becomes a world of one.
        pub fn init() -> Result<Self> {
            let universe = mpi::initialize().ok_or_else(|| {
                Error::Distributed("MPI was already initialised in this process".into())
            })?;
            let world = universe.world();
            // MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), keyed by the world
            // rank: the ranks of one node, numbered 0.. in world order,
            // whatever launcher started them (mpirun, srun, hydra).
            let local_rank = world.split_shared(world.rank()).rank() as usize;
            Ok(MpiComm {
                world,
                local_rank,
                sent: Cell::new(0),
                _universe: universe,
            })
        }
    }

    fn count(n: usize) -> Result<Count> {
        Count::try_from(n).map_err(|_| {
            Error::Distributed(format!("a message of {n} bytes exceeds MPI's count limit"))
        })
    }

    impl Communicator for MpiComm {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn local_rank(&self) -> usize {
            self.local_rank
        }
        fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
            let r = self.size();
            let n = count(mine.len())?;
            let mut counts = vec![0 as Count; r];
            self.world.all_gather_into(&n, &mut counts[..]);
            let mut displs = Vec::with_capacity(r);
            let mut total: usize = 0;
            for c in &counts {
                displs.push(count(total)?);
                total += *c as usize;
            }
            let mut buf = vec![0u8; total];
            {
                let mut part = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
                self.world.all_gather_varcount_into(mine, &mut part);
            }
            self.sent.set(self.sent.get() + mine.len() as u64);
            Ok(counts
                .iter()
                .zip(&displs)
                .map(|(c, d)| buf[*d as usize..(*d + *c) as usize].to_vec())
                .collect())
        }
        fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) -> Result<()> {
            let root_proc = self.world.process_at_rank(count(root)?);
            let mut n = data.len() as u64;
            root_proc.broadcast_into(&mut n);
            if self.rank() != root {
                *data = vec![0u8; n as usize];
            } else {
                self.sent.set(self.sent.get() + n);
            }
            root_proc.broadcast_into(&mut data[..]);
            Ok(())
        }
        fn barrier(&self) -> Result<()> {
            self.world.barrier();
            Ok(())
        }
        fn bytes_sent(&self) -> u64 {
            self.sent.get()
        }
        fn describe(&self) -> String {
            format!("MPI, {} ranks", self.size())
        }
        fn abort(&self, code: i32) {
            if self.size() > 1 {
                self.world.abort(code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_process_collectives_are_copies() {
        let c = SingleProcess::new();
        assert_eq!((c.rank(), c.local_rank(), c.size()), (0, 0, 1));
        assert_eq!(c.all_gather_bytes(&[1, 2, 3]).unwrap(), vec![vec![1, 2, 3]]);
        let mut v = [1.5, -2.0];
        c.all_reduce_sum(&mut v).unwrap();
        assert_eq!(v, [1.5, -2.0]);
        c.check_same(7, "x").unwrap();
        assert_eq!(c.bytes_sent(), 3 + 16 + 8);
    }

    #[test]
    fn local_group_gathers_reduces_and_detects_mismatch() {
        let comms = LocalGroup::new(3);
        let out: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .into_iter()
                .map(|c| {
                    s.spawn(move || {
                        let r = c.rank();
                        // Threads of one process: all on one node.
                        assert_eq!(c.local_rank(), r);
                        let g = c.all_gather_bytes(&vec![r as u8; r + 1]).unwrap();
                        let mut v = [0.1 * (r + 1) as f64, r as f64];
                        c.all_reduce_sum(&mut v).unwrap();
                        let mut b = if r == 1 { vec![9, 9] } else { Vec::new() };
                        c.broadcast_bytes(1, &mut b).unwrap();
                        let same = c.check_same(42, "state").is_ok();
                        let differ = c.check_same(r as u64, "shared parameters");
                        (g, v, b, same, differ.map_err(|e| e.to_string()))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (g, v, b, same, differ) in out {
            assert_eq!(g, vec![vec![0], vec![1, 1], vec![2, 2, 2]]);
            assert_eq!(v, [(0.1 + 0.2) + 0.30000000000000004, 3.0]);
            assert_eq!(b, vec![9, 9]);
            assert!(same);
            let e = differ.unwrap_err();
            assert!(
                e.contains("different shared parameters") && e.contains("rank 2"),
                "{e}"
            );
        }
    }
}
