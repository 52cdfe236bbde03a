//! The checksummed envelope every stored JSON record is written in:
//!
//! ```json
//! {"format":"mlp-lab.model.v1","sha256":"<64 hex digits>","body":{…the record…}}
//! ```
//!
//! The hash is over the exact bytes of `body` as written (read back through
//! `serde_json::value::RawValue`, so no re-serialization is involved): a flipped byte that
//! still leaves valid JSON is caught. `format` names the kind of record and the version of
//! its layout, so a file from a newer server is reported as an unknown format rather than
//! misread. Weights (`.safetensors`) are not enveloped (they stay loadable by the Python
//! `safetensors` library); their hash is kept in their version's record instead.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The layout version this server writes and reads.
pub const FORMAT_VERSION: &str = "v1";

/// The hex SHA-256 of `bytes`.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The `format` of records of `kind` (`dataset`, `model`, `version`, `job`).
#[must_use]
pub fn format_of(kind: &str) -> String {
    format!("mlp-lab.{kind}.{FORMAT_VERSION}")
}

/// `body` as JSON in an envelope of `kind`.
///
/// # Errors
/// The serializer's error (a record that is not representable as JSON, e.g. a NaN).
pub fn seal<T: Serialize>(kind: &str, body: &T) -> Result<Vec<u8>, serde_json::Error> {
    // The head holds the hash of the body that follows it. The body is written once, after a
    // head of the right length, and the hash filled in: a large body (a dataset's) is then in
    // memory once, not twice.
    let head = |hash: &str| {
        format!(
            r#"{{"format":"{}","sha256":"{hash}","body":"#,
            format_of(kind)
        )
    };
    let mut out = head(&"0".repeat(64)).into_bytes();
    let start = out.len();
    serde_json::to_writer(&mut out, body)?;
    let filled = head(&sha256_hex(&out[start..]));
    out[..start].copy_from_slice(filled.as_bytes());
    out.push(b'}');
    Ok(out)
}

#[derive(Deserialize)]
struct Envelope<'a> {
    format: String,
    sha256: String,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// The record of `kind` in `bytes`, with its envelope and checksum verified.
///
/// # Errors
/// Why it cannot be read, in words fit for the unavailable-object listing: not JSON or
/// truncated, not an envelope, a record of another kind, an unknown format version, a
/// checksum mismatch, or a body that is not a valid record.
pub fn open<T: DeserializeOwned>(kind: &str, bytes: &[u8]) -> Result<T, String> {
    let envelope: Envelope<'_> = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            format!("truncated: the file ends inside its JSON ({e})")
        } else {
            format!("not a checksummed mlp-lab record: {e}")
        }
    })?;
    let expected = format_of(kind);
    if envelope.format != expected {
        let prefix = format!("mlp-lab.{kind}.");
        return Err(if envelope.format.starts_with(&prefix) {
            format!(
                "unknown format version `{}`: this server reads `{expected}`",
                envelope.format
            )
        } else {
            format!(
                "unknown format `{}`: expected `{expected}`",
                envelope.format
            )
        });
    }
    let body = envelope.body.get().as_bytes();
    let actual = sha256_hex(body);
    if !actual.eq_ignore_ascii_case(&envelope.sha256) {
        return Err(format!(
            "checksum mismatch: the record says sha256 {} but its body hashes to {actual}",
            envelope.sha256
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| format!("the checksummed body is not a valid {kind} record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct R {
        name: String,
        n: u32,
    }

    fn record() -> R {
        R {
            name: "xor".into(),
            n: 7,
        }
    }

    #[test]
    fn a_sealed_record_opens_to_itself() {
        let bytes = seal("model", &record()).expect("seals");
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(
            text.starts_with(r#"{"format":"mlp-lab.model.v1","sha256":""#),
            "{text}"
        );
        assert_eq!(open::<R>("model", &bytes), Ok(record()));
    }

    #[test]
    fn a_flipped_byte_that_keeps_valid_json_is_a_checksum_mismatch() {
        let bytes = seal("model", &record()).expect("seals");
        let text = String::from_utf8(bytes)
            .expect("utf-8")
            .replace(":7}", ":8}");
        let error = open::<R>("model", text.as_bytes()).expect_err("caught");
        assert!(error.contains("checksum mismatch"), "{error}");
    }

    #[test]
    fn truncation_other_kinds_and_other_versions_are_named() {
        let bytes = seal("model", &record()).expect("seals");
        let error = open::<R>("model", &bytes[..bytes.len() - 3]).expect_err("truncated");
        assert!(error.starts_with("truncated"), "{error}");
        let error = open::<R>("job", &bytes).expect_err("another kind");
        assert!(
            error.contains("unknown format `mlp-lab.model.v1`"),
            "{error}"
        );
        let v2 = String::from_utf8(bytes)
            .expect("utf-8")
            .replace("mlp-lab.model.v1", "mlp-lab.model.v2");
        let error = open::<R>("model", v2.as_bytes()).expect_err("a newer version");
        assert!(
            error.contains("unknown format version `mlp-lab.model.v2`"),
            "{error}"
        );
        let error = open::<R>("model", br#"{"name":"xor","n":7}"#).expect_err("bare");
        assert!(error.contains("not a checksummed"), "{error}");
    }
}
