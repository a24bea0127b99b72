//! The fused chain against per-layer products in `f64` on random inputs.

use super::*;
use crate::ops;
use crate::philox::RngStream;

/// `f64` reference: `ReLU?((x·Wᵀ + rows) + (b + bias))` layer by layer.
fn reference(
    ws: &[(Tensor, Option<Tensor>, bool)],
    x: &Tensor,
    addend: Option<(usize, &Tensor, &Tensor)>,
) -> Vec<f64> {
    let mut h = x.to_dtype(DType::F64);
    for (j, (w, b, relu)) in ws.iter().enumerate() {
        let mut y = ops::matmul(
            &h,
            ops::Transpose::No,
            &w.to_dtype(DType::F64),
            ops::Transpose::Yes,
        )
        .unwrap();
        let mut bias = match b {
            Some(b) => b.to_dtype(DType::F64),
            None => Tensor::zeros(&[w.dim(0)], DType::F64),
        };
        if let Some((layer, rows, extra)) = addend {
            if layer == j {
                ops::add_assign(&mut y, &rows.to_dtype(DType::F64)).unwrap();
                ops::add_assign(&mut bias, &extra.to_dtype(DType::F64)).unwrap();
            }
        }
        ops::add_bias_rows(&mut y, &bias).unwrap();
        if *relu {
            ops::relu_in_place(&mut y).unwrap();
        }
        h = y;
    }
    h.as_slice::<f64>().unwrap().to_vec()
}

fn layers(dims: &[usize], seed: u64) -> Vec<(Tensor, Option<Tensor>, bool)> {
    let mut rng = RngStream::new(seed, 1);
    dims.windows(2)
        .enumerate()
        .map(|(j, io)| {
            let w = ops::randn(&[io[1], io[0]], DType::F32, &mut rng).unwrap();
            let w = ops::scale(&w, 1.0 / (io[0] as f64).sqrt()).unwrap();
            let b = (j % 2 == 0).then(|| ops::randn(&[io[1]], DType::F32, &mut rng).unwrap());
            (w, b, j + 2 < dims.len())
        })
        .collect()
}

/// The layers of `ws` as a chain.
fn spec(ws: &[(Tensor, Option<Tensor>, bool)]) -> Vec<MlpLayer<'_>> {
    ws.iter()
        .map(|(w, b, relu)| MlpLayer {
            weight: w,
            bias: b.as_ref(),
            relu: *relu,
        })
        .collect()
}

/// Whether this host lacks the kernel (said on stderr, as the tests that
/// need it cannot compare anything then).
fn unavailable() -> bool {
    let no = !PackedMlp::available();
    if no {
        eprintln!("no AVX2+FMA (or AVX-512F present): the fused kernel is not used on this host");
    }
    no
}

#[test]
fn the_fused_chain_agrees_with_per_layer_products() {
    if unavailable() {
        // The kernel cannot run here; `pack` must say so rather than run it.
        let ws = layers(&[4, 16], 0);
        assert!(PackedMlp::pack(&spec(&ws)).unwrap().is_none());
        return;
    }
    // The CT/FM step shapes, and odd widths that leave partial panels.
    for (dims, addend_layer) in [
        (vec![10, 256, 256, 128, 10], Some(1)),
        (vec![7, 19, 33, 3], Some(1)),
        (vec![5, 17], Some(0)),
        (vec![64, 40, 24], None),
    ] {
        let ws = layers(&dims, dims.len() as u64);
        let spec = spec(&ws);
        let packed = PackedMlp::pack(&spec)
            .unwrap()
            .expect("the host has the kernel");
        assert_eq!(
            (packed.inputs(), packed.outputs()),
            (dims[0], *dims.last().unwrap())
        );
        for rows in [1, 5, 6, 7, 47, 48, 49, 100, 250] {
            let mut rng = RngStream::new(rows as u64, 2);
            let x = ops::randn(&[rows, dims[0]], DType::F32, &mut rng).unwrap();
            let extra = addend_layer.map(|l| {
                let n = dims[l + 1];
                (
                    l,
                    ops::randn(&[rows, n], DType::F32, &mut rng).unwrap(),
                    ops::randn(&[n], DType::F32, &mut rng).unwrap(),
                )
            });
            let got = packed
                .forward(
                    &x,
                    extra.as_ref().map(|(l, r, b)| LayerAddend {
                        layer: *l,
                        rows: r,
                        bias: b,
                    }),
                )
                .unwrap();
            assert_eq!(got.shape(), &[rows, *dims.last().unwrap()]);
            let want = reference(&ws, &x, extra.as_ref().map(|(l, r, b)| (*l, r, b)));
            let got = got.as_slice::<f32>().unwrap();
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let mut nonzero = 0;
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - w).abs() <= 1e-5 * scale,
                    "{dims:?} rows {rows}: element {i} is {g}, the f64 reference {w}"
                );
                nonzero += usize::from(w != 0.0);
            }
            assert!(
                nonzero > 0,
                "{dims:?} rows {rows}: an all-zero output checks nothing"
            );
        }
    }
}

