//! NoProp-DT on CUDA against the CPU: one full training step (batch 16,
//! MNIST shapes `[16, 1, 28, 28]`, one-hot embedding, T = 10, every block
//! and every shared step) from the same seed, then every parameter, running
//! statistic and optimiser moment compared.
//!
//! Without a usable GPU (or without `--features cuda`) the test prints
//! `SKIPPED …` with the reason to stderr and passes.
//!
//! Tolerances, per tensor, with `s = max(1, max |cpu|)`:
//!
//! | what | bound | why |
//! |---|---|---|
//! | losses (L2, CE, KL per block) | `1e-4 · max(1, |cpu|)` | f32 sums in tree order on the GPU vs chunk order on the CPU |
//! | parameters: every element | `2.5 · lr` | the first Adam step moves each weight by `lr · g/(|g| + ε) ≈ ±lr`; a gradient that is rounding noise (`|g| ≈ 1e-7`) may have opposite signs on the two devices, which moves that weight `2·lr` apart — never more |
//! | parameters: all but 1% of the elements of each tensor | `1e-4 · s` | GEMM/conv/batch-norm differ by `≤ 1e-4` relative (the parity table of `noprop-tensor`'s `tests/ops/main.rs`) and Adam's sign-like first step does not amplify that unless `|g|` is noise |
//! | batch-norm running statistics, Adam moments | `1e-3 · s` | first-step moments are `(1−β)·g` and `(1−β₂)·g²`, running stats `0.9·r + 0.1·batch stat`: linear in the op results |

use noprop_models::{ClassEmbedding, DtConfig, EmbeddingKind, NoPropDt};
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

fn model() -> NoPropDt {
    let cfg = DtConfig::paper((1, 28, 28), 10, EmbeddingKind::OneHot, 7);
    assert_eq!(cfg.steps, 10);
    NoPropDt::new(cfg, ClassEmbedding::one_hot(10)).unwrap()
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

#[test]
fn one_dt_training_step_matches_the_cpu() {
    let Some(dev) = gpu("one_dt_training_step_matches_the_cpu") else {
        return;
    };
    let (x, labels) = batch();

    let mut cpu = model();
    let cpu_loss = cpu.train_batch(&x, &labels, 0).unwrap();

    let mut gpu = model();
    gpu.to_device(&dev).unwrap();
    let xg = x.to_device(&dev).unwrap();
    assert_eq!(xg.device(), dev);
    let gpu_loss = gpu.train_batch(&xg, &labels, 0).unwrap();

    assert_eq!(cpu_loss.len(), 10);
    for (t, (c, g)) in cpu_loss.iter().zip(&gpu_loss).enumerate() {
        for (term, a, b) in [("l2", c.l2, g.l2), ("ce", c.ce, g.ce), ("kl", c.kl, g.kl)] {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "block {}: {term} cpu {a} gpu {b}",
                t + 1
            );
        }
    }

    let lr = cpu.config.lr as f32;
    let (cs, gs) = (cpu.state_tensors().unwrap(), gpu.state_tensors().unwrap());
    assert_eq!(cs.len(), gs.len());
    let mut compared = 0;
    for ((name, c), (gname, g)) in cs.iter().zip(&gs) {
        assert_eq!(name, gname);
        assert_eq!(c.shape(), g.shape(), "{name}: shape");
        if name == "step" || name.ends_with(".step") {
            assert_eq!(c.item().unwrap(), g.item().unwrap(), "{name}");
            continue;
        }
        // Every model tensor lives on the GPU after `to_device`.
        assert!(!g.is_on_host(), "{name} was left on the host");
        let a = c.to_vec_f32();
        let b = g.try_to_vec_f32().unwrap();
        let s = a.iter().fold(1f32, |m, v| m.max(v.abs()));
        let is_param = !name.starts_with("opt.") && !name.contains("running_");
        if is_param {
            let (worst, _) = diff(&a, &b, 0.0);
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
            let (worst, _) = diff(&a, &b, 0.0);
            assert!(
                worst <= 1e-3 * s,
                "{name}: max |gpu − cpu| = {worst} > 1e-3·{s}"
            );
        }
        compared += 1;
    }
    assert!(compared > 100, "only {compared} tensors compared");

    // Inference on the GPU runs too (mean path, no noise) and agrees on most labels.
    let pc = cpu.predict(&x, false, 0).unwrap();
    let pg = gpu.predict(&xg, false, 0).unwrap();
    let agree = pc.iter().zip(&pg).filter(|(a, b)| a == b).count();
    assert!(agree >= 14, "only {agree}/16 predictions agree");
}

#[test]
fn host_batches_are_rejected_by_a_gpu_model_with_a_typed_error() {
    let Some(dev) = gpu("host_batches_are_rejected_by_a_gpu_model_with_a_typed_error") else {
        return;
    };
    let (x, labels) = batch();
    let mut m = model();
    m.to_device(&dev).unwrap();
    let err = m.train_batch(&x, &labels, 0).unwrap_err();
    assert!(
        err.to_string().contains("device mismatch"),
        "unexpected error: {err}"
    );
}
