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

/// `ws` packed, on a host that has the kernel.
fn pack(ws: &[(Tensor, Option<Tensor>, bool)]) -> PackedMlp {
    PackedMlp::pack(&spec(ws))
        .unwrap()
        .expect("the host has the kernel")
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
    let packed = pack(&ws);
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
    let packed = pack(&ws);
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

/// `got` against the `f64` reference: the largest difference over the
/// largest reference value (at least 1), and whether some output is not zero.
fn rel_err(got: &Tensor, want: &[f64]) -> (f64, bool) {
    let got = got.as_slice::<f32>().unwrap();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w).abs()));
    (err / scale, want.iter().any(|v| *v != 0.0))
}

/// `x + s·N(0, I)`, the inputs of the next call of a row set.
fn nudge(x: &Tensor, s: f64, rng: &mut RngStream) -> Tensor {
    let n = ops::randn(x.shape(), DType::F32, rng).unwrap();
    ops::add_scaled(1.0, x, s, &n).unwrap()
}

/// Units whose state differs between the patterns two states' `M̃` hold
/// (units folded in or out between them).
fn flips(a: &FoldedRows, b: &FoldedRows) -> u32 {
    a.masks
        .iter()
        .zip(&b.masks)
        .map(|(x, y)| (x ^ y).count_ones())
        .sum()
}

/// Units whose state in layer 0 (`l0`, in `f64`) at `x` differs from the
/// pattern the rows' `M̃` hold: the units the last call corrected for.
fn units_behind(l0: &[(Tensor, Option<Tensor>, bool)], x: &Tensor, state: &FoldedRows) -> usize {
    let s = reference(l0, x, None);
    let (rows, n0) = (x.dim(0), l0[0].0.dim(0));
    let bytes = state.masks.len() / rows;
    (0..rows)
        .flat_map(|r| (0..n0).map(move |j| (r, j)))
        .filter(|&(r, j)| {
            let held = state.masks[r * bytes + j / 8] >> (j % 8) & 1 == 1;
            held != (s[r * n0 + j] > 0.0)
        })
        .count()
}

/// Folded calls on a slowly moving row set (and one jump to new inputs)
/// against the `f64` reference at every call: the CT/FM step shapes, odd
/// widths with a layer-1 bias, a two-layer chain with `k0 + 1 > 12`.
#[test]
fn folded_calls_agree_with_the_reference() {
    if unavailable() {
        return;
    }
    let mut cases = vec![
        (
            layers(&[10, 256, 256, 128, 10], 4),
            Some(1),
            vec![1, 7, 49, 250],
        ),
        (layers(&[5, 50, 37, 9], 3), Some(1), vec![1, 6, 13]),
        (layers(&[20, 96, 40], 2), None, vec![2, 50]),
    ];
    let mut rng = RngStream::new(21, 5);
    cases[1].0[1].1 = Some(ops::randn(&[37], DType::F32, &mut rng).unwrap());
    for (ws, addend_layer, row_counts) in &cases {
        let packed = pack(ws);
        assert!(packed.folds(), "{:?}", ws[0].0.shape());
        let (k0, n1) = (ws[0].0.dim(1), ws[1].0.dim(0));
        for &rows in row_counts {
            let mut state = FoldedRows::default();
            let mut x = ops::randn(&[rows, k0], DType::F32, &mut rng).unwrap();
            let extra = addend_layer.map(|l| {
                (
                    l,
                    ops::randn(&[rows, n1], DType::F32, &mut rng).unwrap(),
                    ops::randn(&[n1], DType::F32, &mut rng).unwrap(),
                )
            });
            let (mut worst, mut moved, mut lagging) = (0f64, 0, 0);
            for call in 0..40 {
                x = if call == 20 {
                    ops::randn(&[rows, k0], DType::F32, &mut rng).unwrap()
                } else {
                    nudge(&x, 0.05, &mut rng)
                };
                let before = state.clone();
                let addend = extra.as_ref().map(|(l, r, b)| LayerAddend {
                    layer: *l,
                    rows: r,
                    bias: b,
                });
                let got = packed.forward_folded(&mut state, &x, addend).unwrap();
                if call > 0 {
                    moved += flips(&before, &state);
                }
                lagging += units_behind(&ws[..1], &x, &state);
                let want = reference(ws, &x, extra.as_ref().map(|(l, r, b)| (*l, r, b)));
                let (err, nonzero) = rel_err(&got, &want);
                assert!(nonzero, "rows {rows} call {call}: an all-zero output");
                worst = worst.max(err);
            }
            assert!(
                worst <= 1e-5,
                "{:?} rows {rows}: relative error {worst:e}",
                ws[0].0.shape()
            );
            // Not vacuous: units were folded in and out of `M̃` between
            // calls, and other calls corrected `M̃`'s product for units
            // not folded yet.
            assert!(moved > 0, "rows {rows}: no unit ever folded");
            assert!(lagging > 0, "rows {rows}: no call corrected M̃");
        }
    }
}

