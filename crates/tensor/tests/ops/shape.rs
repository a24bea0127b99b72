//! Shape ops: see the parity table in `main.rs`.

use super::*;

/// Concatenation, split, gather, scatter-add and transpose: exact (scatter
/// adds in row order, rounded to the dtype), including empty batches.
fn concat_split_gather_scatter_transpose(dev: &Device) {
    for &b in &[1usize, 7, 63, 0] {
        for &dtype in dtypes(dev) {
            let r = rounder(dtype);
            let what = format!("batch {b} {dtype:?}");
            let widths = [1usize, 7, 63];
            let parts: Vec<Tensor> = widths
                .iter()
                .enumerate()
                .map(|(i, &w)| rand_t(&[b, w], dtype, 80 + i as u64))
                .collect();
            let dparts: Vec<Tensor> = parts.iter().map(|p| up(dev, p)).collect();
            let cat = ops::concat_cols(&dparts.iter().collect::<Vec<_>>()).unwrap();
            assert_eq!(cat.shape(), &[b, 71]);
            let pv: Vec<Vec<f64>> = parts.iter().map(|p| p.to_vec_f64()).collect();
            let mut want = Vec::new();
            for row in 0..b {
                for (p, &w) in pv.iter().zip(&widths) {
                    want.extend_from_slice(&p[row * w..(row + 1) * w]);
                }
            }
            check_exact(dev, &format!("concat_cols {what}"), &cat, &want);
            let sp = ops::split_cols(&cat, &widths).unwrap();
            for (i, (got, p)) in sp.iter().zip(&pv).enumerate() {
                check_exact(dev, &format!("split_cols {i} {what}"), got, p);
            }

            let table = rand_t(&[10, 63], dtype, 83);
            let tv = table.to_vec_f64();
            let idx: Vec<usize> = (0..b).map(|i| [3, 3, 9, 0][i % 4]).collect();
            let g = ops::gather_rows(&up(dev, &table), &idx).unwrap();
            let want: Vec<f64> = idx
                .iter()
                .flat_map(|&i| tv[i * 63..(i + 1) * 63].to_vec())
                .collect();
            check_exact(dev, &format!("gather_rows {what}"), &g, &want);
            let src = rand_t(&[b, 63], dtype, 84);
            let sv = src.to_vec_f64();
            let sc = ops::scatter_add_rows(&up(dev, &src), &idx, 10).unwrap();
            let mut want = vec![0.0; 10 * 63];
            for (row, &i) in idx.iter().enumerate() {
                for j in 0..63 {
                    want[i * 63 + j] = r(want[i * 63 + j] + sv[row * 63 + j]);
                }
            }
            check_exact(dev, &format!("scatter_add_rows {what}"), &sc, &want);
            parity(
                dev,
                &format!("scatter_add_rows {what}"),
                &sc,
                || ops::scatter_add_rows(&src, &idx, 10).unwrap(),
                Row::Exact,
            );
            assert!(ops::gather_rows(&up(dev, &table), &[10]).is_err());
        }
    }
    // scatter_add is gather's adjoint: <gather(T), S> = <T, scatter(S)> (f64).
    if dev.is_cpu() {
        let table = rand_t(&[10, 4], DType::F64, 83);
        let idx = [3usize, 3, 9, 0];
        let g = ops::gather_rows(&table, &idx).unwrap();
        let s = rand_t(&[4, 4], DType::F64, 84);
        let back_ = ops::scatter_add_rows(&s, &idx, 10).unwrap();
        assert_relative_eq!(
            ops::dot(&g, &s).unwrap(),
            ops::dot(&table, &back_).unwrap(),
            max_relative = 1e-12
        );
    }
    for &(rows, cols) in &[
        (7, 5),
        (1, 1),
        (7, 63),
        (63, 7),
        (100, 33),
        (257, 513),
        (0, 4),
    ] {
        for &dtype in dtypes(dev) {
            let x = rand_t(&[rows, cols], dtype, 85);
            let t = ops::transpose2d(&up(dev, &x)).unwrap();
            assert_eq!(t.shape(), &[cols, rows]);
            let want = naive_t(&x.to_vec_f64(), rows, cols);
            check_exact(
                dev,
                &format!("transpose2d {rows}x{cols} {dtype:?}"),
                &t,
                &want,
            );
        }
    }
}

test_device!(concat_split_gather_scatter_transpose,);
