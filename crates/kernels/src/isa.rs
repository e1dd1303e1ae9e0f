//! Which instruction set the kernels use: run-time CPU detection and the `HEARTH_ISA` override.

use std::sync::OnceLock;

/// A family of SIMD kernels. Each level implies the ones before it on the same architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, the specification every other path is tested against.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/DQ/VL (plus everything in `Avx2`).
    Avx512,
    /// `Avx512` plus AVX512-VNNI (`vpdpbusd`).
    Avx512Vnni,
    /// aarch64 NEON (+ the dot-product extension where present).
    Neon,
}

/// `HEARTH_ISA` named an instruction set this CPU lacks, or something unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsaError {
    #[error("HEARTH_ISA={value:?} is not one of scalar, avx2, avx512, avx512vnni, neon")]
    Unknown { value: String },
    #[error("HEARTH_ISA={value:?} asks for {isa}, but this CPU lacks it (best available: {best})")]
    Unsupported { value: String, isa: Isa, best: Isa },
}

impl Isa {
    /// Every ISA, in the order of preference from worst to best.
    pub const ALL: [Isa; 5] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::Avx512,
        Isa::Avx512Vnni,
        Isa::Neon,
    ];

    /// The lower-case name `HEARTH_ISA` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
        }
    }

    /// The ISA named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Isa> {
        Self::ALL
            .iter()
            .copied()
            .find(|i| i.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run the kernels of `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Isa::Avx512.is_available() && is_x86_feature_detected!("avx512vnni"),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every ISA this CPU can run, worst first (always starts with `Scalar`).
    pub fn available() -> Vec<Isa> {
        Self::ALL
            .iter()
            .copied()
            .filter(|i| i.is_available())
            .collect()
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The best ISA this CPU supports (ignores `HEARTH_ISA`).
pub fn detected_isa() -> Isa {
    static BEST: OnceLock<Isa> = OnceLock::new();
    *BEST.get_or_init(|| Isa::available().into_iter().max().unwrap_or(Isa::Scalar))
}

/// The ISA the kernels use: `HEARTH_ISA` when set (refused when the CPU lacks it), else [`detected_isa`].
/// Read once per process.
pub fn selected_isa() -> Result<Isa, IsaError> {
    static SELECTED: OnceLock<Result<Isa, IsaError>> = OnceLock::new();
    SELECTED
        .get_or_init(|| isa_from_override(std::env::var("HEARTH_ISA").ok().as_deref()))
        .clone()
}

/// The ISA an override value asks for (`None` or empty: the detected one).
pub fn isa_from_override(value: Option<&str>) -> Result<Isa, IsaError> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(detected_isa());
    };
    let isa = Isa::from_name(value).ok_or_else(|| IsaError::Unknown {
        value: value.to_string(),
    })?;
    if !isa.is_available() {
        return Err(IsaError::Unsupported {
            value: value.to_string(),
            isa,
            best: detected_isa(),
        });
    }
    Ok(isa)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_parses_and_refuses() {
        assert_eq!(isa_from_override(None), Ok(detected_isa()));
        assert_eq!(isa_from_override(Some("SCALAR")), Ok(Isa::Scalar));
        assert!(matches!(
            isa_from_override(Some("sse9")),
            Err(IsaError::Unknown { .. })
        ));
        let missing = Isa::ALL
            .iter()
            .copied()
            .find(|i| !i.is_available())
            .expect("no CPU has both x86 and NEON");
        let err = isa_from_override(Some(missing.name())).unwrap_err();
        assert!(err.to_string().contains("lacks"), "{err}");
    }
}
