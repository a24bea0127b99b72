//! Figure 4 of the paper: test accuracy against cumulative training time for
//! NoProp-CT, NoProp-FM and the adjoint baseline (one-hot), as SVG
//! (plotters) with the CSV of every plotted point beside it.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

/// One point of one curve: a cell's accuracy after an epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Dataset.
    pub dataset: String,
    /// Method.
    pub method: String,
    /// Seed.
    pub seed: u64,
    /// 1-based epoch.
    pub epoch: usize,
    /// Cumulative training seconds at the end of the epoch.
    pub seconds: f64,
    /// Test accuracy (0–1).
    pub test_accuracy: f64,
}

/// The CSV text of `points` (header + one line per point).
pub fn csv(points: &[Point]) -> String {
    let mut s = String::from("dataset,method,seed,epoch,cumulative_train_seconds,test_accuracy\n");
    for p in points {
        let _ = writeln!(
            s,
            "{},{},{},{},{:.3},{:.6}",
            p.dataset, p.method, p.seed, p.epoch, p.seconds, p.test_accuracy
        );
    }
    s
}

fn colour(method: &str) -> RGBColor {
    match method {
        "noprop-ct" => RGBColor(31, 119, 180),
        "noprop-fm" => RGBColor(44, 160, 44),
        // The relatives' plot (`super::relatives`) adds these.
        "noprop-dt" => RGBColor(255, 127, 14),
        "backprop" => RGBColor(0, 0, 0),
        "backprop-mlp" => RGBColor(127, 127, 127),
        "ccl" => RGBColor(148, 103, 189),
        "dfa" => RGBColor(140, 86, 75),
        "drtp" => RGBColor(227, 119, 194),
        "forward-forward" => RGBColor(188, 189, 34),
        "grad-boost" => RGBColor(23, 190, 207),
        _ => RGBColor(214, 39, 40),
    }
}

/// Mean over seeds, per epoch: (epoch, mean seconds, mean acc, min acc, max acc).
fn curve(points: &[&Point]) -> Vec<(f64, f64, f64, f64)> {
    let max_epoch = points.iter().map(|p| p.epoch).max().unwrap_or(0);
    (1..=max_epoch)
        .filter_map(|e| {
            let at: Vec<&&Point> = points.iter().filter(|p| p.epoch == e).collect();
            if at.is_empty() {
                return None;
            }
            let n = at.len() as f64;
            let t = at.iter().map(|p| p.seconds).sum::<f64>() / n;
            let acc: Vec<f64> = at.iter().map(|p| 100.0 * p.test_accuracy).collect();
            let mean = acc.iter().sum::<f64>() / n;
            let lo = acc.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = acc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            Some((t, mean, lo, hi))
        })
        .collect()
}

/// Draws one panel per dataset (side by side) into an SVG at `path`: the
/// mean over seeds as a line with markers, the band between the lowest
/// and highest seed shaded.
pub fn svg(points: &[Point], title: &str, path: &Path) -> Result<()> {
    svg_with_x(
        points,
        title,
        "cumulative training time (s)",
        (480, 400),
        path,
    )
}

/// [`svg`] with `x_desc` as the x axis label, for points whose `seconds`
/// hold another measure of time (the relatives' plot passes log₁₀ seconds),
/// and `(width, height)` pixels per panel; the x axis starts at 0 or at the
/// smallest x if that is negative.
pub fn svg_with_x(
    points: &[Point],
    title: &str,
    x_desc: &str,
    (width, height): (u32, u32),
    path: &Path,
) -> Result<()> {
    let mut datasets: Vec<&str> = points.iter().map(|p| p.dataset.as_str()).collect();
    datasets.sort_unstable();
    datasets.dedup();
    let panels = datasets.len().max(1);
    let root = SVGBackend::new(path, (width * panels as u32, height)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 18))?;
        let areas = root.split_evenly((1, panels));
        for (area, dataset) in areas.iter().zip(&datasets) {
            let here: Vec<&Point> = points.iter().filter(|p| p.dataset == *dataset).collect();
            let t_max = here.iter().map(|p| p.seconds).fold(1.0, f64::max) * 1.05;
            let t_min = here.iter().map(|p| p.seconds).fold(0.0, f64::min);
            let mut chart = ChartBuilder::on(area)
                .caption(*dataset, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(t_min..t_max, 0.0..100.0)?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc("test accuracy (%)")
                .draw()?;
            let mut methods: Vec<&str> = here.iter().map(|p| p.method.as_str()).collect();
            methods.sort_unstable();
            methods.dedup();
            for method in methods {
                let pts: Vec<&Point> = here
                    .iter()
                    .copied()
                    .filter(|p| p.method == method)
                    .collect();
                let c = curve(&pts);
                let col = colour(method);
                if c.len() > 1 {
                    let band: Vec<(f64, f64)> = c
                        .iter()
                        .map(|&(t, _, _, hi)| (t, hi))
                        .chain(c.iter().rev().map(|&(t, _, lo, _)| (t, lo)))
                        .collect();
                    chart.draw_series(std::iter::once(Polygon::new(band, col.mix(0.2))))?;
                }
                chart
                    .draw_series(LineSeries::new(
                        c.iter().map(|&(t, m, _, _)| (t, m)),
                        col.stroke_width(2),
                    ))?
                    .label(method)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                    });
                chart.draw_series(
                    c.iter()
                        .map(|&(t, m, _, _)| Circle::new((t, m), 3, col.filled())),
                )?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("drawing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(method: &str, seed: u64, epoch: usize, seconds: f64, acc: f64) -> Point {
        Point {
            dataset: "mnist".into(),
            method: method.into(),
            seed,
            epoch,
            seconds,
            test_accuracy: acc,
        }
    }

    #[test]
    fn curve_averages_seeds_and_bands_span_them() {
        let pts = [
            pt("noprop-fm", 0, 1, 10.0, 0.90),
            pt("noprop-fm", 1, 1, 12.0, 0.94),
            pt("noprop-fm", 0, 2, 20.0, 0.96),
        ];
        let refs: Vec<&Point> = pts.iter().collect();
        let c = curve(&refs);
        assert_eq!(c.len(), 2);
        assert!((c[0].0 - 11.0).abs() < 1e-12);
        assert!((c[0].1 - 92.0).abs() < 1e-9);
        assert!((c[0].2 - 90.0).abs() < 1e-9 && (c[0].3 - 94.0).abs() < 1e-9);
        assert!(csv(&pts).lines().count() == 4);
    }

    #[test]
    fn svg_is_written_with_every_method() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fig4.svg");
        let pts = [
            pt("noprop-fm", 0, 1, 10.0, 0.90),
            pt("noprop-fm", 0, 2, 20.0, 0.95),
            pt("noprop-ct", 0, 1, 11.0, 0.50),
            pt("adjoint", 0, 1, 30.0, 0.40),
        ];
        svg(&pts, "Figure 4", &path).expect("svg");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("<svg"));
        for m in ["noprop-fm", "noprop-ct", "adjoint", "mnist"] {
            assert!(text.contains(m), "{m} missing from the SVG");
        }
    }
}
