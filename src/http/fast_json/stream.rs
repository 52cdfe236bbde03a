//! [`parse_predict`](super::parse_predict) for a body that arrives in pieces, read as they
//! arrive.
//!
//! hyper hands a request body over in the pieces it read from the socket (a 64-row request of
//! a 784-input model, 577 KB, came in nine on a new connection, of 16 KB growing to 157 KB,
//! by strace). Joining them into one buffer before
//! parsing copied the whole body once more, out of the cache the kernel had just written it
//! to: 8 % of the server's time on such requests (perf, `Collected::to_bytes`). Here each
//! piece is parsed where it lies, and only what a piece cuts off is copied: the start of the
//! object until its rows begin, a row cut in two (into [`PredictStream::held`], until the
//! piece that holds its `]`), and what follows the rows.
//!
//! The grammar and the readers are those of the contiguous parser ([`Cursor`]), and so are
//! the bits. A body this parser does not take ([`PredictStream::finish`] gives `None`) is
//! joined and read by the contiguous path, and then by serde for its errors: it refuses
//! whatever the contiguous parser refuses, and it may also give up on a body it would take
//! (an object whose members before `inputs`, or after it, are longer than [`HEAD_MAX`] or
//! [`TAIL_MAX`] bytes), which then simply takes the slower path.

use super::{reserve_rows, row_reader, Cursor, FastPredict, Member, RowReader};

/// The most bytes kept while looking for the start of the rows (`{"version": 2, "inputs": [`
/// takes 26).
const HEAD_MAX: usize = 16 << 10;
/// The most bytes kept after the rows' `]` (`, "version": 2}` takes 15).
const TAIL_MAX: usize = 4 << 10;
/// Bytes in front of a row copied into [`PredictStream::held`]: the AVX-512 row reader reads
/// a few bytes before a row's first number.
const PAD: usize = 8;

/// A prediction request read piece by piece: [`PredictStream::feed`] each piece in order,
/// then [`PredictStream::finish`].
pub struct PredictStream {
    phase: Phase,
    /// The bytes kept back: in [`Phase::Head`] the body so far, in [`Phase::Rows`] a row a
    /// piece cut off (after [`PAD`] spaces), in [`Phase::Tail`] the bytes after the rows.
    held: Vec<u8>,
    /// In [`Phase::Head`], the length of `held` when its head was last tried.
    tried: usize,
    version: Option<Option<u32>>,
    values: Vec<f32>,
    rows: usize,
    width: usize,
    reader: Option<RowReader>,
    /// The body's bytes before the current piece, and through it; and its declared length.
    /// `values` is sized from the declared length, but never for more than [`LOOKAHEAD`]
    /// times the bytes that came: a client may declare any length up to the route's limit
    /// and then send nothing.
    fed: usize,
    received: usize,
    declared: Option<usize>,
}

/// See [`PredictStream::received`].
const LOOKAHEAD: usize = 8;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    /// Before the rows: the object's members up to `"inputs": [`.
    Head,
    /// Inside the `inputs` array: before a row (`expect_row`) or after one (before `,` or
    /// `]`); `cut` when `held` holds the start of a row.
    Rows { expect_row: bool, cut: bool },
    /// After the `inputs` array.
    Tail,
    /// Not a body of the simple shape, or beyond what is kept back: the general path reads
    /// it.
    Failed,
}

impl PredictStream {
    /// A parser for a body of `declared` bytes (its `Content-Length`, when it has one).
    pub fn new(declared: Option<usize>) -> Self {
        Self {
            phase: Phase::Head,
            held: Vec::new(),
            tried: 0,
            version: None,
            values: Vec::with_capacity(super::numbers_in(declared.unwrap_or(0))),
            rows: 0,
            width: 0,
            reader: row_reader(true),
            fed: 0,
            received: 0,
            declared,
        }
    }

