//! The distributed schedules on the GPU (`--device cuda`, docs/DISTRIBUTED.md
//! § GPUs): R ranks as threads of one process ([`LocalGroup`], no `mpirun`
//! needed), each rank on GPU `local_rank mod n_gpus` with a stream of its
//! own — on a one-GPU machine every rank shares GPU 0, the "several ranks on
//! one GPU" case. The exchange is staged through host memory.
//!
//! * Block-parallel NoProp-DT, one-hot: the final checkpoint of R = 1, 2, 3
//!   on the GPU equals the single GPU process's bit for bit (the GPU kernels
//!   are deterministic: fixed-order reductions, no atomics; each rank's
//!   blocks run on its own stream, one after the other), and each rank ran
//!   on the GPU `gpu_for_rank` names (`rank_devices` in the result).
//! * Block-parallel, dim20 (the staged `∂L/∂W_Embed`): R = 1 and R = 2 agree
//!   bit for bit.
//! * Data-parallel (NoProp-DT, NoProp-CT, backprop): R = 1 is the single GPU
//!   process bit for bit; R = 2 gives the same tensors twice.
//!
//! Without a usable GPU (or without `--features cuda`) each test prints
//! `SKIPPED …` with the reason to stderr and passes. Run with
//! `cargo test --release -p noprop-train --features cuda --test cuda_distributed`
//! (benches/gpu/gpu_check.sh runs it on a GPU machine). The dataset is the
//! repository's `datasets/mnist-test` (or `$NOPROP_DATA/mnist-test`).

use std::path::Path;
use std::rc::Rc;

use noprop_datasets::DatasetName;
use noprop_train::comm::{Communicator, LocalGroup};
use noprop_train::{gpu_for_rank, DeviceArg, DistributedArg, MethodName, TrainConfig, Trainer};

/// The number of GPUs, or `None` after printing why the test is skipped.
fn gpus(test: &str) -> Option<usize> {
    match noprop_tensor::Device::parse("cuda") {
        Ok(_) => Some(noprop_tensor::cuda::device_count().unwrap_or(1)),
        Err(e) => {
            eprintln!("SKIPPED {test}: no usable CUDA device ({e})");
            None
        }
    }
}

fn small(dir: &Path, name: &str) -> TrainConfig {
    let mut c = TrainConfig::new(MethodName::NopropDt, DatasetName::MnistTestSplit);
    c.limit_train = 256;
    c.limit_test = 100;
    c.train_eval_limit = 100;
    c.batch_size = 64;
    c.steps = Some(4);
    c.checkpoint_every = 0;
    c.results_dir = dir.to_path_buf();
    c.device = DeviceArg::Cuda(None);
    c.name = Some(name.into());
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
                    Trainer::new(c)
                        .unwrap()
                        .communicator(comm)
                        .unwrap()
                        .fit()
                        .unwrap()
                        .test_accuracy
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(accs.iter().all(|a| *a == accs[0]), "{accs:?}");
    accs[0]
}

fn plain(c: &TrainConfig) -> Option<f64> {
    Trainer::new(c.clone())
        .unwrap()
        .fit()
        .unwrap()
        .test_accuracy
}

