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
//! the bits. A body this parser does not take ([`PredictStream::finish`] gives a
//! [`Fallback`]) is read by the contiguous path, and then by serde for its errors: it refuses
//! whatever the contiguous parser refuses, and it may also give up on a body it would take
//! (an object whose members before `inputs`, or after it, are longer than [`HEAD_MAX`] or
//! [`TAIL_MAX`] bytes), which then simply takes the slower path.
//!
//! **No piece is kept for that slower path.** Keeping every piece until the body was
//! accepted held each request's whole body, and with it the read buffers hyper had cut the
//! pieces from: with 16 clients sending 64-row requests, 7 MB of the server's peak RSS. The
//! parser keeps instead what the general path needs to give the answer (or the error) it
//! would give for the whole body: the object's start, as it came; for the rows it read
//! before it stopped, their values and the number of bytes they took; and the body from
//! there on, as it came ([`PredictStream::kept`]). [`Fallback::body`] puts those rows back
//! as rows of zeros padded with spaces to the same length, so every error the general path
//! finds after them names the same row and the same line and column, and
//! [`Fallback::values`] are written over the zeros of an accepted body. Zeros and spaces
//! keep lines and columns only where the rows had no line break: from a row or whitespace
//! with one in it, the body is kept as it came (the cost of the old way, for bodies
//! pretty-printed over many lines).

use super::{reserve_rows, row_reader, Cursor, FastPredict, Member, RowReader};

/// The most bytes kept while looking for the start of the rows (`{"version": 2, "inputs": [`
/// takes 26): a body whose members before its rows are longer is given up
/// ([`PredictStream::finish`] gives a [`Fallback`]) even where [`parse_predict`] takes it.
///
/// [`parse_predict`]: super::parse_predict
pub const HEAD_MAX: usize = 16 << 10;
/// The most bytes kept after the rows' `]` (`, "version": 2}` takes 15): a body whose
/// members after its rows are longer is given up, as for [`HEAD_MAX`].
pub const TAIL_MAX: usize = 4 << 10;
/// Bytes in front of a row copied into [`PredictStream::held`]: the AVX-512 row reader reads
/// a few bytes before a row's first number.
const PAD: usize = 8;

/// A prediction request read piece by piece: [`PredictStream::feed`] each piece in order,
/// then [`PredictStream::finish`].
pub struct PredictStream {
    phase: Phase,
    /// The bytes kept back: in [`Phase::Head`] the body so far, in [`Phase::Rows`] a row a
    /// piece cut off (after [`PAD`] spaces, from its `[`, which is at `settled.at`), in
    /// [`Phase::Tail`] the bytes after the rows.
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
    /// The body before the rows (through `"inputs": [` and whitespace), as it came.
    head: Vec<u8>,
    /// How far the body was rows this parser took.
    settled: Settled,
    /// Once the parser stops settling (it gave up, or met a line break in the rows): the
    /// body from `settled.at` on, as it came.
    kept: Option<Vec<u8>>,
}

/// See [`PredictStream::received`].
const LOOKAHEAD: usize = 8;

/// A point between two tokens of the rows, up to which the body was rows this parser read:
/// body byte `at`, after `rows` rows, and after the `,` that follows the last (`comma`) or
/// not.
#[derive(Clone, Copy, Default, Debug)]
struct Settled {
    at: usize,
    rows: usize,
    comma: bool,
}

