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
const WRAP: usize = 30;
/// Pixels per legend line.
const LINE: i32 = 17;
/// The legend panel's width.
pub(super) const WIDTH: u32 = 300;

/// Lines of text `label` takes, wrapped at spaces.
fn wrap(label: &str) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in label.split(' ') {
        for (k, piece) in pieces(word).into_iter().enumerate() {
            let last = lines.last_mut().expect("never empty");
            if k > 0
                || (!last.is_empty() && last.chars().count() + 1 + piece.chars().count() > WRAP)
            {
                // The rest of a cut word, or a word that does not fit: a new line.
                lines.push(piece);
            } else {
                if !last.is_empty() {
                    last.push(' ');
                }
                last.push_str(&piece);
            }
        }
    }
    lines
}

/// `word` cut into pieces of at most `WRAP` characters, after a `,`, `(` or `=` where it has
/// one (a label such as `hidden_layers=[32,32,32,32,32,32,32,32]` has no space to wrap at).
fn pieces(word: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest: Vec<char> = word.chars().collect();
    while rest.len() > WRAP {
        let cut = rest[..WRAP]
            .iter()
            .rposition(|&c| matches!(c, ',' | '(' | '='))
            .map_or(WRAP, |i| i + 1);
        out.push(rest.drain(..cut).collect());
    }
    out.push(rest.into_iter().collect());
    out
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

#[cfg(test)]
mod tests {
    use super::{wrap, WRAP};

    #[test]
    fn long_labels_wrap_at_spaces_and_then_after_commas() {
        let label = "activation=leaky_relu(alpha=0.01), hidden_layers=[32,32,32,32,32,32,32,32,32,32] (n=5)";
        let lines = wrap(label);
        assert!(lines.iter().all(|l| l.chars().count() <= WRAP), "{lines:?}");
        assert_eq!(lines[0], "activation=leaky_relu(alpha=");
        assert_eq!(lines[1], "0.01),");
        assert_eq!(lines[2], "hidden_layers=[32,32,32,32,32,");
        // Nothing is lost, and the pieces of a cut word are not joined by a space.
        assert_eq!(lines.concat().replace(' ', ""), label.replace(' ', ""));
        assert!(
            lines
                .iter()
                .all(|l| !l.contains(", ") || l.starts_with("0.01")),
            "{lines:?}"
        );
        let unbroken = "x".repeat(2 * WRAP + 3);
        assert_eq!(wrap(&unbroken).len(), 3);
    }
}
