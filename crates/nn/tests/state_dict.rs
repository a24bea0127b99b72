//! The `StateDict` walk: one description of a model's state that both saves
//! and loads it, typed errors naming the checkpoint file and the tensor, and
//! the `save_model` / `load_model` helpers.

use std::collections::HashMap;
use std::path::Path;

use noprop_nn::io::{self, FromCheckpoint, HasConfig};
use noprop_nn::layers::{BatchNorm, Linear, ReLU, Sequential};
use noprop_nn::optim::{Adam, Optimizer, Sgd};
use noprop_nn::state::{self, join, StateDict, StateLoader, StateVisitor};
use noprop_nn::{loss, Error, Mode, Module};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Tensor};

/// A tiny model: a network with a batch-norm (parameters and buffers), its
/// AdamW, and a step counter.
#[derive(Debug)]
struct Tiny {
    config: TinyConfig,
    net: Sequential,
    opt: Adam,
    step: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct TinyConfig {
    width: usize,
    seed: u64,
}

impl Tiny {
    fn new(config: TinyConfig) -> Self {
        let net = Sequential::new()
            .push("fc1", Linear::new(4, config.width, config.seed, "fc1"))
            .push("bn", BatchNorm::new(config.width))
            .push("relu", ReLU::new())
            .push("fc2", Linear::new(config.width, 3, config.seed, "fc2"));
        Tiny {
            config,
            net,
            opt: Adam::adamw(1e-2, 1e-3),
            step: 0,
        }
    }

    fn train(&mut self, steps: usize) {
        for s in 0..steps {
            let x = ops::randn(&[6, 4], DType::F32, &mut RngStream::new(9, s as u64)).unwrap();
            let y = self.net.forward(&x, Mode::Train).unwrap();
            let (_, d) = loss::cross_entropy(&y, &[0, 1, 2, 0, 1, 2]).unwrap();
            self.net.backward(&d).unwrap();
            self.opt.step(self.net.params()).unwrap();
            self.net.zero_grad();
            self.step += 1;
        }
    }
}

impl StateDict for Tiny {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        self.net.visit_state(&join(prefix, "net"), v)?;
        self.opt.visit_state(&join(prefix, "opt"), v)?;
        v.counter(&join(prefix, "step"), &mut self.step)
    }
}

impl HasConfig for Tiny {
    type Config = TinyConfig;
    fn config(&self) -> &TinyConfig {
        &self.config
    }
    fn method(&self) -> &str {
        "tiny"
    }
}

impl FromCheckpoint for Tiny {
    type Error = Error;
    fn from_config(config: TinyConfig, _: &StateLoader<'_>) -> noprop_nn::Result<Self> {
        Ok(Tiny::new(config))
    }
}

fn trained() -> Tiny {
    let mut m = Tiny::new(TinyConfig { width: 5, seed: 3 });
    m.train(3);
    m
}

