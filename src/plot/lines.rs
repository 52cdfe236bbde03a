//! Line charts: curves over a shared x axis, each optionally with a translucent band.

use plotters::prelude::*;

use super::axis::{bounds, Axis};
use super::legend::{self, Entry, Mark};
use super::{color, render, DrawResult};

/// One curve of [`band_curves`]: `mean[i] ± std[i]` at `x[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BandSeries {
    /// Its legend label.
    pub label: String,
    /// The x values.
    pub x: Vec<f64>,
    /// The mean at each x.
    pub mean: Vec<f64>,
    /// The standard deviation at each x (0 or non-finite: no band there).
    pub std: Vec<f64>,
}

/// A curve as drawn: points and an optional `(x, low, high)` band.
#[derive(Clone, Debug, Default)]
pub(super) struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub band: Vec<(f64, f64, f64)>,
}

/// How the y axis is chosen.
#[derive(Clone, Copy, Debug)]
pub(super) enum YScale {
    /// Linear over the data.
    Linear,
    /// Linear over `lo..hi` exactly.
    Fixed(f64, f64),
    /// Log10 over the positive data.
    Log,
}

/// Labels of a chart.
#[derive(Clone, Copy, Debug)]
pub(super) struct Labels<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// Chart width without the legend, and height.
const CHART: (u32, u32) = (720, 480);

/// One line per series with a translucent band of ±std around its mean, on a log y axis when
/// `log_y` (then only positive values are drawn). Returns an SVG document.
#[must_use]
pub fn band_curves(title: &str, y_label: &str, series: &[BandSeries], log_y: bool) -> String {
    let lines: Vec<Line> = series
        .iter()
        .map(|s| {
            let n = s.x.len().min(s.mean.len());
            let std = |i: usize| s.std.get(i).copied().unwrap_or(0.0);
            Line {
                label: s.label.clone(),
                points: (0..n).map(|i| (s.x[i], s.mean[i])).collect(),
                band: (0..n)
                    .filter(|&i| std(i).is_finite() && std(i) > 0.0)
                    .map(|i| (s.x[i], s.mean[i] - std(i), s.mean[i] + std(i)))
                    .collect(),
            }
        })
        .collect();
    let scale = if log_y { YScale::Log } else { YScale::Linear };
    let labels = Labels {
        title,
        x: "epoch",
        y: y_label,
    };
    line_chart(labels, &lines, scale)
}

/// Draws `lines` and returns the SVG.
pub(super) fn line_chart(labels: Labels<'_>, lines: &[Line], scale: YScale) -> String {
    let entries: Vec<Entry> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| Entry {
            label: l.label.clone(),
            mark: Mark::Line(color(i)),
        })
        .collect();
    let height = CHART.1.max(legend::height(&entries));
    render((CHART.0 + legend::WIDTH, height), |root| {
        let (chart_area, legend_area) = root.split_horizontally(CHART.0);
        draw_lines(&chart_area, labels, lines, scale)?;
        legend::draw(&legend_area, &entries)
    })
}

fn draw_lines(
    area: &super::Area<'_>,
    labels: Labels<'_>,
    lines: &[Line],
    scale: YScale,
) -> DrawResult {
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let (x_lo, mut x_hi) = bounds(xs).unwrap_or((0.0, 1.0));
    if x_hi <= x_lo {
        x_hi = x_lo + 1.0;
    }
    let x = Axis::fixed(x_lo, x_hi);
    let ys = || {
        lines.iter().flat_map(|l| {
            l.points
                .iter()
                .map(|p| p.1)
                .chain(l.band.iter().flat_map(|b| [b.1, b.2]))
        })
    };
    let y = match scale {
        YScale::Linear => Axis::linear(ys(), None),
        YScale::Fixed(lo, hi) => Axis::fixed(lo, hi),
        YScale::Log => Axis::log(ys()),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(labels.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x.coord(), y.coord())?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .x_label_formatter(&|v| x.label(*v))
        .y_label_formatter(&|v| y.label(*v))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;
    for (i, line) in lines.iter().enumerate() {
        let c = color(i);
        // The band: the upper edge forward, the lower edge back, split where it has gaps.
        for run in runs(&line.band, |b| y.place(b.1).zip(y.place(b.2)).map(|_| b.0)) {
            let upper = run.iter().filter_map(|b| Some((b.0, y.place(b.2)?)));
            let lower = run.iter().rev().filter_map(|b| Some((b.0, y.place(b.1)?)));
            chart.draw_series(std::iter::once(Polygon::new(
                upper.chain(lower).collect::<Vec<_>>(),
                c.mix(0.18).filled(),
            )))?;
        }
        for run in runs(&line.points, |p| y.place(p.1).map(|_| p.0)) {
            let points = run.iter().filter_map(|p| Some((p.0, y.place(p.1)?)));
            chart.draw_series(LineSeries::new(points, c.stroke_width(2)))?;
        }
    }
    Ok(())
}

/// The maximal runs of `items` that `keep` (which also checks x) accepts.
fn runs<T>(items: &[T], keep: impl Fn(&T) -> Option<f64>) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, item) in items.iter().enumerate() {
        let ok = keep(item).is_some_and(f64::is_finite);
        match (ok, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(&items[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&items[s..]);
    }
    out
}
