//! What the outputs' columns are, and the class each row predicts, as the dataset named them.
//!
//! `outputs` are probabilities for `softmax` and `sigmoid` heads and values for `identity`.
//! For a two-class sigmoid head, its one column is the probability of the second class. A
//! classifier's label per row is the predicted class as the dataset named it (a number if the
//! labels were numbers, a string if they were strings); a multi-label head's is the list of
//! labels with probability ≥ 0.5; regression has no labels.

use std::borrow::Cow;

use ndarray::{Array2, ArrayView1};
use serde_json::Value;

use crate::nn::{Model, Task};

fn label(name: &str, numeric: bool) -> Value {
    if numeric {
        if let Ok(n) = serde_json::from_str::<serde_json::Number>(name) {
            return Value::Number(n);
        }
    }
    Value::String(name.to_owned())
}

/// The label of each row of `outputs` (`None` for regression); `numeric` answers labels that
/// were numbers as JSON numbers.
#[must_use]
pub fn labels_of(model: &Model, outputs: &Array2<f32>, numeric: bool) -> Option<Vec<Value>> {
    let names = &model.labels;
    let pick = |row: ArrayView1<f32>| -> Value {
        if row.len() == 1 {
            let i = usize::from(row[0] >= 0.5);
            return names.get(i).map_or(Value::Null, |n| label(n, numeric));
        }
        let best =
            row.iter().enumerate().fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &p)| if p > b.1 { (i, p) } else { b },
            );
        names.get(best.0).map_or(Value::Null, |n| label(n, numeric))
    };
    match model.task {
        Some(Task::Classification) => Some(outputs.rows().into_iter().map(pick).collect()),
        Some(Task::MultiLabel) => Some(
            outputs
                .rows()
                .into_iter()
                .map(|row| {
                    Value::Array(
                        row.iter()
                            .zip(names)
                            .filter(|(&p, _)| p >= 0.5)
                            .map(|(_, n)| label(n, false))
                            .collect(),
                    )
                })
                .collect(),
        ),
        _ => None,
    }
}

/// What each output column is: the class names where there is one column per class, the
/// second class for a two-class sigmoid head, else `y0`, `y1`, ….
#[must_use]
pub fn output_names(model: &Model) -> Cow<'_, [String]> {
    let outputs = model.spec.outputs();
    if model.task == Some(Task::Classification) && outputs == 1 && model.labels.len() == 2 {
        return Cow::Borrowed(&model.labels[1..]);
    }
    if model.labels.len() == outputs {
        Cow::Borrowed(&model.labels)
    } else {
        Cow::Owned((0..outputs).map(|i| format!("y{i}")).collect())
    }
}