/// A thousand calls of small steps (the inference regime: hundreds of
/// rank-one updates of each row's `M̃`), then the reference.
#[test]
fn a_thousand_folded_calls_stay_within_f32_rounding() {
    if unavailable() {
        return;
    }
    let ws = layers(&[10, 256, 256, 128, 10], 8);
    let packed = pack(&ws);
    let mut rng = RngStream::new(3, 9);
    let mut state = FoldedRows::default();
    let mut x = ops::randn(&[12, 10], DType::F32, &mut rng).unwrap();
    let mut moved = 0;
    let mut got = None;
    for _ in 0..1000 {
        x = nudge(&x, 0.1, &mut rng);
        let before = state.clone();
        got = Some(packed.forward_folded(&mut state, &x, None).unwrap());
        moved += flips(&before, &state);
    }
    let (err, nonzero) = rel_err(&got.unwrap(), &reference(&ws, &x, None));
    assert!(nonzero);
    assert!(
        err <= 1e-5,
        "relative error {err:e} after {moved} units folded"
    );
    // Not vacuous: hundreds of units were folded into each row's `M̃`
    // (and the calls between corrected the product for the others).
    assert!(
        moved > 12 * 400,
        "only {moved} units folded in 12 rows × 1000 calls"
    );
}

#[test]
fn a_folded_row_is_the_same_whatever_the_batch_around_it() {
    if unavailable() {
        return;
    }
    let ws = layers(&[10, 256, 128, 10], 6);
    let packed = pack(&ws);
    let mut rng = RngStream::new(8, 3);
    let mut xs = vec![ops::randn(&[131, 10], DType::F32, &mut rng).unwrap()];
    for _ in 0..5 {
        xs.push(nudge(xs.last().unwrap(), 0.2, &mut rng));
    }
    let mut state = FoldedRows::default();
    let whole: Vec<Tensor> = xs
        .iter()
        .map(|x| packed.forward_folded(&mut state, x, None).unwrap())
        .collect();
    for rows in [0..1, 3..50, 49..131, 96..97] {
        let pick = rows.clone().collect::<Vec<_>>();
        let mut state = FoldedRows::default();
        for (x, w) in xs.iter().zip(&whole) {
            let part = ops::gather_rows(x, &pick).unwrap();
            let got = packed.forward_folded(&mut state, &part, None).unwrap();
            assert_eq!(
                got.as_slice::<f32>().unwrap(),
                &w.as_slice::<f32>().unwrap()[rows.start * 10..rows.end * 10],
                "rows {rows:?}"
            );
        }
    }
}

#[test]
fn chains_that_do_not_fold_run_the_dense_kernel() {
    if unavailable() {
        return;
    }
    // Too many inputs for the fold to pay (k0 + 1 → 72 > 40 / 4), and a
    // layer 0 without a ReLU.
    let wide = layers(&[64, 40, 24], 1);
    let mut linear = layers(&[10, 256, 16], 2);
    linear[0].2 = false;
    for ws in [wide, linear] {
        let packed = pack(&ws);
        assert!(!packed.folds());
        let x = ops::randn(&[9, ws[0].0.dim(1)], DType::F32, &mut RngStream::new(1, 2)).unwrap();
        let mut state = FoldedRows::default();
        let got = packed.forward_folded(&mut state, &x, None).unwrap();
        assert!(got.bit_eq(&packed.forward(&x, None).unwrap()));
        assert!(state.owner.is_none() && state.m.is_empty());
    }
}

#[test]
fn misused_folded_rows_are_errors() {
    if unavailable() {
        return;
    }
    let ws = layers(&[10, 64, 8], 3);
    let packed = pack(&ws);
    let again = pack(&ws);
    let other = pack(&layers(&[10, 64, 8], 4));
    let mut rng = RngStream::new(4, 4);
    let x = ops::randn(&[5, 10], DType::F32, &mut rng).unwrap();
    let mut state = FoldedRows::default();
    packed.forward_folded(&mut state, &x, None).unwrap();
    // Another packing of the same weights may carry on.
    again.forward_folded(&mut state, &x, None).unwrap();
    assert!(other.forward_folded(&mut state, &x, None).is_err());
    let fewer = ops::randn(&[4, 10], DType::F32, &mut rng).unwrap();
    assert!(packed.forward_folded(&mut state, &fewer, None).is_err());
    let narrow = ops::randn(&[5, 9], DType::F32, &mut rng).unwrap();
    assert!(packed
        .forward_folded(&mut FoldedRows::default(), &narrow, None)
        .is_err());
    let (rows, bias) = (
        ops::randn(&[5, 64], DType::F32, &mut rng).unwrap(),
        ops::randn(&[64], DType::F32, &mut rng).unwrap(),
    );
    let on_layer_0 = LayerAddend {
        layer: 0,
        rows: &rows,
        bias: &bias,
    };
    assert!(packed
        .forward_folded(&mut FoldedRows::default(), &x, Some(on_layer_0))
        .is_err());
}
