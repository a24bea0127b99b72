//! Optimiser arithmetic, checkpoints, initialisation and thread-count determinism.

use std::collections::HashMap;

use noprop_nn::layers::{BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Sequential};
use noprop_nn::optim::{Adam, Optimizer, Sgd};
use noprop_nn::{io, loss, Mode, Module, ParamMut};
use noprop_tensor::philox::{philox4x32_10, RngStream};
use noprop_tensor::{ops, DType, Tensor};

/// One scalar parameter p = 1 with a constant gradient 0.5, two steps,
/// lr 0.1, weight decay 0.01, betas (0.9, 0.999), eps 1e-8, momentum 0.9.
/// Expected values worked out by hand from the update rules (see the
/// comments), to f64 precision.
fn two_steps(opt: &mut dyn Optimizer) -> Vec<f64> {
    let mut p = Tensor::from_vec(vec![1.0f64], &[1]).unwrap();
    let mut g = Tensor::from_vec(vec![0.5f64], &[1]).unwrap();
    let mut out = Vec::new();
    for _ in 0..2 {
        opt.step(vec![ParamMut {
            name: "p".into(),
            value: &mut p,
            grad: &mut g,
        }])
        .unwrap();
        out.push(p.to_vec_f64()[0]);
    }
    out
}

#[test]
fn adam_two_steps_by_hand() {
    // t=1: g'=0.51, m=0.051, v=0.0002601, m̂=0.51, v̂=0.2601 → p = 1 − 0.1·0.51/(0.51+1e-8)
    // t=2: g'=0.5+0.01·p₁, m=0.0968…, v=0.000518…, → p₂ below.
    let got = two_steps(&mut Adam::adam(0.1, 0.01));
    approx::assert_relative_eq!(got[0], 0.900_000_001_960_784_3, max_relative = 1e-14);
    approx::assert_relative_eq!(got[1], 0.800_005_168_006_356_8, max_relative = 1e-14);
}

#[test]
fn adamw_two_steps_by_hand() {
    // t=1: p ← 1·(1 − 0.1·0.01) = 0.999, then − 0.1·0.5/(0.5 + 1e-8) → 0.899000002
    let got = two_steps(&mut Adam::adamw(0.1, 0.01));
    approx::assert_relative_eq!(got[0], 0.899_000_002, max_relative = 1e-14);
    approx::assert_relative_eq!(got[1], 0.798_101_003_998_000_5, max_relative = 1e-14);
}

#[test]
fn sgd_momentum_two_steps_by_hand() {
    // t=1: g'=0.51, b=0.51, p=0.949. t=2: g'=0.50949, b=0.96849, p=0.852151.
    let got = two_steps(&mut Sgd::new(0.1, 0.9, 0.01));
    approx::assert_relative_eq!(got[0], 0.949, max_relative = 1e-15);
    approx::assert_relative_eq!(got[1], 0.852_151, max_relative = 1e-14);
}

