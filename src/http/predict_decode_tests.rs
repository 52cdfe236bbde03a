//! The server's decoding of prediction bodies against the `row_json` parser it tries first:
//! a body read piece by piece ([`PredictStream`]) is answered as it would be whole, and a body
//! the stream gives up ([`row_json::Fallback`]) is answered, errors and their line and column
//! included, as the general path answers the body itself. These tests need the server's
//! [`PredictBody`]; the parser's own tests live in the crate.

use row_json::testing::{random_body, Rng, REFUSED};
use row_json::{parse_predict, PredictStream, TAIL_MAX};

use crate::http::predict::{Outcome, PredictBody};

/// What the general path answers for `body` fed in the pieces that end at `cuts`: the
/// stream's result, or its fallback decoded ([`PredictBody::streamed`]).
fn answered(body: &[u8], cuts: &[usize]) -> Outcome {
    let mut stream = PredictStream::new(Some(body.len()));
    let mut at = 0;
    for &cut in cuts {
        stream.feed(&body[at..cut]);
        at = cut;
    }
    stream.feed(&body[at..]);
    PredictBody::outcome(PredictBody::streamed(stream))
}

#[test]
fn the_rows_read_before_a_refusal_come_back_as_zeros_of_the_same_length() {
    let body = br#"{"inputs": [[1.5, 2], [3, 4], [5, x]]}"#;
    let mut stream = PredictStream::new(Some(body.len()));
    stream.feed(&body[..20]);
    stream.feed(&body[20..]);
    let fallback = stream.finish().expect_err("refused");
    // Two rows read (18 bytes with the separator after them), then the rest as it came.
    assert_eq!(
        std::str::from_utf8(&fallback.body).unwrap(),
        r#"{"inputs": [[0,0],[0,0],      [5, x]]}"#
    );
    assert_eq!(fallback.body.len(), body.len());
    assert_eq!((fallback.rows, fallback.width), (2, 2));
    assert_eq!(fallback.values, [1.5, 2.0, 3.0, 4.0]);
    // The general path names the same line and column in both.
    let whole = PredictBody::outcome(PredictBody::decode(body));
    assert!(
        whole.as_ref().is_err_and(|e| e.contains("column 35")),
        "{whole:?}"
    );
    assert_eq!(
        PredictBody::outcome(PredictBody::from_fallback(fallback)),
        whole
    );
}

#[test]
fn a_refused_body_cut_anywhere_is_answered_as_it_is_whole() {
    // Errors in every part of the body and at every depth, bodies the stream gives up
    // but the general path takes (their rows written back over the zeros), and line
    // breaks in rows and between them (kept as they came from there on). Each is also
    // mutated a byte at a time, at random.
    let mut rng = Rng::new(11);
    let long_tail = format!(
        "{{\"inputs\": [[1.25, -2], [3e-3, 4]]{}, \"version\": 3}}",
        " ".repeat(TAIL_MAX)
    );
    let mut bodies: Vec<Vec<u8>> = [
        &br#"{"inputs": [[1, 2], [3, 4x]]}"#[..],
        br#"{"inputs": [[1, 2], [3, "a"]]}"#,
        br#"{"inputs": [[1, 2], [3, null], [5, 6]]}"#,
        br#"{"inputs": [[1, 2], [3, [4]]]}"#,
        br#"{"inputs": [[1, 2], [3], [5, 6]]}"#,
        br#"{"inputs": [[1, 2], [3, 4, 5]]}"#,
        br#"{"inputs": [[1, 2], [3, 1e39]]}"#,
        br#"{"inputs": [[1, 2], [3, 1e999]]}"#,
        br#"{"inputs": [[1, 2], [3, 4],]}"#,
        br#"{"inputs": [[1, 2], [3, 4]"#,
        br#"{"inputs": [[1, 2], [3, 4]], "extra": 1}"#,
        br#"{"inputs": [[1, 2], [3, 4]], "inputs": [[1]]}"#,
        br#"{"inputs": [[1, 2], [3, 4]], "version": -1}"#,
        br#"{"inputs": [[1, 2], [3, 4]], "version": 2} x"#,
        br#"{"inputs": [[1, 2], [3, 4]], "version": 2"#,
        br#"{"inputs": [[1, 2]   ,   [3, 4]]  ,  "version" : 2 }"#,
        b"{\"inputs\": [[1, 2],\n [3, 4],\n [5, 6x]]}",
        b"{\"inputs\": [[1, 2], [3,\n 4], [5, \"6\"]]}",
        // A line break inside a row the AVX-512 reader takes, and an error after it.
        b"{\"inputs\": [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2,\n 3, 4, 5, 6, 7, 8], [1, 2x]]}",
        b"{\"inputs\": [\n  [1, 2],\n  [3, 4]\n], \"version\": x}",
        b"{\"inputs\": [[1, 2], [3, 4]]\n\n, \"extra\": 1}",
        long_tail.as_bytes(),
    ]
    .iter()
    .chain(&REFUSED)
    .map(|b| b.to_vec())
    .collect();
    let base = random_body(&mut rng, (5, 6, 3), &[", ", ",", " ,\n"]).into_bytes();
    let alphabet = b"0123456789-+.eE,[]{}\" \nx";
    for _ in 0..120 {
        let mut mutated = base.clone();
        let at = rng.below(mutated.len());
        let byte = alphabet[rng.below(alphabet.len())];
        match rng.below(3) {
            0 => mutated[at] = byte,
            1 => mutated.insert(at, byte),
            _ => drop(mutated.remove(at)),
        }
        bodies.push(mutated);
    }
    let mut refused = 0;
    for body in &bodies {
        let whole = PredictBody::outcome(PredictBody::decode(body));
        let text = String::from_utf8_lossy(body);
        refused += usize::from(parse_predict(body).is_none());
        let long = body.len() > 200;
        for cut in (0..=body.len()).step_by(if long { 97 } else { 1 }) {
            assert_eq!(answered(body, &[cut]), whole, "cut at {cut}: {text}");
        }
        for size in [1, 2, 3, 5, 8] {
            let cuts: Vec<usize> = (size..body.len()).step_by(size).collect();
            assert_eq!(answered(body, &cuts), whole, "pieces of {size}: {text}");
        }
        for _ in 0..10 {
            let mut cuts: Vec<usize> = (0..1 + rng.below(6))
                .map(|_| rng.below(body.len() + 1))
                .collect();
            cuts.sort_unstable();
            assert_eq!(answered(body, &cuts), whole, "{cuts:?}: {text}");
        }
    }
    assert!(refused > 60, "only {refused} bodies took the general path");
    // The long tail: the stream gives it up after reading both rows, which come back.
    let (rows, version) = PredictBody::outcome(PredictBody::decode(long_tail.as_bytes())).unwrap();
    assert_eq!((rows.len(), version), (2, Some(3)));
    assert_eq!(rows[0], [1.25f32.to_bits(), (-2f32).to_bits()]);
}
