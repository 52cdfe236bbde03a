//! Server-rendered SVG plots: a job's curves, an experiment's mean ± std curves and
//! leaderboard bars, and a 2-D model's decision boundary. Pure: plain data in, an SVG string
//! out; no HTTP, no runtime, no files.
//!
//! # Rendering and fonts
//!
//! Charts are drawn with `plotters` and its SVG backend, built with `default-features = false`
//! so neither `font-kit` (system fonts through fontconfig) nor a bitmap backend is compiled in.
//! Without its `ttf` and `ab_glyph` features plotters measures text with a fixed estimate
//! (0.7 em a character), which only places labels; the SVG backend writes text as `<text>`
//! elements with `font-family="sans-serif"` (XML-escaped by the backend), so the viewer's
//! browser picks and draws the font. No font file is read or embedded, and the same data
//! always gives the same bytes.
//!
//! Every public function returns a whole SVG document. Values that cannot be drawn are left
//! out rather than failing: non-finite numbers everywhere, and values ≤ 0 on a log axis (a
//! line has a gap there). Should plotters itself fail, the answer is still an SVG, one that
//! says so.

mod axis;
mod bars;
mod boundary;
mod job;
mod legend;
mod lines;
#[cfg(test)]
mod tests;

use plotters::coord::Shift;
use plotters::prelude::*;

pub use bars::{bar_chart, Bar};
pub use boundary::{
    classify_grid, decision_boundary, points_range, supports, Boundary, Cell, Part, Point, Regions,
};
pub use job::{job_plot, JobPlotKind};
pub use lines::{band_curves, BandSeries};

/// The drawing area plots are drawn on.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// What a drawing step may fail with.
type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Tableau 10: distinct on screen, and the first two (blue, orange) tell train from
/// validation.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The color of series `i` (the palette repeats after ten).
fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `c` moved towards white (`t` = 0) or kept (`t` = 1).
fn lighten(c: RGBColor, t: f64) -> RGBColor {
    let mix = |v: u8| (255.0 - (255.0 - f64::from(v)) * t).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// `c` moved towards black by `1 − t`.
fn darken(c: RGBColor, t: f64) -> RGBColor {
    let mix = |v: u8| (f64::from(v) * t).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// Renders `draw` on a white `size` canvas; a failure becomes an SVG saying so.
fn render(size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> DrawResult) -> String {
    let mut svg = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(Into::into)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(Into::into))
    };
    match result {
        Ok(()) => svg,
        Err(error) => failure_svg(size, &format!("the plot could not be drawn: {error}")),
    }
}

/// A blank SVG with one line of text.
fn failure_svg((w, h): (u32, u32), message: &str) -> String {
    format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><text x=\"20\" y=\"40\" \
         font-family=\"sans-serif\" font-size=\"14\">{}</text></svg>\n",
        escape_xml(message)
    )
}

/// `text` with the five XML specials escaped.
fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
