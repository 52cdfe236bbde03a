//! Every plot is parsed as XML and searched for what it must show.

use super::*;
use crate::nn::train::LayerDiagnostics;
use crate::nn::{Activation, EpochRecord, Model, ModelSpec};

fn layer(index: usize, activation: &str, grad: Option<f64>, dead: Option<f64>) -> LayerDiagnostics {
    LayerDiagnostics {
        layer: index,
        activation: activation.to_owned().into(),
        grad_norm: grad,
        weight_norm: 1.0,
        update_ratio: None,
        saturated_fraction: (activation == "tanh").then_some(0.25),
        dead_fraction: dead,
        prelu_slope_mean: None,
    }
}

/// A classification history: two ReLU layers and a tanh layer, then the output.
fn history(epochs: usize) -> Vec<EpochRecord> {
    (0..=epochs)
        .map(|e| {
            let t = e as f64;
            let grad = (e > 0).then(|| 10f64.powf(-t / 3.0));
            EpochRecord {
                epoch: e,
                train_loss: 1.0 / (1.0 + t),
                val_loss: Some(1.1 / (1.0 + t) + 0.01 * t),
                train_accuracy: Some(1.0 - 0.5 / (1.0 + t)),
                val_accuracy: Some(0.9 - 0.5 / (1.0 + t)),
                train_r2: None,
                val_r2: None,
                train_mae: None,
                val_mae: None,
                generalization_gap: Some(0.1 / (1.0 + t) + 0.01 * t),
                learning_rate: 0.01,
                seconds: 0.1,
                layers: vec![
                    layer(0, "relu", grad, Some(0.1)),
                    layer(1, "relu", grad.map(|g| g * 10.0), Some(0.0)),
                    layer(2, "tanh", grad, None),
                    layer(3, "output", grad.map(|g| g * 100.0), None),
                ],
            }
        })
        .collect()
}

/// The document, parsed (so well-formed), and all its text joined by newlines.
fn parse(svg: &str) -> String {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "text")
        .map(|n| n.text().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn count(svg: &str, tag: &str) -> usize {
    let doc = roxmltree::Document::parse(svg).expect("XML");
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == tag)
        .count()
}

#[test]
fn each_job_plot_is_xml_and_names_its_series() {
    let h = history(12);
    let cases: [(JobPlotKind, &[&str]); 5] = [
        (
            JobPlotKind::Loss,
            &["train loss", "validation loss", "loss", "epoch"],
        ),
        (
            JobPlotKind::Accuracy,
            &["train accuracy", "validation accuracy"],
        ),
        (JobPlotKind::Gap, &["generalization gap"]),
        (
            JobPlotKind::GradNorms,
            &[
                "layer 0 (relu)",
                "layer 1 (relu)",
                "layer 2 (tanh)",
                "output layer",
            ],
        ),
        (
            JobPlotKind::Units,
            &[
                "layer 0 (relu) dead",
                "layer 1 (relu) dead",
                "layer 2 (tanh) saturated",
            ],
        ),
    ];
    for (kind, labels) in cases {
        let svg = job_plot(kind, "job x", &h);
        let text = parse(&svg);
        for label in labels {
            assert!(text.contains(label), "{kind:?}: no {label:?} in {text}");
        }
        assert!(text.contains("job x"), "{kind:?} has no title");
        // One polyline per curve at least (the axes are polylines too).
        assert!(count(&svg, "polyline") >= labels.len().min(2), "{kind:?}");
    }
}

#[test]
fn grad_norms_are_on_a_log_axis_with_power_of_ten_ticks() {
    let text = parse(&job_plot(JobPlotKind::GradNorms, "g", &history(12)));
    // Norms run from 1e-4 (layer 0 at epoch 12) up to 1e1 (the output layer at epoch 1).
    for tick in ["1e-4", "1e-2", "1", "10"] {
        assert!(text.lines().any(|l| l == tick), "no tick {tick} in {text}");
    }
    assert!(!text.contains("units"), "only layers in the legend");
}

#[test]
fn a_regression_history_plots_r2_as_accuracy() {
    let mut h = history(5);
    for r in &mut h {
        r.train_accuracy = None;
        r.val_accuracy = None;
        r.train_r2 = Some(0.5);
        r.val_r2 = Some(0.4);
    }
    let text = parse(&job_plot(JobPlotKind::Accuracy, "r", &h));
    assert!(
        text.contains("train R²") && text.contains("validation R²"),
        "{text}"
    );
}

