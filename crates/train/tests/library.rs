//! The trainer driven from Rust: events reach observers in order, the JSON
//! result and checkpoint are written, invalid requests fail before any data
//! is read, and an observer's error stops the run.

use std::cell::RefCell;
use std::rc::Rc;

use noprop_datasets::DatasetName;
use noprop_models::{ClassEmbedding, EmbeddingKind, NoPropDt};
use noprop_train::{
    flat_images, load_data, EmbeddingInitArg, Error, Event, MethodName, Observer, Phase,
    SamplerArg, TrainConfig, Trainer,
};

/// Records a compact trace of the events.
struct Trace(Rc<RefCell<Vec<String>>>);

impl Observer for Trace {
    fn on_event(&mut self, e: &Event<'_>) -> noprop_train::Result<()> {
        let s = match e {
            Event::Started { epoch, epochs } => format!("start {epoch}/{epochs}"),
            Event::EpochStarted { epoch, batches, .. } => format!("epoch {epoch} ({batches})"),
            Event::Batch { done, loss, .. } => {
                assert!(loss.is_finite());
                format!("batch {done}")
            }
            Event::EvalStarted { phase, batches, .. } => format!("eval {phase:?} ({batches})"),
            Event::EvalBatch { .. } => return Ok(()),
            Event::EpochFinished { metrics } => format!("done {}", metrics.epoch),
            Event::Finished { .. } => "finished".into(),
            _ => "other".into(),
        };
        self.0.borrow_mut().push(s);
        Ok(())
    }
}

fn small(method: MethodName, dir: &std::path::Path) -> TrainConfig {
    let mut c = TrainConfig::new(method, DatasetName::MnistTestSplit);
    c.limit_train = 256;
    c.limit_test = 100;
    c.train_eval_limit = 100;
    c.steps = Some(2);
    c.results_dir = dir.to_path_buf();
    c
}

#[test]
fn events_result_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let trace = Rc::new(RefCell::new(Vec::new()));
    let report = Trainer::new(small(MethodName::Backprop, dir.path()))
        .unwrap()
        .observe(Trace(trace.clone()))
        .fit()
        .unwrap();
    let t = trace.borrow();
    assert_eq!(
        *t,
        [
            "start 1/1",
            "epoch 1 (2)",
            "batch 1",
            "batch 2",
            "eval Epoch (1)",
            "eval Epoch (1)",
            "done 1",
            "eval Final (1)",
            "finished",
        ]
    );
    let acc = report.test_accuracy.unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert_eq!(report.history.len(), 1);
    assert!(report.checkpoint.exists());
    let path = report.result_path.unwrap();
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk, report.result);
    assert_eq!(on_disk["method"], "backprop");
    assert_eq!(on_disk["train_images"], 256);
    assert_eq!(on_disk["test_accuracy"].as_f64(), Some(acc));
    let _ = Phase::Final;
}

#[test]
fn invalid_requests_fail_before_loading_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = small(MethodName::NopropFm, dir.path());
    c.sampler = Some(SamplerArg::Ancestral);
    // A data folder that does not exist: validation must answer first.
    c.data_dir = Some(dir.path().join("nowhere"));
    match Trainer::new(c) {
        Err(Error::Config { why }) => assert!(why.contains("euler or heun"), "{why}"),
        other => panic!("expected a config error, got {:?}", other.err()),
    }
}

/// Stops the run at the second mini-batch.
struct StopAt(usize);

impl Observer for StopAt {
    fn on_event(&mut self, e: &Event<'_>) -> noprop_train::Result<()> {
        match e {
            Event::Batch { done, .. } if *done == self.0 => {
                Err(Error::Observer(format!("stopped at batch {done}")))
            }
            _ => Ok(()),
        }
    }
}

#[test]
fn an_observer_error_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let err = Trainer::new(small(MethodName::NopropDt, dir.path()))
        .unwrap()
        .observe(StopAt(1))
        .fit()
        .unwrap_err();
    assert_eq!(err.to_string(), "stopped at batch 1");
    // No result file for a run that did not finish.
    assert!(!dir
        .path()
        .join("noprop-dt-mnist-test-split-one-hot-s0.json")
        .exists());
}

