//! Units that live in types: durations (`250ms`, `1m30s`), ratios (`99%`, `0.99`) and byte rates
//! (`1MB/s`). Each parser returns the byte offset and length of the bad part so diagnostics can
//! point inside a scalar.

use std::fmt;
use std::time::Duration;

/// Why a unit-bearing value did not parse: a message and the bad part (byte range in the input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnitError {
    /// What is wrong, with an example of what is right.
    pub message: String,
    /// Byte offset of the offending part within the input.
    pub offset: usize,
    /// Byte length of the offending part.
    pub len: usize,
}

/// A ratio in `0..=1`, written `99%`, `99.5 %` or `0.995`.
#[derive(
    Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Ratio(f64);

// === impl UnitError ===

impl UnitError {
    fn new(message: impl Into<String>, offset: usize, len: usize) -> Self {
        UnitError {
            message: message.into(),
            offset,
            len,
        }
    }
}

/// Parses a duration: one or more `<number><unit>` parts with units `ns us µs ms s m h d`
/// (`250ms`, `1m30s`, `1.5s`). A bare `0` is zero.
///
/// Any other bare number is refused: `delay: 150` meant `150ms` to one user and silently
/// planned 2m30s, while `latency.p99 < 150` in an expectation was already refused, so one rule
/// holds everywhere. Zero is the only number that means the same in every unit.
///
/// Spaces between a number and its unit are refused on purpose: `10 sec` is a typo far more
/// often than an intent, and one spelling per unit keeps files greppable.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let s = text.trim_end();
    let lead = text.len() - text.trim_start().len();
    let s = s.trim_start();
    if s.is_empty() {
        return Err(UnitError::new(
            "empty duration; write e.g. `250ms`, `10s` or `1m30s`",
            0,
            text.len(),
        ));
    }
    if s.starts_with('-') {
        return Err(UnitError::new(
            format!("`{s}` is negative; a duration is zero or more"),
            lead,
            s.len(),
        ));
    }
    if let Ok(n) = s.parse::<f64>() {
        if n == 0.0 {
            return Ok(Duration::ZERO);
        }
        return Err(UnitError::new(
            format!(
                "duration `{s}` has no unit: `{s}ms`? `{s}s`? (write the unit; a bare number is refused because it could mean either)"
            ),
            lead,
            s.len(),
        ));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    while i < bytes.len() {
        let num_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if num_start == i {
            return Err(UnitError::new(
                format!(
                    "expected a number in duration `{s}`; write e.g. `250ms`, `10s` or `1m30s`"
                ),
                lead + i,
                s.len() - i,
            ));
        }
        let num: f64 = s[num_start..i].parse().map_err(|_| {
            UnitError::new(
                format!("`{}` is not a number", &s[num_start..i]),
                lead + num_start,
                i - num_start,
            )
        })?;
        let unit_start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let unit = &s[unit_start..i];
        let factor = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => {
                return Err(UnitError::new(
                    format!(
                        "missing unit after `{}` in `{s}`; use one of ns, us, ms, s, m, h, d",
                        &s[num_start..i]
                    ),
                    lead + num_start,
                    i - num_start,
                ));
            }
            other => {
                let hint = other.trim();
                let suggestion = match hint {
                    "sec" | "secs" | "second" | "seconds" => " (write `s`, without a space)",
                    "min" | "mins" | "minute" | "minutes" => " (write `m`, without a space)",
                    "msec" | "millis" | "milliseconds" => " (write `ms`, without a space)",
                    "hour" | "hours" | "hr" => " (write `h`, without a space)",
                    _ if other.starts_with(' ') => " (no space between number and unit)",
                    _ => "",
                };
                return Err(UnitError::new(
                    format!(
                        "unknown duration unit `{other}` in `{s}`{suggestion}; use one of ns, us, ms, s, m, h, d"
                    ),
                    lead + unit_start,
                    i - unit_start,
                ));
            }
        };
        total += num * factor;
    }
    seconds(total)
        .ok_or_else(|| UnitError::new(format!("duration `{s}` is out of range"), lead, s.len()))
}

fn seconds(secs: f64) -> Option<Duration> {
    if secs.is_finite() && (0.0..1e12).contains(&secs) {
        Some(Duration::from_secs_f64(secs))
    } else {
        None
    }
}