#[test]
fn an_empty_or_non_finite_history_still_draws() {
    for kind in [
        JobPlotKind::Loss,
        JobPlotKind::GradNorms,
        JobPlotKind::Units,
    ] {
        parse(&job_plot(kind, "nothing yet", &[]));
    }
    let mut h = history(4);
    h[2].train_loss = f64::NAN;
    h[3].val_loss = Some(f64::INFINITY);
    let svg = job_plot(JobPlotKind::Loss, "nan", &h);
    parse(&svg);
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
}

#[test]
fn titles_and_labels_are_escaped() {
    let title = r#"<script>&"quotes"'</script>"#;
    let svg = band_curves(
        title,
        "y <&>",
        &[BandSeries {
            label: "a & b < c".into(),
            x: vec![0.0, 1.0],
            mean: vec![1.0, 2.0],
            std: vec![0.1, 0.1],
        }],
        false,
    );
    let text = parse(&svg);
    assert!(text.contains(title) && text.contains("y <&>") && text.contains("a & b < c"));
    assert!(!svg.contains("<script>"));
    let svg = bar_chart(
        title,
        "v",
        &[Bar {
            label: "<x>".into(),
            mean: 1.0,
            std: None,
        }],
    );
    assert!(parse(&svg).contains("0: <x>"));
}

#[test]
fn band_curves_draw_one_band_and_one_line_per_series() {
    let series: Vec<BandSeries> = ["relu", "sigmoid", "tanh"]
        .iter()
        .enumerate()
        .map(|(k, name)| BandSeries {
            label: format!("activation={name}"),
            x: (0..20).map(f64::from).collect(),
            mean: (0..20)
                .map(|e| (k + 1) as f64 / (1.0 + f64::from(e)))
                .collect(),
            std: vec![0.02; 20],
        })
        .collect();
    for log_y in [false, true] {
        let svg = band_curves("curves", "val loss", &series, log_y);
        let text = parse(&svg);
        for s in &series {
            assert!(text.contains(&s.label), "{log_y}: no {}", s.label);
        }
        assert_eq!(count(&svg, "polygon"), 3, "one band each ({log_y})");
    }
    // No spread: no band.
    let flat = BandSeries {
        std: vec![0.0; 20],
        ..series[0].clone()
    };
    assert_eq!(count(&band_curves("c", "y", &[flat], false), "polygon"), 0);
}

#[test]
fn bar_charts_draw_bars_and_error_bars() {
    let bars = vec![
        Bar {
            label: "relu".into(),
            mean: 0.2,
            std: Some(0.05),
        },
        Bar {
            label: "sigmoid".into(),
            mean: 0.6,
            std: Some(0.1),
        },
        Bar {
            label: "tanh".into(),
            mean: 0.3,
            std: None,
        },
        Bar {
            label: "gelu".into(),
            mean: f64::NAN,
            std: None,
        },
    ];
    let svg = bar_chart("leaderboard", "best val loss", &bars);
    let text = parse(&svg);
    for label in [
        "0: relu",
        "1: sigmoid",
        "2: tanh",
        "3: gelu (no value)",
        "best val loss",
    ] {
        assert!(text.contains(label), "no {label}");
    }
    let plain: Vec<Bar> = bars
        .iter()
        .map(|b| Bar {
            std: None,
            ..b.clone()
        })
        .collect();
    let plain = bar_chart("leaderboard", "best val loss", &plain);
    // Two error bars of three strokes each.
    assert_eq!(count(&svg, "polyline") - count(&plain, "polyline"), 6);
}

fn regions(n: usize) -> Regions {
    let cells = (0..n * n)
        .map(|k| {
            let (i, j) = (k % n, k / n);
            Cell {
                class: usize::from(i + j >= n),
                confidence: 0.5 + 0.5 * ((i as f64 - j as f64).abs() / n as f64),
            }
        })
        .collect();
    Regions {
        x: (-1.0, 1.0),
        y: (-2.0, 2.0),
        n,
        cells,
    }
}

#[test]
fn a_decision_boundary_shows_regions_and_both_parts_of_the_split() {
    let classes = vec!["blue".to_owned(), "orange".to_owned()];
    let r = regions(150);
    let points: Vec<Point> = (0..40)
        .map(|k| Point {
            x: f64::from(k) / 40.0 - 0.5,
            y: f64::from(k % 7) / 7.0,
            class: (k % 2) as usize,
            part: if k % 3 == 0 {
                Part::Validation
            } else {
                Part::Train
            },
        })
        .collect();
    let svg = decision_boundary(&Boundary {
        title: "spirals v1",
        x_label: "x0",
        y_label: "x1",
        classes: &classes,
        regions: &r,
        points: &points,
    });
    let text = parse(&svg);
    for label in [
        "predicted blue",
        "predicted orange",
        "blue (train)",
        "orange (train)",
        "blue (validation)",
        "orange (validation)",
        "x0",
        "x1",
    ] {
        assert!(text.contains(label), "no {label}");
    }
    // Runs of equal cells are merged: far fewer rectangles than the 22,500 cells.
    let rects = count(&svg, "rect");
    assert!((150..3000).contains(&rects), "{rects} rects");
    // Each training point is two circles (fill and outline), plus one in the legend per class.
    assert_eq!(count(&svg, "circle"), 26 * 2 + 2);
    assert!(svg.len() < 400_000, "{} bytes", svg.len());
}

