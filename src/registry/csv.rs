//! Datasets from `text/csv`: a header row, then one row per sample; one column (by default
//! the last) holds the targets.
//!
//! The `csv` crate splits the text as RFC 4180 has it: a field that begins with a double quote
//! runs to the closing quote and may hold commas, line breaks and `""` for a quote (a quote
//! after leading spaces is an ordinary character, as in RFC 4180). Whitespace around each
//! field is dropped and blank lines are skipped. A quote that is never closed is refused rather
//! than taken as the rest of the body. Every feature cell must be a finite number within
//! `--max-abs-value`; an empty cell, a word or `NaN` is refused naming its line, data row and
//! column (the line a row begins on, counting the line breaks inside quoted fields). Targets
//! follow the rules of [`super::ingest`]: words are class labels and stay labels, integers are
//! class labels too, other numbers are regression values (unless `task` says otherwise).

use std::io::{Chain, Read};

use ::csv::{Reader, ReaderBuilder, StringRecord, Terminator, Trim};
use ndarray::Array2;

use super::ingest::{check_cells, check_value, Ingested};
use super::RegistryError;
use crate::config::Limits;
use crate::nn::{Dataset, Targets, Task};

/// Read after every body, to catch a quote left open: the `csv` crate silently ends such a
/// field at the end of the input. After a body whose quotes are all closed this is a record of
/// its own, the one field `end`; an open quote takes it into its field instead, and the last
/// record is then something else.
const END: &[u8] = b"\n\"end\"\n";

/// A row of the body that does not split into fields: the line it begins on and why.
struct Unreadable {
    line: usize,
    message: String,
}

/// The target column's cells, in one buffer, each ended by a NUL (which a cell may not
/// hold): a body of millions of rows would otherwise cost a `String` (and its allocation) a
/// row, several times the body's own size.
#[derive(Default)]
struct Cells {
    text: String,
    len: usize,
}

impl Cells {
    fn push(&mut self, cell: &str) -> Result<(), &'static str> {
        if cell.contains('\0') {
            return Err("a target cell may not hold a NUL character");
        }
        self.text.push_str(cell);
        self.text.push('\0');
        self.len += 1;
        Ok(())
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.text.split_terminator('\0')
    }
}

/// The records of a CSV body in order, each with the line it begins on; blank lines are
/// skipped.
struct Records<'t> {
    reader: Reader<Chain<&'t [u8], &'static [u8]>>,
    text: &'t [u8],
    /// The record read ahead (only the read after a record tells whether it is the last), or
    /// the error that ends the records.
    ahead: Option<Result<StringRecord, Unreadable>>,
    /// Where the last record handed out begins, and its line.
    at: usize,
    line: usize,
}

impl<'t> Records<'t> {
    fn new(text: &'t str) -> Self {
        let mut records = Self {
            reader: ReaderBuilder::new()
                .has_headers(false)
                // A row of the wrong length is reported below, naming its line.
                .flexible(true)
                // Lines end at `\n` alone: the `\r` of a `\r\n` is trimmed with the other
                // whitespace, and a lone `\r` is no line break, so lines are counted by `\n`.
                .terminator(Terminator::Any(b'\n'))
                .trim(Trim::All)
                .from_reader(text.as_bytes().chain(END)),
            text: text.as_bytes(),
            ahead: None,
            at: 0,
            line: 1,
        };
        records.ahead = records.read().transpose();
        records
    }

    /// The next record, `None` at the end. Reading a `&str` cannot fail; should it, the error
    /// is reported like a bad row.
    fn read(&mut self) -> Result<Option<StringRecord>, Unreadable> {
        let mut record = StringRecord::new();
        match self.reader.read_record(&mut record) {
            Ok(more) => Ok(more.then_some(record)),
            Err(e) => Err(Unreadable {
                line: self.line,
                message: e.to_string(),
            }),
        }
    }

    /// The line `record` begins on. The reader puts a record where the previous one ended,
    /// before the empty lines it skipped, so the count starts past those line ends.
    fn line_of(&mut self, record: &StringRecord) -> usize {
        let text = self.text;
        let from = record
            .position()
            .and_then(|p| usize::try_from(p.byte()).ok())
            .unwrap_or(text.len())
            .min(text.len());
        let start = from + text[from..].iter().take_while(|&&b| b == b'\n').count();
        if start > self.at {
            self.line += text[self.at..start].iter().filter(|&&b| b == b'\n').count();
            self.at = start;
        }
        self.line
    }

    /// Whether the line of the record just located holds nothing but whitespace: a record of
    /// one empty field may also be a quoted empty field (`""`), a row like any other.
    fn is_blank_line(&self) -> bool {
        !self.text[self.at..]
            .iter()
            .take_while(|&&b| b != b'\n')
            .any(|&b| b == b'"')
    }
}

