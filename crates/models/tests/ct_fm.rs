//! NoProp-CT / NoProp-FM: Table 5 parameter counts, image-path caching
//! (docs/DECISIONS.md § 17), finite-difference checks of the full Eq. 9 / Eq. 11+13
//! gradients (network, W_Embed and the learnable schedule), and checkpoints.

use noprop_models::{ClassEmbedding, ContConfig, ContMethod, EmbeddingKind, NoPropCont, Sampler};
use noprop_nn::Mode;
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Tensor};

fn embedding(kind: EmbeddingKind, classes: usize, d_img: usize, seed: u64) -> ClassEmbedding {
    match kind {
        EmbeddingKind::OneHot => ClassEmbedding::one_hot(classes),
        EmbeddingKind::Learned { dim } => ClassEmbedding::learned(classes, dim, seed),
        EmbeddingKind::Prototype => {
            let x = ops::randn(
                &[classes * 2, d_img],
                DType::F32,
                &mut RngStream::new(seed, 9),
            )
            .unwrap();
            let y: Vec<usize> = (0..classes * 2).map(|i| i % classes).collect();
            ClassEmbedding::prototype(&x, &y, classes, 10, seed).unwrap()
        }
    }
}

fn model(
    method: ContMethod,
    image: (usize, usize, usize),
    classes: usize,
    kind: EmbeddingKind,
    seed: u64,
) -> NoPropCont {
    let cfg = ContConfig::paper(method, image, classes, kind, seed);
    let emb = embedding(kind, classes, image.0 * image.1 * image.2, seed);
    NoPropCont::new(cfg, emb).unwrap()
}

#[test]
fn parameter_counts_match_table5_ct_column() {
    let cases = [
        ((1, 28, 28), 10, EmbeddingKind::OneHot, 867_722),
        ((1, 28, 28), 10, EmbeddingKind::Learned { dim: 20 }, 870_282),
        ((1, 28, 28), 10, EmbeddingKind::Prototype, 1_482_122),
        ((3, 32, 32), 10, EmbeddingKind::OneHot, 1_163_210),
        (
            (3, 32, 32),
            10,
            EmbeddingKind::Learned { dim: 20 },
            1_165_770,
        ),
        ((3, 32, 32), 10, EmbeddingKind::Prototype, 2_073_098),
        ((3, 32, 32), 100, EmbeddingKind::OneHot, 1_197_860),
        (
            (3, 32, 32),
            100,
            EmbeddingKind::Learned { dim: 20 },
            1_177_380,
        ),
        ((3, 32, 32), 100, EmbeddingKind::Prototype, 2_084_708),
    ];
    for (image, classes, kind, want) in cases {
        for method in [ContMethod::Ct, ContMethod::Fm] {
            let mut m = model(method, image, classes, kind, 0);
            assert_eq!(
                m.num_params(),
                want,
                "{image:?} {classes} {kind} {method:?}"
            );
        }
    }
}

fn images(b: usize, seed: u64) -> Tensor {
    ops::randn(&[b, 1, 28, 28], DType::F32, &mut RngStream::new(seed, 1)).unwrap()
}

/// A one-hot `method` model (`seed`) after two training steps on `n` random
/// images, and those images.
fn trained_one_hot(method: ContMethod, n: usize, seed: u64) -> (NoPropCont, Tensor) {
    let x = images(n, seed + 5);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7) % 10).collect();
    let mut m = model(method, (1, 28, 28), 10, EmbeddingKind::OneHot, seed);
    for _ in 0..2 {
        m.train_batch(&x, &labels, 0).unwrap();
    }
    (m, x)
}

/// Whether this host lacks the fused step kernel (said on stderr).
fn no_fused_kernel() -> bool {
    let no = !ops::PackedMlp::available();
    if no {
        eprintln!("this host has no fused step kernel (AVX2 + FMA without AVX-512F)");
    }
    no
}

