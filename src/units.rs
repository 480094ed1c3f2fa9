//! Parsing of the human units used by flags and settings: durations (`500ms`, `30s`,
//! `5m`, Go's `1m30s`) and sizes (`512KiB`, `6MiB`, plain bytes).

use std::time::Duration;

/// Longest duration accepted anywhere (about ten years): deadlines stay far from overflow.
const MAX_SECONDS: f64 = 3.2e8;

/// Parses a duration: a sequence of `<number><unit>` with units `ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h` (Go's `time.ParseDuration` syntax, without a sign), or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a duration is empty; write it like 500ms, 30s or 5m".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        if secs as f64 > MAX_SECONDS {
            return Err(format!("duration '{text}' is too large"));
        }
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration '{text}' lacks a unit (ms, s, m or h)"))?;
        if number_len == 0 {
            return Err(format!(
                "duration '{text}' is not a number followed by a unit"
            ));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("duration '{text}' has a malformed number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("duration '{text}' has an unknown unit '{other}'")),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if !total.is_finite() || total > MAX_SECONDS {
        return Err(format!("duration '{text}' is too large"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses a size: plain bytes, or a number with `B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`
/// (all binary multiples, as users of these flags mean them).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("size '{text}' is not a number of bytes or like 512KiB, 6MiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("size '{text}' has an unknown unit '{other}'")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("size '{text}' is too large"))
}

/// Renders a duration the way the flags accept it, for messages.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        for bad in [
            "",
            "s",
            "10x",
            "-5s",
            "1..2s",
            "ms5",
            "1e999s",
            "18446744073709551615",
            "99999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("6MiB"), Ok(6 * 1024 * 1024));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        for bad in ["", "MiB", "5 parsecs", "-1", "99999999999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
