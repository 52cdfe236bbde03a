//! A 2-input classifier's decision boundary, drawn as TensorFlow Playground draws it: the
//! plane is cut into a grid of cells, each colored by the class the model predicts there (a
//! lighter shade where it is less sure), and the data's points go on top in darker colors,
//! training points as circles and validation points as triangles.

use ndarray::Array2;
use plotters::prelude::*;

use super::axis::{bounds, Axis};
use super::legend::{self, Entry, Mark};
use super::{color, darken, lighten, render, Area, DrawResult};
use crate::nn::{Head, Model, NnError};

/// Which part of the split a point is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Trained on.
    Train,
    /// Validated on.
    Validation,
}

/// One data point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// First feature.
    pub x: f64,
    /// Second feature.
    pub y: f64,
    /// Its class index.
    pub class: usize,
    /// Its part of the split.
    pub part: Part,
}

/// The prediction in one grid cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    /// The predicted class (argmax; for one sigmoid output, 1 when p ≥ 0.5).
    pub class: usize,
    /// The predicted class's probability.
    pub confidence: f64,
}

/// Predictions over an `n × n` grid spanning `x` × `y`.
#[derive(Clone, Debug, PartialEq)]
pub struct Regions {
    /// The x range.
    pub x: (f64, f64),
    /// The y range.
    pub y: (f64, f64),
    /// Cells a side.
    pub n: usize,
    /// Row-major from the lowest y row, `n * n` cells.
    pub cells: Vec<Cell>,
}

/// What [`decision_boundary`] draws.
#[derive(Clone, Copy, Debug)]
pub struct Boundary<'a> {
    /// The title.
    pub title: &'a str,
    /// The first feature's name.
    pub x_label: &'a str,
    /// The second feature's name.
    pub y_label: &'a str,
    /// Class names, by index.
    pub classes: &'a [String],
    /// The predicted regions.
    pub regions: &'a Regions,
    /// Points to draw on top (none when the data is gone).
    pub points: &'a [Point],
}

/// Points of one part drawn at most; more are thinned evenly and the title says so.
const MAX_POINTS: usize = 1500;
/// The chart's size without the legend.
const CHART: (u32, u32) = (620, 600);

/// The range the data spans on both axes, padded by 10 % (`None` without points).
#[must_use]
pub fn points_range(points: &[Point]) -> Option<((f64, f64), (f64, f64))> {
    let pad = |(lo, hi): (f64, f64)| {
        let p = ((hi - lo) * 0.1).max(1e-3);
        (lo - p, hi + p)
    };
    let x = bounds(points.iter().map(|p| p.x))?;
    let y = bounds(points.iter().map(|p| p.y))?;
    Some((pad(x), pad(y)))
}

/// Classifies the centers of an `n × n` grid over `x` × `y` with `model`, which must take two
/// inputs and have a softmax head or a single sigmoid output.
///
/// # Errors
/// [`NnError::Invalid`] naming `kind` for any other model; a prediction error.
pub fn classify_grid(
    model: &Model,
    x: (f64, f64),
    y: (f64, f64),
    n: usize,
) -> Result<Regions, NnError> {
    if let Err(why) = supports(model) {
        return Err(NnError::invalid("kind", why));
    }
    let n = n.max(1);
    let at = |(lo, hi): (f64, f64), i: usize| lo + (hi - lo) * (i as f64 + 0.5) / n as f64;
    let inputs = Array2::from_shape_fn((n * n, 2), |(row, col)| {
        let (j, i) = (row / n, row % n);
        if col == 0 {
            at(x, i) as f32
        } else {
            at(y, j) as f32
        }
    });
    let out = model.predict(inputs.view())?;
    let cells = out
        .rows()
        .into_iter()
        .map(|p| {
            if p.len() == 1 {
                let p1 = f64::from(p[0]);
                Cell {
                    class: usize::from(p1 >= 0.5),
                    confidence: p1.max(1.0 - p1),
                }
            } else {
                let (class, best) =
                    p.iter()
                        .enumerate()
                        .fold(
                            (0, f32::NEG_INFINITY),
                            |acc, (i, &v)| {
                                if v > acc.1 {
                                    (i, v)
                                } else {
                                    acc
                                }
                            },
                        );
                Cell {
                    class,
                    confidence: f64::from(best),
                }
            }
        })
        .collect();
    Ok(Regions { x, y, n, cells })
}

/// Whether a decision boundary can be drawn for `model`, and if not why.
///
/// # Errors
/// A sentence saying what the model lacks.
pub fn supports(model: &Model) -> Result<(), String> {
    let spec = &model.spec;
    if spec.inputs() != 2 {
        return Err(format!(
            "decision_boundary needs a model with 2 inputs (a plane to draw); this one has {}",
            spec.inputs()
        ));
    }
    match spec.output {
        Head::Softmax => Ok(()),
        Head::Sigmoid if spec.outputs() == 1 => Ok(()),
        Head::Sigmoid => Err(
            "decision_boundary needs a classifier; this model predicts several independent labels"
                .into(),
        ),
        Head::Identity => Err(
            "decision_boundary needs a classifier (softmax or sigmoid); this model regresses values"
                .into(),
        ),
    }
}

