//! A row of numbers read eight at a time with AVX-512.
//!
//! The byte-serial reader ([`super::Cursor::number`]) makes a chain of the row: where a
//! number starts depends on where the one before it ended, and each step of that chain waits
//! on a load. At about 18 ns a number it was 60 % of a 64-row request's time. Here the row is
//! read in two passes, neither of which waits on the number before:
//!
//! 1. **Classify.** Each 64 bytes of the row become bit masks in a few compares: bytes that
//!    can belong to a number (digits, `-`, `+`, `.`, `e`, `E`), commas, whitespace and the
//!    `]` that closes the row. A number is a run of the first kind; where runs start and end
//!    come out of the masks by shifts, and their positions are packed into two lists
//!    (`vpcompressb`). Anything else in the row hands it back to the byte-serial reader.
//! 2. **Convert.** Eight numbers at a time, in 64-bit lanes: gather the eight bytes from each
//!    start (sign, digits before the point and the point itself) and the eight bytes that end
//!    each number (its last digits), find the point, move the
//!    digits into place and take their value with integer multiply-adds, then one division
//!    by a power of ten per lane. A number of the usual form has up to eight digits before
//!    the point, up to fifteen in all, and is read here. Its decimal mantissa is below 10^15,
//!    exact in an `f64`, and so is the power of ten, so the quotient is the correctly
//!    rounded `f64` (Clinger's fast path), bit for bit what [`super::Cursor::number`] and
//!    serde_json make of it. A number of any other form (an exponent, more digits, a leading
//!    zero, a stray sign, or one of the last bytes of the body, where eight bytes cannot be
//!    read) is read by [`super::number_in`], and a malformed one ends the attempt.
//!
//! Rows of long numbers (an `f64`'s 17 digits, what `json.dumps` prints for a float64 array)
//! are all of other forms; the reader gives such a row up at its first number (or its first
//! eight), and the byte-serial reader alone reads it at its own speed.
//!
//! The separators are checked from the masks: only commas and whitespace between the runs,
//! every comma right after a run, as many commas as runs less one, and none after the last
//! run; so there is one comma between each two numbers. A row this reader does not take (`None`) is read again by the
//! byte-serial reader, which decides what is wrong with it; nothing is written to the output
//! until the whole row is read.

use std::arch::x86_64::{
    __m512i, __mmask8, _mm256_mask_storeu_ps, _mm256_maskz_loadu_epi32, _mm512_add_epi32,
    _mm512_add_epi64, _mm512_and_si512, _mm512_castpd_si512, _mm512_castsi512_pd,
    _mm512_castsi512_si128, _mm512_cmpeq_epi64_mask, _mm512_cmpeq_epi8_mask,
    _mm512_cmpgt_epi64_mask, _mm512_cmple_epi64_mask, _mm512_cmple_epu8_mask,
    _mm512_cmplt_epi64_mask, _mm512_cvtepu32_epi64, _mm512_cvtepu64_pd, _mm512_cvtepu8_epi32,
    _mm512_cvtpd_ps, _mm512_div_pd, _mm512_extracti32x4_epi32, _mm512_loadu_si512,
    _mm512_lzcnt_epi64, _mm512_madd_epi16, _mm512_maddubs_epi16, _mm512_mask_i64gather_epi64,
    _mm512_mask_mov_epi64, _mm512_mask_or_epi64, _mm512_mask_srli_epi64, _mm512_mask_sub_epi64,
    _mm512_maskz_compress_epi8, _mm512_maskz_loadu_epi8, _mm512_maskz_sub_epi64, _mm512_max_epu8,
    _mm512_min_epi64, _mm512_min_epu8, _mm512_movm_epi8, _mm512_mul_epu32, _mm512_mullo_epi64,
    _mm512_or_si512, _mm512_permutex2var_epi64, _mm512_permutex2var_pd, _mm512_set1_epi16,
    _mm512_set1_epi32, _mm512_set1_epi64, _mm512_set1_epi8, _mm512_setr_epi64, _mm512_setr_pd,
    _mm512_setzero_si512, _mm512_slli_epi64, _mm512_sllv_epi64, _mm512_srli_epi64,
    _mm512_storeu_si512, _mm512_sub_epi64, _mm512_sub_epi8, _mm512_xor_si512,
};
use std::sync::OnceLock;