    /// Reads the next piece of the body.
    pub fn feed(&mut self, piece: &[u8]) {
        self.received = self.fed + piece.len();
        match self.phase {
            Phase::Head => self.head(piece),
            Phase::Rows { .. } => self.rows(piece, 0, self.fed),
            Phase::Tail => self.tail(piece),
            Phase::Failed => {}
        }
        self.fed += piece.len();
    }

    /// The request, if the pieces fed made a body of the simple shape (exactly what
    /// [`super::parse_predict`] gives for them joined), or `None`.
    pub fn finish(mut self) -> Option<FastPredict> {
        if self.phase == Phase::Head {
            self.try_head();
        }
        if self.phase != Phase::Tail {
            return None;
        }
        let mut c = Cursor {
            b: &self.held,
            i: 0,
            simd: false,
        };
        if !c.after_value()? && !matches!(c.members(true, &mut self.version)?, Member::End) {
            return None;
        }
        c.ws();
        (c.i == self.held.len()).then_some(FastPredict {
            values: self.values,
            rows: self.rows,
            width: self.width,
            version: self.version.flatten(),
        })
    }

    fn fail(&mut self) {
        self.phase = Phase::Failed;
        self.held = Vec::new();
    }

    /// Before the rows. Usually the first piece holds the whole head, and is read where it
    /// lies; otherwise the pieces are kept until it is complete, and tried again each time
    /// they have doubled (so that a body sent a byte at a time is not read over and over).
    fn head(&mut self, piece: &[u8]) {
        if self.held.is_empty() {
            if let Some((at, version)) = head_end(piece) {
                self.version = version;
                self.phase = ROWS;
                return self.rows(piece, at, self.fed);
            }
            self.tried = piece.len();
        }
        if self.held.len() + piece.len() > HEAD_MAX {
            return self.fail();
        }
        self.held.extend_from_slice(piece);
        if self.held.len() >= 2 * self.tried {
            self.try_head();
        }
    }

    /// Tries `held` (the body from its first byte) as the start of the body; once it holds
    /// the whole head, what follows it goes on to [`PredictStream::rows`].
    fn try_head(&mut self) {
        self.tried = self.held.len();
        if let Some((at, version)) = head_end(&self.held) {
            let held = std::mem::take(&mut self.held);
            self.version = version;
            self.phase = ROWS;
            self.rows(&held, at, 0);
        }
    }

    /// The rows, from `data[from..]`, where `data[0]` is byte `base` of the body: each whole
    /// row is read where it lies; a row whose `]` is in a later piece is kept in `held`
    /// until that piece comes.
    fn rows(&mut self, data: &[u8], from: usize, base: usize) {
        let Phase::Rows {
            mut expect_row,
            cut,
        } = self.phase
        else {
            return;
        };
        let mut i = from;
        if cut {
            // The rest of the row kept back, through its `]`.
            let Some(close) = memchr::memchr(b']', &data[i..]) else {
                self.held.extend_from_slice(&data[i..]);
                return;
            };
            self.held.extend_from_slice(&data[i..=i + close]);
            i += close + 1;
            let held = std::mem::take(&mut self.held);
            // `held[0]` stands for body byte `base + i − held.len()` (`held` ends where
            // `data[i]` starts), or near it for a row that starts within `PAD` bytes of the
            // body's start.
            let read = self.row(&held, PAD + 1, (base + i).saturating_sub(held.len()));
            self.held = held;
            self.held.clear();
            if read.is_none() {
                return self.fail();
            }
            expect_row = false;
        }
        // Rows that start before the last `]` of `data` end in it.
        let last_close = memchr::memrchr(b']', &data[i..]).map(|k| i + k);
        loop {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = data.get(i) {
                i += 1;
            }
            let Some(&c) = data.get(i) else {
                break;
            };
            if expect_row {
                if c != b'[' {
                    return self.fail();
                }
                if last_close.is_none_or(|close| close < i) {
                    self.held.clear();
                    self.held.resize(PAD, b' ');
                    self.held.extend_from_slice(&data[i..]);
                    self.phase = Phase::Rows {
                        expect_row: true,
                        cut: true,
                    };
                    return;
                }
                let Some(end) = self.row(data, i + 1, base) else {
                    return self.fail();
                };
                i = end;
                expect_row = false;
            } else {
                match c {
                    b',' => {
                        i += 1;
                        expect_row = true;
                    }
                    b']' => {
                        self.phase = Phase::Tail;
                        self.held.clear();
                        return self.tail(&data[i + 1..]);
                    }
                    _ => return self.fail(),
                }
            }
        }
        self.phase = Phase::Rows {
            expect_row,
            cut: false,
        };
    }