/// Inputs zero in every row of a tile take the indexed loop (only the
/// nonzero inputs): here a bias of -100 silences every other output of the
/// first layer, so the second layer's tiles use at most half of their inputs.
#[test]
fn tiles_that_skip_zero_inputs_agree_with_the_reference() {
    if unavailable() {
        return;
    }
    let mut ws = layers(&[12, 64, 40, 10], 11);
    let b0: Vec<f32> = (0..64)
        .map(|i| if i % 2 == 0 { -100.0 } else { 0.5 })
        .collect();
    ws[0].1 = Some(Tensor::from_vec(b0, &[64]).unwrap());
    let spec = spec(&ws);
    let packed = PackedMlp::pack(&spec).unwrap().unwrap();
    for rows in [1, 6, 13, 100] {
        let x = ops::randn(&[rows, 12], DType::F32, &mut RngStream::new(rows as u64, 7)).unwrap();
        let got = packed.forward(&x, None).unwrap();
        let want = reference(&ws, &x, None);
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (&g, &w) in got.as_slice::<f32>().unwrap().iter().zip(&want) {
            assert!(
                (g as f64 - w).abs() <= 1e-5 * scale,
                "rows {rows}: {g} vs {w}"
            );
        }
        assert!(want.iter().any(|v| *v != 0.0));
    }
}

#[test]
fn each_row_is_the_same_whatever_the_batch_around_it() {
    if unavailable() {
        return;
    }
    let ws = layers(&[10, 256, 128, 10], 9);
    let spec = spec(&ws);
    let packed = PackedMlp::pack(&spec).unwrap().unwrap();
    let mut rng = RngStream::new(5, 3);
    let x = ops::randn(&[131, 10], DType::F32, &mut rng).unwrap();
    let whole = packed.forward(&x, None).unwrap();
    let whole = whole.as_slice::<f32>().unwrap();
    for rows in [0..1, 3..50, 49..131, 96..97] {
        let part = ops::gather_rows(&x, &rows.clone().collect::<Vec<_>>()).unwrap();
        let got = packed.forward(&part, None).unwrap();
        assert_eq!(
            got.as_slice::<f32>().unwrap(),
            &whole[rows.start * 10..rows.end * 10],
            "rows {rows:?}"
        );
    }
}

#[test]
fn mismatched_shapes_are_errors() {
    let mut rng = RngStream::new(1, 1);
    let w1 = ops::randn(&[8, 4], DType::F32, &mut rng).unwrap();
    let w2 = ops::randn(&[3, 7], DType::F32, &mut rng).unwrap();
    let l = |w| MlpLayer {
        weight: w,
        bias: None,
        relu: true,
    };
    assert!(PackedMlp::pack(&[l(&w1), l(&w2)]).is_err());
    assert!(PackedMlp::pack(&[]).is_err());
    let bad_bias = ops::randn(&[5], DType::F32, &mut rng).unwrap();
    let spec = [MlpLayer {
        weight: &w1,
        bias: Some(&bad_bias),
        relu: false,
    }];
    assert!(PackedMlp::pack(&spec).is_err());
    if let Some(p) = PackedMlp::pack(&[l(&w1)]).unwrap() {
        let x = ops::randn(&[2, 5], DType::F32, &mut rng).unwrap();
        assert!(p.forward(&x, None).is_err());
        let x = ops::randn(&[2, 4], DType::F32, &mut rng).unwrap();
        let rows = ops::randn(&[3, 8], DType::F32, &mut rng).unwrap();
        let bias = ops::randn(&[8], DType::F32, &mut rng).unwrap();
        let add = |layer, rows| LayerAddend {
            layer,
            rows,
            bias: &bias,
        };
        assert!(p.forward(&x, Some(add(0, &rows))).is_err());
        let rows = ops::randn(&[2, 8], DType::F32, &mut rng).unwrap();
        assert!(p.forward(&x, Some(add(1, &rows))).is_err());
        assert!(p.forward(&x, Some(add(0, &rows))).is_ok());
    }
}