/// A batch of at least 64 rows is sampled in two halves side by side on the
/// CPU, each drawing the whole batch's noise and keeping its rows. The GEMM
/// microkernel for a block of rows depends on how many rows it has, so the
/// last bits may differ from the uncached path, which runs the whole batch at
/// once; the paths must agree to f32 rounding and be reproducible.
#[test]
fn row_halves_sample_the_numbers_of_the_whole_batch() {
    let b = 70;
    let x = images(b, 4);
    let labels: Vec<usize> = (0..b).map(|i| i % 10).collect();
    for (method, kind, sampler) in [
        (ContMethod::Ct, EmbeddingKind::OneHot, Sampler::Ancestral),
        (
            ContMethod::Ct,
            EmbeddingKind::Learned { dim: 20 },
            Sampler::Heun,
        ),
        (ContMethod::Fm, EmbeddingKind::OneHot, Sampler::Euler),
    ] {
        let mut m = model(method, (1, 28, 28), 10, kind, 2);
        m.train_batch(&x, &labels, 0).unwrap();
        let halves = m.sample(&x, sampler, 5, true, 9, true).unwrap();
        let whole = m.sample(&x, sampler, 5, true, 9, false).unwrap();
        assert_eq!(halves.shape(), &[b, m.config.embed_dim()]);
        let worst = halves
            .to_vec_f64()
            .iter()
            .zip(whole.to_vec_f64())
            .map(|(a, w)| (a - w).abs() / (1.0 + w.abs()))
            .fold(0.0f64, f64::max);
        assert!(
            worst < 1e-5,
            "{method:?} {kind} {sampler}: the row halves differ from the whole batch by {worst}"
        );
        let again = m.sample(&x, sampler, 5, true, 9, true).unwrap();
        assert!(
            halves.bit_eq(&again),
            "{method:?} {kind} {sampler}: not reproducible"
        );
        // Both halves carry their own rows: the first and last rows differ.
        let v = halves.to_vec_f64();
        let d = m.config.embed_dim();
        assert!(v[..d] != v[(b - 1) * d..]);
    }
}

#[test]
fn cached_and_uncached_inference_are_identical() {
    let x = images(6, 3);
    let labels = [0usize, 1, 2, 3, 4, 5];
    for (method, kind, samplers) in [
        (
            ContMethod::Ct,
            EmbeddingKind::OneHot,
            vec![Sampler::Ancestral, Sampler::Euler, Sampler::Heun],
        ),
        (
            ContMethod::Fm,
            EmbeddingKind::Learned { dim: 20 },
            vec![Sampler::Euler, Sampler::Heun],
        ),
        (
            ContMethod::Fm,
            EmbeddingKind::Prototype,
            vec![Sampler::Euler],
        ),
    ] {
        let mut m = model(method, (1, 28, 28), 10, kind, 1);
        // A couple of training steps so that nothing is at its initial value.
        for _ in 0..2 {
            m.train_batch(&x, &labels, 0).unwrap();
        }
        for s in samplers {
            let a = m.sample(&x, s, 7, true, 5, true).unwrap();
            let b = m.sample(&x, s, 7, true, 5, false).unwrap();
            assert!(
                a.bit_eq(&b),
                "{method:?} {kind} {s}: cached and uncached differ"
            );
            assert!(a.to_vec_f64().iter().all(|v| v.is_finite()));
            // A different key gives different noise.
            let c = m.sample(&x, s, 7, true, 6, true).unwrap();
            assert!(!a.bit_eq(&c));
        }
        // The cached per-step forward equals the plain full forward (evaluation mode).
        let z = ops::randn(
            &[6, m.config.embed_dim()],
            DType::F32,
            &mut RngStream::new(2, 2),
        )
        .unwrap();
        let cache = m.prepare(&x).unwrap();
        let fast = m
            .net_mut()
            .forward_cached(&cache, &z, 0.37)
            .unwrap()
            .to_vec_f64();
        let full = m
            .net_mut()
            .forward(&x, &z, &[0.37; 6], Mode::Eval)
            .unwrap()
            .to_vec_f64();
        for (a, b) in fast.iter().zip(&full) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "cached {a} vs full {b}"
            );
        }
    }
}

