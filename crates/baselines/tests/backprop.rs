//! The back-propagation baseline: α initialisation, end-to-end gradients that
//! reach every block, a decreasing loss, and checkpoint round trips.

use std::collections::HashMap;

use noprop_baselines::{Backprop, BackpropConfig};
use noprop_models::{ClassEmbedding, EmbeddingKind};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType};

fn model(steps: usize, emb: EmbeddingKind) -> Backprop {
    let mut cfg = BackpropConfig::paper((1, 28, 28), 10, emb, 0);
    cfg.steps = steps;
    let e = match emb {
        EmbeddingKind::OneHot => ClassEmbedding::one_hot(10),
        EmbeddingKind::Learned { dim } => ClassEmbedding::learned(10, dim, 0),
        EmbeddingKind::Prototype => unreachable!("not used here"),
    };
    Backprop::new(cfg, e).unwrap()
}

#[test]
fn alpha_starts_at_one_half_and_every_block_learns() {
    let mut m = model(3, EmbeddingKind::OneHot);
    for t in 1..=3 {
        assert!((m.alpha(t) - 0.5).abs() < 1e-6);
    }
    let before: Vec<_> = m.state_tensors().unwrap();
    let x = ops::randn(&[16, 1, 28, 28], DType::F32, &mut RngStream::new(1, 0)).unwrap();
    let y: Vec<usize> = (0..16).map(|i| i % 10).collect();
    let mut losses = Vec::new();
    for _ in 0..15 {
        losses.push(m.train_batch(&x, &y, 0).unwrap());
    }
    // Fresh z_0 and dropout every step make single losses noisy: compare means.
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[10..].iter().sum::<f64>() / 5.0;
    assert!(last < first - 0.03, "loss did not fall: {losses:?}");
    let after = m.state_tensors().unwrap();
    // End-to-end training moves every block's first conv and every α.
    for t in 1..=3 {
        let name = format!("block{t}.img.conv1.weight");
        let a = before.iter().find(|(n, _)| *n == name).unwrap();
        let b = after.iter().find(|(n, _)| *n == name).unwrap();
        assert!(!a.1.bit_eq(&b.1), "{name} did not change");
        assert!((m.alpha(t) - 0.5).abs() > 1e-5, "α_{t} did not change");
    }
}

#[test]
fn checkpoint_round_trip_continues_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bp.safetensors");
    let x = ops::randn(&[8, 1, 28, 28], DType::F32, &mut RngStream::new(2, 0)).unwrap();
    let y: Vec<usize> = (0..8).collect();
    let mut a = model(2, EmbeddingKind::Learned { dim: 20 });
    a.train_batch(&x, &y, 0).unwrap();
    a.save(&path, HashMap::new()).unwrap();
    let (mut b, _) = Backprop::load(&path).unwrap();
    let la = a.train_batch(&x, &y, 0).unwrap();
    let lb = b.train_batch(&x, &y, 0).unwrap();
    assert_eq!(la.to_bits(), lb.to_bits());
    for ((n, t1), (_, t2)) in a
        .state_tensors()
        .unwrap()
        .iter()
        .zip(&b.state_tensors().unwrap())
    {
        assert!(t1.bit_eq(t2), "{n}");
    }
    assert_eq!(a.predict(&x, 3).unwrap(), b.predict(&x, 3).unwrap());
}

#[test]
fn nan_loss_is_an_error_naming_epoch_and_step() {
    let mut m = model(2, EmbeddingKind::OneHot);
    let mut x = ops::randn(&[4, 1, 28, 28], DType::F32, &mut RngStream::new(1, 0)).unwrap();
    let y = [0, 1, 2, 3];
    m.train_batch(&x, &y, 1).unwrap();
    x.as_mut_slice::<f32>().unwrap()[5] = f32::NAN;
    let msg = m.train_batch(&x, &y, 1).unwrap_err().to_string();
    assert!(msg.contains("epoch 1") && msg.contains("step 1"), "{msg}");
}
