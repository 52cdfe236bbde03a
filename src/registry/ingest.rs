//! Datasets from what clients send: rows of JSON, a generator, a built-in set (CSV is in
//! [`super::csv`]). Every value is checked against the configured limits here, naming the row
//! and column, before the dataset is built.
//!
//! Targets without a `task` are read as scikit-learn's `type_of_target` reads them: any string
//! (or all integers) → class labels; any non-integer number, or rows of numbers → regression.

use ndarray::Array2;
use serde_json::Value;

use super::RegistryError;
use crate::config::{Limit, Limits};
use crate::nn::builtin::Builtin;
use crate::nn::generators::{generate, GeneratorSpec};
use crate::nn::{Dataset, NnError, Targets, Task};

/// A dataset built from a request, with how its labels were written.
#[derive(Debug)]
pub struct Ingested {
    /// The checked dataset.
    pub data: Dataset,
    /// Whether class labels were numbers (answered as numbers by predictions).
    pub numeric_labels: bool,
}

/// Checks `rows × columns` against `--max-dataset-cells`, with checked arithmetic.
///
/// # Errors
/// [`RegistryError::Limit`] naming the setting.
pub fn check_cells(rows: usize, columns: usize, limits: &Limits) -> Result<(), RegistryError> {
    let max = limits.max_dataset_cells;
    match rows.checked_mul(columns).map(|c| c as u64) {
        Some(cells) if cells <= max => Ok(()),
        cells => Err(RegistryError::limit(
            "features",
            Limit::DatasetCells,
            max,
            cells.map_or_else(|| "more than 2^64".to_owned(), |c| c.to_string()),
        )),
    }
}

/// Checks one value: finite and within `--max-abs-value`. `field` names it.
///
/// # Errors
/// [`RegistryError::Invalid`] for a non-finite value, [`RegistryError::Limit`] for a large one.
pub fn check_value(
    v: f64,
    field: impl Fn() -> String,
    limits: &Limits,
) -> Result<f32, RegistryError> {
    if !v.is_finite() {
        return Err(RegistryError::invalid(
            field(),
            format!("{v} is not a finite number"),
        ));
    }
    if v.abs() > limits.max_abs_value {
        return Err(RegistryError::limit(
            field(),
            Limit::AbsValue,
            limits.max_abs_value,
            v,
        ));
    }
    Ok(v as f32)
}

/// A dataset from rows of numbers and one target per row.
///
/// # Errors
/// [`RegistryError`] naming the first bad value: empty or ragged rows, targets ≠ rows, a value
/// that is not finite or too large, more cells than allowed.
pub fn from_rows(
    features: &[Vec<f64>],
    targets: &[Value],
    task: Option<Task>,
    feature_names: Option<Vec<String>>,
    limits: &Limits,
) -> Result<Ingested, RegistryError> {
    let rows = features.len();
    let columns = features.first().map_or(0, Vec::len);
    if rows == 0 {
        return Err(RegistryError::invalid(
            "features",
            "the dataset has no rows",
        ));
    }
    if columns == 0 {
        return Err(RegistryError::invalid(
            "features[0]",
            "a row needs at least one value",
        ));
    }
    check_cells(rows, columns.saturating_add(1), limits)?;
    if targets.len() != rows {
        return Err(RegistryError::invalid(
            "targets",
            format!("{} targets for {rows} rows of features", targets.len()),
        ));
    }
    let mut flat = Vec::with_capacity(rows * columns);
    for (r, row) in features.iter().enumerate() {
        if row.len() != columns {
            return Err(RegistryError::invalid(
                format!("features[{r}]"),
                format!("has {} values but row 0 has {columns}", row.len()),
            ));
        }
        for (c, &v) in row.iter().enumerate() {
            flat.push(check_value(v, || format!("features[{r}][{c}]"), limits)?);
        }
    }
    let features = Array2::from_shape_vec((rows, columns), flat)
        .map_err(|e| RegistryError::invalid("features", e.to_string()))?;
    let task = task.unwrap_or_else(|| infer_task(targets));
    let (targets, numeric_labels) = match task {
        Task::Classification => class_targets(targets)?,
        Task::Regression => (dense_targets(targets, "y", limits)?, false),
        Task::MultiLabel => (multi_label_targets(targets, limits)?, false),
    };
    let data = Dataset::new(features, feature_names, targets)?;
    Ok(Ingested {
        data,
        numeric_labels,
    })
}

