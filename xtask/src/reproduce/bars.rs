//! Grouped bar charts with ±s.e. error bars (the paper's Figures 6 and 7),
//! as a self-contained SVG written by hand (rectangles, lines and text;
//! categorical axes are simpler this way than with a plotting crate), with
//! the CSV of every bar beside it.

use std::fmt::Write as _;

/// One bar: a series' mean test accuracy in one group of one panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// Panel (a dataset).
    pub panel: String,
    /// Group on the x axis (an embedding, or an initialisation).
    pub group: String,
    /// Series (a classifier; one colour per series).
    pub series: String,
    /// Mean test accuracy (%).
    pub mean: f64,
    /// Standard error (%), `None` with fewer than two values.
    pub se: Option<f64>,
    /// Values averaged (seeds × inference runs).
    pub n: usize,
}

/// The CSV text of `bars` (header + one line per bar).
pub fn csv(bars: &[Bar]) -> String {
    let mut s = String::from("panel,group,series,n,mean_percent,se_percent\n");
    for b in bars {
        let se = b.se.map_or(String::new(), |v| format!("{v:.4}"));
        let _ = writeln!(
            s,
            "{},{},{},{},{:.4},{se}",
            b.panel, b.group, b.series, b.n, b.mean
        );
    }
    s
}

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 330.0;
const TOP: f64 = 70.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const BOTTOM: f64 = 44.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];

