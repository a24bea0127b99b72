//! Checkpoints written at revision 174820e, before checkpoints went through
//! the `StateDict` walk (see `fixtures/README.md`), still load: same config
//! and step, the same file when saved again, the same predictions as when
//! they were written, and training continues from them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use noprop_models::{
    ClassEmbedding, ContConfig, ContMethod, DtConfig, EmbeddingKind, Error, NoPropCont, NoPropDt,
    Sampler,
};
use noprop_nn::{io, Mode};
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

fn probe() -> Tensor {
    batch(16, 99).0
}

fn classes(v: &Value) -> Vec<usize> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Equal to what was recorded, up to last-bit differences of another CPU's
/// matrix kernels (on the machine that wrote the fixtures they are equal).
fn assert_close(got: &Tensor, want: &Value, what: &str) {
    assert_close_f64(&got.to_vec_f64(), want, what);
}

fn assert_close_f64(got: &[f64], want: &Value, what: &str) {
    let want: Vec<f64> = serde_json::from_value(want.clone()).unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
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
fn dt_checkpoint_from_174820e_loads_resaves_identically_and_predicts_the_same() {
    let path = fixture("dt.safetensors");
    let (mut m, meta) = NoPropDt::load(&path).unwrap();
    assert_eq!(meta["fixture"], "174820e");
    assert_eq!(meta["method"], "noprop-dt");
    let mut want = DtConfig::paper((1, 14, 14), 10, EmbeddingKind::Learned { dim: 20 }, 7);
    want.steps = 2;
    assert_eq!(m.config, want);
    assert_eq!(m.step, 2);
    assert_resaves_identically(&path, |p| m.save(p, meta.clone()).unwrap());

    let (rec, next) = recorded("noprop-dt");
    assert_eq!(rec["step"], 2);
    let x = probe();
    assert_eq!(
        m.predict(&x, true, 5).unwrap(),
        classes(&rec["predict_noise_key5"])
    );
    assert_eq!(
        m.predict(&x, false, 0).unwrap(),
        classes(&rec["predict_mean"])
    );
    let z = Tensor::zeros(&[16, 20], DType::F32);
    let logits = m.block_mut(1).forward(&x, &z, Mode::Eval).unwrap();
    assert_close(&logits, &rec["block1_logits_z0"], "block 1 logits");

    // One more step moves the parameters by the restored AdamW moments: a
    // block's moments restored into another block would show here.
    let (xs, ys) = batch(8, 2);
    let losses = m.train_batch(&xs, &ys, 0).unwrap();
    let losses: Vec<f64> = losses.iter().flat_map(|l| [l.l2, l.ce, l.kl]).collect();
    let want: Vec<Vec<f64>> = serde_json::from_value(next["losses"].clone()).unwrap();
    let want = Value::from(want.concat());
    assert_close_f64(&losses, &want, "losses of the next step");
    assert_eq!(m.step, 3);
    for t in [1, 2] {
        let logits = m.block_mut(t).forward(&x, &z, Mode::Eval).unwrap();
        let key = format!("block{t}_logits_z0");
        assert_close(
            &logits,
            &next[key.as_str()],
            &format!("block {t} logits after it"),
        );
    }
    assert_close(
        &m.embedding.weight,
        &next["embed_weight"],
        "W_Embed after it",
    );
}

#[test]
fn ct_checkpoint_from_174820e_loads_resaves_identically_and_predicts_the_same() {
    let path = fixture("ct.safetensors");
    let (mut m, meta) = NoPropCont::load(&path).unwrap();
    assert_eq!(meta["fixture"], "174820e");
    assert_eq!(meta["method"], "noprop-ct");
    let want = ContConfig::paper(
        ContMethod::Ct,
        (1, 14, 14),
        10,
        EmbeddingKind::Learned { dim: 20 },
        7,
    );
    assert_eq!(m.config, want);
    assert_eq!(m.step, 2);
    assert!(m.schedule.is_some());
    assert_resaves_identically(&path, |p| m.save(p, meta.clone()).unwrap());

    let (rec, next) = recorded("noprop-ct");
    assert_eq!(rec["step"], 2);
    let x = probe();
    assert_eq!(
        m.predict(&x, Sampler::Ancestral, 4, true, 5).unwrap(),
        classes(&rec["predict_ancestral4_noise_key5"])
    );
    assert_eq!(
        m.predict(&x, Sampler::Euler, 4, false, 0).unwrap(),
        classes(&rec["predict_euler4_mean"])
    );
    let z1 = m.sample(&x, Sampler::Heun, 3, false, 0, true).unwrap();
    assert_close(&z1, &rec["sample_heun3_mean"], "z_1 (Heun, 3 steps)");

    // One more step moves every parameter by the restored Adam moments.
    let (xs, ys) = batch(8, 2);
    let l = m.train_batch(&xs, &ys, 0).unwrap();
    assert_close_f64(&[l.l2, l.ce, l.kl], &next["loss"], "loss of the next step");
    assert_eq!(m.step, 3);
    let z1 = m.sample(&x, Sampler::Heun, 3, false, 0, true).unwrap();
    assert_close(&z1, &next["sample_heun3_mean"], "z_1 after it");
    assert_close(
        &m.embedding.weight,
        &next["embed_weight"],
        "W_Embed after it",
    );
    let sched = m.schedule.as_ref().map(|s| s.params()).unwrap_or_default();
    assert_close_f64(&sched, &next["schedule_params"], "schedule after it");
}

/// Rewrite the DT fixture with `edit` applied to its tensors.
fn edited_dt(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> PathBuf {
    let (mut tensors, meta) = io::load(&fixture("dt.safetensors")).unwrap();
    edit(&mut tensors);
    let path = dir.join("edited.safetensors");
    io::save(&path, &tensors, &meta).unwrap();
    path
}

#[test]
fn a_checkpoint_missing_a_tensor_names_the_file_and_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_dt(dir.path(), |t| {
        t.retain(|(n, _)| n != "block2.head.bn1.running_var")
    });
    let err = NoPropDt::load(&path).unwrap_err();
    assert!(
        matches!(&err, Error::Nn(noprop_nn::Error::MissingTensor { path: p, name })
            if p == &path && name == "block2.head.bn1.running_var"),
        "{err:?}"
    );
    assert!(err.to_string().contains("edited.safetensors"), "{err}");
}

#[test]
fn a_checkpoint_with_tensors_the_model_lacks_is_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_dt(dir.path(), |t| {
        t.push((
            "block3.img.conv1.weight".into(),
            Tensor::zeros(&[1], DType::F32),
        ));
        t.push(("opt.block1.stray".into(), Tensor::zeros(&[1], DType::F32)));
    });
    match NoPropDt::load(&path).unwrap_err() {
        Error::Nn(noprop_nn::Error::UnexpectedTensors { path: p, names }) => {
            assert_eq!(p, path);
            assert_eq!(names, ["block3.img.conv1.weight", "opt.block1.stray"]);
        }
        e => panic!("expected UnexpectedTensors, got {e:?}"),
    }
}

