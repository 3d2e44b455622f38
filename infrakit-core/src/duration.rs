//! Durations the way InfraKit's specs write them (Go's `time.Duration` text): `"500ms"`,
//! `"10s"`, `"5m"`, `"1h30m"`, `"2.5s"`; a **bare number means seconds** (`3` or `"3"`).
//!
//! Group specs use this for `Updating.MinHealthy`, `Updating.Deadline` and the `Healing`
//! fields; plugin authors can use it for their own properties:
//!
//! ```
//! use infrakit_core::duration::{format_duration, parse_duration};
//! use serde::Deserialize;
//! use std::time::Duration;
//!
//! assert_eq!(parse_duration("1h30m")?, Duration::from_secs(5400));
//! assert_eq!(parse_duration("3")?, Duration::from_secs(3));
//! assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
//! assert_eq!(
//!     parse_duration("10 parsecs").unwrap_err().to_string(),
//!     r#""10 parsecs": unknown unit " parsecs" (use ms, s, m or h)"#
//! );
//!
//! #[derive(Deserialize)]
//! struct Properties {
//!     #[serde(rename = "Timeout", with = "infrakit_core::duration::serde")]
//!     timeout: Duration,
//!     #[serde(rename = "Grace", default, with = "infrakit_core::duration::serde::option")]
//!     grace: Option<Duration>,
//! }
//! let p: Properties = serde_json::from_str(r#"{"Timeout": "2m", "Grace": 30}"#).unwrap();
//! assert_eq!((p.timeout, p.grace), (Duration::from_secs(120), Some(Duration::from_secs(30))));
//! # Ok::<(), infrakit_core::duration::DurationError>(())
//! ```

use std::time::Duration;

/// A duration that is not in Go's format; the message quotes the text and says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DurationError {
    message: String,
}

impl DurationError {
    fn new(message: String) -> Self {
        Self { message }
    }
}

/// Parses a Go-style duration (`"500ms"`, `"10s"`, `"5m"`, `"1h30m"`); a bare number is
/// seconds. Units: `ms`, `s`, `m`, `h`; fractions are allowed (`"2.5s"`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    parse(text).map_err(DurationError::new)
}

/// Formats a duration the shortest exact Go way: `"250ms"`, `"10s"`, `"2m"`, `"1h"`.
/// [`parse_duration`] reads it back unchanged.
pub fn format_duration(d: Duration) -> String {
    format(d)
}

fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        let s = d.as_secs();
        if s != 0 && s.is_multiple_of(3600) {
            format!("{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }
}

fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: missing unit (use ms, s, m or h)"))?;
        if num_end == 0 {
            return Err(format!("{text:?}: expected a number before the unit"));
        }
        let value: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("{text:?}: bad number {:?}", &rest[..num_end]))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use ms, s, m or h)"
                ));
            }
        };
        total +=
            Duration::try_from_secs_f64(value * factor).map_err(|e| format!("{text:?}: {e}"))?;
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// `#[serde(with = "infrakit_core::duration::serde")]` for a `Duration` field written the Go
/// way; `duration::serde::option` for an `Option<Duration>`.
pub mod serde {
    use super::{format, parse};
    use ::serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(f64),
    }

    fn from_raw<E: ::serde::de::Error>(raw: Raw) -> Result<Duration, E> {
        match raw {
            Raw::Text(t) => parse(&t).map_err(E::custom),
            Raw::Number(n) => Duration::try_from_secs_f64(n).map_err(E::custom),
        }
    }

    /// Serialises a duration as Go text (`"10s"`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Reads Go text or a bare number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        from_raw(Raw::deserialize(d)?)
    }

    /// `Option<Duration>`, `null` when absent.
    pub mod option {
        use super::*;

        /// Serialises `Some` as Go text, `None` as `null`.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&format(*d)),
                None => s.serialize_none(),
            }
        }

        /// Reads `null` (or a missing field, with `#[serde(default)]`) as `None`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<Raw>::deserialize(d)? {
                Some(raw) => from_raw(raw).map(Some),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse("3"), Ok(Duration::from_secs(3)));
        assert!(parse("10 parsecs").is_err());
        assert!(parse("s").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(10),
            Duration::from_secs(120),
            Duration::from_secs(7200),
            Duration::ZERO,
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