/// The decision boundary as an SVG document.
#[must_use]
pub fn decision_boundary(plot: &Boundary<'_>) -> String {
    let classes = plot
        .classes
        .len()
        .max(
            plot.regions
                .cells
                .iter()
                .map(|c| c.class + 1)
                .max()
                .unwrap_or(0),
        )
        .max(2);
    let name = |c: usize| {
        plot.classes
            .get(c)
            .cloned()
            .unwrap_or_else(|| format!("class {c}"))
    };
    let (train, validation) = thin(plot.points);
    let mut entries = Vec::new();
    for c in 0..classes {
        entries.push(Entry {
            label: format!("predicted {}", name(c)),
            mark: Mark::Square(lighten(color(c), 0.45)),
        });
    }
    for (part, points, what) in [
        (Part::Train, &train.0, "train"),
        (Part::Validation, &validation.0, "validation"),
    ] {
        for c in 0..classes {
            if points.iter().any(|p| p.class == c) {
                let dark = darken(color(c), 0.7);
                entries.push(Entry {
                    label: format!("{} ({what})", name(c)),
                    mark: match part {
                        Part::Train => Mark::Circle(dark),
                        Part::Validation => Mark::Triangle(dark),
                    },
                });
            }
        }
    }
    let mut title = plot.title.to_owned();
    let every = train.1.max(validation.1);
    if every > 1 {
        title.push_str(&format!(" (1 point in {every} shown)"));
    }
    let height = CHART.1.max(legend::height(&entries));
    render((CHART.0 + legend::WIDTH, height), |root| {
        let (chart_area, legend_area) = root.split_horizontally(CHART.0);
        let points: Vec<&Point> = train.0.iter().chain(&validation.0).copied().collect();
        draw(&chart_area, plot, &title, classes, &points)?;
        legend::draw(&legend_area, &entries)
    })
}

/// The training and validation points, each thinned to [`MAX_POINTS`], with the stride used.
type Thinned<'a> = (Vec<&'a Point>, usize);

fn thin(points: &[Point]) -> (Thinned<'_>, Thinned<'_>) {
    let part = |which| {
        let all: Vec<&Point> = points.iter().filter(|p| p.part == which).collect();
        let every = all.len().div_ceil(MAX_POINTS).max(1);
        (all.into_iter().step_by(every).collect(), every)
    };
    (part(Part::Train), part(Part::Validation))
}

fn draw(
    area: &Area<'_>,
    plot: &Boundary<'_>,
    title: &str,
    classes: usize,
    points: &[&Point],
) -> DrawResult {
    let r = plot.regions;
    let (x, y) = (Axis::fixed(r.x.0, r.x.1), Axis::fixed(r.y.0, r.y.1));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x.coord(), y.coord())?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(plot.x_label)
        .y_desc(plot.y_label)
        .x_label_formatter(&|v| x.label(*v))
        .y_label_formatter(&|v| y.label(*v))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    // Three shades per class, lighter where the model is less sure; runs of equal cells in a
    // row become one rectangle, which keeps the SVG small.
    let shade = |cell: &Cell| {
        let chance = 1.0 / classes as f64;
        let t = ((cell.confidence - chance) / (1.0 - chance)).clamp(0.0, 1.0);
        let level = ((t * 3.0) as usize).min(2);
        (cell.class, level)
    };
    let n = r.n.max(1);
    let (dx, dy) = ((r.x.1 - r.x.0) / n as f64, (r.y.1 - r.y.0) / n as f64);
    let mut rects = Vec::new();
    for (j, row) in r.cells.chunks(n).enumerate() {
        let mut i = 0;
        while i < row.len() {
            let key = shade(&row[i]);
            let mut end = i + 1;
            while end < row.len() && shade(&row[end]) == key {
                end += 1;
            }
            let fill = lighten(color(key.0), 0.25 + 0.15 * key.1 as f64);
            let (x0, x1) = (r.x.0 + dx * i as f64, r.x.0 + dx * end as f64);
            let (y0, y1) = (r.y.0 + dy * j as f64, r.y.0 + dy * (j + 1) as f64);
            rects.push(Rectangle::new([(x0, y0), (x1, y1)], fill.filled()));
            i = end;
        }
    }
    chart.draw_series(rects)?;
    for p in points {
        let dark = darken(color(p.class), 0.7);
        let at = (p.x, p.y);
        match p.part {
            Part::Train => {
                chart.draw_series([Circle::new(at, 4, dark.filled())])?;
                chart.draw_series([Circle::new(at, 4, WHITE.stroke_width(1))])?;
            }
            Part::Validation => {
                // A marker's outline is drawn filled by plotters: no white rim here.
                chart.draw_series([TriangleMarker::new(at, 6, dark.filled())])?;
            }
        }
    }
    Ok(())
}