#[test]
fn a_decision_boundary_without_points_thins_nothing_and_says_nothing_about_points() {
    let r = regions(20);
    let many: Vec<Point> = (0..4000)
        .map(|_| Point {
            x: 0.0,
            y: 0.0,
            class: 0,
            part: Part::Train,
        })
        .collect();
    let svg = decision_boundary(&Boundary {
        title: "t",
        x_label: "a",
        y_label: "b",
        classes: &[],
        regions: &r,
        points: &many,
    });
    assert!(parse(&svg).contains("(1 point in 3 shown)"));
    let svg = decision_boundary(&Boundary {
        title: "no data",
        x_label: "a",
        y_label: "b",
        classes: &[],
        regions: &r,
        points: &[],
    });
    let text = parse(&svg);
    assert!(text.contains("predicted class 0") && !text.contains("(train)"));
}

#[test]
fn classify_grid_predicts_every_cell_of_two_input_classifiers_only() {
    let spec = ModelSpec::new(&[2, 8, 3], Activation::Tanh, crate::nn::Head::Softmax);
    let model = Model::new(spec, 7).expect("model");
    let r = classify_grid(&model, (-1.0, 1.0), (0.0, 2.0), 30).expect("grid");
    assert_eq!(r.cells.len(), 900);
    assert!(r
        .cells
        .iter()
        .all(|c| c.class < 3 && (0.33..=1.0).contains(&c.confidence)));

    let sigmoid = ModelSpec::new(&[2, 4, 1], Activation::Relu, crate::nn::Head::Sigmoid);
    let r = classify_grid(
        &Model::new(sigmoid, 1).expect("model"),
        (0.0, 1.0),
        (0.0, 1.0),
        5,
    )
    .expect("grid");
    assert!(r.cells.iter().all(|c| c.class < 2 && c.confidence >= 0.5));

    let wide = ModelSpec::new(&[3, 4, 2], Activation::Relu, crate::nn::Head::Softmax);
    let err = classify_grid(
        &Model::new(wide, 1).expect("model"),
        (0.0, 1.0),
        (0.0, 1.0),
        5,
    )
    .expect_err("3 inputs");
    assert!(err.to_string().contains("2 inputs"), "{err}");
    let regression = ModelSpec::new(&[2, 4, 1], Activation::Relu, crate::nn::Head::Identity);
    assert!(supports(&Model::new(regression, 1).expect("model")).is_err());
}

/// Writes samples for a look: `PLOT_SAMPLES=/tmp/plots cargo test --lib plot::tests::samples`.
#[test]
fn samples() {
    let Ok(dir) = std::env::var("PLOT_SAMPLES") else {
        return;
    };
    let h = history(30);
    for kind in [
        JobPlotKind::Loss,
        JobPlotKind::GradNorms,
        JobPlotKind::Units,
    ] {
        let path = format!("{dir}/{}.svg", kind.name());
        std::fs::write(path, job_plot(kind, "sample", &h)).expect("write");
    }
    let bars = vec![
        Bar {
            label: "activation=relu, hidden_layers=[32,32]".into(),
            mean: 0.2,
            std: Some(0.05),
        },
        Bar {
            label: "activation=sigmoid".into(),
            mean: 0.6,
            std: Some(0.1),
        },
    ];
    std::fs::write(
        format!("{dir}/bars.svg"),
        bar_chart("leaderboard", "loss", &bars),
    )
    .expect("write");
    let classes = vec!["0".to_owned(), "1".to_owned()];
    let points = [Point {
        x: 0.2,
        y: 0.5,
        class: 1,
        part: Part::Validation,
    }];
    let svg = decision_boundary(&Boundary {
        title: "boundary",
        x_label: "x0",
        y_label: "x1",
        classes: &classes,
        regions: &regions(150),
        points: &points,
    });
    std::fs::write(format!("{dir}/boundary.svg"), svg).expect("write");
}
