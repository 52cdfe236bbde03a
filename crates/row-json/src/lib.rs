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
//! [`simd::RowReader`], which reads eight numbers at a time and hands back any row it does not
//! take to the byte-serial reader here ([`Cursor::number`]); both give the same bits. That
//! reader is the reason this is a crate of its own: it is the only `unsafe` code on the
//! prediction path, kept beside its fuzz target (`fuzz/fuzz_targets/row_json.rs`) and its
//! benchmark (`benches/parse.rs`).

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
mod tests {
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
}
