//! The stream against the one-shot parser, however a body is cut, and what it keeps back.

use super::super::parse_predict;
use super::*;
use crate::testing::{bits, random_body, REFUSED};

/// `body` fed in the pieces that end at `cuts` (and the last one), then finished.
fn in_pieces(body: &[u8], cuts: impl IntoIterator<Item = usize>) -> Option<FastPredict> {
    let mut stream = PredictStream::new(Some(body.len()));
    let mut at = 0;
    for cut in cuts {
        stream.feed(&body[at..cut]);
        at = cut;
    }
    stream.feed(&body[at..]);
    stream.finish().ok()
}

/// `body` in pieces of `size` bytes.
fn by(body: &[u8], size: usize) -> Option<FastPredict> {
    in_pieces(body, (size..body.len()).step_by(size))
}

type Read = (Option<(Vec<u32>, usize, usize)>, Option<Option<u32>>);

fn read(p: &Option<FastPredict>) -> Read {
    (bits(p), p.as_ref().map(|p| p.version))
}

#[test]
fn a_body_cut_anywhere_reads_as_it_does_in_one_piece() {
    // Every part of the grammar at a cut: the members before and after the rows, `null`,
    // whitespace everywhere, numbers of every form (the byte-serial reader inside a
    // row), and bodies the contiguous parser refuses, which must stay refused.
    let mut rng = crate::testing::Rng::new(5);
    let mut bodies: Vec<Vec<u8>> = [
        &br#"{"inputs": [[1, 2.5], [-3e-2, 4]]}"#[..],
        br#" { "inputs" : [ [0.1 ,-2] ,
            [ 3E+7,1] ] , "version" : 12 } "#,
        br#"{"version": null, "inputs": [[1]]}"#,
        br#"{"inputs": [[1]], "version": 4294967295}"#,
        br#"{"inputs":[[1.0000001,2]],"version":null}"#,
        // Refused here as in one piece, at a cut anywhere.
        br#"{"inputs": [[1, [2]]]}"#,
        br#"{"inputs": [[1, 2], ["3", 4]]}"#,
        br#"{"inputs": [[1]], "version": 12x}"#,
        br#"{"inputs": [[1]], "version": nul}"#,
        br#"{"inputs": [[1]],}"#,
        br#"{"version": 1}"#,
        br#"{}"#,
    ]
    .iter()
    .chain(&REFUSED)
    .map(|b| b.to_vec())
    .collect();
    for round in 0..12 {
        let (rows, width) = (1 + round % 4, 1 + 3 * round);
        let usual = if round % 2 == 0 { width.min(8) } else { 0 };
        bodies.push(random_body(&mut rng, (rows, width, usual), &[", ", ",", " ,\n"]).into());
    }
    for body in &bodies {
        let whole = read(&parse_predict(body));
        let text = String::from_utf8_lossy(body);
        for cut in 0..=body.len() {
            assert_eq!(read(&in_pieces(body, [cut])), whole, "cut at {cut}: {text}");
        }
        for size in 1..=9 {
            assert_eq!(read(&by(body, size)), whole, "pieces of {size}: {text}");
        }
        for _ in 0..20 {
            let mut cuts: Vec<usize> = (0..1 + rng.below(6))
                .map(|_| rng.below(body.len() + 1))
                .collect();
            cuts.sort_unstable();
            assert_eq!(
                read(&in_pieces(body, cuts.clone())),
                whole,
                "{cuts:?}: {text}"
            );
        }
    }
}

#[test]
fn a_large_body_reads_as_it_does_in_one_piece_however_it_arrives() {
    // The benchmark's request: 64 rows of 784 numbers with an f32's seven digits, as
    // hyper hands it over (pieces of 8 KB growing to hundreds) and in other sizes.
    let mut rng = crate::testing::Rng::new(8);
    let body = random_body(&mut rng, (64, 784, 784), &[", "]).into_bytes();
    let whole = read(&parse_predict(&body));
    assert!(whole.0.is_some());
    for size in [1, 100, 4096, 8192, 65536, 400 << 10] {
        assert_eq!(read(&by(&body, size)), whole, "pieces of {size}");
    }
    let mut growing = Vec::new();
    let (mut at, mut size) = (0, 8192);
    while at + size < body.len() {
        at += size;
        growing.push(at);
        size *= 2;
    }
    assert_eq!(read(&in_pieces(&body, growing)), whole);
}