#[test]
fn a_tensor_of_the_wrong_shape_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_dt(dir.path(), |t| {
        for (n, v) in t.iter_mut() {
            if n == "classifier.fc.bias" {
                *v = Tensor::zeros(&[11], DType::F32);
            }
        }
    });
    let err = NoPropDt::load(&path).unwrap_err();
    assert!(
        matches!(&err, Error::Nn(noprop_nn::Error::TensorShape { name, stored, expected, .. })
            if name == "classifier.fc.bias" && stored == &[11] && expected == &[10]),
        "{err:?}"
    );
}

#[test]
fn fm_checkpoints_round_trip_through_the_same_walk() {
    // No FM fixture (same struct as CT, without the schedule): a fresh one
    // saves, loads and saves again to the same file, and has no schedule tensor.
    let cfg = ContConfig::paper(
        ContMethod::Fm,
        (1, 14, 14),
        10,
        EmbeddingKind::Learned { dim: 20 },
        3,
    );
    let mut a = NoPropCont::new(cfg, ClassEmbedding::learned(10, 20, 3)).unwrap();
    let (x, y) = batch(8, 0);
    a.train_batch(&x, &y, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("fm.safetensors");
    a.save(&first, HashMap::new()).unwrap();
    let names: Vec<String> = a
        .state_tensors()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(!names.iter().any(|n| n.contains("schedule")));
    // The anchor cross-entropy trains the classifier: its moments are saved.
    assert!(names
        .iter()
        .any(|n| n == "opt.classifier.fc.weight.exp_avg"));
    let (mut b, meta) = NoPropCont::load(&first).unwrap();
    assert_eq!(meta["method"], "noprop-fm");
    assert_resaves_identically(&first, |p| b.save(p, HashMap::new()).unwrap());
}
