//! Measures how long loading + verifying Fashion-MNIST (or another dataset)
//! takes, and how long one epoch of batching (batch 128, normalised f32)
//! takes.
//!
//! ```text
//! cargo run -p noprop-datasets --release --example load_time [dataset] [data-dir]
//! ```

use noprop_datasets::{
    load, Augment, BatchBuf, BatchOptions, DatasetName, LoadOptions, StampCache,
};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name: DatasetName = args.next().as_deref().unwrap_or("fashion-mnist").parse()?;
    let data_dir = args.next().map(std::path::PathBuf::from);
    let base = LoadOptions {
        data_dir,
        stamps: StampCache::Off,
        ..LoadOptions::default()
    };

    let timed = |label: &str, opts: &LoadOptions| -> Result<_, Box<dyn std::error::Error>> {
        let t = Instant::now();
        let data = load(name, opts)?;
        let dt = t.elapsed();
        let how: Vec<String> = data
            .files
            .iter()
            .map(|f| format!("{:?}", f.verification))
            .collect();
        println!(
            "{label:<34} {:>8.1} ms  ({} train / {} test from {}; {})",
            dt.as_secs_f64() * 1e3,
            data.train.len(),
            data.test.len(),
            data.source.display(),
            how.join(",")
        );
        Ok(data)
    };

    println!("{name}: release-mode timings");
    timed("load + verify (SHA-256, no cache)", &base)?;
    timed(
        "load, no verify",
        &LoadOptions {
            verify: false,
            ..base.clone()
        },
    )?;
    let stamp_dir = std::env::temp_dir().join(format!("noprop-load-time-{}", std::process::id()));
    let cached = LoadOptions {
        stamps: StampCache::Dir(stamp_dir.clone()),
        ..base.clone()
    };
    timed("load + verify, stamp cache cold", &cached)?;
    let data = timed("load + verify, stamp cache warm", &cached)?;
    let _ = std::fs::remove_dir_all(&stamp_dir);

    let t = Instant::now();
    let norm = data.normalization();
    println!(
        "{:<34} {:>8.1} ms  (mean {:?}, std {:?})",
        "per-channel mean/std (train)",
        t.elapsed().as_secs_f64() * 1e3,
        norm.mean,
        norm.std
    );

    let epochs = 3u64;
    for (label, augment) in [
        ("batching, normalised f32", None),
        ("batching + crop/flip", Some(Augment::default())),
    ] {
        let mut buf = BatchBuf::new();
        let mut opts = BatchOptions::new(128).shuffle(0).normalize(norm.clone());
        opts.augment = augment;
        let mut batches = data.train.batches(opts)?;
        let t = Instant::now();
        let mut checksum = 0.0f64;
        for epoch in 0..epochs {
            batches.set_epoch(epoch);
            while batches.next_into(&mut buf) {
                checksum += f64::from(buf.images()[0]);
            }
        }
        let per_epoch = t.elapsed().as_secs_f64() / epochs as f64;
        println!(
            "{:<34} {:>8.1} ms / epoch  ({} batches of 128; checksum {checksum:.3})",
            label,
            per_epoch * 1e3,
            batches.num_batches()
        );
    }
    Ok(())
}
