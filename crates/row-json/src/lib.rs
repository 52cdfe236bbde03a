//! A fast path for JSON bodies that are almost all numbers: the prediction request
//! `{"inputs": [[…], …], "version": n}` ([`parse_predict`], or [`PredictStream`] for a body
//! that arrives in pieces) and a bare array of numbers ([`parse_numbers`]).
//!
//! General JSON decoding of such a body (serde_json into `Vec<Vec<f64>>`) spends most of its
//! time on the numbers (docs/benchmarks.md has the figures). This parser reads exactly that
//! shape straight into one flat `f32` buffer, with a strict JSON number grammar and a
//! correctly rounded float parser (`fast-float2`), so the values are bit for bit the ones
//! serde_json (with `float_roundtrip`) followed by `as f32` gives. Anything else (an unknown
//! or repeated key, an escape in a key, a ragged row, a value that is not a finite `f32`,
//! trailing bytes) returns `None`, and the caller falls back to its general decoder, whose
//! errors can name the field, the row and the column.
//!
//! Where the CPU has AVX-512 (checked at run time), each row is first offered to
//! `simd::RowReader`, which reads eight numbers at a time and hands back any row it does not
//! take to the byte-serial reader here (`Cursor::number`); both give the same bits. That
//! reader is the reason this is a crate of its own: it is the only `unsafe` code on the
//! prediction path, kept beside its fuzz target (`fuzz/fuzz_targets/row_json.rs`) and its
//! benchmark (`benches/parse.rs`).

#![warn(missing_docs)]

/// A prediction request decoded by the fast path.
#[derive(Debug, PartialEq)]
pub struct FastPredict {
    /// Row-major values, `rows × width`.
    pub values: Vec<f32>,
    /// Number of rows (at least 1).
    pub rows: usize,
    /// Values in every row (at least 1).
    pub width: usize,
    /// The `version` field, when present.
    pub version: Option<u32>,
}

/// Decodes `bytes` if it is a well-formed prediction request of the simple shape.
pub fn parse_predict(bytes: &[u8]) -> Option<FastPredict> {
    parse_predict_with(bytes, true)
}

/// [`parse_predict`], with the AVX-512 row reader where the CPU has it (`simd`) or with the
/// byte-serial reader alone.
fn parse_predict_with(bytes: &[u8], simd: bool) -> Option<FastPredict> {
    let mut c = Cursor {
        b: bytes,
        i: 0,
        simd,
    };
    let mut inputs: Option<(Vec<f32>, usize, usize)> = None;
    let mut version = None;
    c.ws();
    c.eat(b'{')?;
    c.ws();
    while let Member::Inputs = c.members(inputs.is_some(), &mut version)? {
        inputs = Some(c.rows()?);
        if c.after_value()? {
            break;
        }
    }
    c.ws();
    if c.i != bytes.len() {
        return None;
    }
    let (values, rows, width) = inputs?;
    Some(FastPredict {
        values,
        rows,
        width,
        version: version.flatten(),
    })
}

/// Where [`Cursor::members`] stopped.
enum Member {
    /// Before the value of `inputs`.
    Inputs,
    /// After the object's closing `}`.
    End,
}

/// Decodes a JSON array of numbers, flat or nested to any depth (up to 32 levels), into its
/// values in row-major order, each the `f32` that [`parse_predict`] (and serde_json + `as f32`)
/// makes of it: the `data` of an Open Inference Protocol tensor. `None` for anything else (a
/// value that is not a number, or not a finite `f32`), for the general path to report.
pub fn parse_numbers(bytes: &[u8]) -> Option<Vec<f32>> {
    let mut c = Cursor {
        b: bytes,
        i: 0,
        simd: false,
    };
    // A number takes at least two bytes with its separator; most take more.
    let mut values = Vec::with_capacity(bytes.len() / 8);
    c.ws();
    c.nested(&mut values, 0)?;
    c.ws();
    (c.i == bytes.len()).then_some(values)
}

