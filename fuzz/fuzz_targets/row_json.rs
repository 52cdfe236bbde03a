//! The `row_json` crate by itself: the one-shot parse, the stream fed in arbitrary pieces and
//! the fallback it gives, each against the others and against serde_json (with
//! `float_roundtrip`, as the server reads numbers). What the server makes of a body (its
//! general decoder, its errors, a fallback decoded) is the `predict_json` target's.
//!
//! Input: the first byte picks how the stream is fed (bits 0–1: the declared length: the
//! true one, none, far too much or 0; bits 2–7 seed the sizes of the pieces); the rest is
//! the body.

#![no_main]

use row_json::{parse_numbers, parse_predict, FastPredict, PredictStream, HEAD_MAX, TAIL_MAX};
use serde_json::Value;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let whole = parse_predict(body);
    if let Some(fast) = &whole {
        agrees_with_serde_json(body, fast);
    }
    let declared = match control & 3 {
        0 => Some(body.len()),
        1 => None,
        2 => Some(body.len().saturating_mul(1000) + 1),
        _ => Some(0),
    };
    // In one piece, a byte at a time, and in pieces of 1 to 97 bytes drawn from the control
    // byte and the body's length.
    let mut seed = u64::from(control >> 2) ^ ((body.len() as u64) << 8);
    for pieces in 0..3 {
        let mut stream = PredictStream::new(declared);
        let mut at = 0;
        while at < body.len() {
            let size = match pieces {
                0 => body.len(),
                1 => 1,
                _ => 1 + (splitmix(&mut seed) % 97) as usize,
            };
            stream.feed(&body[at..at + size.min(body.len() - at)]);
            at += size.min(body.len() - at);
        }
        match stream.finish() {
            Ok(streamed) => {
                let whole = whole
                    .as_ref()
                    .expect("the stream took a body parse_predict refuses");
                assert_eq!(bits(&streamed), bits(whole), "the stream reads otherwise");
                assert_eq!(streamed.version, whole.version, "version");
            }
            Err(fallback) => {
                // The stream gives up a body parse_predict takes only for what it does not
                // keep: more than HEAD_MAX bytes before the rows or TAIL_MAX after them.
                assert!(
                    whole.is_none() || body.len() > TAIL_MAX.min(HEAD_MAX),
                    "the stream refused a short body parse_predict takes"
                );
                fallback_stands_for_the_body(body, &fallback);
            }
        }
    }
    if let Some(values) = parse_numbers(body) {
        let value: Value =
            serde_json::from_slice(body).expect("serde_json reads what parse_numbers takes");
        let mut want = Vec::new();
        flatten(&value, &mut want);
        assert_eq!(
            values.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            want,
            "parse_numbers reads otherwise than serde_json"
        );
    }
});

/// SplitMix64: the sizes of the pieces.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn bits(p: &FastPredict) -> (Vec<u32>, usize, usize) {
    (
        p.values.iter().map(|x| x.to_bits()).collect(),
        p.rows,
        p.width,
    )
}

/// A number's `f32` as serde_json + `as f32` makes it (integers through `f64`).
fn f32_bits(v: &Value) -> Option<u32> {
    v.as_f64().map(|x| (x as f32).to_bits())
}

/// The numbers of nested arrays, row-major; a value that is not a number or an array fails.
fn flatten(v: &Value, out: &mut Vec<u32>) {
    match v {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        number => out.push(f32_bits(number).expect("a number")),
    }
}

/// What `parse_predict` took, serde_json reads the same: an object of `inputs` (rows of one
/// width) and perhaps `version`, with the same values bit for bit.
fn agrees_with_serde_json(body: &[u8], fast: &FastPredict) {
    let value: Value =
        serde_json::from_slice(body).expect("serde_json reads what parse_predict takes");
    let object = value.as_object().expect("an object");
    assert!(
        object.keys().all(|k| k == "inputs" || k == "version"),
        "members"
    );
    let rows = object["inputs"].as_array().expect("rows");
    assert_eq!(rows.len(), fast.rows, "rows");
    let mut want = Vec::new();
    for row in rows {
        let row = row.as_array().expect("a row");
        assert_eq!(row.len(), fast.width, "width");
        want.extend(row.iter().map(|v| f32_bits(v).expect("a number")));
    }
    assert_eq!(bits(fast).0, want, "values");
    let version = object.get("version").and_then(Value::as_u64);
    assert_eq!(fast.version.map(u64::from), version, "version");
}

/// A fallback is the body with the rows the stream read written as zeros of the same length
/// (no line break among them), and their values: the same JSON, or the same syntax error at
/// the same line and column, once those values are put back.
fn fallback_stands_for_the_body(body: &[u8], fallback: &row_json::Fallback) {
    assert_eq!(fallback.body.len(), body.len(), "the fallback's length");
    assert_eq!(
        fallback.values.len(),
        fallback.rows * fallback.width,
        "values of the rows read"
    );
    // Where the two differ, the fallback has only zero rows and spaces (the body may have had
    // other whitespace there, but no line break).
    let first = fallback.body.iter().zip(body).position(|(a, b)| a != b);
    let last = fallback.body.iter().zip(body).rposition(|(a, b)| a != b);
    if let (Some(first), Some(last)) = (first, last) {
        assert!(
            fallback.body[first..=last]
                .iter()
                .all(|b| b"[],0 ".contains(b)),
            "the fallback differs from the body outside its zero rows"
        );
        assert!(
            !body[first..=last].contains(&b'\n'),
            "rows with a line break"
        );
    }
    let (original, standin) = (
        serde_json::from_slice::<Value>(body),
        serde_json::from_slice::<Value>(&fallback.body),
    );
    match (original, standin) {
        // Equal as they are where the zeros stand for zeros, or for an `inputs` that a
        // repeated one replaces.
        (Ok(original), Ok(standin)) if standin == original => {}
        (Ok(original), Ok(mut standin)) => {
            // Otherwise the zero rows are the first of `inputs`: the values go back there.
            let rows = standin["inputs"].as_array_mut().expect("rows");
            let read = original["inputs"].as_array().expect("rows");
            assert!(
                rows.len() >= fallback.rows && fallback.width > 0,
                "rows read"
            );
            for (r, row) in rows.iter_mut().take(fallback.rows).enumerate() {
                let zeros = row.as_array().expect("a row");
                assert!(zeros.len() == fallback.width && zeros.iter().all(|z| *z == 0));
                let want: Vec<u32> = read[r]
                    .as_array()
                    .expect("a row")
                    .iter()
                    .map(|v| f32_bits(v).expect("a number"))
                    .collect();
                let values = &fallback.values[r * fallback.width..][..fallback.width];
                let got: Vec<u32> = values.iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, want, "the values of row {r}");
                *row = read[r].clone();
            }
            assert_eq!(
                standin, original,
                "the fallback is other JSON than the body"
            );
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "another error"),
        (a, b) => panic!("one reads, the other not: {:?} / {:?}", a.err(), b.err()),
    }
}
