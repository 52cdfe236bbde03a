//! Datasets from `text/csv`: a header row, then one row per sample; one column (by default
//! the last) holds the targets.
//!
//! Fields may be double-quoted (`"a, b"`, `""` for a quote). Every feature cell must be a
//! finite number within `--max-abs-value`; an empty cell, a word or `NaN` is refused naming its
//! line, data row and column. Targets follow the rules of [`super::ingest`]: words are class
//! labels and stay labels, integers are class labels too, other numbers are regression values
//! (unless `task` says otherwise).

use ndarray::Array2;
use serde_json::Value;

use super::ingest::{check_cells, check_value, from_rows, Ingested};
use super::RegistryError;
use crate::config::Limits;
use crate::nn::{Dataset, Targets, Task};

/// Splits one CSV line into fields, honouring double quotes.
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".to_owned());
    }
    out.push(field);
    Ok(out.into_iter().map(|f| f.trim().to_owned()).collect())
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
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let (header_line, header) = lines
        .next()
        .ok_or_else(|| RegistryError::invalid("csv", "the body is empty; expected a header row"))?;
    let header = fields(header)
        .map_err(|m| RegistryError::invalid("csv", format!("line {header_line}: {m}")))?;
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
    let mut features = Vec::new();
    let mut targets = Vec::new();
    for (row, (line, text)) in lines.enumerate() {
        check_cells(row + 1, header.len(), limits)?;
        let cells = fields(text).map_err(|m| {
            RegistryError::invalid(format!("rows[{row}]"), format!("line {line}: {m}"))
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
        let mut values = Vec::with_capacity(names.len());
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
                targets.push(cell.clone());
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
            values.push(check_value(v, at, limits)?);
        }
        features.push(values);
    }
    build(features, names, &header[t], &targets, task, limits)
}

fn build(
    features: Vec<Vec<f32>>,
    names: Vec<String>,
    target_name: &str,
    targets: &[String],
    task: Option<Task>,
    limits: &Limits,
) -> Result<Ingested, RegistryError> {
    if features.is_empty() {
        return Err(RegistryError::invalid(
            "csv",
            "the dataset has no rows, only a header",
        ));
    }
    let numbers: Option<Vec<f64>> = targets
        .iter()
        .map(|t| t.parse::<f64>().ok().filter(|v| v.is_finite()))
        .collect();
    let integers = numbers.as_ref().is_some_and(|n| {
        n.iter().all(|v| v.fract() == 0.0) && targets.iter().all(|t| !t.contains(['.', 'e', 'E']))
    });
    let task = task.unwrap_or(if numbers.is_some() && !integers {
        Task::Regression
    } else {
        Task::Classification
    });
    let rows = features.len();
    let columns = names.len();
    let flat: Vec<f32> = features.into_iter().flatten().collect();
    let x = Array2::from_shape_vec((rows, columns), flat)
        .map_err(|e| RegistryError::invalid("csv", e.to_string()))?;
    match task {
        Task::Classification => Ok(Ingested {
            data: Dataset::new(x, Some(names), Targets::from_labels(targets))?,
            numeric_labels: numbers.is_some(),
        }),
        Task::Regression | Task::MultiLabel => {
            let values = numbers.ok_or_else(|| {
                RegistryError::invalid(target_name, "regression targets must all be numbers")
            })?;
            let json: Vec<Value> = values.into_iter().map(Value::from).collect();
            let rows: Vec<Vec<f64>> = x
                .rows()
                .into_iter()
                .map(|r| r.iter().map(|&v| f64::from(v)).collect())
                .collect();
            let mut ingested = from_rows(&rows, &json, Some(task), Some(names), limits)?;
            if let Targets::Values { names, .. } = &mut ingested.data.targets {
                *names = vec![target_name.to_owned()];
            }
            Ok(ingested)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_keep_their_commas_and_quotes() {
        assert_eq!(
            fields(r#"1, "a, b" ,"say ""hi""""#).expect("parses"),
            ["1", "a, b", r#"say "hi""#]
        );
        assert!(fields(r#"1,"open"#).is_err());
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
