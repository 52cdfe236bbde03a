//! Bar charts with error bars (a leaderboard).

use plotters::prelude::*;

use super::axis::Axis;
use super::legend::{self, Entry, Mark};
use super::{color, darken, render, Area, DrawResult};

/// One bar: a mean and, when known, its standard deviation (drawn as an error bar).
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// Its legend label.
    pub label: String,
    /// Its height.
    pub mean: f64,
    /// Its error bar, ± this much.
    pub std: Option<f64>,
}

/// Chart width without the legend, and height.
const CHART: (u32, u32) = (720, 480);

/// One bar per entry, numbered on the x axis and named in the legend ("0: label"), with an
/// error bar of ±std. A bar whose mean is not finite is left out (its legend entry says so).
/// Returns an SVG document.
#[must_use]
pub fn bar_chart(title: &str, y_label: &str, bars: &[Bar]) -> String {
    let entries: Vec<Entry> = bars
        .iter()
        .enumerate()
        .map(|(i, b)| Entry {
            label: if b.mean.is_finite() {
                format!("{i}: {}", b.label)
            } else {
                format!("{i}: {} (no value)", b.label)
            },
            mark: Mark::Square(color(i)),
        })
        .collect();
    let height = CHART.1.max(legend::height(&entries));
    render((CHART.0 + legend::WIDTH, height), |root| {
        let (chart_area, legend_area) = root.split_horizontally(CHART.0);
        draw_bars(&chart_area, title, y_label, bars)?;
        legend::draw(&legend_area, &entries)
    })
}

fn draw_bars(area: &Area<'_>, title: &str, y_label: &str, bars: &[Bar]) -> DrawResult {
    let spread = |b: &Bar| b.std.filter(|s| s.is_finite()).unwrap_or(0.0);
    let ends = bars
        .iter()
        .flat_map(|b| [b.mean - spread(b), b.mean + spread(b)]);
    let y = Axis::linear(ends, Some(0.0));
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(Axis::categories(n), y.coord())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("cell")
        .y_desc(y_label)
        .x_label_formatter(&|v| format!("{}", v.floor() as i64))
        .y_label_formatter(&|v| y.label(*v))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;
    for (i, bar) in bars.iter().enumerate() {
        if !bar.mean.is_finite() {
            continue;
        }
        let (left, right, mid) = (i as f64 + 0.15, i as f64 + 0.85, i as f64 + 0.5);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(left, 0.0), (right, bar.mean)],
            color(i).filled(),
        )))?;
        let s = spread(bar);
        if s > 0.0 {
            let ink = darken(color(i), 0.45).stroke_width(2);
            let (lo, hi) = (bar.mean - s, bar.mean + s);
            let cap = |v: f64| PathElement::new(vec![(mid - 0.12, v), (mid + 0.12, v)], ink);
            chart.draw_series([
                PathElement::new(vec![(mid, lo), (mid, hi)], ink),
                cap(lo),
                cap(hi),
            ])?;
        }
    }
    Ok(())
}
