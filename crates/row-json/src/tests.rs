//! The one-shot parsers against serde_json, and the AVX-512 row reader against the
//! byte-serial one.

use super::*;
use crate::testing::{bits, random_body, REFUSED};

#[test]
fn simple_bodies_decode_to_the_values_serde_json_gives() {
    let body = br#" { "version" : 2, "inputs": [[0.1, -2, 3e-7, 1E+3, -0.0],
        [123456789.123456789, 0, 5e-46, 1.5, 2] ] } "#;
    let got = parse_predict(body).unwrap();
    assert_eq!((got.rows, got.width, got.version), (2, 5, Some(2)));
    let want: serde_json::Value = serde_json::from_slice(body).unwrap();
    let want: Vec<f32> = want["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got.values), bits(&want));
}

#[test]
fn every_number_form_rounds_exactly_as_serde_json_does() {
    let mut rng = crate::testing::Rng::new(3);
    let mut texts: Vec<String> = vec![
        "0".into(),
        "-0".into(),
        "0.1".into(),
        "1e22".into(),
        "1e23".into(),
        "9007199254740993".into(),
        // 19 digits at or above 2^63 (and just below it)
        "9999999999999999999".into(),
        "9.223372036854775808e-3".into(),
        "9.223372036854775807e-3".into(),
        "123456789012345678901234567890".into(),
        "0.000000000000000000000000000001".into(),
        "3.4028235e38".into(),
        "1.17549435e-38".into(),
        "-2.5E-3".into(),
        "7e+0".into(),
    ];
    for _ in 0..20_000 {
        let v = rng.normal() * 10f64.powi(rng.below(30) as i32 - 15);
        texts.push(match rng.below(4) {
            0 => format!("{v}"),
            1 => format!("{v:.6}"),
            2 => format!("{v:e}"),
            _ => format!("{}", v as f32),
        });
    }
    let body = format!("{{\"inputs\": [[{}]]}}", texts.join(", "));
    let got = parse_predict(body.as_bytes()).unwrap();
    for (t, g) in texts.iter().zip(&got.values) {
        let want = serde_json::from_str::<f64>(t).unwrap() as f32;
        assert_eq!(g.to_bits(), want.to_bits(), "{t}");
    }
}

#[test]
fn full_precision_numbers_and_those_next_to_f32_midpoints_read_as_serde_json_does() {
    // What `json.dumps` gives for float64 values: 16 to 18 digits, mantissas above 2^53
    // (the path that rounds the mantissa to an f64 first). And numbers a few f64 ulps from
    // the midpoint between two f32s, printed with 17 digits, where that path must hand
    // over to `fast-float2` for the f32 to come out as serde_json + `as f32` makes it.
    let mut rng = crate::testing::Rng::new(5);
    let mut texts = Vec::new();
    for _ in 0..20_000 {
        let v = (rng.normal() * 10f64.powi(rng.below(8) as i32 - 4)).clamp(-1e6, 1e6);
        texts.push(format!("{v}"));
    }
    for _ in 0..20_000 {
        let low = rng.normal() as f32 * 10f32.powi(rng.below(10) as i32 - 5);
        let high = f32::from_bits(low.to_bits() + 1);
        let midpoint = (f64::from(low) + f64::from(high)) / 2.0;
        let near = f64::from_bits(midpoint.to_bits() + rng.below(9) as u64 - 4);
        texts.push(format!("{near:.16e}"));
        texts.push(format!("{near}"));
    }
    let body = format!("{{\"inputs\": [[{}]]}}", texts.join(", "));
    let got = parse_predict(body.as_bytes()).unwrap();
    assert_eq!(got.values.len(), texts.len());
    for (t, g) in texts.iter().zip(&got.values) {
        let want = serde_json::from_str::<f64>(t).unwrap() as f32;
        assert_eq!(g.to_bits(), want.to_bits(), "{t}");
    }
}