/// A first guess of how many numbers `left` bytes of a body hold: one every eight bytes (one
/// with an f32's seven digits and its separator takes 10 or 11), up to 4,096.
fn numbers_in(left: usize) -> usize {
    (left / 8).min(4096)
}

/// The number that is exactly `bytes[start..end]`, as [`Cursor::number`] reads it.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn number_in(bytes: &[u8], start: usize, end: usize) -> Option<f32> {
    let mut c = Cursor {
        b: &bytes[..end],
        i: start,
        simd: false,
    };
    let x = c.number()?;
    (c.i == end).then_some(x)
}

#[cfg(target_arch = "x86_64")]
mod simd;
mod stream;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
#[cfg(target_arch = "x86_64")]
use simd::RowReader;
pub use stream::{Fallback, PredictStream, HEAD_MAX, TAIL_MAX};

/// Elsewhere there is no SIMD row reader.
#[cfg(not(target_arch = "x86_64"))]
enum RowReader {}

#[cfg(not(target_arch = "x86_64"))]
impl RowReader {
    fn read(&mut self, _: &[u8], _: usize, _: &mut Vec<f32>) -> Option<usize> {
        match *self {}
    }

    fn saw_newline(&self) -> bool {
        match *self {}
    }
}

/// The AVX-512 row reader, where the CPU has it and `simd` allows it.
fn row_reader(simd: bool) -> Option<RowReader> {
    #[cfg(target_arch = "x86_64")]
    if simd {
        return RowReader::new();
    }
    let _ = simd;
    None
}

/// After the first row (`row_bytes` long with its brackets, `width` values), room in `values`
/// for the rows that fit in the `left` bytes of the body after it. Rows are usually printed
/// alike, give or take a sign or a digit: room for as many more rows as fit if they are up
/// to an eighth shorter than the first (none after a one-row body's `]}`). The vector doubles
/// if they are shorter still.
fn reserve_rows(values: &mut Vec<f32>, width: usize, row_bytes: usize, left: usize) {
    let rows_left = left.saturating_mul(8) / (row_bytes * 7);
    values.reserve(width.saturating_mul(rows_left));
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    /// Whether rows may be read with the SIMD row reader (x86-64 only).
    simd: bool,
}