fn names(m: &mut Tiny) -> Vec<String> {
    state::state_tensors(m)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn one_walk_names_parameters_buffers_optimizer_state_and_counters() {
    let mut m = trained();
    let got = names(&mut m);
    let want = [
        "net.fc1.weight",
        "net.fc1.bias",
        "net.bn.weight",
        "net.bn.bias",
        "net.fc2.weight",
        "net.fc2.bias",
        "net.bn.running_mean",
        "net.bn.running_var",
        "opt.step",
    ];
    assert_eq!(&got[..want.len()], &want[..]);
    // Adam's moments are exactly the names of `Optimizer::state` under `opt.`.
    let mut from_state: Vec<String> = m
        .opt
        .state()
        .into_iter()
        .map(|(n, _)| format!("opt.{n}"))
        .collect();
    let mut from_walk: Vec<String> = got
        .iter()
        .filter(|n| n.starts_with("opt."))
        .cloned()
        .collect();
    from_state.sort();
    from_walk.sort();
    assert_eq!(from_walk, from_state);
    assert_eq!(got.last().map(String::as_str), Some("step"));
    assert_eq!(got.len(), want.len() + 2 * 6 + 1);
}

#[test]
fn save_model_and_load_model_round_trip_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    let mut a = trained();
    let meta = HashMap::from([("note".to_string(), "kept".to_string())]);
    io::save_model(&mut a, &path, meta).unwrap();
    let (mut b, meta) = io::load_model::<Tiny>(&path).unwrap();
    assert_eq!(meta.get("note").map(String::as_str), Some("kept"));
    assert_eq!(meta.get("method").map(String::as_str), Some("tiny"));
    assert_eq!(b.config, a.config);
    assert_eq!(b.step, 3);
    assert_eq!(b.opt.steps(), 3);
    let (sa, sb) = (
        state::state_tensors(&mut a).unwrap(),
        state::state_tensors(&mut b).unwrap(),
    );
    assert_eq!(sa.len(), sb.len());
    for ((na, ta), (nb, tb)) in sa.iter().zip(&sb) {
        assert_eq!(na, nb);
        assert!(ta.bit_eq(tb), "{na}");
    }
    // Training on continues identically.
    a.train(1);
    b.train(1);
    for ((n, ta), (_, tb)) in state::state_tensors(&mut a)
        .unwrap()
        .iter()
        .zip(&state::state_tensors(&mut b).unwrap())
    {
        assert!(ta.bit_eq(tb), "{n} after one more step");
    }
    // Saving the loaded model again gives the same checkpoint.
    let again = dir.path().join("again.safetensors");
    io::save_model(
        &mut b,
        &again,
        HashMap::from([("note".into(), "kept".into())]),
    )
    .unwrap();
    let fresh = dir.path().join("fresh.safetensors");
    let (mut c, _) = io::load_model::<Tiny>(&path).unwrap();
    io::save_model(
        &mut c,
        &fresh,
        HashMap::from([("note".into(), "kept".into())]),
    )
    .unwrap();
    assert!(io::same_checkpoint(
        &std::fs::read(&path).unwrap(),
        &std::fs::read(&fresh).unwrap()
    ));
    assert!(!io::same_checkpoint(
        &std::fs::read(&path).unwrap(),
        &std::fs::read(&again).unwrap()
    ));
}

/// Write `a`'s tensors with `edit` applied and the config and method added.
fn write_edited(path: &Path, a: &mut Tiny, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let mut tensors = state::state_tensors(a).unwrap();
    edit(&mut tensors);
    io::save_checkpoint(path, &tensors, &a.config, "tiny", HashMap::new()).unwrap();
}

#[test]
fn a_missing_tensor_is_an_error_naming_the_file_and_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.safetensors");
    write_edited(&path, &mut trained(), |t| {
        t.retain(|(n, _)| n != "net.bn.running_var")
    });
    let err = io::load_model::<Tiny>(&path).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { path: p, name } if p == &path && name == "net.bn.running_var"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("missing.safetensors") && msg.contains("net.bn.running_var"),
        "{msg}"
    );
}

#[test]
fn unexpected_tensors_are_listed_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.safetensors");
    write_edited(&path, &mut trained(), |t| {
        t.push(("net.fc3.weight".into(), Tensor::zeros(&[2], DType::F32)));
        t.push(("opt.junk".into(), Tensor::zeros(&[1], DType::F32)));
    });
    let err = io::load_model::<Tiny>(&path).unwrap_err();
    match &err {
        Error::UnexpectedTensors { path: p, names } => {
            assert_eq!(p, &path);
            assert_eq!(names, &["net.fc3.weight", "opt.junk"]);
        }
        e => panic!("expected UnexpectedTensors, got {e:?}"),
    }
    assert!(err.to_string().contains("extra.safetensors"), "{err}");
}