#[test]
fn philox_known_answers_random123() {
    // Random123 kat_vectors, philox4x32 with 10 rounds.
    assert_eq!(
        philox4x32_10([0; 4], [0; 2]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
    assert_eq!(
        philox4x32_10(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn philox_normals_have_unit_moments_and_streams_differ() {
    let mut a = vec![0f64; 200_000];
    RngStream::new(1, 0).fill_normal(&mut a);
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / a.len() as f64;
    assert!(
        mean.abs() < 0.01 && (var - 1.0).abs() < 0.01,
        "mean {mean} var {var}"
    );
    let mut b = vec![0f64; 8];
    RngStream::new(1, 1).fill_normal(&mut b);
    assert_ne!(&a[..8], &b[..]);
    // Resuming at an offset continues the same sequence.
    let mut c = vec![0f64; 4];
    RngStream::at(1, 0, 1).fill_normal(&mut c);
    assert_eq!(&a[4..8], &c[..]);
}

#[test]
fn initialisation_follows_pytorch_bounds_and_is_keyed_by_name() {
    let l = Linear::new(2048, 256, 0, "img.fc");
    let bound = 1.0 / (2048f64).sqrt();
    let w = l.weight.to_vec_f64();
    assert!(w.iter().all(|v| v.abs() <= bound));
    assert!(w.iter().cloned().fold(0.0, f64::max) > 0.9 * bound);
    let var = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
    approx::assert_relative_eq!(var, bound * bound / 3.0, max_relative = 0.02);
    // Same (seed, name) → same values; another name → different values.
    assert!(Linear::new(2048, 256, 0, "img.fc").weight.bit_eq(&l.weight));
    assert!(!Linear::new(2048, 256, 0, "img.fc2")
        .weight
        .bit_eq(&l.weight));
    assert!(!Linear::new(2048, 256, 1, "img.fc").weight.bit_eq(&l.weight));
}

fn small_convnet(seed: u64) -> Sequential {
    Sequential::new()
        .push(
            "conv1",
            Conv2d::new(1, 32, 3, 0, seed, "conv1")
                .with_relu()
                .without_input_grad(),
        )
        .push("pool1", MaxPool2d::new())
        .push("drop1", Dropout::new(0.2, seed, 1))
        .push(
            "conv2",
            Conv2d::new(32, 64, 3, 0, seed, "conv2").with_relu(),
        )
        .push("flat", Flatten::new())
        .push("fc", Linear::new(64 * 11 * 11, 256, seed, "fc"))
        .push("bn", BatchNorm::new(256))
        .push("out", Linear::new(256, 10, seed, "out"))
}

fn train_step(threads: usize) -> Vec<Tensor> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut net = small_convnet(3);
        let mut opt = Adam::adamw(1e-3, 1e-3);
        let x = ops::randn(&[64, 1, 28, 28], DType::F32, &mut RngStream::new(9, 0)).unwrap();
        let labels: Vec<usize> = (0..64).map(|i| i % 10).collect();
        for _ in 0..2 {
            let logits = net.forward(&x, Mode::Train).unwrap();
            let (_, d) = loss::cross_entropy(&logits, &labels).unwrap();
            net.backward(&d).unwrap();
            opt.step(net.params()).unwrap();
            net.zero_grad();
        }
        let mut all: Vec<Tensor> = net.params().into_iter().map(|p| p.value.clone()).collect();
        all.extend(net.buffers().into_iter().map(|(_, t)| t.clone()));
        all
    })
}

#[test]
fn conv_net_training_is_bitwise_identical_for_1_and_2_threads() {
    let a = train_step(1);
    let b = train_step(2);
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x.bit_eq(y), "tensor {i} differs between 1 and 2 threads");
    }
    // And the step did change something (the test could fail).
    let fresh: Vec<Tensor> = small_convnet(3)
        .params()
        .into_iter()
        .map(|p| p.value.clone())
        .collect();
    assert!(!fresh[0].bit_eq(&a[0]));
}