#[test]
fn room_for_values_follows_the_bytes_that_came_not_only_the_declared_length() {
    // The first row sizes `values` for the rows the rest of the body can hold: a declared
    // length (up to the route's limit) counts only up to eight times what has come.
    // Without that bound this client would have the server reserve 2^40 · 8/21 floats.
    let piece = br#"{"inputs": [[1], [2"#;
    let mut liar = PredictStream::new(Some(1 << 40));
    liar.feed(piece);
    assert_eq!(liar.rows, 1);
    // (The first guess, before any row, is at most 4,096 values whatever is declared.)
    let first_guess = super::super::numbers_in(usize::MAX);
    assert!(liar.values.capacity() <= first_guess.max(8 * piece.len()));
    // An honest length sizes it for the whole body once the bytes are there.
    let mut rng = crate::testing::Rng::new(2);
    let body = random_body(&mut rng, (64, 100, 100), &[", "]).into_bytes();
    let mut honest = PredictStream::new(Some(body.len()));
    honest.feed(&body[..body.len() / 4]);
    assert!(honest.values.capacity() >= 64 * 100);
    honest.feed(&body[body.len() / 4..]);
    assert_eq!(honest.finish().map(|p| p.values.len()).ok(), Some(64 * 100));
}

#[test]
fn what_is_kept_back_is_bounded_and_a_body_beyond_it_goes_the_slower_way() {
    // Whitespace is JSON: the contiguous parser takes these, the stream gives them up
    // (the request is then joined and read whole).
    let head = format!("{}{{\"inputs\": [[1]]}}", " ".repeat(HEAD_MAX + 1));
    let tail = format!("{{\"inputs\": [[1]]{}}}", " ".repeat(TAIL_MAX + 1));
    for body in [head, tail] {
        assert!(parse_predict(body.as_bytes()).is_some());
        assert_eq!(read(&by(body.as_bytes(), 1000)), (None, None));
    }
    // Just inside, it takes them, a byte at a time too.
    let head = format!("{}{{\"inputs\": [[1]]}}", " ".repeat(HEAD_MAX - 20));
    let tail = format!("{{\"inputs\": [[1]]{}}}", " ".repeat(TAIL_MAX - 1));
    for body in [head, tail] {
        let whole = read(&parse_predict(body.as_bytes()));
        assert!(whole.0.is_some());
        assert_eq!(read(&by(body.as_bytes(), 1)), whole);
        assert_eq!(read(&by(body.as_bytes(), 1000)), whole);
    }
}

#[test]
fn a_refusal_gives_back_the_rows_read_as_zeros_of_the_same_length() {
    // The layout of a fallback; that the server answers it as it answers the body is
    // tested beside the server's decoder (src/http/predict_decode_tests.rs).
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
}

#[test]
fn a_compact_body_keeps_no_more_than_a_row_and_a_pretty_one_is_kept_from_its_first_line_break() {
    let mut rng = crate::testing::Rng::new(3);
    let body = random_body(&mut rng, (64, 784, 784), &[", "]).into_bytes();
    let longest_row = body.split(|&b| b == b']').map(<[u8]>::len).max().unwrap();
    let mut stream = PredictStream::new(Some(body.len()));
    for piece in body.chunks(16 << 10) {
        stream.feed(piece);
        assert!(stream.kept.is_none());
        assert!(stream.held.capacity() <= 2 * (longest_row + PAD));
    }
    assert!(stream.finish().is_ok());
    // Rows over several lines: the body is kept from the first line break in the rows.
    let pretty = b"{\"inputs\": [[1, 2], [3, 4],\n [5, 6]], \"version\": x}";
    let mut stream = PredictStream::new(Some(pretty.len()));
    stream.feed(&pretty[..30]);
    // (Settled after `[3, 4]`, before its comma: `,\n [` so far.)
    assert_eq!(stream.kept.as_deref(), Some(&pretty[26..30]));
    stream.feed(&pretty[30..]);
    let fallback = stream.finish().expect_err("refused");
    assert_eq!(fallback.rows, 2);
    assert!(fallback.body.ends_with(&pretty[26..]));
}
