//! NoProp-DT structure: Table 5 counts, locality, concurrency, resume, NaN handling.

use std::collections::HashMap;

use noprop_models::{ClassEmbedding, ConvStack, DtConfig, EmbeddingKind, NoPropDt, Order};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Tensor};

fn model(
    image: (usize, usize, usize),
    classes: usize,
    emb: EmbeddingKind,
    steps: usize,
) -> NoPropDt {
    let mut cfg = DtConfig::paper(image, classes, emb, 0);
    cfg.steps = steps;
    let embedding = match emb {
        EmbeddingKind::OneHot => ClassEmbedding::one_hot(classes),
        EmbeddingKind::Learned { dim } => ClassEmbedding::learned(classes, dim, 0),
        EmbeddingKind::Prototype => {
            let d = image.0 * image.1 * image.2;
            let n = classes * 2;
            let imgs = ops::randn(&[n, d], DType::F32, &mut RngStream::new(1, 1)).unwrap();
            let labels: Vec<usize> = (0..n).map(|i| i % classes).collect();
            ClassEmbedding::prototype(&imgs, &labels, classes, 1000, 0).unwrap()
        }
    };
    NoPropDt::new(cfg, embedding).unwrap()
}

#[test]
fn per_block_parameter_counts_match_table5() {
    // docs/DECISIONS.md, note H: exact per-block counts behind v2 Table 5 (DT column).
    let cells = [
        ((1, 28, 28), 10, EmbeddingKind::OneHot, 919_946),
        ((1, 28, 28), 10, EmbeddingKind::Learned { dim: 20 }, 922_506),
        ((1, 28, 28), 10, EmbeddingKind::Prototype, 1_401_738),
        ((3, 32, 32), 10, EmbeddingKind::OneHot, 1_215_434),
        (
            (3, 32, 32),
            10,
            EmbeddingKind::Learned { dim: 20 },
            1_217_994,
        ),
        ((3, 32, 32), 10, EmbeddingKind::Prototype, 1_992_714),
        ((3, 32, 32), 100, EmbeddingKind::OneHot, 1_250_084),
        (
            (3, 32, 32),
            100,
            EmbeddingKind::Learned { dim: 20 },
            1_229_604,
        ),
        ((3, 32, 32), 100, EmbeddingKind::Prototype, 2_004_324),
    ];
    for (image, classes, emb, want) in cells {
        let mut m = model(image, classes, emb, 1);
        assert_eq!(m.params_per_block(), want, "{image:?} {classes} {emb}");
    }
}

fn batch(n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let x = ops::randn(&[n, 1, 28, 28], DType::F32, &mut RngStream::new(seed, 0)).unwrap();
    let labels = (0..n).map(|i| (i * 7 + seed as usize) % 10).collect();
    (x, labels)
}

fn block_snapshot(m: &mut NoPropDt, t: usize) -> Vec<Tensor> {
    let blk = m.block_mut(t);
    let mut v: Vec<Tensor> = blk.params().into_iter().map(|p| p.value.clone()).collect();
    v.extend(blk.buffers().into_iter().map(|(_, b)| b.clone()));
    v
}

#[test]
fn training_block_t_leaves_every_other_block_bit_identical() {
    for emb in [EmbeddingKind::OneHot, EmbeddingKind::Learned { dim: 20 }] {
        let mut m = model((1, 28, 28), 10, emb, 3);
        let before: Vec<Vec<Tensor>> = (1..=3).map(|t| block_snapshot(&mut m, t)).collect();
        let emb_before = m.embedding.weight.clone();
        let (x, y) = batch(8, 1);
        m.train_block(2, &x, &y, 0).unwrap();
        for t in [1, 3] {
            for (a, b) in before[t - 1].iter().zip(block_snapshot(&mut m, t)) {
                assert!(
                    a.bit_eq(&b),
                    "block {t} changed while training block 2 ({emb})"
                );
            }
        }
        assert!(before[1]
            .iter()
            .zip(block_snapshot(&mut m, 2))
            .any(|(a, b)| !a.bit_eq(&b)));
        // The shared embedding moves only when it is learned.
        assert_eq!(
            m.embedding.weight.bit_eq(&emb_before),
            emb == EmbeddingKind::OneHot
        );
    }
}

fn all_state(m: &mut NoPropDt) -> Vec<(String, Tensor)> {
    m.state_tensors().unwrap()
}

#[test]
fn concurrent_and_sequential_blocks_give_bit_identical_weights() {
    let run = |concurrent: bool| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let mut m = model((1, 28, 28), 10, EmbeddingKind::OneHot, 3);
            m.config.concurrent_blocks = concurrent;
            for s in 0..2 {
                let (x, y) = batch(16, s);
                m.train_batch(&x, &y, 0).unwrap();
            }
            all_state(&mut m)
        })
    };
    let (a, b) = (run(true), run(false));
    assert_eq!(a.len(), b.len());
    for ((n1, t1), (n2, t2)) in a.iter().zip(&b) {
        assert_eq!(n1, n2);
        assert!(
            t1.bit_eq(t2),
            "{n1} differs between concurrent and sequential blocks"
        );
    }
}

