//! Time one NoProp-DT block training step (block update + shared step) at
//! batch 128 for 1×28×28 and 3×32×32 inputs, one-hot embedding, T = 10.
//! Prints one JSON object per line; `benches/peers/noprop_dt_torch.py step`
//! prints the PyTorch numbers in the same format.

use std::time::Instant;

use noprop_models::{ClassEmbedding, DtConfig, EmbeddingKind, NoPropDt};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType};

fn main() {
    // On a rayon worker, as the `noprop` binary runs (each op's parallel
    // loop then starts inside the pool; noprop_train::Trainer's docs).
    rayon::scope(|_| run());
}

fn run() {
    noprop_tensor::tune_host_allocator();
    let reps: usize = std::env::var("DT_STEP_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let batch = 128;
    // `DT_STEP_ONLY=1x28x28` (or `3x32x32`) times one input shape only.
    let only = std::env::var("DT_STEP_ONLY").ok();
    for (c, hw) in [(1usize, 28usize), (3, 32)] {
        if only
            .as_deref()
            .is_some_and(|o| o != format!("{c}x{hw}x{hw}"))
        {
            continue;
        }
        let cfg = DtConfig::paper((c, hw, hw), 10, EmbeddingKind::OneHot, 0);
        let mut model = NoPropDt::new(cfg, ClassEmbedding::one_hot(10)).expect("model");
        let x =
            ops::randn(&[batch, c, hw, hw], DType::F32, &mut RngStream::new(0, 0)).expect("randn");
        let y: Vec<usize> = (0..batch).map(|i| i % 10).collect();
        for _ in 0..3 {
            model.train_block(5, &x, &y, 0).expect("step");
        }
        let mut t: Vec<f64> = (0..reps)
            .map(|_| {
                let s = Instant::now();
                model.train_block(5, &x, &y, 0).expect("step");
                s.elapsed().as_secs_f64()
            })
            .collect();
        t.sort_by(|a, b| a.total_cmp(b));
        let med = t[t.len() / 2];
        println!(
            "{{\"bench\":\"dt_block_step\",\"input\":\"{c}x{hw}x{hw}\",\"impl\":\"noprop-rs\",\"threads\":{},\"batch\":{batch},\"seconds\":{med:.6},\"images_per_second\":{:.2}}}",
            rayon::current_num_threads(),
            batch as f64 / med
        );
    }
}
