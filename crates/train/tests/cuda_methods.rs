//! NoProp-CT, NoProp-FM, backprop and the adjoint baseline on CUDA against
//! the CPU (NoProp-DT's twin is `crates/models/tests/cuda_dt.rs`): from the
//! same seed, one training step on a batch of 16 MNIST-shaped images, then
//! every saved tensor compared, then one inference compared.
//!
//! Without a usable GPU (or without `--features cuda`) each test prints
//! `SKIPPED …` with the reason to stderr and passes. Run with
//! `cargo test --release -p noprop-train --features cuda --test cuda_methods`.
//!
//! Tolerances, per tensor, with `s = max(1, max |cpu|)` (those of `cuda_dt.rs`):
//!
//! | what | bound | why |
//! |---|---|---|
//! | loss of the step | `1e-4 · max(1, |cpu|)` | f32 sums in tree order on the GPU vs chunk order on the CPU |
//! | parameters: every element | `2.5 · lr` | the first Adam step moves each weight by about `±lr`; a gradient that is rounding noise may take opposite signs on the two devices (`2·lr` apart) — never more |
//! | parameters: all but 1% of each tensor | `1e-4 · s` | GEMM/conv/batch-norm agree to `≤ 1e-4` relative and Adam's first step does not amplify that unless `|g|` is noise |
//! | batch-norm running statistics, Adam moments | `1e-3 · s` | linear in the op results |
//! | final latent of inference (deterministic, 5 steps) | `1e-3 · s` | a few network evaluations, each within `1e-4` relative |
//! | predicted labels | ≥ 12 of 16 agree | an untrained network's class scores are close, so a label may flip on rounding |

use noprop_baselines::{Adjoint, AdjointConfig, Backprop, BackpropConfig};
use noprop_models::{ClassEmbedding, ContConfig, ContMethod, EmbeddingKind, NoPropCont, Sampler};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Device, Tensor};

/// The GPU, or `None` after printing why the test is skipped.
fn gpu(test: &str) -> Option<Device> {
    match Device::parse("cuda") {
        Ok((d, _)) => Some(d),
        Err(e) => {
            eprintln!("SKIPPED {test}: no usable CUDA device ({e})");
            None
        }
    }
}

fn batch() -> (Tensor, Vec<usize>) {
    let x = ops::randn(&[16, 1, 28, 28], DType::F32, &mut RngStream::new(11, 0)).unwrap();
    let labels = (0..16).map(|i| (i * 7 + 3) % 10).collect();
    (x, labels)
}

/// `(max |a − b|, fraction of elements with |a − b| > tol)`.
fn diff(a: &[f32], b: &[f32], tol: f32) -> (f32, f64) {
    let mut worst = 0f32;
    let mut over = 0usize;
    for (x, y) in a.iter().zip(b) {
        let d = if x.is_nan() || y.is_nan() {
            f32::INFINITY
        } else {
            (x - y).abs()
        };
        worst = worst.max(d);
        if d > tol {
            over += 1;
        }
    }
    (worst, over as f64 / a.len().max(1) as f64)
}

fn close_loss(what: &str, cpu: f64, gpu: f64) {
    assert!(
        (cpu - gpu).abs() <= 1e-4 * cpu.abs().max(1.0),
        "{what}: cpu {cpu} gpu {gpu}"
    );
}

/// Compare two state lists after one step (see the table in the module doc);
/// tensors whose name contains one of `host_ok` may stay on the host.
fn compare_states(cs: &[(String, Tensor)], gs: &[(String, Tensor)], lr: f64, host_ok: &[&str]) {
    assert_eq!(cs.len(), gs.len());
    let lr = lr as f32;
    let mut compared = 0;
    for ((name, c), (gname, g)) in cs.iter().zip(gs) {
        assert_eq!(name, gname);
        assert_eq!(c.shape(), g.shape(), "{name}: shape");
        if name == "step" || name.ends_with(".step") {
            assert_eq!(c.item().unwrap(), g.item().unwrap(), "{name}");
            continue;
        }
        if !host_ok.iter().any(|h| name.contains(h)) {
            assert!(!g.is_on_host(), "{name} was left on the host");
        }
        let a = c.to_vec_f32();
        let b = g.try_to_vec_f32().unwrap();
        let s = a.iter().fold(1f32, |m, v| m.max(v.abs()));
        let is_param = !name.starts_with("opt.") && !name.contains("running_");
        let (worst, _) = diff(&a, &b, 0.0);
        if is_param {
            assert!(
                worst <= 2.5 * lr,
                "{name}: max |gpu − cpu| = {worst} > 2.5·lr"
            );
            let (_, frac) = diff(&a, &b, 1e-4 * s);
            assert!(
                frac <= 0.01,
                "{name}: {:.3}% of the elements differ by more than 1e-4·{s}",
                frac * 100.0
            );
        } else {
            assert!(
                worst <= 1e-3 * s,
                "{name}: max |gpu − cpu| = {worst} > 1e-3·{s}"
            );
        }
        compared += 1;
    }
    assert!(compared > 10, "only {compared} tensors compared");
}