/// `[lo, hi]` of a panel's y axis (%), on multiples of `step`, with the
/// tick step: the bars' range (error bars included) with some air, at
/// least 0 and at most 100.
pub fn y_range(bars: &[&Bar]) -> (f64, f64, f64) {
    let lo = bars
        .iter()
        .map(|b| b.mean - b.se.unwrap_or(0.0))
        .fold(f64::INFINITY, f64::min);
    let hi = bars
        .iter()
        .map(|b| b.mean + b.se.unwrap_or(0.0))
        .fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 100.0, 20.0);
    }
    let span = (hi - lo).max(1.0);
    let step = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
        .into_iter()
        .find(|s| span / s <= 6.0)
        .unwrap_or(20.0);
    let lo = (((lo - step) / step).floor() * step).max(0.0);
    let hi = (((hi + step * 0.5) / step).ceil() * step).min(100.0);
    (lo, hi.max(lo + step), step)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG of `bars`: one panel per distinct panel name (in first-seen
/// order), groups in first-seen order along x, one coloured bar per series
/// (in `series` order) with a ±s.e. error bar where there is one.
pub fn svg(bars: &[Bar], title: &str, series: &[&str], y_label: &str) -> String {
    let mut panels: Vec<&str> = Vec::new();
    for b in bars {
        if !panels.contains(&b.panel.as_str()) {
            panels.push(&b.panel);
        }
    }
    let width = PANEL_W * panels.len().max(1) as f64;
    let height = PANEL_H + TOP;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="16" text-anchor="middle">{}</text>"#,
        width / 2.0,
        esc(title)
    );
    // Legend.
    let mut lx = 12.0;
    for (k, name) in series.iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="36" width="12" height="12" fill="{c}"/><text x="{}" y="46" font-size="12">{}</text>"#,
            lx + 16.0,
            esc(name)
        );
        lx += 30.0 + 7.0 * name.len() as f64;
    }
    for (p, panel) in panels.iter().enumerate() {
        let here: Vec<&Bar> = bars.iter().filter(|b| b.panel == *panel).collect();
        let mut groups: Vec<&str> = Vec::new();
        for b in &here {
            if !groups.contains(&b.group.as_str()) {
                groups.push(&b.group);
            }
        }
        let (lo, hi, step) = y_range(&here);
        let x0 = PANEL_W * p as f64 + LEFT;
        let plot_w = PANEL_W - LEFT - RIGHT;
        let (y_top, y_bot) = (TOP + 20.0, TOP + PANEL_H - BOTTOM);
        let y_of = |v: f64| y_bot - (v.clamp(lo, hi) - lo) / (hi - lo) * (y_bot - y_top);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"#,
            x0 + plot_w / 2.0,
            TOP + 10.0,
            esc(panel)
        );
        // Grid and y ticks.
        let mut t = lo;
        while t <= hi + 1e-9 {
            let y = y_of(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                x0 + plot_w,
                x0 - 6.0,
                y + 4.0,
                if step < 1.0 {
                    format!("{t:.1}")
                } else {
                    format!("{t:.0}")
                }
            );
            t += step;
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">{}</text>"#,
            x0 - 42.0,
            (y_top + y_bot) / 2.0,
            x0 - 42.0,
            (y_top + y_bot) / 2.0,
            esc(y_label)
        );
        let _ = writeln!(
            s,
            r#"<line x1="{x0}" y1="{y_bot}" x2="{:.1}" y2="{y_bot}" stroke="black"/><line x1="{x0}" y1="{y_top}" x2="{x0}" y2="{y_bot}" stroke="black"/>"#,
            x0 + plot_w
        );
        let group_w = plot_w / groups.len().max(1) as f64;
        let bar_w = group_w * 0.8 / series.len().max(1) as f64;
        for (g, group) in groups.iter().enumerate() {
            let gx = x0 + group_w * g as f64 + group_w * 0.1;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
                x0 + group_w * (g as f64 + 0.5),
                y_bot + 18.0,
                esc(group)
            );
            for (k, name) in series.iter().enumerate() {
                let Some(b) = here.iter().find(|b| b.group == *group && b.series == *name) else {
                    continue;
                };
                let x = gx + bar_w * k as f64;
                let y = y_of(b.mean);
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {} {}: {:.2}{}</title></rect>"#,
                    bar_w * 0.9,
                    (y_bot - y).max(0.0),
                    COLOURS[k % COLOURS.len()],
                    esc(panel),
                    esc(group),
                    esc(name),
                    b.mean,
                    b.se.map_or(String::new(), |e| format!(" ± {e:.2}"))
                );
                if let Some(e) = b.se {
                    let cx = x + bar_w * 0.45;
                    let (ya, yb) = (y_of(b.mean + e), y_of(b.mean - e));
                    let _ = writeln!(
                        s,
                        r#"<path class="error-bar" d="M{:.1} {ya:.1}H{:.1}M{cx:.1} {ya:.1}V{yb:.1}M{:.1} {yb:.1}H{:.1}" stroke="black" fill="none"/>"#,
                        cx - 4.0,
                        cx + 4.0,
                        cx - 4.0,
                        cx + 4.0
                    );
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic bars (not results): two panels, two groups, two series.
    fn bars() -> Vec<Bar> {
        let b = |panel: &str, group: &str, series: &str, mean: f64, se: Option<f64>| Bar {
            panel: panel.into(),
            group: group.into(),
            series: series.into(),
            mean,
            se,
            n: if se.is_some() { 15 } else { 1 },
        };
        vec![
            b("mnist", "one-hot", "softmax", 99.4, Some(0.05)),
            b("mnist", "one-hot", "posterior", 99.3, Some(0.06)),
            b("mnist", "dim20", "softmax", 99.5, None),
            b("cifar10", "one-hot", "softmax", 79.2, Some(0.3)),
            b("cifar10", "one-hot", "posterior", 79.3, Some(0.4)),
        ]
    }

    #[test]
    fn svg_has_a_bar_per_value_and_an_error_bar_per_se() {
        let text = svg(
            &bars(),
            "Figure 6 <synthetic>",
            &["softmax", "posterior"],
            "test accuracy (%)",
        );
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        // Background + 2 legend swatches + 5 bars.
        assert_eq!(text.matches("<rect").count(), 1 + 2 + 5);
        assert_eq!(text.matches("class=\"error-bar\"").count(), 4);
        assert!(text.contains("Figure 6 &lt;synthetic&gt;"));
        for word in ["mnist", "cifar10", "one-hot", "dim20", "posterior"] {
            assert!(text.contains(word), "{word} missing");
        }
        assert!(text.contains("99.40 ± 0.05"));
    }

    #[test]
    fn y_axis_spans_the_error_bars() {
        let bs = bars();
        let mnist: Vec<&Bar> = bs.iter().filter(|b| b.panel == "mnist").collect();
        let (lo, hi, step) = y_range(&mnist);
        assert!(lo <= 99.24 && (99.5..=100.0).contains(&hi), "{lo} {hi}");
        assert!(step <= 0.5, "{step}");
        let all: Vec<&Bar> = bs.iter().collect();
        let (lo, hi, _) = y_range(&all);
        assert!(lo <= 78.9 && hi == 100.0, "{lo} {hi}");
        assert_eq!(y_range(&[]), (0.0, 100.0, 20.0));
    }

    #[test]
    fn csv_lists_every_bar() {
        let c = csv(&bars());
        assert_eq!(c.lines().count(), 6);
        assert!(c.contains("mnist,dim20,softmax,1,99.5000,\n"), "{c}");
        assert!(
            c.contains("cifar10,one-hot,posterior,15,79.3000,0.4000"),
            "{c}"
        );
    }
}
