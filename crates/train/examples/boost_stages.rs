//! Gradient boosting's accuracy against the number of active stages
//! (Emami & Martínez-Muñoz 2023): load a `--method grad-boost` checkpoint,
//! switch off the last-trained stages one by one, print the test accuracy
//! of the first `k` stages for `k = 1…T`.
//!
//! ```text
//! noprop train --method grad-boost --dataset fashion-mnist --epochs 10
//! cargo run --release -p noprop-train --example boost_stages -- \
//!     results/checkpoints/grad-boost-fashion-mnist-one-hot-s0/last.safetensors fashion-mnist
//! ```
//!
//! The same-width network trained end to end is
//! `noprop train --method backprop-mlp --hidden 320 --activation relu`
//! (T·J = 10·32 units by default).

use std::path::PathBuf;

use noprop_baselines::Relative;
use noprop_datasets::DatasetName;
use noprop_train::{accuracy_with, load_data, recorded_normalization};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(ckpt), Some(dataset)) = (args.next(), args.next()) else {
        return Err("usage: boost_stages CHECKPOINT DATASET".into());
    };
    let ckpt = PathBuf::from(ckpt);
    let dataset: DatasetName = dataset
        .parse()
        .map_err(|_| format!("unknown dataset `{dataset}`"))?;
    let (mut model, meta) = Relative::load(&ckpt)?;
    let data = load_data(dataset, &None, true)?;
    let norm = match recorded_normalization(&ckpt, &meta)? {
        Some(n) => n,
        None => data.normalization(),
    };
    let trained = model.stages_trained as usize;
    println!("active stages  test accuracy  ({trained} trained)");
    for k in 1..=trained {
        let acc = accuracy_with(
            &data.test,
            &norm,
            0,
            |x, _| Ok(model.predict_stages(x, k)?),
            |_, _| {},
        )?;
        println!("{k:>13}  {acc:.4}");
    }
    Ok(())
}