impl Cursor<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// `"key"` followed by `:`; keys with escapes go to the general path.
    fn key(&mut self) -> Option<&[u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let len = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\')?;
        if self.b[start + len] == b'\\' {
            return None;
        }
        self.i = start + len + 1;
        let key = &self.b[start..start + len];
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(key)
    }

    /// `[…]` of numbers and arrays like it, flattened into `out`.
    fn nested(&mut self, out: &mut Vec<f32>, depth: usize) -> Option<()> {
        if depth >= 32 {
            return None;
        }
        self.eat(b'[')?;
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Some(());
        }
        loop {
            if self.b.get(self.i) == Some(&b'[') {
                self.nested(out, depth + 1)?;
            } else {
                out.push(self.number()?);
            }
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// `[[n, …], …]` with rows of one width, flattened.
    fn rows(&mut self) -> Option<(Vec<f32>, usize, usize)> {
        self.eat(b'[')?;
        self.ws();
        // A first guess, so that a first row is not copied each time it outgrows its
        // buffer; after it, the rest is reserved from its size.
        let mut values = Vec::with_capacity(numbers_in(self.b.len() - self.i));
        let mut rows = 0;
        let mut width = 0;
        let mut simd = row_reader(self.simd);
        loop {
            let row_start = self.i;
            self.eat(b'[')?;
            let before = values.len();
            self.row_values(simd.as_mut(), &mut values)?;
            let n = values.len() - before;
            if rows == 0 {
                width = n;
                reserve_rows(
                    &mut values,
                    width,
                    self.i - row_start,
                    self.b.len() - self.i,
                );
            } else if n != width {
                return None;
            }
            rows += 1;
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b']' => return Some((values, rows, width)),
                _ => return None,
            }
        }
    }

    /// A row's numbers from after its `[` through its `]`, appended to `values`: by `simd`
    /// if it takes the row, else one at a time.
    fn row_values(&mut self, simd: Option<&mut RowReader>, values: &mut Vec<f32>) -> Option<()> {
        match simd.and_then(|r| r.read(self.b, self.i, values)) {
            Some(end) => {
                self.i = end;
                Some(())
            }
            None => self.row(values),
        }
    }

    /// The members of the request object from a key on: `version` (once) is read, and the
    /// cursor stops before the value of `inputs` (unless `seen_inputs`) or after the closing
    /// `}`. `version` is `None` until the member is read (`Some(None)` for `null`).
    fn members(&mut self, seen_inputs: bool, version: &mut Option<Option<u32>>) -> Option<Member> {
        loop {
            match self.key()? {
                b"inputs" if !seen_inputs => return Some(Member::Inputs),
                b"version" if version.is_none() => *version = Some(self.version()?),
                _ => return None,
            }
            if self.after_value()? {
                return Some(Member::End);
            }
        }
    }

    /// After a member's value: `,` and whitespace (`false`), or the object's `}` (`true`).
    fn after_value(&mut self) -> Option<bool> {
        self.ws();
        match self.next()? {
            b',' => {
                self.ws();
                Some(false)
            }
            b'}' => Some(true),
            _ => None,
        }
    }

    /// The numbers of a row, one after another, through its `]` (the cursor after its `[`).
    fn row(&mut self, values: &mut Vec<f32>) -> Option<()> {
        self.ws();
        loop {
            values.push(self.number()?);
            // The usual separators first, `, ` or `,` before the next number: a tenth
            // fewer instructions than reading whitespace, comma and whitespace in turn.
            match self.b.get(self.i..self.i + 3) {
                Some([b',', b' ', c]) if *c > b' ' => {
                    self.i += 2;
                    continue;
                }
                Some([b',', c, _]) if *c > b' ' => {
                    self.i += 1;
                    continue;
                }
                _ => {}
            }
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A JSON number (strict grammar) as the `f32` nearest its correctly rounded `f64`, as
    /// `serde_json` + `as f32` gives it; `None` if it is not a finite `f32`.
    ///
    /// Most inputs have few significant digits and a small exponent: then the decimal
    /// mantissa (at most 2^53) and `10^|e|` (|e| ≤ 22) are both exact `f64`s and one
    /// multiplication or division rounds once, correctly (Clinger's fast path). Mantissas of
    /// up to 19 digits above 2^53 take the same path unless the result lies next to an f32
    /// midpoint (see below). Other numbers go to `fast-float2`. The 64-row request of a
    /// 784-input model is 50,176 numbers, and reading them was 60 % of the server's time:
    /// digits are read eight at a time ([`Cursor::digits`]) and the sign without a branch
    /// (signs are random in most data, and a mispredicted branch costs more than the rest of a
    /// short number), which took about a quarter off the parse of such a body (timed against
    /// the byte-at-a-time parser in one process).
    fn number(&mut self) -> Option<f32> {
        const POW10: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        ];
        let start = self.i;
        // Signs are random in most data: no branch on them.
        let negative = self.b.get(self.i) == Some(&b'-');
        self.i += usize::from(negative);
        let mut mantissa: u64 = 0;
        // Digits taken into the mantissa, leading zeros included: up to 19 cannot overflow.
        let digits = match self.b.get(self.i) {
            Some(b'0') => {
                self.i += 1;
                1
            }
            Some(b'1'..=b'9') => self.digits(&mut mantissa),
            _ => return None,
        };
        let mut fraction = 0;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            fraction = self.digits(&mut mantissa);
            if fraction == 0 {
                return None;
            }
        }
        let mut exponent: i64 = 0;
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            let sign = match self.b.get(self.i) {
                Some(b'-') => {
                    self.i += 1;
                    -1
                }
                Some(b'+') => {
                    self.i += 1;
                    1
                }
                _ => 1,
            };
            let from = self.i;
            while let Some(&d) = self.b.get(self.i) {
                if !d.is_ascii_digit() {
                    break;
                }
                exponent = (exponent * 10 + i64::from(d - b'0')).min(100_000);
                self.i += 1;
            }
            if self.i == from {
                return None;
            }
            exponent *= sign;
        }
        let e = exponent - fraction as i64;
        // Up to 19 digits cannot overflow; below 2^63 the conversion is one instruction.
        if digits + fraction <= 19 && mantissa < 1 << 63 && (-22..=22).contains(&e) {
            let m = mantissa as i64 as f64;
            let m = if e >= 0 {
                m * POW10[e as usize]
            } else {
                m / POW10[(-e) as usize]
            };
            // Above 2^53 the mantissa is rounded to an f64 first, so `m` may be an ulp or two
            // off the correctly rounded f64; both still round to the same f32 unless they lie
            // about an f32 midpoint, which would show in the 29 bits an f32 drops: a pattern
            // near 1 followed by 28 zeros. Those (about one number in four million) go to
            // `fast-float2`. This spares a full second parse to most numbers printed with an
            // f64's 17 digits (what `json.dumps` of a float64 array gives): 46 → 36 ns each.
            let near_midpoint = (m.to_bits() & 0x1FFF_FFFF).abs_diff(0x1000_0000) <= 64;
            if mantissa <= 1 << 53 || !near_midpoint {
                let x = f64::from_bits(m.to_bits() | (u64::from(negative) << 63)) as f32;
                return x.is_finite().then_some(x);
            }
        }
        let x = fast_float2::parse::<f64, _>(&self.b[start..self.i]).ok()? as f32;
        x.is_finite().then_some(x)
    }

    /// Reads a run of ASCII digits into `mantissa` (`mantissa · 10^n + run`, wrapping: the
    /// caller trusts it only for runs of up to 19 digits in all) and returns its length `n`.
    ///
    /// Eight bytes at a time while eight remain: the leading digits of a little-endian word
    /// are found with bit masks, and their value in three multiplications (byte pairs, then
    /// pairs of pairs, then halves). A byte that is not a digit can carry into the bytes after
    /// it only, so the count of leading digits is exact whatever follows them.
    #[inline(always)]
    fn digits(&mut self, mantissa: &mut u64) -> usize {
        const ZEROS: u64 = 0x3030_3030_3030_3030;
        const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
        const POW10: [u64; 9] = [
            1,
            10,
            100,
            1_000,
            10_000,
            100_000,
            1_000_000,
            10_000_000,
            100_000_000,
        ];
        let start = self.i;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            // A byte is a digit iff its high nibble is 3 and stays 3 when 6 is added.
            let not_digit = ((word & HIGH) ^ ZEROS)
                | ((word.wrapping_add(0x0606_0606_0606_0606) & HIGH) ^ ZEROS);
            let n = (not_digit.trailing_zeros() / 8) as usize;
            if n > 0 {
                // The run's bytes as values 0..=9, moved to the top so that the bytes before
                // them are zeros: leading zeros of an eight-digit number, first digit highest.
                let d = word.wrapping_sub(ZEROS) << (8 * (8 - n));
                let d = (d.wrapping_mul(10) + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
                let d = (d.wrapping_mul(100) + (d >> 16)) & 0x0000_FFFF_0000_FFFF;
                let d = (d.wrapping_mul(10_000) + (d >> 32)) & 0xFFFF_FFFF;
                *mantissa = mantissa.wrapping_mul(POW10[n]).wrapping_add(d);
                self.i += n;
            }
            if n < 8 {
                return self.i - start;
            }
        }
        while let Some(&d) = self.b.get(self.i) {
            if !d.is_ascii_digit() {
                break;
            }
            *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            self.i += 1;
        }
        self.i - start
    }

    /// A non-negative integer that fits a `u32`, or `null`.
    fn version(&mut self) -> Option<Option<u32>> {
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            return Some(None);
        }
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
            return None;
        }
        text.parse().ok().map(Some)
    }
}

#[cfg(test)]
mod tests;
