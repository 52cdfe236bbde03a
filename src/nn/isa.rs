//! The instruction set the products run on, chosen once per process.
//!
//! The products give the same bits on AVX-512 and on AVX2 with FMA (see [`super::product`]),
//! so the choice is one of speed only. It can be capped with the environment variable
//! `MLP_LAB_ISA` (`avx2`, `avx512`), so that one machine can check the bits another kind of
//! CPU would give: the tests run training under each and compare hashes. A value the CPU
//! cannot honour, or an unknown one, leaves the detected set (and says so once on stderr,
//! since this layer has no logger).

use std::sync::OnceLock;

/// The instruction sets the products distinguish, best last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Neither AVX-512 nor AVX2 with FMA: `gemm`'s scalar kernels, whose multiply and add are
    /// rounded separately, so the bits differ from the others' (and there is no such
    /// x86-64 CPU made since 2013).
    Baseline,
    /// AVX2 and FMA (x86-64-v3).
    Avx2,
    /// AVX-512F.
    Avx512,
    /// aarch64's NEON (the only set there).
    Neon,
}

impl Isa {
    /// The set the products use: what the CPU has, capped by `MLP_LAB_ISA`.
    #[must_use]
    pub fn get() -> Self {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let detected = Self::detected();
            match std::env::var("MLP_LAB_ISA") {
                Ok(wanted) => match Self::parse(&wanted) {
                    Some(cap) if cap <= detected && detected != Self::Neon => cap,
                    _ => {
                        eprintln!(
                            "MLP_LAB_ISA={wanted:?} ignored: expected avx2 or avx512, at most \
                             {detected:?} on this CPU"
                        );
                        detected
                    }
                },
                Err(_) => detected,
            }
        })
    }

    /// `avx2` or `avx512` (any case).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "avx2" => Some(Self::Avx2),
            "avx512" => Some(Self::Avx512),
            _ => None,
        }
    }

    fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Self::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            return Self::Neon;
        }
        Self::Baseline
    }
}
