//! The real datasets shipped with the crate: iris, wine, breast cancer and digits.
//!
//! They are the small classification sets scikit-learn ships, embedded with `include_str!` from
//! `assets/datasets/` (see the README there for origins and licences), so they load without a
//! network or a data directory. Feature names, class names and class order are scikit-learn's:
//! class index `i` here is `target == i` there, so results can be compared directly.
//!
//! Every file has scikit-learn's layout: a header `rows,features,class names…`, then one line
//! per row with the feature values followed by the class index.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::data::{Dataset, Targets};

/// One of the built-in datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// Fisher's iris flowers: 150 rows, 4 features, 3 species.
    Iris,
    /// Wines from three cultivars: 178 rows, 13 chemical measurements, 3 classes.
    Wine,
    /// Breast Cancer Wisconsin (Diagnostic): 569 rows, 30 features, malignant or benign.
    BreastCancer,
    /// Optical handwritten digits: 1,797 rows of 8×8 pixel counts (0–16), 10 classes.
    Digits,
}

const IRIS_CSV: &str = include_str!("../../assets/datasets/iris.csv");
const WINE_CSV: &str = include_str!("../../assets/datasets/wine_data.csv");
const BREAST_CANCER_CSV: &str = include_str!("../../assets/datasets/breast_cancer.csv");
const DIGITS_CSV: &str = include_str!("../../assets/datasets/digits.csv");

const IRIS_FEATURES: [&str; 4] = [
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
];

const WINE_FEATURES: [&str; 13] = [
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280/od315_of_diluted_wines",
    "proline",
];

/// The ten cell nuclei measurements; the 30 features are their mean, error and worst value.
const BREAST_CANCER_MEASURES: [&str; 10] = [
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave points",
    "symmetry",
    "fractal dimension",
];

impl Builtin {
    /// Every built-in dataset.
    pub fn all() -> &'static [Builtin] {
        &[
            Builtin::Iris,
            Builtin::Wine,
            Builtin::BreastCancer,
            Builtin::Digits,
        ]
    }

    /// The name used in requests and in JSON (`iris`, `wine`, `breast_cancer`, `digits`).
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Iris => "iris",
            Builtin::Wine => "wine",
            Builtin::BreastCancer => "breast_cancer",
            Builtin::Digits => "digits",
        }
    }

    /// One line for listings: what it is, its size and where it comes from.
    pub fn description(self) -> &'static str {
        match self {
            Builtin::Iris => {
                "Iris flowers (Fisher, 1936): 150 rows, 4 features (sepal and petal length and \
                 width in cm), 3 classes (setosa, versicolor, virginica); UCI ML Repository via \
                 scikit-learn"
            }
            Builtin::Wine => {
                "Wine recognition (Forina et al.): 178 rows, 13 features (chemical analysis), 3 \
                 classes (cultivars class_0..class_2); UCI ML Repository via scikit-learn"
            }
            Builtin::BreastCancer => {
                "Breast Cancer Wisconsin (Diagnostic): 569 rows, 30 features (cell nuclei \
                 measurements), 2 classes (malignant, benign); UCI ML Repository via scikit-learn"
            }
            Builtin::Digits => {
                "Optical recognition of handwritten digits (test set): 1797 rows, 64 features \
                 (8x8 pixel counts 0-16), 10 classes (0-9); UCI ML Repository via scikit-learn"
            }
        }
    }

    /// The dataset called `name` (exactly as [`Builtin::name`] spells it).
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::all().iter().copied().find(|b| b.name() == name)
    }

    /// Parses the embedded data (a few milliseconds; digits is the largest at 265 kB).
    ///
    /// # Panics
    ///
    /// Only if the data shipped in `assets/datasets/` is malformed, which the tests rule out.
    pub fn load(self) -> Dataset {
        let (text, feature_names): (&str, Vec<String>) = match self {
            Builtin::Iris => (IRIS_CSV, owned(&IRIS_FEATURES)),
            Builtin::Wine => (WINE_CSV, owned(&WINE_FEATURES)),
            Builtin::BreastCancer => (BREAST_CANCER_CSV, breast_cancer_features()),
            Builtin::Digits => (DIGITS_CSV, digits_features()),
        };
        parse(self.name(), text, feature_names)
    }
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// `mean radius` … `worst fractal dimension`, in scikit-learn's order.
fn breast_cancer_features() -> Vec<String> {
    let groups = [("mean ", ""), ("", " error"), ("worst ", "")];
    groups
        .iter()
        .flat_map(|(prefix, suffix)| {
            BREAST_CANCER_MEASURES
                .iter()
                .map(move |m| format!("{prefix}{m}{suffix}"))
        })
        .collect()
}

/// `pixel_<row>_<column>`, row-major over the 8×8 image.
fn digits_features() -> Vec<String> {
    (0..8)
        .flat_map(|r| (0..8).map(move |c| format!("pixel_{r}_{c}")))
        .collect()
}

/// Our own shipped data is broken: a bug in this crate, not in a request.
fn malformed(name: &str, what: String) -> ! {
    panic!("built-in dataset {name} is malformed: {what}")
}