#[test]
fn digit_runs_of_every_length_and_position_read_as_serde_json_does() {
    // Integer and fraction runs of 1 to 24 digits, with what follows them inside and
    // outside the eight-byte window (the last numbers of a body have fewer than eight
    // bytes left and take the byte-at-a-time loop), and high bytes after a number.
    let mut texts = Vec::new();
    for int in 1..=24usize {
        for frac in [0usize, 1, 7, 8, 9, 16, 17] {
            let i: String = (0..int)
                .map(|k| char::from(b'1' + (k * 7 % 9) as u8))
                .collect();
            let f: String = (0..frac)
                .map(|k| char::from(b'0' + (k * 3 % 10) as u8))
                .collect();
            let t = if frac == 0 { i } else { format!("{i}.{f}") };
            texts.push(format!("-{t}"));
            texts.push(format!("{t}e-3"));
            texts.push(t);
        }
    }
    texts.push("0.00000000000000000000012345".into());
    texts.push("0.99999999999999999999".into());
    for sep in [", ", ",", " ,\n"] {
        let body = format!("{{\"inputs\": [[{}]]}}", texts.join(sep));
        let got = parse_predict(body.as_bytes()).unwrap();
        for (t, g) in texts.iter().zip(&got.values) {
            let want = serde_json::from_str::<f64>(t).unwrap() as f32;
            assert_eq!(g.to_bits(), want.to_bits(), "{t}");
        }
    }
    for text in [
        &b"[1\xff, 2]"[..],
        b"[12345678\xfa9, 2]",
        b"[0.1234567\xfb, 2]",
        b"[0.12345678\xff\xff\xff\xff\xff\xff\xff\xff]",
    ] {
        assert_eq!(parse_numbers(text), None, "{text:?}");
    }
}

#[test]
fn rows_printed_alike_fill_a_buffer_of_their_size() {
    // As Python's json.dumps prints rows of f32s: ", " between numbers and rows.
    let body = |rows: usize, width: usize| {
        let rows: Vec<String> = (0..rows)
            .map(|r| {
                let row: Vec<String> = (0..width)
                    .map(|c| format!("{:.7}", ((r * width + c) as f32 * 0.618).sin()))
                    .collect();
                format!("[{}]", row.join(", "))
            })
            .collect();
        format!("{{\"inputs\": [{}]}}", rows.join(", "))
    };
    // Signs and digits make the rows' lengths differ a little: the buffer is reserved
    // once, with at most an eighth to spare (it doubled when a later row was shorter).
    let many = parse_predict(body(64, 784).as_bytes()).unwrap();
    assert_eq!((many.rows, many.width), (64, 784));
    let (len, capacity) = (many.values.len(), many.values.capacity());
    assert!(
        capacity >= len && capacity <= len + len / 7,
        "{capacity} for {len}"
    );
    // One row: the first guess holds it, and nothing is reserved for rows that never come.
    let one = parse_predict(body(1, 784).as_bytes()).unwrap();
    assert_eq!(one.values.len(), 784);
    assert!(one.values.capacity() < 2 * 784, "{}", one.values.capacity());
}

#[test]
fn tensor_data_flat_or_nested_decodes_in_row_major_order() {
    let want = vec![1.0, -2.5, 0.1, 3e-7, 0.0, 7.0];
    for text in [
        "[1, -2.5, 0.1, 3e-7, 0, 7]",
        " [[1, -2.5, 0.1], [3e-7, 0, 7]] ",
        "[[[1], [-2.5]], [[0.1, 3e-7]], [0, [7]]]",
    ] {
        assert_eq!(parse_numbers(text.as_bytes()), Some(want.clone()), "{text}");
    }
    assert_eq!(parse_numbers(b"[]"), Some(vec![]));
    assert_eq!(parse_numbers(b"[[], []]"), Some(vec![]));
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    for text in [
        "[1, \"2\"]",
        "[1, true]",
        "[1, 1e39]",
        "[1,]",
        "[1 2]",
        "[[1]",
        "[1]]",
        "1",
        "",
        deep.as_str(),
    ] {
        assert_eq!(parse_numbers(text.as_bytes()), None, "{text}");
    }
}