#[test]
fn safetensors_round_trip_params_buffers_and_optimizer_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let mut net = small_convnet(4);
    let mut opt = Adam::adamw(1e-3, 1e-3);
    let x = ops::randn(&[8, 1, 28, 28], DType::F32, &mut RngStream::new(2, 0)).unwrap();
    let y = net.forward(&x, Mode::Train).unwrap();
    let (_, d) = loss::cross_entropy(&y, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    net.backward(&d).unwrap();
    opt.step(net.params()).unwrap();

    let mut tensors = io::named_tensors("model", &mut net).unwrap();
    tensors.extend(
        opt.state()
            .into_iter()
            .map(|(k, t)| (format!("opt.{k}"), t)),
    );
    let meta = HashMap::from([("config".to_string(), "{\"seed\":4}".to_string())]);
    io::save(&path, &tensors, &meta).unwrap();
    assert!(!dir.path().join("ckpt.safetensors.tmp").exists());

    let (loaded, meta2) = io::load(&path).unwrap();
    assert_eq!(
        meta2.get("config").map(String::as_str),
        Some("{\"seed\":4}")
    );
    // The header alone gives the same metadata.
    assert_eq!(io::read_metadata(&path).unwrap(), meta2);
    let map: HashMap<String, Tensor> = loaded.into_iter().collect();
    let mut net2 = small_convnet(99);
    io::load_into(&path, &map, "model", &mut net2).unwrap();
    for (a, b) in net.params().iter().zip(net2.params().iter()) {
        assert!(a.value.bit_eq(b.value), "{}", a.name);
    }
    let bn_running = net2
        .buffers()
        .into_iter()
        .find(|(n, _)| n == "bn.running_var")
        .unwrap()
        .1
        .clone();
    assert!(bn_running.bit_eq(
        net.buffers()
            .into_iter()
            .find(|(n, _)| n == "bn.running_var")
            .unwrap()
            .1
    ));
    let mut opt2 = Adam::adamw(1e-3, 1e-3);
    opt2.load_state(
        map.iter()
            .filter_map(|(k, t)| k.strip_prefix("opt.").map(|k| (k.to_string(), t.clone())))
            .collect(),
    )
    .unwrap();
    assert_eq!(opt2.steps(), 1);

    // A truncated file is an error naming the file, not a panic.
    let bytes = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let err = io::load(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.safetensors"), "{err}");
    // A file cut inside its header: read_metadata names the file too.
    std::fs::write(&bad, &bytes[..12]).unwrap();
    let err = io::read_metadata(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad.safetensors") && err.contains("header"),
        "{err}"
    );
    // A missing tensor is reported by name.
    let mut partial = map.clone();
    partial.remove("model.fc.weight");
    let err = io::load_into(&path, &partial, "model", &mut net2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.fc.weight"), "{err}");
}

#[test]
fn mse_loss_value_and_gradient() {
    let p = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let t = Tensor::from_vec(vec![0.0f64, 2.0, 1.0, 1.0], &[2, 2]).unwrap();
    let (l, g) = loss::mse_sum_mean(&p, &t).unwrap();
    // (1 + 0) + (4 + 9) = 14, / B=2 → 7; grad = (2/2)·diff.
    assert_eq!(l, 7.0);
    assert_eq!(g.to_vec_f64(), vec![1.0, 0.0, 2.0, 3.0]);
}

#[test]
fn eval_mode_is_deterministic_and_uses_running_stats() {
    let mut net = small_convnet(5);
    let x = ops::randn(&[4, 1, 28, 28], DType::F32, &mut RngStream::new(3, 0)).unwrap();
    let a = net.forward(&x, Mode::Eval).unwrap();
    let b = net.forward(&x, Mode::Eval).unwrap();
    assert!(a.bit_eq(&b));
    assert!(
        net.backward(&a).is_err(),
        "backward after an eval forward must fail"
    );
    let _ = DType::F64;
}

/// Two parameters with gradients (3, 4) and (12): global norm 13. Clipping
/// at 6.5 halves both (up to PyTorch's 1e-6 in the denominator); clipping
/// at 14 or more leaves them alone (at exactly 13 the 1e-6 still shrinks
/// them a little, as in PyTorch); the returned norm is the one before.
#[test]
fn clip_grad_norm_scales_the_global_norm() {
    use noprop_nn::optim::clip_grad_norm;
    let run = |max_norm: f64| {
        let (mut a, mut b) = (
            Tensor::from_vec(vec![0.0f64, 0.0], &[2]).unwrap(),
            Tensor::from_vec(vec![0.0f64], &[1]).unwrap(),
        );
        let mut ga = Tensor::from_vec(vec![3.0f64, 4.0], &[2]).unwrap();
        let mut gb = Tensor::from_vec(vec![12.0f64], &[1]).unwrap();
        let mut params = vec![
            ParamMut {
                name: "a".into(),
                value: &mut a,
                grad: &mut ga,
            },
            ParamMut {
                name: "b".into(),
                value: &mut b,
                grad: &mut gb,
            },
        ];
        let norm = clip_grad_norm(&mut params, max_norm).unwrap();
        drop(params);
        (norm, ga.to_vec_f64(), gb.to_vec_f64())
    };
    let (norm, ga, gb) = run(6.5);
    assert_eq!(norm, 13.0);
    let k = 6.5 / (13.0 + 1e-6);
    assert_eq!(ga, vec![3.0 * k, 4.0 * k]);
    assert_eq!(gb, vec![12.0 * k]);
    approx::assert_relative_eq!(
        (ga[0] * ga[0] + ga[1] * ga[1] + gb[0] * gb[0]).sqrt(),
        6.5,
        max_relative = 1e-6
    );
    for c in [14.0, 100.0] {
        let (norm, ga, gb) = run(c);
        assert_eq!(norm, 13.0);
        assert_eq!((ga, gb), (vec![3.0, 4.0], vec![12.0]), "max norm {c}");
    }
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut g = Tensor::from_vec(vec![1.0f64], &[1]).unwrap();
        let mut v = g.clone();
        let mut params = vec![ParamMut {
            name: "p".into(),
            value: &mut v,
            grad: &mut g,
        }];
        assert!(clip_grad_norm(&mut params, bad).is_err(), "max norm {bad}");
    }
}