/// Reads rows of numbers with AVX-512 (see the module documentation), keeping the lists of
/// positions from row to row.
pub(super) struct RowReader {
    /// Where each number of the row starts, from the row's first byte.
    starts: Vec<u32>,
    /// Where each number of the row ends (the byte after its last), from the row's first
    /// byte.
    ends: Vec<u32>,
    /// Whether the last row read had a line break in it.
    newline: bool,
}

impl RowReader {
    /// A reader, if this CPU has the instructions it needs (checked once per process).
    pub(super) fn new() -> Option<Self> {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        let available = *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512cd")
                && std::arch::is_x86_feature_detected!("avx512vbmi2")
                && std::arch::is_x86_feature_detected!("popcnt")
        });
        available.then(|| Self {
            starts: Vec::new(),
            ends: Vec::new(),
            newline: false,
        })
    }

    /// Whether the row [`RowReader::read`] last read had a line break in it.
    pub(super) fn saw_newline(&self) -> bool {
        self.newline
    }

    /// The row that starts at `b[start]` (the byte after its `[`): its numbers appended to
    /// `out`, and the index after its `]`. `None` leaves `out` as it was.
    pub(super) fn read(&mut self, b: &[u8], start: usize, out: &mut Vec<f32>) -> Option<usize> {
        // The gathers read up to eight bytes before a number's end (sixteen before a long
        // one's), and the first number ends at `start + 1` at the earliest.
        if start < 8 || start >= b.len() {
            return None;
        }
        // SAFETY: `new` checked that the CPU has every feature `read_row` enables.
        unsafe { self.read_row(b, start, out) }
    }

    /// See [`RowReader::read`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW, DQ, VL, CD and VBMI2, and POPCNT; `8 ≤ start <
    /// b.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx512vbmi2,popcnt")]
    unsafe fn read_row(&mut self, b: &[u8], start: usize, out: &mut Vec<f32>) -> Option<usize> {
        let close = self.classify(b, start)?;
        let count = self.starts.len();
        out.reserve(count);
        // SAFETY: `out` has room for `count` more values, which is what `convert` writes.
        // The positions are those `classify` found in `b`, which the gathers rely on.
        unsafe {
            let spare = out.as_mut_ptr().add(out.len());
            self.convert(b, start, spare)?;
            out.set_len(out.len() + count);
        }
        Some(close + 1)
    }

    /// Pass 1: the positions of the row's numbers into `starts` and `ends`, and the index
    /// of the `]` that closes the row; `None` if the row holds anything but numbers,
    /// commas and whitespace, or its commas are not one between each two numbers, right
    /// after the first of them.
    ///
    /// # Safety
    /// As [`RowReader::read_row`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt")]
    unsafe fn classify(&mut self, b: &[u8], start: usize) -> Option<usize> {
        self.starts.clear();
        self.ends.clear();
        // Room at once for as many numbers as the byte-serial reader guesses for its values:
        // the lists do not grow by doubling through the first row, and keep their room for
        // the rows after it.
        let guess = super::numbers_in(b.len() - start);
        self.starts.reserve(guess);
        self.ends.reserve(guess);
        let byte = |c: u8| _mm512_set1_epi8(c as i8);
        let mut at = start;
        // The last byte of the 64 before belonged to a number.
        let mut carry = 0u64;
        let mut stray = 0u64;
        let mut commas = 0u32;
        let mut newlines = 0u64;
        loop {
            let left = b.len() - at;
            if left == 0 {
                return None;
            }
            let present = if left >= 64 { !0 } else { (1u64 << left) - 1 };
            // SAFETY: the load is masked to the `left` bytes of `b` from `at`; masked-off
            // bytes are neither read nor fault. AVX-512 BW is enabled in this function.
            let v = unsafe { _mm512_maskz_loadu_epi8(present, b.as_ptr().add(at).cast()) };
            let is = |c: u8| _mm512_cmpeq_epi8_mask(v, byte(c));
            let digit = _mm512_cmple_epu8_mask(_mm512_sub_epi8(v, byte(b'0')), byte(9));
            let exponent = _mm512_cmpeq_epi8_mask(_mm512_or_si512(v, byte(0x20)), byte(b'e'));
            let number = digit | exponent | is(b'-') | is(b'+') | is(b'.');
            let comma = is(b',');
            let newline = is(b'\n');
            let space = is(b' ') | newline | is(b'\t') | is(b'\r');
            let closes = is(b']') & present;
            let close = closes & closes.wrapping_neg();
            // The bytes before the row's `]` (all 64 when it is not among them).
            let inside = close.wrapping_sub(1);
            let number = number & inside;
            stray |= !(number | comma | space) & inside;
            newlines |= newline & inside;
            commas += (comma & inside).count_ones();
            // Rows of long numbers (an f64's 17 digits, as `json.dumps` prints them) are read
            // faster by the byte-serial reader alone: this reader gives them up at their
            // first number.
            if at == start {
                let first = number.trailing_zeros();
                if first < 64 && (!(number >> first)).trailing_zeros() > 17 {
                    return None;
                }
            }
            let after_number = (number << 1) | carry;
            carry = number >> 63;
            // A comma must follow a number at once.
            stray |= comma & inside & !after_number;
            let offset = (at - start) as u32;
            // SAFETY: AVX-512 BW and VBMI2 are enabled in this function.
            unsafe {
                push_positions(&mut self.starts, number & !after_number, offset);
                push_positions(
                    &mut self.ends,
                    !number & after_number & (inside | close),
                    offset,
                );
            }
            if close != 0 {
                let close = at + close.trailing_zeros() as usize;
                let count = self.starts.len();
                // As many commas as numbers less one, each right after a number, and none
                // after the last: one between each two numbers.
                let well_formed = stray == 0
                    && count > 0
                    && self.ends.len() == count
                    && commas as usize == count - 1
                    && b[start + self.ends[count - 1] as usize] != b',';
                self.newline = newlines != 0;
                return well_formed.then_some(close);
            }
            if left <= 64 {
                // The body ends inside the row.
                return None;
            }
            at += 64;
        }
    }

    /// Pass 2: the values of the numbers `classify` found, written to `dst[..count]`; `None`
    /// if one is malformed.
    ///
    /// # Safety
    /// As [`RowReader::read_row`]; `dst` has room for `starts.len()` values, and `starts`
    /// and `ends` are what [`RowReader::classify`] found in `b` from `start`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512cd")]
    unsafe fn convert(&self, b: &[u8], start: usize, dst: *mut f32) -> Option<()> {
        let count = self.starts.len();
        let lanes = |v: i64| _mm512_set1_epi64(v);
        let zero = _mm512_setzero_si512();
        let ascii_zeros = lanes(0x3030_3030_3030_3030);
        let eight = lanes(8);
        let one = lanes(1);
        // Byte counts as bit counts.
        let bytes = |n: __m512i| _mm512_slli_epi64::<3>(n);
        let pow10_low =
            _mm512_setr_epi64(1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000);
        let pow10_high = _mm512_setr_epi64(
            100_000_000,
            1_000_000_000,
            10_000_000_000,
            100_000_000_000,
            1_000_000_000_000,
            10_000_000_000_000,
            100_000_000_000_000,
            1_000_000_000_000_000,
        );
        let pow10f_low = _mm512_setr_pd(1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7);
        let pow10f_high = _mm512_setr_pd(1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15);
        // Each lane's top `n` bytes (n = 0..=8; 0 keeps none, as a shift by 64 gives 0).
        let keep_top = |w: __m512i, n: __m512i| {
            _mm512_and_si512(
                w,
                _mm512_sllv_epi64(lanes(-1), bytes(_mm512_sub_epi64(eight, n))),
            )
        };
        // The value of each lane's eight digit bytes, the lowest byte the most significant:
        // byte pairs (×10 + 1), then pairs of pairs (×100 + 1), then the two halves.
        let value = |d: __m512i| {
            let quads = _mm512_madd_epi16(
                _mm512_maddubs_epi16(d, _mm512_set1_epi16(0x010A)),
                _mm512_set1_epi32(0x0001_0064),
            );
            _mm512_add_epi64(
                _mm512_mul_epu32(quads, lanes(10_000)),
                _mm512_srli_epi64::<32>(quads),
            )
        };
        let base = lanes(start as i64);
        // A gather may start eight bytes in only this far from the end of `b`.
        let last_head = lanes(b.len() as i64 - 8);
        let fetch = |k: usize| {
            let live: __mmask8 = if count - k >= 8 {
                0xFF
            } else {
                (1u8 << (count - k)) - 1
            };
            // SAFETY: the loads are masked to the `count - k` positions left in each list.
            let (first, end) = unsafe {
                let load = |list: &[u32]| {
                    _mm512_add_epi64(
                        _mm512_cvtepu32_epi64(_mm256_maskz_loadu_epi32(
                            live,
                            list.as_ptr().add(k).cast(),
                        )),
                        base,
                    )
                };
                (load(&self.starts), load(&self.ends))
            };
            let len = _mm512_sub_epi64(end, first);
            let whole_head = live & _mm512_cmple_epi64_mask(first, last_head);
            // SAFETY: each gathered lane reads 8 bytes inside `b`:
            // - `head`: from a number's first byte, only where 8 bytes are left (`whole_head`);
            // - `tail`: the 8 bytes before a number's end, which is the row's `]` at the
            //   furthest (`end ≤ close < b.len()`); a number starts at `start ≥ 8` or later,
            //   so `end − 8 ≥ 1`;
            // - `more` (below): only for numbers with more than 8 digits after their point,
            //   whose end is at least 11 bytes after their first (`end − 16 ≥ 3`).
            let (head, tail) = unsafe {
                (
                    _mm512_mask_i64gather_epi64::<1>(zero, whole_head, first, b.as_ptr().cast()),
                    _mm512_mask_i64gather_epi64::<1>(
                        zero,
                        live,
                        _mm512_sub_epi64(end, lanes(8)),
                        b.as_ptr().cast(),
                    ),
                )
            };
            (live, end, len, whole_head, head, tail)
        };
        // The gathers of the next eight numbers go first, so that their loads are under way
        // while this eight's arithmetic runs (about a tenth faster than in turn).
        let mut k = 0;
        let mut next = fetch(0);
        while k < count {
            let (live, end, len, whole_head, head, tail) = next;
            if k + 8 < count {
                next = fetch(k + 8);
            }
            // The point: the lowest of the head's bytes that equal '.', if inside the number.
            let points =
                _mm512_movm_epi8(_mm512_cmpeq_epi8_mask(head, _mm512_set1_epi8(b'.' as i8)));
            let lowest = _mm512_and_si512(points, _mm512_sub_epi64(zero, points));
            let point_at =
                _mm512_srli_epi64::<3>(_mm512_sub_epi64(lanes(63), _mm512_lzcnt_epi64(lowest)));
            // (With no point, `point_at` is far above any length.)
            let has_point = _mm512_cmplt_epi64_mask(point_at, len);
            // Bytes before the point (or in all), digits after it.
            let before = _mm512_mask_mov_epi64(len, has_point, point_at);
            let fraction = _mm512_maskz_sub_epi64(has_point, _mm512_sub_epi64(len, before), one);
            let negative =
                _mm512_cmpeq_epi64_mask(_mm512_and_si512(head, lanes(0xFF)), lanes(b'-' as i64));
            let whole = _mm512_mask_sub_epi64(before, negative, before, one);
            // Digits as byte values 0..=9 (anything else is above 9), each run at the top of
            // its lane: the whole part moved up to end at byte 7, the last eight digits of
            // the fraction, and the digits before those.
            let whole_digits = keep_top(
                _mm512_sllv_epi64(
                    _mm512_xor_si512(head, ascii_zeros),
                    bytes(_mm512_sub_epi64(eight, before)),
                ),
                whole,
            );
            let last_digits = keep_top(
                _mm512_xor_si512(tail, ascii_zeros),
                _mm512_min_epi64(fraction, eight),
            );
            let long = live & _mm512_cmpgt_epi64_mask(fraction, eight);
            // The digits before the last eight of a fraction: for most rows, none.
            let (fraction_value, digits) = if long == 0 {
                (
                    value(last_digits),
                    _mm512_max_epu8(whole_digits, last_digits),
                )
            } else {
                // SAFETY: see `more` above.
                let more = unsafe {
                    _mm512_mask_i64gather_epi64::<1>(
                        zero,
                        long,
                        _mm512_sub_epi64(end, lanes(16)),
                        b.as_ptr().cast(),
                    )
                };
                let first_digits = keep_top(
                    _mm512_xor_si512(more, ascii_zeros),
                    _mm512_sub_epi64(fraction, eight),
                );
                (
                    _mm512_add_epi64(
                        _mm512_mul_epu32(value(first_digits), lanes(100_000_000)),
                        value(last_digits),
                    ),
                    _mm512_max_epu8(whole_digits, _mm512_max_epu8(last_digits, first_digits)),
                )
            };
            let scale = _mm512_min_epi64(fraction, lanes(15));
            let mantissa = _mm512_add_epi64(
                _mm512_mullo_epi64(
                    value(whole_digits),
                    _mm512_permutex2var_epi64(pow10_low, scale, pow10_high),
                ),
                fraction_value,
            );
            // The first digit (after the sign).
            let leading = _mm512_and_si512(
                _mm512_mask_srli_epi64::<8>(head, negative, head),
                lanes(0xFF),
            );
            // Forms this pass does not read; `number_in` reads them or finds them malformed.
            let other = live
                & (!whole_head
                    | !_mm512_cmpeq_epi64_mask(
                        _mm512_min_epu8(digits, _mm512_set1_epi8(9)),
                        digits,
                    )
                    | _mm512_cmplt_epi64_mask(whole, one)
                    | _mm512_cmpgt_epi64_mask(before, eight)
                    | (has_point & _mm512_cmplt_epi64_mask(fraction, one))
                    | _mm512_cmpgt_epi64_mask(_mm512_add_epi64(whole, fraction), lanes(15))
                    | (_mm512_cmpgt_epi64_mask(whole, one)
                        & _mm512_cmpeq_epi64_mask(leading, lanes(b'0' as i64))));
            // Below 10^15 and a power of ten up to 10^15: both exact, one rounding.
            let x = _mm512_div_pd(
                _mm512_cvtepu64_pd(mantissa),
                _mm512_permutex2var_pd(pow10f_low, scale, pow10f_high),
            );
            let x = _mm512_castsi512_pd(_mm512_mask_or_epi64(
                _mm512_castpd_si512(x),
                negative,
                _mm512_castpd_si512(x),
                lanes(i64::MIN),
            ));
            // SAFETY: the store is masked to the `count - k` values left of `dst[..count]`.
            unsafe { _mm256_mask_storeu_ps(dst.add(k), live, _mm512_cvtpd_ps(x)) };
            // A row whose first eight numbers are all of other forms is most likely all long
            // numbers too: the byte-serial reader reads it faster.
            if k == 0 && other == 0xFF {
                return None;
            }
            let mut other = other;
            while other != 0 {
                let i = k + other.trailing_zeros() as usize;
                other &= other - 1;
                let (from, to) = (
                    start + self.starts[i] as usize,
                    start + self.ends[i] as usize,
                );
                let x = super::number_in(b, from, to)?;
                // SAFETY: `i < count`.
                unsafe { *dst.add(i) = x };
            }
            k += 8;
        }
        Some(())
    }
}