/// Formats a duration the way files write them: `250ms`, `1.5s`, `2m30s`, `120µs`.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        return "0s".into();
    }
    if us < 1_000 {
        return format!("{us}µs");
    }
    if us < 1_000_000 {
        let ms = us as f64 / 1000.0;
        return trim_float(ms, "ms");
    }
    let s = d.as_secs_f64();
    if s < 60.0 {
        return trim_float(s, "s");
    }
    let whole = d.as_secs();
    let (h, m, sec) = (whole / 3600, (whole % 3600) / 60, whole % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// Formats a duration for people: three significant digits (`155ms`, `6.95ms`, `2.06s`).
/// Lossy; the journal uses [`format_duration`].
pub fn format_duration_short(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    let (v, unit) = if us < 1_000.0 {
        (us, "µs")
    } else if us < 1_000_000.0 {
        (us / 1e3, "ms")
    } else if us < 60e6 {
        (us / 1e6, "s")
    } else {
        return format_duration(Duration::from_secs(d.as_secs()));
    };
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{unit}")
}

fn trim_float(v: f64, unit: &str) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{unit}")
}

// === impl Ratio ===

impl Ratio {
    /// Zero.
    pub const ZERO: Ratio = Ratio(0.0);
    /// One.
    pub const ONE: Ratio = Ratio(1.0);

    /// A ratio from a fraction in `0..=1`.
    pub fn new(fraction: f64) -> Option<Ratio> {
        (0.0..=1.0).contains(&fraction).then_some(Ratio(fraction))
    }

    /// The fraction in `0..=1`.
    pub fn get(self) -> f64 {
        self.0
    }