/// `--embedding-init` decides the starting `W_Embed` of a `dimN` run: with a
/// zero learning rate the checkpoint still holds it after training.
#[test]
fn embedding_init_sets_the_starting_embedding() {
    let dir = tempfile::tempdir().unwrap();
    let run = |init: EmbeddingInitArg, dim: usize| {
        let mut c = small(MethodName::NopropDt, dir.path());
        c.embedding = EmbeddingKind::Learned { dim };
        c.embedding_init = Some(init);
        c.lr = 0.0;
        c.limit_test = 20;
        c.train_eval_limit = 20;
        c.seed = 7;
        Trainer::new(c).unwrap().fit()
    };
    let weight = |report: &noprop_train::TrainReport| {
        let (m, _) = NoPropDt::load(&report.checkpoint).unwrap();
        m.embedding.weight.to_vec_f32()
    };

    let r = run(EmbeddingInitArg::Random, 784).unwrap();
    assert_eq!(r.result["embedding_init"], "random");
    assert_eq!(
        weight(&r),
        ClassEmbedding::random(10, 784, 7).weight.to_vec_f32()
    );

    let r = run(EmbeddingInitArg::Orthogonal, 784).unwrap();
    assert_eq!(
        weight(&r),
        ClassEmbedding::orthogonal(10, 784, 7)
            .unwrap()
            .weight
            .to_vec_f32()
    );

    // The prototypes of the (cut) training split, as the network sees them.
    let r = run(EmbeddingInitArg::Prototype, 784).unwrap();
    let mut data = load_data(DatasetName::MnistTestSplit, &None, true).unwrap();
    data.train = data.train.slice(0..256).unwrap();
    let (x, y) = flat_images(&data.train, &data.normalization()).unwrap();
    let p = ClassEmbedding::prototype(&x, &y, 10, 1000, 7).unwrap();
    assert_eq!(weight(&r), p.weight.to_vec_f32());
    assert_eq!(r.result["embedding"], "dim784");
    // Figure 3's grid: initial above learned; with lr 0 the two rows match.
    let png_path = r.result["prototypes_png"].as_str().expect("prototypes_png");
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut px = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut px).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    assert_eq!((w, h), (10 * 30 + 2, 2 * 30 + 2));
    let row = |y: usize| &px[y * w * 3..(y + 1) * w * 3];
    for y in 2..30 {
        assert_eq!(row(y), row(y + 30), "pixel row {y}");
    }
    assert!(row(15).iter().any(|&v| v < 100), "an image, not a blank");

    // A prototype start needs the image dimension, an orthogonal one N ≥ m.
    let e = run(EmbeddingInitArg::Prototype, 20)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dim784"), "{e}");
    let e = run(EmbeddingInitArg::Orthogonal, 5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("d ≥ m"), "{e}");
}

/// `noprop train --dataset tiny-imagenet` finds a tree in the published
/// layout under `--data-dir` and trains on its 3×64×64 images.
#[test]
fn tiny_imagenet_layout_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-imagenet-200");
    let wnids = ["n01443537", "n01629819"];
    let jpeg = |v: u8| {
        let mut out = Vec::new();
        let px: Vec<u8> = (0..64 * 64)
            .flat_map(|i| [v, (i % 64) as u8, 255 - v])
            .collect();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&px, 64, 64, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    };
    std::fs::create_dir_all(dir.join("val/images")).unwrap();
    std::fs::write(dir.join("wnids.txt"), wnids.join("\n")).unwrap();
    let mut ann = String::new();
    for (c, w) in wnids.iter().enumerate() {
        let images = dir.join("train").join(w).join("images");
        std::fs::create_dir_all(&images).unwrap();
        for k in 0..4 {
            let v = (c * 150 + k * 10) as u8;
            std::fs::write(images.join(format!("{w}_{k}.JPEG")), jpeg(v)).unwrap();
        }
        std::fs::write(
            dir.join(format!("val/images/val_{c}.JPEG")),
            jpeg(c as u8 * 150),
        )
        .unwrap();
        ann.push_str(&format!("val_{c}.JPEG\t{w}\t0\t0\t63\t63\n"));
    }
    std::fs::write(dir.join("val/val_annotations.txt"), ann).unwrap();

    // Table 2's two methods, with v2's fourth conv (ConvStack::Four).
    for method in [MethodName::NopropDt, MethodName::Backprop] {
        let mut c = TrainConfig::new(method, DatasetName::TinyImagenet);
        c.data_dir = Some(tmp.path().to_path_buf());
        c.steps = Some(2);
        c.batch_size = 4;
        c.results_dir = tmp.path().join("results");
        let r = Trainer::new(c).unwrap().fit().unwrap();
        assert_eq!(r.result["train_images"], 8);
        assert_eq!(r.result["test_images"], 2);
        assert_eq!(r.result["data_source"], dir.display().to_string());
        assert!(r.test_accuracy.is_some_and(|a| (0.0..=1.0).contains(&a)));
    }
}