/// Appends the positions of `mask`'s set bits, plus `offset`, to `list`.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VBMI2.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt")]
unsafe fn push_positions(list: &mut Vec<u32>, mask: u64, offset: u32) {
    const IOTA: [u8; 64] = {
        let mut a = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            a[i] = i as u8;
            i += 1;
        }
        a
    };
    let n = mask.count_ones() as usize;
    // Sixteen positions are written at a time, and up to 64 may come.
    list.reserve(64);
    // SAFETY: the loads read IOTA; the stores write 16 · ⌈n/16⌉ ≤ 64 values into the room
    // reserved above, and the length grows by the `n` of them that are positions.
    unsafe {
        let packed = _mm512_maskz_compress_epi8(mask, _mm512_loadu_si512(IOTA.as_ptr().cast()));
        let offset = _mm512_set1_epi32(offset as i32);
        let to = list.as_mut_ptr().add(list.len());
        _mm512_storeu_si512(
            to.cast(),
            _mm512_add_epi32(_mm512_cvtepu8_epi32(_mm512_castsi512_si128(packed)), offset),
        );
        if n > 16 {
            let rest = [
                _mm512_extracti32x4_epi32::<1>(packed),
                _mm512_extracti32x4_epi32::<2>(packed),
                _mm512_extracti32x4_epi32::<3>(packed),
            ];
            for (g, quarter) in rest.iter().enumerate().take(n.div_ceil(16) - 1) {
                _mm512_storeu_si512(
                    to.add(16 * (g + 1)).cast(),
                    _mm512_add_epi32(_mm512_cvtepu8_epi32(*quarter), offset),
                );
            }
        }
        list.set_len(list.len() + n);
    }
}