    /// Parses `99%`, `99.5 %` or a fraction `0.995`. Over 100 % (or over 1) is an error.
    pub fn parse(text: &str) -> Result<Ratio, UnitError> {
        let s = text.trim();
        let (num, pct) = match s.strip_suffix('%') {
            Some(n) => (n.trim_end(), true),
            None => (s, false),
        };
        let v: f64 = num.parse().map_err(|_| {
            UnitError::new(
                format!("`{s}` is not a ratio; write e.g. `99%` or `0.99`"),
                0,
                text.len(),
            )
        })?;
        let fraction = if pct { v / 100.0 } else { v };
        if !fraction.is_finite() || fraction < 0.0 {
            return Err(UnitError::new(
                format!("`{s}` is negative; a ratio lies in 0%..=100%"),
                0,
                text.len(),
            ));
        }
        if fraction > 1.0 {
            let hint = if pct {
                ""
            } else {
                " (a bare number is a fraction; write `50%` for a half)"
            };
            return Err(UnitError::new(
                format!("`{s}` is over 100%{hint}"),
                0,
                text.len(),
            ));
        }
        Ok(Ratio(fraction))
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = format!("{:.3}", self.0 * 100.0);
        write!(f, "{}%", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Parses a size: `256MiB`, `1GB`, `4096B`. Decimal units are powers of 1000, binary ones
/// (`KiB MiB GiB`) powers of 1024. A bare `0` is zero bytes; any other bare number is refused,
/// as for durations: `size: 256` is as likely to mean MiB as bytes.
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    let s = text.trim();
    if let Ok(n) = s.parse::<f64>() {
        if n == 0.0 {
            return Ok(0);
        }
        return Err(UnitError::new(
            format!(
                "size `{s}` has no unit: `{s}B`? `{s}MiB`? (write the unit; a bare number is refused because it could mean either)"
            ),
            0,
            text.len(),
        ));
    }
    if s.ends_with("/s") || s.contains("bit") {
        return Err(UnitError::new(
            format!("`{s}` is a rate; write a size such as `256MiB`"),
            0,
            text.len(),
        ));
    }
    parse_byte_rate(s).map_err(|e| UnitError {
        message: e
            .message
            .replace("rate", "size")
            .replace(", then `/s`", "")
            .replace("`1MB/s`, `512KiB/s` or `8Mbit/s`", "`256MiB` or `1GB`"),
        ..e
    })
}

/// Parses a byte rate: `1MB/s`, `512KiB/s`, `8Mbit/s`, `1000000B/s`.
///
/// Decimal units (`kB MB GB`) are powers of 1000, binary ones (`KiB MiB GiB`) powers of 1024, and
/// `bit` units are divided by 8, as network people write them. A bare number is refused, as for
/// durations: `rate: 100` could be bytes, kilobytes or megabits per second.
pub fn parse_byte_rate(text: &str) -> Result<u64, UnitError> {
    let s = text.trim();
    let body = s.strip_suffix("/s").unwrap_or(s);
    if body.parse::<f64>().is_ok() {
        return Err(UnitError::new(
            format!(
                "rate `{s}` has no unit: `{body}B/s`? `{body}Mbit/s`? (write the unit; a bare number is refused because it could mean either)"
            ),
            0,
            text.len(),
        ));
    }
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, unit) = body.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        UnitError::new(
            format!("`{s}` is not a rate; write e.g. `1MB/s`, `512KiB/s` or `8Mbit/s`"),
            0,
            text.len(),
        )
    })?;
    let factor = match unit.trim() {
        "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "bit" => 1.0 / 8.0,
        "kbit" | "Kbit" => 1e3 / 8.0,
        "Mbit" => 1e6 / 8.0,
        "Gbit" => 1e9 / 8.0,
        other => {
            return Err(UnitError::new(
                format!(
                    "unknown rate unit `{other}`; use B, kB, MB, GB, KiB, MiB, GiB, kbit, Mbit or Gbit, then `/s`"
                ),
                split,
                unit.len(),
            ));
        }
    };
    let v = n * factor;
    if !v.is_finite() || v < 1.0 {
        return Err(UnitError::new(
            format!("rate `{s}` must be at least 1 byte per second"),
            0,
            text.len(),
        ));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        let e = parse_duration("10 sec").unwrap_err();
        assert!(e.message.contains("without a space"), "{e}");
        assert_eq!((e.offset, e.len), (2, 4));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn bare_numbers_are_refused_but_zero() {
        // `delay: 150` used to plan 2m30s; now it names both readings and points at the number.
        let e = parse_duration(" 150").unwrap_err();
        assert!(e.message.contains("`150ms`? `150s`?"), "{e}");
        assert_eq!((e.offset, e.len), (1, 3));
        assert!(parse_duration("1.5").is_err());
        assert!(parse_duration("1e3").is_err());
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.0"), Ok(Duration::ZERO));
        let e = parse_bytes("4096").unwrap_err();
        assert!(e.message.contains("`4096B`? `4096MiB`?"), "{e}");
        assert_eq!(parse_bytes("0"), Ok(0));
        let e = parse_byte_rate("1000000").unwrap_err();
        assert!(e.message.contains("`1000000B/s`? `1000000Mbit/s`?"), "{e}");
        assert!(parse_byte_rate("100/s").is_err());
        assert_eq!(parse_byte_rate("1000000B/s"), Ok(1_000_000));
    }

    #[test]
    fn formats_round_trip() {
        for d in [250u64, 1500, 90_000, 100] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn short_formats() {
        let f = |us: u64| format_duration_short(Duration::from_micros(us));
        assert_eq!(f(155_119), "155ms");
        assert_eq!(f(6_950), "6.95ms");
        assert_eq!(f(2_060_000), "2.06s");
        assert_eq!(f(42), "42µs");
        assert_eq!(f(100_000), "100ms");
    }

    #[test]
    fn ratios() {
        assert_eq!(Ratio::parse("99%").map(Ratio::get), Ok(0.99));
        assert_eq!(Ratio::parse("0.5").map(Ratio::get), Ok(0.5));
        assert!(Ratio::parse("101%").is_err());
        assert!(Ratio::parse("2").unwrap_err().message.contains("fraction"));
        assert_eq!(
            Ratio::parse("99.5%").map(|r| r.to_string()),
            Ok("99.5%".to_string())
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("256MiB"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert!(parse_bytes("1MB/s").is_err());
        assert!(parse_bytes("lots").unwrap_err().message.contains("256MiB"));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_byte_rate("1MB/s"), Ok(1_000_000));
        assert_eq!(parse_byte_rate("1MiB/s"), Ok(1_048_576));
        assert_eq!(parse_byte_rate("8Mbit/s"), Ok(1_000_000));
        assert_eq!(parse_byte_rate("4096B/s"), Ok(4096));
        assert!(parse_byte_rate("fast").is_err());
        assert!(parse_byte_rate("1 parsec/s").is_err());
    }
}

/// Serde for a `Duration` as fractional milliseconds with microsecond precision (`12.345`).
///
/// Microseconds are enough for latency and keep journal lines short; rounding on the way in
/// makes a serialize/deserialize round trip exact at that precision.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `12.345`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        // u128 → f64 is exact below 2^53 µs (about 285 years).
        s.serialize_f64(d.as_micros() as f64 / 1000.0)
    }

    /// Reads fractional milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        let micros = (ms * 1000.0).round();
        if !micros.is_finite() || micros < 0.0 || micros > u64::MAX as f64 {
            return Err(serde::de::Error::custom(format!(
                "`{ms}` is not a valid number of milliseconds"
            )));
        }
        Ok(Duration::from_micros(micros as u64))
    }
}

/// Like [`millis`], for `Option<Duration>` (`null` when absent).
pub mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `null` or `12.345`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads `null` or fractional milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::millis")] Duration);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

/// Serde helpers writing a [`Duration`] as text (`"250ms"`), for the journal and reports.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `250ms`, `1.5s`, …
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Reads what [`serialize`] wrote (or any duration [`super::parse_duration`] accepts).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Like [`duration_text`], for `Option<Duration>`.
pub mod opt_duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `null` or `"250ms"`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads `null` or a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
