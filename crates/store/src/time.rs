//! [`Timestamp`]: UTC instants with nanosecond precision.

use std::{fmt, str::FromStr, time::SystemTime};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use time::{format_description::well_known::Rfc3339, macros::format_description, OffsetDateTime};

/// A UTC instant, kept as nanoseconds since the Unix epoch (years 1677 to 2262).
///
/// Serialized as RFC 3339 with exactly nine fractional digits and a `Z` suffix
/// (`2026-11-26T11:34:52.123456789Z`). The fixed width matters twice: the canonical encoding
/// of a record must not depend on how a formatter trims zeros, and the strings sort in time
/// order. Deserialization also accepts any RFC 3339 string or an integer of Unix nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

// === impl Timestamp ===

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_offset(OffsetDateTime::now_utc())
    }

    /// From nanoseconds since the Unix epoch.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// Nanoseconds since the Unix epoch (the value stored in indexed columns).
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// From a [`SystemTime`], saturating outside the representable range.
    pub fn from_system_time(t: SystemTime) -> Self {
        Self::from_offset(OffsetDateTime::from(t))
    }

    fn from_offset(t: OffsetDateTime) -> Self {
        let n = t.unix_timestamp_nanos();
        Self(i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX }))
    }

    /// RFC 3339, UTC, nine fractional digits.
    pub fn to_rfc3339(self) -> String {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
        );
        // Every i64 nanosecond value is a valid OffsetDateTime with a four-digit year, so
        // neither step can fail; fall back to the raw number rather than panic.
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .ok()
            .and_then(|t| t.format(fmt).ok())
            .unwrap_or_else(|| self.0.to_string())
    }

    /// Parses any RFC 3339 timestamp.
    pub fn parse_rfc3339(s: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(s, &Rfc3339).map(Self::from_offset)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl FromStr for Timestamp {
    type Err = time::error::Parse;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or Unix nanoseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v).map(Timestamp).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_rfc3339() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000000Z"),
            (1_795_000_000_123_000_000, "2026-11-18T11:06:40.123000000Z"),
            (-1, "1969-12-31T23:59:59.999999999Z"),
        ];
        for (nanos, text) in cases {
            let t = Timestamp::from_unix_nanos(nanos);
            assert_eq!(t.to_rfc3339(), text);
            assert_eq!(Timestamp::parse_rfc3339(text).unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        }
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-18T12:06:40.5+01:00").unwrap(),
            Timestamp::from_unix_nanos(1_795_000_000_500_000_000)
        );
        assert_eq!(
            serde_json::from_str::<Timestamp>("42").unwrap(),
            Timestamp::from_unix_nanos(42)
        );
    }
}
