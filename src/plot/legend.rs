//! The legend, drawn in a panel right of the chart so that it never hides data; long labels
//! wrap onto further lines.

use plotters::prelude::*;

use super::{Area, DrawResult};

/// How an entry's sample looks.
#[derive(Clone, Copy, Debug)]
pub(super) enum Mark {
    /// A line (a curve).
    Line(RGBColor),
    /// A filled square (a bar or a region).
    Square(RGBColor),
    /// A filled circle (training points).
    Circle(RGBColor),
    /// A filled triangle (validation points).
    Triangle(RGBColor),
}

/// One legend entry.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    /// Its text.
    pub label: String,
    /// Its sample.
    pub mark: Mark,
}

/// Characters on a legend line before it wraps.
const WRAP: usize = 34;
/// Pixels per legend line.
const LINE: i32 = 17;
/// The legend panel's width.
pub(super) const WIDTH: u32 = 250;

/// Lines of text `label` takes, wrapped at spaces.
fn wrap(label: &str) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in label.split(' ') {
        let last = lines.last_mut().expect("never empty");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > WRAP {
            lines.push(word.to_owned());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// The height the entries need, so that a canvas can grow to fit them.
pub(super) fn height(entries: &[Entry]) -> u32 {
    let lines: usize = entries.iter().map(|e| wrap(&e.label).len()).sum();
    70 + lines as u32 * LINE as u32 + entries.len() as u32 * (LINE as u32 / 2)
}

/// Draws `entries` top-down in `area`.
pub(super) fn draw(area: &Area<'_>, entries: &[Entry]) -> DrawResult {
    let font = ("sans-serif", 15).into_font().color(&BLACK);
    let mut y = 50;
    for entry in entries {
        let cy = y + LINE / 2 - 2;
        match entry.mark {
            Mark::Line(c) => {
                area.draw(&PathElement::new(
                    vec![(8, cy), (34, cy)],
                    c.stroke_width(3),
                ))?;
            }
            Mark::Square(c) => {
                area.draw(&Rectangle::new([(12, cy - 6), (28, cy + 6)], c.filled()))?;
            }
            Mark::Circle(c) => area.draw(&Circle::new((20, cy), 5, c.filled()))?,
            Mark::Triangle(c) => area.draw(&TriangleMarker::new((20, cy), 6, c.filled()))?,
        }
        for line in wrap(&entry.label) {
            area.draw(&Text::new(line, (42, y), font.clone()))?;
            y += LINE;
        }
        y += LINE / 2;
    }
    Ok(())
}