/// A body [`PredictStream`] did not take, for the general path to read.
#[derive(Debug)]
pub struct Fallback {
    /// The body, with the rows the stream read before it stopped as rows of zeros of the
    /// same widths and lengths in bytes (see the module documentation).
    pub body: Vec<u8>,
    /// The values of those first rows (`rows × width` of them), to write over their zeros.
    pub values: Vec<f32>,
    /// How many rows `values` has.
    pub rows: usize,
    /// Values in each of them.
    pub width: usize,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    /// Before the rows: the object's members up to `"inputs": [`.
    Head,
    /// Inside the `inputs` array: before a row (`expect_row`) or after one (before `,` or
    /// `]`); `cut` when `held` holds the start of a row.
    Rows { expect_row: bool, cut: bool },
    /// After the `inputs` array (whose `]` is at `settled.at`).
    Tail,
    /// Not a body of the simple shape, or beyond what is kept back: the general path reads
    /// it ([`PredictStream::kept`] has the body from `settled.at` on).
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
            head: Vec::new(),
            settled: Settled::default(),
            kept: None,
        }
    }

    /// Reads the next piece of the body.
    pub fn feed(&mut self, piece: &[u8]) {
        self.received = self.fed + piece.len();
        // Kept from an earlier piece on: this one is kept whole.
        let keeping = self.kept.is_some();
        match self.phase {
            Phase::Head => self.head(piece),
            Phase::Rows { .. } => self.rows(piece, 0, self.fed),
            Phase::Tail => self.tail(piece),
            Phase::Failed => {}
        }
        if keeping {
            if let Some(kept) = &mut self.kept {
                kept.extend_from_slice(piece);
            }
        }
        self.fed += piece.len();
    }

    /// The request, if the pieces fed made a body of the simple shape (exactly what
    /// [`super::parse_predict`] gives for them joined), or what the general path needs to read
    /// them.
    ///
    /// # Errors
    /// The [`Fallback`] of a body this parser does not take.
    pub fn finish(mut self) -> Result<FastPredict, Fallback> {
        if self.phase == Phase::Head {
            self.try_head();
        }
        if self.phase == Phase::Tail && self.tail_ends() {
            return Ok(FastPredict {
                values: self.values,
                rows: self.rows,
                width: self.width,
                version: self.version.flatten(),
            });
        }
        Err(self.fallback())
    }

    /// Whether `held`, after the rows' `]`, ends the object (reading a `version` after them).
    fn tail_ends(&mut self) -> bool {
        let mut c = Cursor {
            b: &self.held,
            i: 0,
            simd: false,
        };
        let ended = match c.after_value() {
            Some(true) => true,
            Some(false) => matches!(c.members(true, &mut self.version), Some(Member::End)),
            None => false,
        };
        c.ws();
        ended && c.i == self.held.len()
    }

    /// See [`Fallback`].
    fn fallback(self) -> Fallback {
        let kept = match (self.kept, self.phase) {
            (Some(kept), _) => kept,
            // The whole body so far: the head was not found.
            (None, Phase::Head | Phase::Failed) => self.held,
            (None, Phase::Rows { cut: true, .. }) => self.held[PAD..].to_vec(),
            // Every byte was settled.
            (None, Phase::Rows { cut: false, .. }) => Vec::new(),
            (None, Phase::Tail) => [&b"]"[..], &self.held].concat(),
        };
        let Settled { at, rows, comma } = self.settled;
        let mut body = self.head;
        let region = at.saturating_sub(body.len());
        body.reserve(region + kept.len());
        zero_rows(&mut body, region, rows, self.width, comma);
        body.extend_from_slice(&kept);
        let mut values = self.values;
        values.truncate(rows * self.width);
        Fallback {
            body,
            values,
            rows,
            width: self.width,
        }
    }

    /// From here on the general path reads the body: `from` is the body from `settled.at` on,
    /// as far as it has come (unless it is kept already).
    fn fail(&mut self, from: &[&[u8]]) {
        self.keep(from);
        self.phase = Phase::Failed;
        self.held = Vec::new();
    }

    /// Stops settling, and keeps the body from `settled.at` on: `from`, as far as it has
    /// come, and every later piece.
    fn keep(&mut self, from: &[&[u8]]) {
        if self.kept.is_none() {
            self.kept = Some(from.concat());
        }
    }

    /// The rows read so far end at body byte `at` (after a `,` when `comma`).
    fn settle(&mut self, at: usize, comma: bool) {
        if self.kept.is_none() {
            self.settled = Settled {
                at,
                rows: self.rows,
                comma,
            };
        }
    }

    /// Before the rows. Usually the first piece holds the whole head, and is read where it
    /// lies; otherwise the pieces are kept until it is complete, and tried again each time
    /// they have doubled (so that a body sent a byte at a time is not read over and over).
    fn head(&mut self, piece: &[u8]) {
        if self.held.is_empty() {
            if let Some((at, version)) = head_end(piece) {
                self.start_rows(&piece[..at], version);
                return self.rows(piece, at, self.fed);
            }
            self.tried = piece.len();
        }
        if self.held.len() + piece.len() > HEAD_MAX {
            let held = std::mem::take(&mut self.held);
            return self.fail(&[&held, piece]);
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
            self.start_rows(&held[..at], version);
            self.rows(&held, at, 0);
        }
    }

    /// The head was `head`: the rows begin after it.
    fn start_rows(&mut self, head: &[u8], version: Option<Option<u32>>) {
        self.head = head.to_vec();
        self.version = version;
        self.phase = ROWS;
        self.settle(head.len(), false);
    }

    /// The rows, from `data[from..]`, where `data[0]` is byte `base` of the body: each whole
    /// row is read where it lies; a row whose `]` is in a later piece is kept in `held`
    /// until that piece comes. Every token taken is settled, unless it has a line break.
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
            // The row starts at `settled.at`: the body from there is `held[PAD..]` and the
            // rest of `data`.
            let from: [&[u8]; 2] = [&held[PAD..], &data[i..]];
            match read {
                None => return self.fail(&from),
                Some((_, newline)) if newline => self.keep(&from),
                Some(_) => {}
            }
            self.held = held;
            self.held.clear();
            expect_row = false;
            self.settle(base + i, false);
        }
        // Rows that start before the last `]` of `data` end in it.
        let last_close = memchr::memrchr(b']', &data[i..]).map(|k| i + k);
        loop {
            while let Some(&c @ (b' ' | b'\t' | b'\n' | b'\r')) = data.get(i) {
                if c == b'\n' && self.kept.is_none() {
                    // Settled at the whitespace's start, in this piece.
                    self.keep(&[&data[self.settled.at - base..]]);
                }
                i += 1;
            }
            self.settle(base + i, expect_row && self.rows > 0);
            let Some(&c) = data.get(i) else {
                break;
            };
            if expect_row {
                if c != b'[' {
                    return self.fail(&[&data[i..]]);
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
                let Some((end, newline)) = self.row(data, i + 1, base) else {
                    return self.fail(&[&data[i..]]);
                };
                if newline {
                    self.keep(&[&data[i..]]);
                }
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
                    _ => return self.fail(&[&data[i..]]),
                }
            }
        }
        self.phase = Phase::Rows {
            expect_row,
            cut: false,
        };
    }

    /// The row of `data` whose numbers start at `start` (after its `[`), where `data[0]` is
    /// byte `base` of the body: its values appended, the index after its `]`, and whether
    /// the row has a line break; `None` if it is not a row of numbers of the first row's
    /// width. After the first row, room is made for the rest.
    fn row(&mut self, data: &[u8], start: usize, base: usize) -> Option<(usize, bool)> {
        let mut c = Cursor {
            b: data,
            i: start,
            simd: false,
        };
        let before = self.values.len();
        let read = self.reader.as_mut().and_then(|reader| {
            let end = reader.read(data, start, &mut self.values)?;
            Some((end, reader.saw_newline()))
        });
        let newline = match read {
            Some((end, newline)) => {
                c.i = end;
                newline
            }
            None => {
                c.row(&mut self.values)?;
                memchr::memchr(b'\n', &data[start..c.i]).is_some()
            }
        };
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
        Some((c.i, newline))
    }

    /// After the rows: kept until [`PredictStream::finish`] reads it.
    fn tail(&mut self, piece: &[u8]) {
        if self.held.len() + piece.len() > TAIL_MAX {
            let held = std::mem::take(&mut self.held);
            return self.fail(&[b"]", &held, piece]);
        }
        self.held.extend_from_slice(piece);
    }
}

/// Writes `rows` rows of `width` zeros (and a `,` after them when `comma`), padded with
/// spaces to `len` bytes: what the rows a stream read before it stopped become for the
/// general path. They never take more than the rows they stand for (whose numbers take at
/// least a byte each, and which had every bracket and comma these have).
fn zero_rows(out: &mut Vec<u8>, len: usize, rows: usize, width: usize, comma: bool) {
    let start = out.len();
    for r in 0..rows {
        if r > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for k in 0..width {
            if k > 0 {
                out.push(b',');
            }
            out.push(b'0');
        }
        out.push(b']');
    }
    if comma {
        out.push(b',');
    }
    debug_assert!(
        out.len() - start <= len,
        "zero rows outgrow the rows they stand for"
    );
    out.resize(start + len.max(out.len() - start), b' ');
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
mod tests;