    /// The row of `data` whose numbers start at `start` (after its `[`), where `data[0]` is
    /// byte `base` of the body: its values appended, and the index after its `]`; `None` if
    /// it is not a row of numbers of the first row's width. After the first row, room is
    /// made for the rest.
    fn row(&mut self, data: &[u8], start: usize, base: usize) -> Option<usize> {
        let mut c = Cursor {
            b: data,
            i: start,
            simd: false,
        };
        let before = self.values.len();
        c.row_values(self.reader.as_mut(), &mut self.values)?;
        let n = self.values.len() - before;
        if self.rows == 0 {
            self.width = n;
            let left = self
                .declared
                .map_or(0, |d| d.saturating_sub(base + c.i))
                .min(LOOKAHEAD.saturating_mul(self.received));
            reserve_rows(&mut self.values, n, c.i - start + 1, left);
        } else if n != self.width {
            return None;
        }
        self.rows += 1;
        Some(c.i)
    }

    /// After the rows: kept until [`PredictStream::finish`] reads it.
    fn tail(&mut self, piece: &[u8]) {
        if self.held.len() + piece.len() > TAIL_MAX {
            return self.fail();
        }
        self.held.extend_from_slice(piece);
    }
}

/// [`Phase::Rows`] before the first row.
const ROWS: Phase = Phase::Rows {
    expect_row: true,
    cut: false,
};

/// Where the rows of a body starting with `data` begin (after `"inputs": [` and whitespace),
/// and the `version` read before them; `None` if `data` does not hold all of that.
fn head_end(data: &[u8]) -> Option<(usize, Option<Option<u32>>)> {
    let mut c = Cursor {
        b: data,
        i: 0,
        simd: false,
    };
    let mut version = None;
    c.ws();
    c.eat(b'{')?;
    c.ws();
    let Member::Inputs = c.members(false, &mut version)? else {
        return None;
    };
    c.eat(b'[')?;
    c.ws();
    Some((c.i, version))
}

#[cfg(test)]
mod tests {
    use super::super::parse_predict;
    use super::super::tests::{bits, random_body, REFUSED};
    use super::*;

    /// `body` fed in the pieces that end at `cuts` (and the last one), then finished.
    fn in_pieces(body: &[u8], cuts: impl IntoIterator<Item = usize>) -> Option<FastPredict> {
        let mut stream = PredictStream::new(Some(body.len()));
        let mut at = 0;
        for cut in cuts {
            stream.feed(&body[at..cut]);
            at = cut;
        }
        stream.feed(&body[at..]);
        stream.finish()
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
        let mut rng = crate::nn::rng::Rng::new(5);
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
        let mut rng = crate::nn::rng::Rng::new(8);
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
        let mut rng = crate::nn::rng::Rng::new(2);
        let body = random_body(&mut rng, (64, 100, 100), &[", "]).into_bytes();
        let mut honest = PredictStream::new(Some(body.len()));
        honest.feed(&body[..body.len() / 4]);
        assert!(honest.values.capacity() >= 64 * 100);
        honest.feed(&body[body.len() / 4..]);
        assert_eq!(honest.finish().map(|p| p.values.len()), Some(64 * 100));
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
}