fn close_latent(what: &str, cpu: &Tensor, gpu: &Tensor) {
    assert!(
        !gpu.is_on_host(),
        "{what}: the latent came back on the host"
    );
    let (a, b) = (cpu.to_vec_f32(), gpu.try_to_vec_f32().unwrap());
    let s = a.iter().fold(1f32, |m, v| m.max(v.abs()));
    let (worst, _) = diff(&a, &b, 0.0);
    assert!(
        worst <= 1e-3 * s,
        "{what}: max |gpu − cpu| = {worst} > 1e-3·{s}"
    );
}

fn agree(what: &str, cpu: &[usize], gpu: &[usize]) {
    let n = cpu.iter().zip(gpu).filter(|(a, b)| a == b).count();
    assert!(n >= 12, "{what}: only {n}/16 predictions agree");
}

fn cont(method: ContMethod) -> NoPropCont {
    let cfg = ContConfig::paper(method, (1, 28, 28), 10, EmbeddingKind::OneHot, 7);
    NoPropCont::new(cfg, ClassEmbedding::one_hot(10)).unwrap()
}

fn cont_parity(test: &str, method: ContMethod, sampler: Sampler) {
    let Some(dev) = gpu(test) else {
        return;
    };
    let (x, labels) = batch();
    let mut cpu = cont(method);
    let lc = cpu.train_batch(&x, &labels, 0).unwrap();
    let mut gpu = cont(method);
    gpu.to_device(&dev).unwrap();
    let xg = x.to_device(&dev).unwrap();
    let lg = gpu.train_batch(&xg, &labels, 0).unwrap();
    close_loss("l2", lc.l2, lg.l2);
    close_loss("ce", lc.ce, lg.ce);
    close_loss("kl", lc.kl, lg.kl);
    // The learnable schedule and its Adam moments stay on the host.
    compare_states(
        &cpu.state_tensors().unwrap(),
        &gpu.state_tensors().unwrap(),
        cpu.config.lr,
        &["schedule"],
    );
    let zc = cpu.sample(&x, sampler, 5, false, 3, true).unwrap();
    let zg = gpu.sample(&xg, sampler, 5, false, 3, true).unwrap();
    close_latent("z_1", &zc, &zg);
    agree(
        "predict",
        &cpu.predict(&x, sampler, 5, false, 3).unwrap(),
        &gpu.predict(&xg, sampler, 5, false, 3).unwrap(),
    );
}

#[test]
fn one_ct_step_and_inference_match_the_cpu() {
    cont_parity(
        "one_ct_step_and_inference_match_the_cpu",
        ContMethod::Ct,
        Sampler::Ancestral,
    );
}

#[test]
fn one_fm_step_and_inference_match_the_cpu() {
    cont_parity(
        "one_fm_step_and_inference_match_the_cpu",
        ContMethod::Fm,
        Sampler::Heun,
    );
}

#[test]
fn one_backprop_step_and_inference_match_the_cpu() {
    let Some(dev) = gpu("one_backprop_step_and_inference_match_the_cpu") else {
        return;
    };
    let make = || {
        let cfg = BackpropConfig::paper((1, 28, 28), 10, EmbeddingKind::OneHot, 7);
        Backprop::new(cfg, ClassEmbedding::one_hot(10)).unwrap()
    };
    let (x, labels) = batch();
    let mut cpu = make();
    let lc = cpu.train_batch(&x, &labels, 0).unwrap();
    let mut gpu = make();
    gpu.to_device(&dev).unwrap();
    let xg = x.to_device(&dev).unwrap();
    let lg = gpu.train_batch(&xg, &labels, 0).unwrap();
    close_loss("ce", lc, lg);
    compare_states(
        &cpu.state_tensors().unwrap(),
        &gpu.state_tensors().unwrap(),
        cpu.config.lr,
        &[],
    );
    agree(
        "predict",
        &cpu.predict(&x, 5).unwrap(),
        &gpu.predict(&xg, 5).unwrap(),
    );
}

#[test]
fn one_adjoint_step_and_inference_match_the_cpu() {
    let Some(dev) = gpu("one_adjoint_step_and_inference_match_the_cpu") else {
        return;
    };
    let make = || {
        let mut cfg = AdjointConfig::paper((1, 28, 28), 10, 7);
        cfg.steps = 5;
        Adjoint::new(cfg).unwrap()
    };
    let (x, labels) = batch();
    let mut cpu = make();
    let lc = cpu.train_batch(&x, &labels, 0).unwrap();
    let mut gpu = make();
    gpu.to_device(&dev).unwrap();
    let xg = x.to_device(&dev).unwrap();
    let lg = gpu.train_batch(&xg, &labels, 0).unwrap();
    close_loss("ce", lc, lg);
    assert_eq!(
        cpu.last_stats.unconverged, gpu.last_stats.unconverged,
        "state reconstruction"
    );
    compare_states(
        &cpu.state_tensors().unwrap(),
        &gpu.state_tensors().unwrap(),
        cpu.config.lr,
        &[],
    );
    let zc = cpu.sample(&x, 5, 3).unwrap();
    let zg = gpu.sample(&xg, 5, 3).unwrap();
    close_latent("z_1", &zc, &zg);
    agree(
        "predict",
        &cpu.predict(&x, 5, 3).unwrap(),
        &gpu.predict(&xg, 5, 3).unwrap(),
    );
}
