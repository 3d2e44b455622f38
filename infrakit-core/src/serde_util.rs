//! Small serde helpers for the InfraKit wire shapes.

/// A list that is `null` on the wire when empty (Go's nil slice), and accepts `null` or a
/// missing field as empty.
pub(crate) mod nullable_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S, T>(v: &[T], s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        T: Serialize,
    {
        if v.is_empty() {
            s.serialize_none()
        } else {
            v.serialize(s)
        }
    }

    pub(crate) fn deserialize<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }
}

/// Tags that are `null` on the wire when absent.
pub(crate) mod nullable_default {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default,
    {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }
}

/// Durations written the Go way: `"500ms"`, `"10s"`, `"5m"`, `"1h30m"`; a bare number is seconds.
pub(crate) mod go_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn format(d: Duration) -> String {
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

    pub(crate) fn parse(text: &str) -> Result<Duration, String> {
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
            total += Duration::try_from_secs_f64(value * factor)
                .map_err(|e| format!("{text:?}: {e}"))?;
            rest = &rest[unit_end..];
        }
        Ok(total)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(f64),
    }

    fn from_raw<E: serde::de::Error>(raw: Raw) -> Result<Duration, E> {
        match raw {
            Raw::Text(t) => parse(&t).map_err(E::custom),
            Raw::Number(n) => Duration::try_from_secs_f64(n).map_err(E::custom),
        }
    }

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        from_raw(Raw::deserialize(d)?)
    }

    /// `Option<Duration>`, `null` when absent.
    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&format(*d)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            match Option::<Raw>::deserialize(d)? {
                Some(raw) => from_raw(raw).map(Some),
                None => Ok(None),
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
}
