//! Baseline checkpoints written at revision 174820e, before checkpoints went
//! through the `StateDict` walk (see `fixtures/README.md`), still load: same
//! config and step, the same file when saved again, the same predictions as
//! when they were written, and training continues from them.

use std::path::{Path, PathBuf};

use noprop_baselines::{Adjoint, AdjointConfig, Backprop, BackpropConfig, Error};
use noprop_models::EmbeddingKind;
use noprop_nn::io;
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Tensor};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// What `model` gave when the fixtures were written: on the saved state, and
/// after one more training step from it.
fn recorded(model: &str) -> (Value, Value) {
    let text = std::fs::read_to_string(fixture("predictions.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(all["revision"], "174820e");
    (
        all[model].clone(),
        all["after_one_more_step"][model].clone(),
    )
}

/// The generator's batches: `n` random 1×14×14 images from stream `seed`.
fn batch(n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let x = ops::randn(&[n, 1, 14, 14], DType::F32, &mut RngStream::new(seed, 0)).unwrap();
    let y = (0..n).map(|i| (i * 3 + seed as usize) % 10).collect();
    (x, y)
}

fn floats(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Equal up to last-bit differences of another CPU's matrix kernels.
fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs recorded {w}"
        );
    }
}

/// `save` writes the loaded model again; the file must be the fixture.
fn assert_resaves_identically(fixture: &Path, save: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("again.safetensors");
    save(&again);
    let (a, b) = (
        std::fs::read(fixture).unwrap(),
        std::fs::read(&again).unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{}: size", fixture.display());
    assert!(
        io::same_checkpoint(&a, &b),
        "{}: saving the loaded model gives a different file",
        fixture.display()
    );
}

#[test]
fn backprop_checkpoint_from_174820e_loads_resaves_identically_and_predicts_the_same() {
    let path = fixture("backprop.safetensors");
    let (mut m, meta) = Backprop::load(&path).unwrap();
    assert_eq!(meta["fixture"], "174820e");
    assert_eq!(meta["method"], "backprop");
    let mut want = BackpropConfig::paper((1, 14, 14), 10, EmbeddingKind::OneHot, 7);
    want.steps = 2;
    assert_eq!(m.config, want);
    assert_eq!(m.step, 2);
    assert_resaves_identically(&path, |p| m.save(p, meta.clone()).unwrap());

    let (rec, next) = recorded("backprop");
    assert_eq!(rec["step"], 2);
    assert_close(
        &[m.alpha(1), m.alpha(2)],
        &floats(&rec["alpha"]),
        "α_1, α_2",
    );
    let probe = batch(16, 99).0;
    let want: Vec<usize> = serde_json::from_value(rec["predict_key5"].clone()).unwrap();
    assert_eq!(m.predict(&probe, 5).unwrap(), want);

    // One more step moves every parameter by the restored AdamW moments.
    let (xs, ys) = batch(8, 2);
    let loss = m.train_batch(&xs, &ys, 0).unwrap();
    assert_close(&[loss], &[next["loss"].as_f64().unwrap()], "next loss");
    assert_eq!(m.step, 3);
    assert_close(
        &[m.alpha(1), m.alpha(2)],
        &floats(&next["alpha"]),
        "α after it",
    );
    assert_close(
        &m.classifier.fc.weight.to_vec_f64(),
        &floats(&next["classifier_weight"]),
        "classifier after it",
    );
    let want: Vec<usize> = serde_json::from_value(next["predict_key5"].clone()).unwrap();
    assert_eq!(m.predict(&probe, 5).unwrap(), want);
}

#[test]
fn adjoint_checkpoint_from_174820e_loads_resaves_identically_and_predicts_the_same() {
    let path = fixture("adjoint.safetensors");
    let (mut m, meta) = Adjoint::load(&path).unwrap();
    assert_eq!(meta["fixture"], "174820e");
    assert_eq!(meta["method"], "adjoint");
    let mut want = AdjointConfig::paper((1, 14, 14), 10, 7);
    want.steps = 4;
    assert_eq!(m.config, want);
    assert_eq!(m.step, 2);
    assert_resaves_identically(&path, |p| m.save(p, meta.clone()).unwrap());

    let (rec, next) = recorded("adjoint");
    assert_eq!(rec["step"], 2);
    let x = batch(16, 99).0;
    let want: Vec<usize> = serde_json::from_value(rec["predict_steps4_key5"].clone()).unwrap();
    assert_eq!(m.predict(&x, 4, 5).unwrap(), want);
    let z1 = m.sample(&x, 4, 5).unwrap().to_vec_f64();
    assert_close(&z1, &floats(&rec["sample_steps4_key5"]), "z_1");

    // One more step moves every parameter by the restored AdamW moments.
    let (xs, ys) = batch(8, 2);
    let loss = m.train_batch(&xs, &ys, 0).unwrap();
    assert_close(&[loss], &[next["loss"].as_f64().unwrap()], "next loss");
    assert_eq!(m.step, 3);
    let z1 = m.sample(&x, 4, 5).unwrap().to_vec_f64();
    assert_close(&z1, &floats(&next["sample_steps4_key5"]), "z_1 after it");
}

#[test]
fn a_baseline_checkpoint_missing_its_step_names_the_file_and_the_tensor() {
    let (mut tensors, meta) = io::load(&fixture("adjoint.safetensors")).unwrap();
    tensors.retain(|(n, _)| n != "step");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-step.safetensors");
    io::save(&path, &tensors, &meta).unwrap();
    let err = Adjoint::load(&path).unwrap_err();
    assert!(
        matches!(&err, Error::Nn(noprop_nn::Error::MissingTensor { path: p, name })
            if p == &path && name == "step"),
        "{err:?}"
    );
}
