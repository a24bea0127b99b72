//! Writes the checkpoint fixtures of `crates/models/tests/fixtures` and
//! `crates/baselines/tests/fixtures` (see the README there): one small
//! trained checkpoint per model type and, beside them, `predictions.json`
//! with what each model predicts on a fixed probe batch, and what one more
//! training step from the saved state gives (`after_one_more_step`).
//!
//! `cargo run --release -p noprop-baselines --example checkpoint_fixtures -- <repo root>`

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use noprop_baselines::{Adjoint, AdjointConfig, Backprop, BackpropConfig};
use noprop_models::{
    ClassEmbedding, ContConfig, ContMethod, DtConfig, EmbeddingKind, NoPropCont, NoPropDt, Sampler,
};
use noprop_nn::Mode;
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Tensor};
use serde_json::json;

/// The smallest image the conv stack takes.
const IMAGE: (usize, usize, usize) = (1, 14, 14);
const SEED: u64 = 7;

fn batch(n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let x = ops::randn(&[n, 1, 14, 14], DType::F32, &mut RngStream::new(seed, 0))
        .expect("random batch");
    let y = (0..n).map(|i| (i * 3 + seed as usize) % 10).collect();
    (x, y)
}

fn meta() -> HashMap<String, String> {
    HashMap::from([("fixture".to_string(), "174820e".to_string())])
}

fn floats(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64()
}

fn write(path: &Path, v: &serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n")?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let models = root.join("crates/models/tests/fixtures");
    let baselines = root.join("crates/baselines/tests/fixtures");
    std::fs::create_dir_all(&models)?;
    std::fs::create_dir_all(&baselines)?;
    let train: Vec<_> = (0..2).map(|s| batch(8, s)).collect();
    let (probe, _) = batch(16, 99);

    // NoProp-DT: T = 2, learned 20-d embedding (trained, so in the shared AdamW).
    let mut cfg = DtConfig::paper(IMAGE, 10, EmbeddingKind::Learned { dim: 20 }, SEED);
    cfg.steps = 2;
    let mut dt = NoPropDt::new(cfg, ClassEmbedding::learned(10, 20, SEED))?;
    for (x, y) in &train {
        dt.train_batch(x, y, 0)?;
    }
    dt.save(&models.join("dt.safetensors"), meta())?;
    let z = Tensor::zeros(&[16, 20], DType::F32);
    let block1 = dt.block_mut(1).forward(&probe, &z, Mode::Eval)?;
    let dt_json = json!({
        "step": dt.step,
        "predict_noise_key5": dt.predict(&probe, true, 5)?,
        "predict_mean": dt.predict(&probe, false, 0)?,
        "block1_logits_z0": floats(&block1),
    });
    // One more step from the saved state: the result depends on the restored
    // optimiser moments too.
    let (xs, ys) = batch(8, 2);
    let losses = dt.train_batch(&xs, &ys, 0)?;
    let dt_next = json!({
        "losses": losses.iter().map(|l| [l.l2, l.ce, l.kl]).collect::<Vec<_>>(),
        "block1_logits_z0": floats(&dt.block_mut(1).forward(&probe, &z, Mode::Eval)?),
        "block2_logits_z0": floats(&dt.block_mut(2).forward(&probe, &z, Mode::Eval)?),
        "embed_weight": floats(&dt.embedding.weight),
    });

    // NoProp-CT: learnable schedule, learned 20-d embedding.
    let cfg = ContConfig::paper(
        ContMethod::Ct,
        IMAGE,
        10,
        EmbeddingKind::Learned { dim: 20 },
        SEED,
    );
    let mut ct = NoPropCont::new(cfg, ClassEmbedding::learned(10, 20, SEED))?;
    for (x, y) in &train {
        ct.train_batch(x, y, 0)?;
    }
    ct.save(&models.join("ct.safetensors"), meta())?;
    let z1 = ct.sample(&probe, Sampler::Heun, 3, false, 0, true)?;
    let ct_json = json!({
        "step": ct.step,
        "predict_ancestral4_noise_key5": ct.predict(&probe, Sampler::Ancestral, 4, true, 5)?,
        "predict_euler4_mean": ct.predict(&probe, Sampler::Euler, 4, false, 0)?,
        "sample_heun3_mean": floats(&z1),
    });
    let (xs, ys) = batch(8, 2);
    let loss = ct.train_batch(&xs, &ys, 0)?;
    let ct_next = json!({
        "loss": [loss.l2, loss.ce, loss.kl],
        "sample_heun3_mean": floats(&ct.sample(&probe, Sampler::Heun, 3, false, 0, true)?),
        "embed_weight": floats(&ct.embedding.weight),
        "schedule_params": ct.schedule.as_ref().map(|s| s.params()),
    });
    write(
        &models.join("predictions.json"),
        &json!({
            "revision": "174820e",
            "noprop-dt": dt_json,
            "noprop-ct": ct_json,
            "after_one_more_step": { "noprop-dt": dt_next, "noprop-ct": ct_next },
        }),
    )?;

    // Back-propagation baseline: T = 2, one-hot.
    let mut cfg = BackpropConfig::paper(IMAGE, 10, EmbeddingKind::OneHot, SEED);
    cfg.steps = 2;
    let mut bp = Backprop::new(cfg, ClassEmbedding::one_hot(10))?;
    for (x, y) in &train {
        bp.train_batch(x, y, 0)?;
    }
    bp.save(&baselines.join("backprop.safetensors"), meta())?;
    let bp_json = json!({
        "step": bp.step,
        "alpha": [bp.alpha(1), bp.alpha(2)],
        "predict_key5": bp.predict(&probe, 5)?,
    });
    let (xs, ys) = batch(8, 2);
    let loss = bp.train_batch(&xs, &ys, 0)?;
    let bp_next = json!({
        "loss": loss,
        "alpha": [bp.alpha(1), bp.alpha(2)],
        "classifier_weight": floats(&bp.classifier.fc.weight),
        "predict_key5": bp.predict(&probe, 5)?,
    });

    // Adjoint neural ODE: K = 4 Euler steps.
    let mut cfg = AdjointConfig::paper(IMAGE, 10, SEED);
    cfg.steps = 4;
    let mut adj = Adjoint::new(cfg)?;
    for (x, y) in &train {
        adj.train_batch(x, y, 0)?;
    }
    adj.save(&baselines.join("adjoint.safetensors"), meta())?;
    let z1 = adj.sample(&probe, 4, 5)?;
    let adj_json = json!({
        "step": adj.step,
        "predict_steps4_key5": adj.predict(&probe, 4, 5)?,
        "sample_steps4_key5": floats(&z1),
    });
    let (xs, ys) = batch(8, 2);
    let loss = adj.train_batch(&xs, &ys, 0)?;
    let adj_next = json!({
        "loss": loss,
        "sample_steps4_key5": floats(&adj.sample(&probe, 4, 5)?),
    });
    write(
        &baselines.join("predictions.json"),
        &json!({
            "revision": "174820e",
            "backprop": bp_json,
            "adjoint": adj_json,
            "after_one_more_step": { "backprop": bp_next, "adjoint": adj_next },
        }),
    )?;
    Ok(())
}