impl Iterator for Records<'_> {
    type Item = Result<(usize, StringRecord), Unreadable>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let current = match self.ahead.take()? {
                Ok(record) => record,
                Err(e) => return Some(Err(e)),
            };
            self.ahead = self.read().transpose();
            let line = self.line_of(&current);
            if self.ahead.is_none() {
                return (current.len() != 1 || &current[0] != "end").then(|| {
                    Err(Unreadable {
                        line,
                        message: "a quoted field is not closed".to_owned(),
                    })
                });
            }
            if current.len() == 1 && current[0].is_empty() && self.is_blank_line() {
                continue;
            }
            return Some(Ok((line, current)));
        }
    }
}

/// A dataset from CSV text. `target` names the target column (default: the last).
///
/// # Errors
/// [`RegistryError`] naming the line, row and column of the first bad cell, or the limit hit.
pub fn from_csv(
    text: &str,
    target: Option<&str>,
    task: Option<Task>,
    limits: &Limits,
) -> Result<Ingested, RegistryError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Records::new(text);
    let header = records
        .next()
        .ok_or_else(|| RegistryError::invalid("csv", "the body is empty; expected a header row"))?
        .map_err(|u| RegistryError::invalid("csv", format!("line {}: {}", u.line, u.message)))?
        .1;
    let header: Vec<String> = header.iter().map(str::to_owned).collect();
    if header.len() < 2 {
        return Err(RegistryError::invalid(
            "csv",
            "the header needs at least one feature column and a target column",
        ));
    }
    let t = match target {
        Some(name) => header.iter().position(|h| h == name).ok_or_else(|| {
            RegistryError::invalid(
                "target",
                format!("no column `{name}`; the columns are {}", header.join(", ")),
            )
        })?,
        None => header.len() - 1,
    };
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != t)
        .map(|(_, h)| h.clone())
        .collect();
    let mut features: Vec<f32> = Vec::new();
    let mut targets = Cells::default();
    for (row, record) in records.enumerate() {
        check_cells(row + 1, header.len(), limits)?;
        let (line, cells) = record.map_err(|u| {
            RegistryError::invalid(
                format!("rows[{row}]"),
                format!("line {}: {}", u.line, u.message),
            )
        })?;
        if cells.len() != header.len() {
            return Err(RegistryError::invalid(
                format!("rows[{row}]"),
                format!(
                    "line {line} (data row {}) has {} cells, the header {}",
                    row + 1,
                    cells.len(),
                    header.len()
                ),
            ));
        }
        for (c, cell) in cells.iter().enumerate() {
            let at = || format!("rows[{row}].{}", header[c]);
            let place = || format!("line {line} (data row {}), column `{}`", row + 1, header[c]);
            if cell.is_empty() {
                return Err(RegistryError::invalid(
                    at(),
                    format!("{}: the cell is empty", place()),
                ));
            }
            if c == t {
                targets
                    .push(cell)
                    .map_err(|why| RegistryError::invalid(at(), format!("{}: {why}", place())))?;
                continue;
            }
            let v: f64 = cell.parse().map_err(|_| {
                RegistryError::invalid(at(), format!("{}: `{cell}` is not a number", place()))
            })?;
            if !v.is_finite() {
                return Err(RegistryError::invalid(
                    at(),
                    format!("{}: {cell} is not a finite number", place()),
                ));
            }
            features.push(check_value(v, at, limits)?);
        }
    }
    build(features, names, &header[t], &targets, task, limits)
}

