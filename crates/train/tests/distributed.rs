//! Distributed schedules without `mpirun`: R ranks as threads of one
//! process ([`LocalGroup`]).
//!
//! * Block-parallel NoProp-DT: the final checkpoint of R = 1, 2, 3 is
//!   bit-identical to the plain single-process run (one-hot embedding), rank
//!   0 alone writes, and a run stopped mid-epoch with R = 2 resumes with R = 3
//!   to the same tensors.
//! * Data-parallel, every method: R = 1 is the single process bit for bit,
//!   and R = 2 gives the same tensors twice.

use std::path::Path;
use std::rc::Rc;

use noprop_datasets::DatasetName;
use noprop_train::comm::{Communicator, LocalGroup};
use noprop_train::{DistributedArg, MethodName, TrainConfig, Trainer};

fn small(dir: &Path) -> TrainConfig {
    let mut c = TrainConfig::new(MethodName::NopropDt, DatasetName::MnistTestSplit);
    c.limit_train = 256;
    c.limit_test = 100;
    c.train_eval_limit = 100;
    c.batch_size = 64;
    c.steps = Some(4);
    c.checkpoint_every = 0;
    c.results_dir = dir.to_path_buf();
    c
}

/// Train `c` on `ranks` threads; returns rank 0's test accuracy (`None` when stopped).
fn run_ranks(c: &TrainConfig, ranks: usize) -> Option<f64> {
    let comms = LocalGroup::new(ranks);
    let accs: Vec<Option<f64>> = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|comm| {
                let c = c.clone();
                s.spawn(move || {
                    let comm: Rc<dyn Communicator> = Rc::new(comm);
                    let report = Trainer::new(c)
                        .unwrap()
                        .communicator(comm)
                        .unwrap()
                        .fit()
                        .unwrap();
                    report.test_accuracy
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Every rank evaluated the same whole model.
    assert!(accs.iter().all(|a| *a == accs[0]), "{accs:?}");
    accs[0]
}

fn tensors(c: &TrainConfig) -> Vec<(String, Vec<u64>)> {
    let (t, _) = noprop_nn::io::load(&c.checkpoint_path()).unwrap();
    t.into_iter()
        .map(|(n, t)| (n, t.to_vec_f64().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn block_parallel_checkpoints_are_bit_identical_for_1_2_3_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let mut plain = small(dir.path());
    plain.name = Some("plain".into());
    let acc = Trainer::new(plain.clone())
        .unwrap()
        .fit()
        .unwrap()
        .test_accuracy;
    let reference = tensors(&plain);
    assert!(reference.iter().any(|(n, _)| n.starts_with("block4.")));
    for ranks in 1..=3 {
        let mut c = small(dir.path());
        c.distributed = Some(DistributedArg::Block);
        c.name = Some(format!("r{ranks}"));
        let a = run_ranks(&c, ranks);
        assert_eq!(a, acc, "R = {ranks}: test accuracy");
        assert!(tensors(&c) == reference, "R = {ranks}: checkpoint differs");
        let result = dir.path().join(format!("r{ranks}.json"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
        assert_eq!(json["distributed"]["ranks"], ranks);
        // One-hot: per block, the L2 loss (8 bytes) and a flag byte.
        let own = noprop_train::methods::owned_blocks(4, 0, ranks).len() as u64;
        assert_eq!(
            json["distributed"]["step_bytes_sent_per_minibatch_per_rank"],
            9 * own
        );
    }
}

#[test]
fn block_parallel_resumes_with_another_rank_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut whole = small(dir.path());
    whole.distributed = Some(DistributedArg::Block);
    whole.epochs = 2;
    whole.name = Some("whole".into());
    run_ranks(&whole, 2);
    let mut cut = whole.clone();
    cut.name = Some("cut".into());
    cut.checkpoint_every = 1;
    cut.stop_after = Some(3);
    assert_eq!(run_ranks(&cut, 2), None);
    cut.stop_after = None;
    cut.resume = true;
    run_ranks(&cut, 3);
    assert!(tensors(&cut) == tensors(&whole));
}

#[test]
fn more_ranks_without_distributed_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let comm: Rc<dyn Communicator> = Rc::new(LocalGroup::new(2).remove(0));
    let e = Trainer::new(small(dir.path()))
        .unwrap()
        .communicator(comm)
        .err()
        .unwrap();
    assert!(e.to_string().contains("without --distributed"), "{e}");
    let mut c = small(dir.path());
    c.method = MethodName::Backprop;
    c.steps = None;
    c.distributed = Some(DistributedArg::Block);
    let e = Trainer::new(c).err().unwrap();
    assert!(e.to_string().contains("--distributed data"), "{e}");
}

/// A small run of `method` (few inference/Euler steps for CT, FM and the adjoint).
fn small_method(method: MethodName, dir: &Path, name: &str) -> TrainConfig {
    let mut c = small(dir);
    c.method = method;
    c.steps = match method {
        MethodName::NopropDt | MethodName::Backprop => Some(3),
        _ => Some(10),
    };
    if matches!(
        method,
        MethodName::NopropCt | MethodName::NopropFm | MethodName::Adjoint
    ) {
        c.eval_steps = Some(10);
    }
    c.name = Some(name.into());
    c
}

#[test]
fn data_parallel_is_deterministic_for_every_method() {
    let dir = tempfile::tempdir().unwrap();
    for method in [
        MethodName::NopropDt,
        MethodName::NopropCt,
        MethodName::NopropFm,
        MethodName::Backprop,
        MethodName::Adjoint,
    ] {
        let plain = small_method(method, dir.path(), &format!("{method}-plain"));
        let plain_acc = Trainer::new(plain.clone())
            .unwrap()
            .fit()
            .unwrap()
            .test_accuracy;
        let reference = tensors(&plain);
        // R = 1 runs the same code path (slicing, hook, reduce) and is the
        // single process bit for bit.
        let mut one = small_method(method, dir.path(), &format!("{method}-r1"));
        one.distributed = Some(DistributedArg::Data);
        assert_eq!(run_ranks(&one, 1), plain_acc, "{method}");
        assert!(tensors(&one) == reference, "{method}: R = 1 differs");
        // R = 2: the same numbers twice (and the ranks agreed on every
        // parameter after the epoch, or the run would have failed).
        let two = [0, 1].map(|k| {
            let mut c = small_method(method, dir.path(), &format!("{method}-r2-{k}"));
            c.distributed = Some(DistributedArg::Data);
            c
        });
        let a = run_ranks(&two[0], 2);
        let b = run_ranks(&two[1], 2);
        assert_eq!(a, b, "{method}");
        assert!(
            tensors(&two[0]) == tensors(&two[1]),
            "{method}: R = 2 not deterministic"
        );
        eprintln!(
            "{method}: single process {:?}, data-parallel R = 2 {:?}",
            plain_acc, a
        );
    }
}
