//! What the tests of this crate, and those of a caller that checks its own decoder against
//! it, generate bodies with: a seeded generator, random numbers and rows in the forms clients
//! print, and bodies the parser refuses. Compiled for this crate's tests and with the
//! `testing` feature (as a dev-dependency); not part of the API.

use crate::FastPredict;

/// xoshiro256++ seeded by SplitMix64: the generator of mlp-lab's `nn::rng`, step for step, so
/// that a test seeded with `n` reads the same bodies it read when the parser lived there. This
/// crate depends on nothing of the server's, and a generator from a dependency may change its
/// stream in a minor release.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Self { s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[0]
            .wrapping_add(self.s[3])
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// A standard normal sample (Box–Muller, one value per call).
    pub fn normal(&mut self) -> f64 {
        // 1 - uniform() lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in `[0, n)`; `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// A random JSON number in one of the forms clients print: f32 and f64 digits, fixed
/// decimals, exponents, integers, long fractions, and a few with extra zeros.
pub fn random_number(rng: &mut Rng) -> String {
    let v = rng.normal() * 10f64.powi(rng.below(12) as i32 - 6);
    match rng.below(10) {
        0 => format!("{v}"),
        1 => format!("{}", v as f32),
        2 => format!("{v:.7}"),
        3 => format!("{:.*}", rng.below(16), v),
        4 => format!("{v:e}"),
        5 => format!("{:E}", v as f32),
        6 => format!("{}", (v * 1e4).round() as i64),
        7 => format!("{}", rng.next_u64() >> rng.below(64)),
        8 => format!("{:.7}", (v as f32).clamp(-1.0, 1.0)),
        _ => format!(
            "-0.{}",
            "0".repeat(rng.below(20)) + &rng.below(1000).to_string()
        ),
    }
}

/// A prediction body of `rows` rows of `width` random numbers, the first `usual` of each
/// row with an f32's seven digits, with separators chosen from `separators`.
pub fn random_body(
    rng: &mut Rng,
    (rows, width, usual): (usize, usize, usize),
    separators: &[&str],
) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|_| {
            let mut row = String::from("[");
            for c in 0..width {
                if c > 0 {
                    row += separators[rng.below(separators.len())];
                }
                row += &if c < usual {
                    format!("{:.7}", rng.uniform_range(-1.0, 1.0))
                } else {
                    random_number(rng)
                };
            }
            row + "]"
        })
        .collect();
    format!("{{\"inputs\": [{}]}}", rows.join(", "))
}

/// A result's values as bits (so that `-0.0` and `0.0` differ), rows and width.
pub fn bits(p: &Option<FastPredict>) -> Option<(Vec<u32>, usize, usize)> {
    p.as_ref().map(|p| {
        (
            p.values.iter().map(|x| x.to_bits()).collect(),
            p.rows,
            p.width,
        )
    })
}

/// Bodies the fast path refuses, for the general path to read or report.
pub const REFUSED: [&[u8]; 18] = [
    br#"{"inputs": [[1, 2], [3]]}"#,
    br#"{"inputs": [[1, 2]], "extra": 1}"#,
    br#"{"inputs": [[1, 2]], "inputs": [[1, 2]]}"#,
    br#"{"inputs": [[1, NaN]]}"#,
    br#"{"inputs": [[1, 1e39]]}"#,
    br#"{"inputs": [[01]]}"#,
    br#"{"inputs": [[1.]]}"#,
    br#"{"inputs": [[.5]]}"#,
    br#"{"inputs": [[+1]]}"#,
    br#"{"inputs": []}"#,
    br#"{"inputs": [[]]}"#,
    br#"{"inputs": [[1]]} x"#,
    br#"{"inputs": [[1]], "version": -1}"#,
    br#"{"inputs": [[1]], "version": 1.5}"#,
    br#"{"in\u0070uts": [[1]]}"#,
    br#"{"inputs": [["1"]]}"#,
    br#"{"inputs": [[1]]"#,
    b"",
];
