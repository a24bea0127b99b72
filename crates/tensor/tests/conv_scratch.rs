//! Convolution scratch memory is shared, not kept per layer: a model that
//! trains many conv layers one after another holds the buffers of one, not
//! of all. (Own test binary: the pool is process-wide.)

use noprop_tensor::ops;
use noprop_tensor::philox::RngStream;
use noprop_tensor::DType;

#[test]
fn conv_workspaces_return_their_buffers_to_one_pool() {
    let mut rng = RngStream::new(7, 0);
    let x = ops::randn(&[16, 32, 13, 13], DType::F32, &mut rng).unwrap();
    // Ten layers of the same shape, trained one after another, as the ten
    // blocks of NoProp-DT are.
    let mut layers: Vec<(noprop_tensor::Tensor, ops::ConvWorkspace)> = (0..10)
        .map(|_| {
            let w = ops::randn(&[64, 32, 3, 3], DType::F32, &mut rng).unwrap();
            (w, ops::ConvWorkspace::new())
        })
        .collect();
    let mut pool_after_first = None;
    for (i, (w, ws)) in layers.iter_mut().enumerate() {
        let y = ops::conv2d_forward(&x, w, None, 0, true, ws).unwrap();
        // Between forward and backward a layer holds its input only (shared
        // with the caller, not copied): no im2col matrix of the batch.
        assert_eq!(ws.size_in_bytes(), x.size_in_bytes(), "layer {i}");
        let g = ops::conv2d_backward(&y, w, Some(&y), ws, true).unwrap();
        assert!(g.dx.is_some());
        // After the backward it holds nothing ...
        assert_eq!(ws.size_in_bytes(), 0, "layer {i}");
        // ... and the pool does not grow with the number of layers trained.
        let pool = ops::scratch_pool_bytes();
        assert!(pool > 0);
        match pool_after_first {
            None => pool_after_first = Some(pool),
            Some(p) => assert_eq!(pool, p, "layer {i}: the pool grew"),
        }
    }
    // The pool holds one backward's scratch: for each of the two parts of
    // the batch, one image's column matrix, its gradient and the sparse
    // path's transposed copy, one image's output gradient, and a part's
    // weight and bias gradients. That is
    // far less than the batch's im2col matrix (32·9 × 16·121 values).
    let (kk, p, oc) = (32 * 9, 11 * 11, 64);
    let one_backward = 2 * (3 * kk * p + oc * p + oc * kk + oc) * 4;
    assert_eq!(pool_after_first.unwrap(), one_backward);
    assert!(one_backward < kk * 16 * p * 4);
    // A second backward without a forward is refused, not served from the pool.
    let (w, ws) = &mut layers[0];
    assert!(ops::conv2d_backward(&x, w, None, ws, true).is_err());
}