#[test]
fn stop_resume_equals_uninterrupted_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dt.safetensors");
    for emb in [EmbeddingKind::OneHot, EmbeddingKind::Learned { dim: 20 }] {
        let batches: Vec<_> = (0..4).map(|s| batch(8, s)).collect();
        let mut full = model((1, 28, 28), 10, emb, 2);
        for (x, y) in &batches {
            full.train_batch(x, y, 0).unwrap();
        }
        let mut first = model((1, 28, 28), 10, emb, 2);
        for (x, y) in &batches[..2] {
            first.train_batch(x, y, 0).unwrap();
        }
        first.save(&path, HashMap::new()).unwrap();
        drop(first);
        let (mut resumed, _) = NoPropDt::load(&path).unwrap();
        assert_eq!(resumed.step, 2);
        for (x, y) in &batches[2..] {
            resumed.train_batch(x, y, 0).unwrap();
        }
        for ((n1, t1), (_, t2)) in all_state(&mut full).iter().zip(&all_state(&mut resumed)) {
            assert!(t1.bit_eq(t2), "{n1} differs after resume ({emb})");
        }
    }
}

#[test]
fn non_finite_loss_is_an_error_naming_block_epoch_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.safetensors");
    let mut m = model((1, 28, 28), 10, EmbeddingKind::OneHot, 2);
    let (x, y) = batch(4, 2);
    m.train_batch(&x, &y, 7).unwrap();
    m.save(&path, HashMap::new()).unwrap();
    let before = std::fs::read(&path).unwrap();
    let (mut x, y) = batch(4, 3);
    x.as_mut_slice::<f32>().unwrap()[5] = f32::NAN;
    let err = m.train_batch(&x, &y, 7).unwrap_err().to_string();
    assert!(
        err.contains("block 1") && err.contains("epoch 7") && err.contains("step 1"),
        "{err}"
    );
    // The last checkpoint is untouched and still loads.
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(NoPropDt::load(&path).unwrap().0.step, 1);
}

#[test]
fn paper_order_is_accepted_and_inference_is_seeded() {
    let mut m = model((1, 28, 28), 10, EmbeddingKind::Prototype, 2);
    m.config.order = Order::Paper;
    let (x, y) = batch(4, 4);
    m.train_block(1, &x, &y, 0).unwrap();
    let a = m.predict(&x, true, 5).unwrap();
    let b = m.predict(&x, true, 5).unwrap();
    assert_eq!(a, b);
    let c = m.predict(&x, false, 0).unwrap();
    assert_eq!(c.len(), 4);
}

/// v2's Tiny ImageNet block (64×64 images, 200 classes): the fourth conv is
/// chosen by `DtConfig::paper`, the counts are those behind
/// docs/REPRODUCTION.md's Table 5, and a block trains and predicts on
/// 64×64 images.
#[test]
fn tiny_imagenet_blocks_have_the_fourth_conv_and_train() {
    let image = (3, 64, 64);
    assert_eq!(ConvStack::paper(image), ConvStack::Four);
    assert_eq!(ConvStack::paper((3, 32, 32)), ConvStack::Three);
    assert_eq!(ConvStack::Four.out_side(64).unwrap(), 5);
    assert_eq!(ConvStack::Three.out_side(64).unwrap(), 13);
    assert_eq!(ConvStack::Four.out_side(28).unwrap(), 1);
    assert!(ConvStack::Four.out_side(25).is_err());
    assert!(ConvStack::Three.out_side(13).is_err());

    let mut m = model(image, 200, EmbeddingKind::OneHot, 2);
    assert_eq!(m.config.conv_stack, ConvStack::Four);
    assert_eq!(m.params_per_block(), 2_402_952);
    let names: Vec<String> = m
        .block_mut(1)
        .params()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(names.iter().any(|n| n.contains("img.conv4")), "{names:?}");
    let mut proto = model(image, 200, EmbeddingKind::Prototype, 1);
    assert_eq!(proto.params_per_block(), 4_245_960);

    let x = ops::randn(&[4, 3, 64, 64], DType::F32, &mut RngStream::new(9, 0)).unwrap();
    let y = vec![0, 17, 199, 3];
    let losses = m.train_batch(&x, &y, 0).unwrap();
    assert!(losses.iter().all(|l| l.total().is_finite()), "{losses:?}");
    let pred = m.predict(&x, false, 0).unwrap();
    assert!(pred.len() == 4 && pred.iter().all(|&p| p < 200));
}

/// The three-conv stack is not written (checkpoints of MNIST and CIFAR keep
/// their format, and older ones read as three convs); the fourth conv is.
#[test]
fn configs_write_conv_stack_only_for_the_fourth_conv() {
    let cfg = DtConfig::paper((1, 28, 28), 10, EmbeddingKind::OneHot, 0);
    let json = serde_json::to_value(&cfg).unwrap();
    assert!(json.get("conv_stack").is_none(), "{json}");
    let back: DtConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, cfg);

    let tiny = DtConfig::paper((3, 64, 64), 200, EmbeddingKind::OneHot, 0);
    let json = serde_json::to_value(&tiny).unwrap();
    assert_eq!(json["conv_stack"], "four");
    let back: DtConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back.conv_stack, ConvStack::Four);
}
