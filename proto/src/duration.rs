//! Human-friendly durations (`"10s"`, `"30m"`, `"1h 30m"`) as used in config,
//! job files and the API.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration that serialises as a human string such as `"90s"` or `"1h 30m"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub fn as_duration(self) -> Duration {
        self.0
    }
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Self {
        Dur(d)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (use e.g. \"500ms\", \"10s\", \"30m\", \"2h\")")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

impl FromStr for Dur {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t == "0" {
            return Ok(Dur(Duration::ZERO));
        }
        humantime::parse_duration(t)
            .map(Dur)
            .map_err(|e| DurationError {
                input: s.to_string(),
                reason: e.to_string(),
            })
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Dur {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("duration such as \"10s\", \"30m\", \"1h 30m\""))
            .examples(["30m"])
            .into()
    }
}
impl utoipa::ToSchema for Dur {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in ["1s", "500ms", "30m", "1h 30m", "0s"] {
            let d: Dur = s.parse().expect("parses");
            let back: Dur = d.to_string().parse().expect("re-parses");
            assert_eq!(d, back, "{s}");
        }
    }

    #[test]
    fn rejects_garbage_with_hint() {
        let e = "ten".parse::<Dur>().unwrap_err().to_string();
        assert!(e.contains("\"ten\"") && e.contains("30m"), "{e}");
    }
}