fn infer_task(targets: &[Value]) -> Task {
    let integer = |v: &Value| v.as_i64().is_some() || v.as_u64().is_some();
    if targets.iter().any(Value::is_array)
        || targets.iter().any(|v| v.is_number() && !integer(v))
            && targets.iter().all(Value::is_number)
    {
        Task::Regression
    } else {
        Task::Classification
    }
}

fn class_targets(targets: &[Value]) -> Result<(Targets, bool), RegistryError> {
    let mut labels = Vec::with_capacity(targets.len());
    let mut numeric = true;
    for (i, t) in targets.iter().enumerate() {
        match t {
            Value::String(s) if !s.is_empty() => {
                numeric = false;
                labels.push(s.clone());
            }
            Value::Number(n) => labels.push(n.to_string()),
            _ => {
                return Err(RegistryError::invalid(
                    format!("targets[{i}]"),
                    "a class label must be a non-empty string or a number",
                ))
            }
        }
    }
    Ok((Targets::from_labels(&labels), numeric))
}

/// Rows of target numbers (or single numbers), checked; `what` names the columns.
fn target_matrix(targets: &[Value], limits: &Limits) -> Result<Array2<f32>, RegistryError> {
    let row = |t: &Value| -> Option<Vec<f64>> {
        match t {
            Value::Number(n) => n.as_f64().map(|v| vec![v]),
            Value::Array(items) => items.iter().map(Value::as_f64).collect(),
            _ => None,
        }
    };
    let mut columns = None;
    let mut flat = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let values = row(t).ok_or_else(|| {
            RegistryError::invalid(
                format!("targets[{i}]"),
                "expected a number or a row of numbers",
            )
        })?;
        let width = *columns.get_or_insert(values.len());
        if values.len() != width || width == 0 {
            return Err(RegistryError::invalid(
                format!("targets[{i}]"),
                format!("has {} values but targets[0] has {width}", values.len()),
            ));
        }
        for (c, v) in values.into_iter().enumerate() {
            flat.push(check_value(v, || format!("targets[{i}][{c}]"), limits)?);
        }
    }
    let columns = columns.unwrap_or(1);
    Array2::from_shape_vec((targets.len(), columns), flat)
        .map_err(|e| RegistryError::invalid("targets", e.to_string()))
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    if n == 1 {
        vec![prefix.to_owned()]
    } else {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }
}

fn dense_targets(
    targets: &[Value],
    prefix: &str,
    limits: &Limits,
) -> Result<Targets, RegistryError> {
    let values = target_matrix(targets, limits)?;
    let names = names(prefix, values.ncols());
    Ok(Targets::Values { values, names })
}

fn multi_label_targets(targets: &[Value], limits: &Limits) -> Result<Targets, RegistryError> {
    let values = target_matrix(targets, limits)?;
    let names = names("label", values.ncols()).into_iter().collect();
    Ok(Targets::MultiLabel { values, names })
}

/// A generated dataset, within `--max-dataset-cells`.
///
/// # Errors
/// [`RegistryError`] for an invalid spec (naming its field) or one over the cell limit.
pub fn from_generator(spec: &GeneratorSpec, limits: &Limits) -> Result<Ingested, RegistryError> {
    let max = usize::try_from(limits.max_dataset_cells).unwrap_or(usize::MAX);
    let data = generate(spec, max).map_err(|error| match error {
        // `generate` checks the budget before allocating; name the setting that raises it.
        NnError::Invalid { field, message }
            if message.contains("limit is") || message.contains("over the limit") =>
        {
            let given = message
                .split("= ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .unwrap_or("more than 2^64")
                .to_owned();
            RegistryError::limit(field, Limit::DatasetCells, limits.max_dataset_cells, given)
        }
        other => RegistryError::from(other),
    })?;
    let numeric_labels = matches!(data.targets, Targets::Classes { .. });
    Ok(Ingested {
        data,
        numeric_labels,
    })
}

/// A built-in dataset by name.
///
/// # Errors
/// [`RegistryError::Invalid`] listing the valid names.
pub fn from_builtin(name: &str) -> Result<Ingested, RegistryError> {
    let builtin = Builtin::from_name(name).ok_or_else(|| {
        let valid: Vec<&str> = Builtin::all().iter().map(|b| b.name()).collect();
        RegistryError::invalid(
            "builtin",
            format!(
                "unknown built-in dataset `{name}`; valid: {}",
                valid.join(", ")
            ),
        )
    })?;
    let data = builtin.load();
    let numeric_labels = data
        .targets
        .names()
        .iter()
        .all(|n| serde_json::from_str::<serde_json::Number>(n).is_ok());
    Ok(Ingested {
        data,
        numeric_labels,
    })
}