/// Reads scikit-learn's layout: `rows,features,class names…`, then `values…,class index` lines.
fn parse(name: &str, text: &str, feature_names: Vec<String>) -> Dataset {
    let mut records = csv::ReaderBuilder::new()
        .has_headers(false)
        // The header has a field per class, a row one per feature and the class index.
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes())
        .into_records()
        .map(|record| record.unwrap_or_else(|e| malformed(name, e.to_string())));
    let header = records
        .next()
        .unwrap_or_else(|| malformed(name, "empty file".into()));
    let count = |i: usize| -> usize {
        header
            .get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| malformed(name, format!("header field {i} is not a count")))
    };
    let (rows, cols) = (count(0), count(1));
    let class_names: Vec<String> = header.iter().skip(2).map(str::to_owned).collect();
    if cols != feature_names.len() {
        malformed(
            name,
            format!("{cols} columns but {} feature names", feature_names.len()),
        );
    }

    let mut values = Vec::with_capacity(rows * cols);
    let mut indices = Vec::with_capacity(rows);
    for (r, fields) in records.enumerate() {
        if fields.len() != cols + 1 {
            malformed(
                name,
                format!("row {r} has {} fields, not {}", fields.len(), cols + 1),
            );
        }
        for (c, field) in fields.iter().take(cols).enumerate() {
            let v: f32 = field
                .parse()
                .unwrap_or_else(|_| malformed(name, format!("row {r}, column {c}: {field:?}")));
            values.push(v);
        }
        let class: u32 = fields[cols]
            .parse()
            .unwrap_or_else(|_| malformed(name, format!("row {r}: class {:?}", &fields[cols])));
        indices.push(class);
    }
    if indices.len() != rows {
        malformed(name, format!("{} rows, header says {rows}", indices.len()));
    }
    let features = Array2::from_shape_vec((rows, cols), values)
        .unwrap_or_else(|e| malformed(name, format!("feature matrix: {e}")));
    let targets = Targets::Classes {
        indices,
        names: class_names,
    };
    Dataset::new(features, Some(feature_names), targets)
        .unwrap_or_else(|e| malformed(name, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sum of all features, each rounded to `f32`, from scikit-learn 1.9.1:
    /// `load_X().data.astype(np.float32).astype(np.float64).sum()`.
    fn reference_sum(b: Builtin) -> f64 {
        match b {
            Builtin::Iris => 2_078.699_996_404_35,
            Builtin::Wine => 159_975.295_995_026_83,
            Builtin::BreastCancer => 1_056_474.460_155_547_4,
            Builtin::Digits => 561_718.0,
        }
    }

    #[test]
    fn every_builtin_loads_with_the_shape_and_class_counts_of_scikit_learn() {
        // Shapes and `np.bincount(load_X().target)` from scikit-learn 1.9.1 (/tmp/peers python).
        let expected: [(Builtin, usize, usize, &[usize]); 4] = [
            (Builtin::Iris, 150, 4, &[50, 50, 50]),
            (Builtin::Wine, 178, 13, &[59, 71, 48]),
            (Builtin::BreastCancer, 569, 30, &[212, 357]),
            (
                Builtin::Digits,
                1797,
                64,
                &[178, 182, 177, 183, 181, 182, 181, 179, 174, 180],
            ),
        ];
        for (b, rows, cols, counts) in expected {
            let d = b.load();
            assert_eq!((d.rows(), d.n_features()), (rows, cols), "{b:?}");
            assert_eq!(d.feature_names.len(), cols, "{b:?}");
            assert_eq!(d.class_counts().unwrap(), counts, "{b:?}");
            let sum: f64 = d.features.iter().map(|&v| f64::from(v)).sum();
            let reference = reference_sum(b);
            assert!(
                (sum - reference).abs() < 1e-9 * reference,
                "{b:?}: sum {sum}, scikit-learn {reference}"
            );
        }
    }

    #[test]
    fn names_and_class_order_follow_scikit_learn() {
        let iris = Builtin::Iris.load();
        assert_eq!(iris.targets.names(), &["setosa", "versicolor", "virginica"]);
        assert_eq!(iris.feature_names[0], "sepal length (cm)");

        let wine = Builtin::Wine.load();
        assert_eq!(wine.targets.names(), &["class_0", "class_1", "class_2"]);
        assert_eq!(wine.feature_names[11], "od280/od315_of_diluted_wines");

        let cancer = Builtin::BreastCancer.load();
        assert_eq!(cancer.targets.names(), &["malignant", "benign"]);
        assert_eq!(cancer.feature_names[0], "mean radius");
        assert_eq!(cancer.feature_names[17], "concave points error");
        assert_eq!(cancer.feature_names[29], "worst fractal dimension");
        // The first row of the file is malignant: target 0 in scikit-learn.
        let Targets::Classes { indices, .. } = &cancer.targets else {
            panic!("classes expected")
        };
        assert_eq!(indices[0], 0);

        let digits = Builtin::Digits.load();
        let names: Vec<&str> = digits.targets.names().iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        assert_eq!(digits.feature_names[0], "pixel_0_0");
        assert_eq!(digits.feature_names[9], "pixel_1_1");
        assert_eq!(digits.feature_names[63], "pixel_7_7");
    }

    #[test]
    fn digit_pixels_are_whole_counts_from_0_to_16() {
        let d = Builtin::Digits.load();
        assert!(d
            .features
            .iter()
            .all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0));
        assert_eq!(d.features.iter().copied().fold(0.0, f32::max), 16.0);
    }

    #[test]
    fn names_round_trip_through_from_name_and_serde() {
        for &b in Builtin::all() {
            assert_eq!(Builtin::from_name(b.name()), Some(b));
            assert_eq!(serde_json::to_value(b).unwrap(), b.name());
            assert!(b.description().contains(&b.load().rows().to_string()));
        }
        assert_eq!(Builtin::from_name("mnist"), None);
        assert_eq!(Builtin::from_name("Iris"), None);
    }
}