fn tensors(c: &TrainConfig) -> Vec<(String, Vec<u64>)> {
    let (t, _) = noprop_nn::io::load(&c.checkpoint_path()).unwrap();
    t.into_iter()
        .map(|(n, t)| (n, t.to_vec_f64().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn result(dir: &Path, name: &str) -> serde_json::Value {
    let p = dir.join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

#[test]
fn block_parallel_on_gpus_matches_one_gpu_process_bit_for_bit() {
    let Some(n) = gpus("block_parallel_on_gpus_matches_one_gpu_process_bit_for_bit") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let base = small(dir.path(), "plain");
    let acc = plain(&base);
    assert_eq!(result(dir.path(), "plain")["device"], "cuda:0");
    let reference = tensors(&base);
    for ranks in 1..=3 {
        let name = format!("block-r{ranks}");
        let mut c = small(dir.path(), &name);
        c.distributed = Some(DistributedArg::Block);
        assert_eq!(run_ranks(&c, ranks), acc, "R = {ranks}: test accuracy");
        assert!(
            tensors(&c) == reference,
            "R = {ranks}: the GPU checkpoint differs from the single GPU process's"
        );
        let json = result(dir.path(), &name);
        assert_eq!(json["device"], "cuda:0");
        if ranks > 1 {
            let want: Vec<String> = (0..ranks)
                .map(|r| format!("cuda:{}", gpu_for_rank(r, n).unwrap()))
                .collect();
            assert_eq!(json["rank_devices"], serde_json::json!(want), "R = {ranks}");
        }
    }
    // Every rank pinned to GPU 0 (`cuda:0`), whatever the GPU count.
    let mut c = small(dir.path(), "block-r2-gpu0");
    c.distributed = Some(DistributedArg::Block);
    c.device = DeviceArg::Cuda(Some(0));
    assert_eq!(run_ranks(&c, 2), acc);
    assert!(tensors(&c) == reference, "R = 2 on cuda:0 differs");
    assert_eq!(
        result(dir.path(), "block-r2-gpu0")["rank_devices"],
        serde_json::json!(["cuda:0", "cuda:0"])
    );
}

#[test]
fn block_parallel_dim20_on_gpus_is_rank_count_independent() {
    if gpus("block_parallel_dim20_on_gpus_is_rank_count_independent").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<_> = [1, 2]
        .into_iter()
        .map(|ranks| {
            let mut c = small(dir.path(), &format!("dim20-r{ranks}"));
            c.embedding = "dim20".parse::<noprop_train::EmbeddingArg>().unwrap().0;
            c.distributed = Some(DistributedArg::Block);
            let acc = run_ranks(&c, ranks);
            (acc, tensors(&c))
        })
        .collect();
    assert_eq!(runs[0].0, runs[1].0);
    assert!(runs[0].1 == runs[1].1, "dim20: R = 2 differs from R = 1");
    // The staged `∂L/∂W_Embed`: 9 + 10 × 20 × 4 bytes per owned block.
    let json = result(dir.path(), "dim20-r2");
    assert_eq!(
        json["distributed"]["step_bytes_sent_per_minibatch_per_rank"],
        2 * (9 + 800)
    );
}

#[test]
fn data_parallel_on_gpus_is_deterministic() {
    if gpus("data_parallel_on_gpus_is_deterministic").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for method in [
        MethodName::NopropDt,
        MethodName::NopropCt,
        MethodName::Backprop,
    ] {
        let cfg = |name: &str| {
            let mut c = small(dir.path(), &format!("{method}-{name}"));
            c.method = method;
            c.steps = Some(if method == MethodName::NopropCt {
                10
            } else {
                3
            });
            if method == MethodName::NopropCt {
                c.eval_steps = Some(10);
            }
            c
        };
        let base = cfg("plain");
        let acc = plain(&base);
        let reference = tensors(&base);
        let mut one = cfg("r1");
        one.distributed = Some(DistributedArg::Data);
        assert_eq!(run_ranks(&one, 1), acc, "{method}");
        assert!(
            tensors(&one) == reference,
            "{method}: R = 1 differs on the GPU"
        );
        let two = ["r2a", "r2b"].map(|k| {
            let mut c = cfg(k);
            c.distributed = Some(DistributedArg::Data);
            c
        });
        let a = run_ranks(&two[0], 2);
        assert_eq!(a, run_ranks(&two[1], 2), "{method}");
        assert!(
            tensors(&two[0]) == tensors(&two[1]),
            "{method}: R = 2 on the GPU is not deterministic"
        );
        eprintln!("{method} on the GPU: single process {acc:?}, data-parallel R = 2 {a:?}");
    }
}