fn build(
    features: Vec<f32>,
    names: Vec<String>,
    target_name: &str,
    targets: &Cells,
    task: Option<Task>,
    limits: &Limits,
) -> Result<Ingested, RegistryError> {
    let rows = targets.len();
    if rows == 0 {
        return Err(RegistryError::invalid(
            "csv",
            "the dataset has no rows, only a header",
        ));
    }
    let number = |t: &str| t.parse::<f64>().ok().filter(|v| v.is_finite());
    let numbers = targets.iter().all(|t| number(t).is_some());
    let integers = numbers
        && targets
            .iter()
            .all(|t| !t.contains(['.', 'e', 'E']) && number(t).is_some_and(|v| v.fract() == 0.0));
    let task = task.unwrap_or(if numbers && !integers {
        Task::Regression
    } else {
        Task::Classification
    });
    let x = Array2::from_shape_vec((rows, names.len()), features)
        .map_err(|e| RegistryError::invalid("csv", e.to_string()))?;
    let data = match task {
        Task::Classification => {
            Dataset::new(x, Some(names), Targets::from_label_iter(targets.iter()))?
        }
        Task::Regression | Task::MultiLabel => {
            if !numbers {
                return Err(RegistryError::invalid(
                    target_name,
                    "regression targets must all be numbers",
                ));
            }
            let values = targets
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let v = number(t).unwrap_or(f64::NAN);
                    check_value(v, || format!("targets[{i}][0]"), limits)
                })
                .collect::<Result<Vec<f32>, _>>()?;
            let values = Array2::from_shape_vec((rows, 1), values)
                .map_err(|e| RegistryError::invalid("targets", e.to_string()))?;
            let targets = if task == Task::Regression {
                Targets::Values {
                    values,
                    names: vec![target_name.to_owned()],
                }
            } else {
                Targets::MultiLabel {
                    values,
                    names: vec!["label".to_owned()],
                }
            };
            Dataset::new(x, Some(names), targets)?
        }
    };
    Ok(Ingested {
        data,
        numeric_labels: numbers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> (String, String) {
        match from_csv(text, None, None, &Limits::default()) {
            Err(RegistryError::Invalid { field, message }) => (field, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn quoted_fields_keep_their_commas_and_quotes() {
        let d = from_csv(
            "x,label\n1,\"a, b\"\n2 ,\"say \"\"hi\"\"\" \n3,\"a, b\"\n",
            None,
            None,
            &Limits::default(),
        )
        .expect("ok");

        assert_eq!(d.data.targets.names(), ["a, b", r#"say "hi""#]);
    }

    #[test]
    fn a_target_with_a_nul_character_is_refused_naming_its_place() {
        let (field, message) = refusal("x,label\n1,a\n2,\"b\0c\"\n");

        assert_eq!(field, "rows[1].label");
        assert!(message.starts_with("line 3 (data row 2)"), "{message}");
        assert!(message.contains("NUL"), "{message}");
    }

    #[test]
    fn a_quoted_field_may_hold_a_line_break() {
        let d = from_csv(
            "\"petal\nlength\",label\n1,\"north\r\nside\"\n2,south\n",
            None,
            None,
            &Limits::default(),
        )
        .expect("ok");

        assert_eq!(d.data.feature_names, ["petal\nlength"]);
        assert_eq!(d.data.targets.names(), ["north\r\nside", "south"]);
    }

    #[test]
    fn lines_are_counted_through_quoted_breaks_blank_lines_and_crlf() {
        let (field, message) = refusal("\"a\nb\",y\r\n\r\n1,\"x\ny\"\r\n   \r\nNaN,z\r\n");

        assert_eq!(field, "rows[1].a\nb");
        assert!(message.starts_with("line 7 (data row 2)"), "{message}");
    }

    #[test]
    fn a_quote_left_open_is_refused_naming_the_line_of_its_row() {
        let (field, message) = refusal("x,y\n1,0\n2,\"open\n3,1\n");
        assert_eq!(field, "rows[1]");
        assert_eq!(message, "line 3: a quoted field is not closed");

        let (field, message) = refusal("x,\"y\n1,0\n");
        assert_eq!(field, "csv");
        assert_eq!(message, "line 1: a quoted field is not closed");

        // Closed by a doubled quote that is an escaped quote: still open.
        let (_, message) = refusal("x,y\n1,\"a\"\"");
        assert_eq!(message, "line 2: a quoted field is not closed");
    }

    #[test]
    fn a_quote_after_spaces_is_an_ordinary_character() {
        // RFC 4180: a field is quoted only when the quote is its first character, so the comma
        // inside splits the row.
        let (field, message) = refusal("x,label\n1, \"a, b\"\n");

        assert_eq!(field, "rows[0]");
        assert_eq!(message, "line 2 (data row 1) has 3 cells, the header 2");
    }

    #[test]
    fn a_byte_order_mark_and_blank_bodies() {
        let d = from_csv("\u{feff}a,y\n1,0\n2,1\n", None, None, &Limits::default()).expect("ok");
        assert_eq!(d.data.feature_names, ["a"]);

        assert_eq!(
            refusal("\n  \n\r\n").1,
            "the body is empty; expected a header row"
        );
        assert_eq!(
            refusal("a,y\n\n").1,
            "the dataset has no rows, only a header"
        );
        assert_eq!(
            refusal("a\n1\n").1,
            "the header needs at least one feature column and a target column"
        );
    }

    #[test]
    fn string_labels_stay_labels_and_decimals_regress() {
        let limits = Limits::default();
        let d = from_csv(
            "a,b,species\n1,2,setosa\n3,4,virginica\n",
            None,
            None,
            &limits,
        )
        .expect("ok");
        assert_eq!(d.data.targets.names(), ["setosa", "virginica"]);
        assert!(!d.numeric_labels);
        let d = from_csv("a,y\n1,0.5\n2,1.5\n", None, None, &limits).expect("ok");
        assert_eq!(d.data.task(), Task::Regression);
    }

    #[test]
    fn a_nan_cell_names_its_row_and_column() {
        let err = from_csv("a,b,y\n1,2,0\n3,NaN,1\n", None, None, &Limits::default())
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("data row 2") && text.contains("`b`"),
            "{text}"
        );
    }
}
