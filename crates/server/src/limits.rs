//! Sizes and durations as settings take them: `64MB`, `1GiB`, `1048576`; `5s`, `100ms`,
//! `2min`, `250` (milliseconds, as Postgres reads `statement_timeout`).

/// Bytes from `"1048576"`, `"64kB"`, `"64MB"`, `"1GB"` (and the `KiB`/`MiB`/`GiB`
/// spellings; every unit is a power of 1024, as in Postgres).
pub fn parse_bytes(v: &str) -> Option<usize> {
    let v = v.trim().trim_matches('\'');
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A size as settings show it: `1GB`, `64MB`, `12kB`, or bytes.
pub fn show_bytes(b: usize) -> String {
    match b {
        0 => "0".into(),
        b if b % (1 << 30) == 0 => format!("{}GB", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}MB", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}kB", b >> 10),
        b => b.to_string(),
    }
}

/// Milliseconds from `"250"`, `"250ms"`, `"5s"`, `"2min"`, `"1h"`; 0 means none.
pub fn parse_millis(v: &str) -> Option<u64> {
    let v = v.trim().trim_matches('\'');
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A duration as Postgres shows `statement_timeout`: `0`, `250ms`, `5s`, `2min`.
pub fn show_millis(ms: u64) -> String {
    match ms {
        0 => "0".into(),
        ms if ms % 60_000 == 0 => format!("{}min", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("64MB"), Some(64 << 20));
        assert_eq!(parse_bytes("'2GiB'"), Some(2 << 30));
        assert_eq!(parse_bytes("12 kB"), Some(12 << 10));
        assert!(parse_bytes("lots").is_none());
        assert!(parse_bytes("5XB").is_none());
        assert_eq!(parse_millis("250"), Some(250));
        assert_eq!(parse_millis("5s"), Some(5000));
        assert_eq!(parse_millis("2min"), Some(120_000));
        assert!(parse_millis("-1").is_none());
        assert!(parse_millis("soon").is_none());
        assert_eq!(show_bytes(1 << 30), "1GB");
        assert_eq!(show_bytes(3 << 20), "3MB");
        assert_eq!(show_bytes(1500), "1500");
        assert_eq!(show_millis(0), "0");
        assert_eq!(show_millis(1500), "1500ms");
        assert_eq!(show_millis(5000), "5s");
        assert_eq!(show_millis(120_000), "2min");
    }
}
