//! The caching device allocator reaches a steady state: after warm-up, a
//! repeated step allocates nothing new on the device.
//!
//! The pool is shared by every user of a GPU in the process, so this test
//! lives alone in its own test binary (its own process): no other test can
//! allocate while it counts, whatever the test threads or their scheduling.
//! Prints `SKIPPED …` and passes without a usable GPU (see `common/mod.rs`).

mod common;

use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Device};

#[test]
fn allocator_steady_state() {
    let Some(Device::Cuda(gpu)) = common::cuda_device("allocator_steady_state") else {
        return;
    };
    // A stream of its own, so that the step's work is all this test queues.
    let d = gpu.new_stream().unwrap();
    let dev = Device::Cuda(d.clone());
    let randn = |shape: &[usize], stream: u64| {
        let mut rng = RngStream::new(0x5eed, stream);
        let t = ops::randn(shape, DType::F32, &mut rng).unwrap();
        t.to_device(&dev).unwrap()
    };
    let x = randn(&[64, 128], 5000);
    let w = randn(&[128, 32], 5001);
    let step = || {
        let y = ops::matmul(&x, Transpose::No, &w, Transpose::No).unwrap();
        let r = ops::relu(&y).unwrap();
        let _ = ops::sum(&r).unwrap();
        dev.synchronize().unwrap();
    };
    step();
    step();
    let before = d.pool_stats().device_allocations;
    for _ in 0..10 {
        step();
    }
    assert_eq!(
        d.pool_stats().device_allocations,
        before,
        "steady state allocates nothing on the device"
    );
}