#[test]
fn a_shape_mismatch_names_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.safetensors");
    // A checkpoint of a 6-wide model read into a 5-wide one.
    let mut wide = Tiny::new(TinyConfig { width: 6, seed: 3 });
    let tensors = state::state_tensors(&mut wide).unwrap();
    let narrow = TinyConfig { width: 5, seed: 3 };
    io::save_checkpoint(&path, &tensors, &narrow, "tiny", HashMap::new()).unwrap();
    let err = io::load_model::<Tiny>(&path).unwrap_err();
    assert!(
        matches!(&err, Error::TensorShape { name, stored, expected, .. }
            if name == "net.fc1.weight" && stored == &[6, 4] && expected == &[5, 4]),
        "{err:?}"
    );
}

#[test]
fn a_step_count_must_be_a_non_negative_integer() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [-1.0, 2.5, f64::NAN] {
        let path = dir.path().join("step.safetensors");
        write_edited(&path, &mut trained(), |t| {
            for (n, v) in t.iter_mut() {
                if n == "step" {
                    *v = Tensor::scalar(bad, DType::F64);
                }
            }
        });
        let err = io::load_model::<Tiny>(&path).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidTensor { name, .. } if name == "step"),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn adam_first_and_second_moments_must_name_the_same_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moments.safetensors");
    write_edited(&path, &mut trained(), |t| {
        t.retain(|(n, _)| n != "opt.fc2.bias.exp_avg_sq")
    });
    let err = io::load_model::<Tiny>(&path).unwrap_err();
    assert!(matches!(err, Error::OptimizerState { .. }), "{err:?}");
}

#[test]
fn saving_two_tensors_under_one_name_is_an_error() {
    struct Twice(Tensor);
    impl StateDict for Twice {
        fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
            v.tensor(&join(prefix, "w"), &mut self.0)?;
            v.tensor(&join(prefix, "w"), &mut self.0)
        }
    }
    let err = state::state_tensors(&mut Twice(Tensor::zeros(&[1], DType::F32))).unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateTensor { name } if name == "w"),
        "{err:?}"
    );
}

#[test]
fn sgd_momentum_buffers_round_trip() {
    let mut net = Linear::new(3, 2, 1, "fc");
    let mut opt = Sgd::new(0.1, 0.9, 0.0);
    let x = ops::randn(&[4, 3], DType::F32, &mut RngStream::new(1, 0)).unwrap();
    let y = net.forward(&x, Mode::Train).unwrap();
    net.backward(&y).unwrap();
    opt.step(net.params()).unwrap();
    let saved: HashMap<String, Tensor> = state::state_tensors(&mut opt)
        .unwrap()
        .into_iter()
        .collect();
    let mut keys: Vec<&String> = saved.keys().collect();
    keys.sort();
    assert_eq!(keys, ["bias.momentum_buffer", "weight.momentum_buffer"]);
    let mut restored = Sgd::new(0.1, 0.9, 0.0);
    let mut loader = StateLoader::new(Path::new("sgd.safetensors"), &saved);
    restored.visit_state("", &mut loader).unwrap();
    loader.finish().unwrap();
    let again: HashMap<String, Tensor> = state::state_tensors(&mut restored)
        .unwrap()
        .into_iter()
        .collect();
    for (n, t) in &saved {
        assert!(again[n].bit_eq(t), "{n}");
    }
}

#[test]
fn same_checkpoint_ignores_header_key_order_but_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    let mut a = trained();
    let meta: HashMap<String, String> =
        (0..8).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    io::save_model(&mut a, &path, meta.clone()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // The same header with its keys in another order.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut entries: Vec<_> = header.into_iter().collect();
    entries.reverse();
    let mut text = String::from("{");
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("{}:{}", serde_json::to_string(k).unwrap(), v));
    }
    text.push('}');
    while text.len() < n {
        text.push(' ');
    }
    assert_eq!(text.len(), n);
    let mut reordered = bytes[..8].to_vec();
    reordered.extend_from_slice(text.as_bytes());
    reordered.extend_from_slice(&bytes[8 + n..]);
    assert_ne!(reordered, bytes);
    assert!(io::same_checkpoint(&bytes, &reordered));
    // One flipped data bit is a different checkpoint.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(!io::same_checkpoint(&bytes, &flipped));
    assert!(!io::same_checkpoint(&bytes, &bytes[..bytes.len() - 4]));
}
