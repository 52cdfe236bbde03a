//! Query parameters that are whole numbers: `#[serde(deserialize_with = "whole_number")]` on
//! an `Option<usize>` answers `since=-1` or `limit=lots` with a message that says what is
//! expected, where serde's own says "invalid digit found in string".

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A whole number from 0 to `usize::MAX`, from a query string's text.
///
/// # Errors
/// The deserializer's error, naming what is expected and what was given.
pub fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(|_| {
        D::Error::custom(format!(
            "expected a whole number from 0 to {}, got `{text}`",
            usize::MAX
        ))
    })
}