#[test]
fn rows_read_eight_at_a_time_match_the_byte_serial_reader() {
    // The AVX-512 row reader against the byte-serial one, on bodies of every number form
    // and separator (and against serde_json), then on the same bodies with one byte
    // changed: they take the same bodies and give the same bits, or both refuse.
    let mut rng = crate::testing::Rng::new(11);
    let separators = [", ", ",", " , ", ",\n  ", "\t,\r\n"];
    let interesting = b"-+.eE0159 ,\n[]\"x\xff";
    // Every prefix of a body: it ends inside a number, a row or between rows (the row
    // reader must not read past the end looking for the row's `]`).
    let body = random_body(&mut rng, (3, 30, 8), &[", "]);
    for end in 0..body.len() {
        let prefix = &body.as_bytes()[..end];
        assert_eq!(
            bits(&parse_predict_with(prefix, true)),
            bits(&parse_predict_with(prefix, false)),
            "{}",
            String::from_utf8_lossy(prefix)
        );
    }
    // As many commas as numbers less one, but not one between each two of them.
    for row in [
        "[1 2,]",
        "[,1 2]",
        "[1,, 2 3]",
        "[0.5 0.25 ,]",
        "[1.5,2.5 3.5,]",
    ] {
        let body = format!("{{\"inputs\": [{row}, {row}]}}");
        assert_eq!(parse_predict_with(body.as_bytes(), true), None, "{body}");
    }
    // Rows with every comma right after its number, and how many the row reader took.
    let (mut plain, mut taken) = (0, 0);
    for round in 0..400 {
        let (rows, width) = (1 + rng.below(4), 1 + rng.below(40));
        // Half the bodies start their rows with eight numbers of the usual form (the row
        // reader gives up rows that start with eight of other forms).
        let usual = if round % 2 == 0 { 8 } else { 0 };
        let body = random_body(
            &mut rng,
            (rows, width + usual, usual),
            &separators[..1 + round % 5],
        );
        let fast = parse_predict_with(body.as_bytes(), true);
        assert_eq!(
            bits(&fast),
            bits(&parse_predict_with(body.as_bytes(), false)),
            "{body}"
        );
        let want: serde_json::Value = serde_json::from_str(&body).unwrap();
        let want: Vec<u32> = want["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().clone())
            .map(|v| (v.as_f64().unwrap() as f32).to_bits())
            .collect();
        assert_eq!(bits(&fast).unwrap().0, want, "{body}");
        for _ in 0..20 {
            let mut changed = body.clone().into_bytes();
            let at = 12 + rng.below(changed.len() - 12);
            let byte = interesting[rng.below(interesting.len())];
            if rng.below(2) == 0 {
                changed[at] = byte;
            } else {
                changed.insert(at, byte);
            }
            let (simd, serial) = (
                parse_predict_with(&changed, true),
                parse_predict_with(&changed, false),
            );
            assert_eq!(
                bits(&simd),
                bits(&serial),
                "{}",
                String::from_utf8_lossy(&changed)
            );
        }
        // How many of this body's rows the row reader takes by itself.
        if round % 5 >= 2 || usual == 0 {
            continue;
        }
        plain += rows;
        if let Some(mut reader) = RowReader::new() {
            let b = body.as_bytes();
            let mut at = b.iter().position(|&c| c == b'[').unwrap() + 1;
            let mut out = Vec::new();
            for _ in 0..rows {
                at += 1;
                match reader.read(b, at, &mut out) {
                    Some(end) => {
                        taken += 1;
                        at = end + 2;
                    }
                    None => break,
                }
            }
        }
    }
    // The row reader takes every row that starts with numbers of the usual form and whose
    // commas follow their numbers at once (numbers of other forms are read one at a time
    // by the byte-serial reader inside it), where the CPU has it. Rows with a space
    // before a comma go to the byte-serial reader.
    if RowReader::new().is_some() {
        assert_eq!(taken, plain, "rows the row reader took");
    } else {
        eprintln!("no AVX-512 row reader on this CPU: only the byte-serial reader ran");
    }
}

#[test]
fn anything_unusual_goes_to_the_general_path() {
    for body in REFUSED {
        assert_eq!(
            parse_predict(body),
            None,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(parse_predict(br#"{"inputs": [[1]], "version": null}"#).is_some());
}