/// Where the host runs the fused step kernel ([`ops::PackedMlp`]), a
/// cached evaluation takes the four per-step layers in one pass per block
/// of rows. Each output's sum runs in index order, one FMA per term, then
/// the addends: the `gemm` crate's order on some row counts (33, 48, 200
/// and ct-infer's 1,000-row halves give the same bits), not on others (17,
/// 24, 64, 100), so the two must agree to f32 rounding.
#[test]
fn fused_and_per_layer_steps_agree() {
    if no_fused_kernel() {
        // Both calls would run the per-layer products: nothing to compare.
        return;
    }
    for method in [ContMethod::Ct, ContMethod::Fm] {
        let (mut m, x) = trained_one_hot(method, 200, 3);
        let cache = m.prepare(&x).unwrap();
        let net = m.net_mut();
        let fused_head = net.fused_cached_head().unwrap().expect("FC label path");
        let head = net.cached_head().unwrap().expect("FC label path");
        let z_all = ops::randn(&[200, 10], DType::F32, &mut RngStream::new(4, 4)).unwrap();
        for t in [0.0, 0.37, 0.999] {
            let whole = fused_head.logits(&cache, &z_all, t).unwrap().to_vec_f32();
            for rows in [1usize, 7, 17, 64, 100, 200] {
                let part = cache.rows(0..rows).unwrap();
                let z = ops::gather_rows(&z_all, &(0..rows).collect::<Vec<_>>()).unwrap();
                let fused = fused_head.logits(&part, &z, t).unwrap();
                let layers = head.logits(&part, &z, t).unwrap();
                assert_eq!(fused.shape(), &[rows, 10]);
                // A row's logits do not depend on the batch around it.
                assert_eq!(fused.to_vec_f32(), whole[..rows * 10]);
                let (a, b) = (fused.to_vec_f64(), layers.to_vec_f64());
                assert!(b.iter().any(|v| *v != 0.0));
                for (p, q) in a.iter().zip(&b) {
                    assert!(
                        (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                        "{method:?} {rows} rows, t = {t}: fused {p} vs per-layer {q}"
                    );
                }
            }
        }
    }
}

/// Inference's steps fold the label layer's ReLU into `W1_z` row by row
/// ([`ops::PackedMlp::forward_folded`]): over a run of steps on moving
/// latents, the folded logits agree with the unfolded ones to f32 rounding,
/// and a row's logits do not depend on the rows stepped beside it.
#[test]
fn folded_steps_agree_with_unfolded_ones() {
    if no_fused_kernel() {
        // Both paths would run the per-layer products: nothing to compare.
        return;
    }
    for method in [ContMethod::Ct, ContMethod::Fm] {
        let (mut m, x) = trained_one_hot(method, 60, 5);
        let cache = m.prepare(&x).unwrap();
        let part = cache.rows(0..7).unwrap();
        let head = m
            .net_mut()
            .fused_cached_head()
            .unwrap()
            .expect("FC label path");
        let mut rng = RngStream::new(6, 6);
        let mut z = ops::randn(&[60, 10], DType::F32, &mut rng).unwrap();
        let (mut whole, mut first) = (ops::FoldedRows::default(), ops::FoldedRows::default());
        for k in 0..200 {
            let t = k as f64 / 200.0;
            let folded = head.logits_along(&mut whole, &cache, &z, t).unwrap();
            let plain = head.logits(&cache, &z, t).unwrap();
            let (a, b) = (folded.to_vec_f64(), plain.to_vec_f64());
            assert!(b.iter().any(|v| *v != 0.0));
            for (p, q) in a.iter().zip(&b) {
                assert!(
                    (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                    "{method:?} step {k}: folded {p} vs unfolded {q}"
                );
            }
            let z7 = ops::gather_rows(&z, &(0..7).collect::<Vec<_>>()).unwrap();
            let alone = head.logits_along(&mut first, &part, &z7, t).unwrap();
            assert_eq!(alone.to_vec_f32(), folded.to_vec_f32()[..70]);
            let step = ops::randn(&[60, 10], DType::F32, &mut rng).unwrap();
            z = ops::add_scaled(1.0, &z, 0.05, &step).unwrap();
        }
    }
}

#[test]
fn fm_rejects_the_ancestral_sampler_and_zero_steps() {
    let mut m = model(ContMethod::Fm, (1, 28, 28), 10, EmbeddingKind::OneHot, 0);
    let x = images(2, 0);
    assert!(m.predict(&x, Sampler::Ancestral, 10, true, 0).is_err());
    assert!(m.predict(&x, Sampler::Euler, 0, true, 0).is_err());
    assert!("midpoint".parse::<Sampler>().is_err());
}

/// Central finite differences of the batch loss against the accumulated
/// gradients, everything in f64 (dropout masks are keyed by the step, so the
/// loss is a deterministic function of the parameters).
fn check_gradients(method: ContMethod, kind: EmbeddingKind) {
    let mut m = model(method, (1, 28, 28), 10, kind, 4);
    m.to_dtype(DType::F64);
    let x = images(5, 8).to_dtype(DType::F64);
    let labels = [3usize, 1, 4, 1, 5];
    let loss_at = |m: &mut NoPropCont| -> f64 {
        let l = m.accumulate_grads(&x, &labels).unwrap();
        m.net_mut().zero_grad();
        m.embedding.zero_grad();
        if let Some(s) = m.schedule.as_mut() {
            s.zero_grad();
        }
        for p in m.classifier.params() {
            p.grad.fill(0.0);
        }
        l.total()
    };
    // Analytic gradients.
    m.accumulate_grads(&x, &labels).unwrap();
    let sched_grad = m.schedule.as_ref().map(|s| s.grad());
    let emb_grad = m.embedding.grad_mut().to_vec_f64();
    let net_grads: Vec<(String, Vec<f64>)> = m
        .net_mut()
        .params()
        .into_iter()
        .map(|p| (p.name.clone(), p.grad.to_vec_f64()))
        .collect();
    m.net_mut().zero_grad();
    m.embedding.zero_grad();
    if let Some(s) = m.schedule.as_mut() {
        s.zero_grad();
    }
    let close = |fd: f64, an: f64, what: &str| {
        assert!(
            (fd - an).abs() <= 1e-5 * (1.0 + an.abs().max(fd.abs())),
            "{method:?} {kind} {what}: finite difference {fd} vs analytic {an}"
        );
    };
    // Schedule parameters: ψ entries and both endpoints.
    if let Some(g) = sched_grad {
        let w = m.schedule.as_ref().unwrap().width();
        for k in [0usize, 5, w + 3, 2 * w + 7, 3 * w + 1, 3 * w + 2] {
            let h = 1e-6;
            let p0 = m.schedule.as_ref().unwrap().params();
            let mut pp = p0.clone();
            pp[k] += h;
            let mut pm = p0.clone();
            pm[k] -= h;
            *m.schedule.as_mut().unwrap() =
                noprop_schedules::LearnableSchedule::from_params(w, pp).unwrap();
            let lp = loss_at(&mut m);
            *m.schedule.as_mut().unwrap() =
                noprop_schedules::LearnableSchedule::from_params(w, pm).unwrap();
            let lm = loss_at(&mut m);
            *m.schedule.as_mut().unwrap() =
                noprop_schedules::LearnableSchedule::from_params(w, p0).unwrap();
            close((lp - lm) / (2.0 * h), g[k], &format!("schedule param {k}"));
        }
    }
    // W_Embed entries of classes in the batch.
    if m.embedding.trainable() {
        let d = m.embedding.dim();
        for (r, c) in [(1usize, 0usize), (3, 2), (5, d - 1), (4, d / 2)] {
            let k = r * d + c;
            let h = 1e-6;
            let base = m.embedding.weight.clone();
            let mut v = base.to_vec_f64();
            v[k] += h;
            m.embedding.weight = Tensor::from_vec(v.clone(), base.shape()).unwrap();
            let lp = loss_at(&mut m);
            v[k] -= 2.0 * h;
            m.embedding.weight = Tensor::from_vec(v, base.shape()).unwrap();
            let lm = loss_at(&mut m);
            m.embedding.weight = base;
            close(
                (lp - lm) / (2.0 * h),
                emb_grad[k],
                &format!("W_Embed[{r},{c}]"),
            );
        }
    }
    // A few network parameters: label path, time path, fusion, image FC.
    for (name, idx) in [
        ("label", 3usize),
        ("time.fc.weight", 100),
        ("head.fc1.weight", 600),
        ("head.fc3.bias", 2),
        ("img.fc.weight", 4242),
    ] {
        let (pname, grad) = net_grads
            .iter()
            .find(|(n, _)| n.starts_with(name))
            .expect("parameter");
        let h = 1e-6;
        let set = |m: &mut NoPropCont, delta: f64| {
            for p in m.net_mut().params() {
                if &p.name == pname {
                    let mut v = p.value.to_vec_f64();
                    v[idx] += delta;
                    *p.value = Tensor::from_vec(v, p.value.shape()).unwrap();
                }
            }
        };
        set(&mut m, h);
        let lp = loss_at(&mut m);
        set(&mut m, -2.0 * h);
        let lm = loss_at(&mut m);
        set(&mut m, h);
        close((lp - lm) / (2.0 * h), grad[idx], &format!("{pname}[{idx}]"));
    }
}

#[test]
fn ct_gradients_match_finite_differences() {
    check_gradients(ContMethod::Ct, EmbeddingKind::Learned { dim: 20 });
    check_gradients(ContMethod::Ct, EmbeddingKind::OneHot);
}

#[test]
fn fm_gradients_match_finite_differences() {
    check_gradients(ContMethod::Fm, EmbeddingKind::Learned { dim: 20 });
    check_gradients(ContMethod::Fm, EmbeddingKind::OneHot);
}

#[test]
fn checkpoint_round_trip_continues_bit_exactly() {
    let x = images(8, 11);
    let labels: Vec<usize> = (0..8).map(|i| i % 10).collect();
    for (method, kind) in [
        (ContMethod::Ct, EmbeddingKind::Learned { dim: 20 }),
        (ContMethod::Fm, EmbeddingKind::Learned { dim: 20 }),
    ] {
        let mut a = model(method, (1, 28, 28), 10, kind, 2);
        for _ in 0..2 {
            a.train_batch(&x, &labels, 0).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ct.safetensors");
        a.save(&path, Default::default()).unwrap();
        let (mut b, meta) = NoPropCont::load(&path).unwrap();
        assert_eq!(meta.get("method").map(String::as_str), Some(method.name()));
        assert_eq!(b.config, a.config);
        assert_eq!(b.step, 2);
        let la = a.train_batch(&x, &labels, 0).unwrap();
        let lb = b.train_batch(&x, &labels, 0).unwrap();
        assert_eq!(la, lb);
        let sa = a.state_tensors().unwrap();
        let sb = b.state_tensors().unwrap();
        assert_eq!(sa.len(), sb.len());
        for ((na, ta), (nb, tb)) in sa.iter().zip(&sb) {
            assert_eq!(na, nb);
            assert!(ta.bit_eq(tb), "{na} differs after resuming");
        }
        if method == ContMethod::Ct {
            assert!(sa.iter().any(|(n, _)| n == "schedule.params"));
            assert!(sa.iter().any(|(n, _)| n == "opt.schedule.params.exp_avg"));
        }
    }
}
