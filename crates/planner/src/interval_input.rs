//! Interval text in the forms Postgres reads and Arrow's parser does not:
//!
//! - a time of day among the parts (`'3 days 05:47:12'`, `'-1:30'`, `'1 day -02:00'`),
//!   which is also how Postgres (and Freshet) print intervals, so that a printed
//!   interval reads back (in COPY, parameters, literals);
//! - ISO 8601 durations (`'P1Y2M3DT4H5M6.5S'`, `'PT1H'`, `'P2W'`);
//! - the `@` prefix and the `ago` suffix (`'@ 1 day ago'` is minus one day).
//!
//! [`arrow_text`] rewrites such text into units Arrow reads (`'3 days 5 hours 47 minutes
//! 12 seconds'`); `crate::literals` applies it wherever a string becomes an interval.

/// `s` as Arrow's interval parser reads it, if it is in a form only Postgres reads;
/// `None` if it needs nothing (or is no interval at all, for Arrow to refuse).
pub fn arrow_text(s: &str) -> Option<String> {
    let t = s.trim();
    if let Some(iso) = t.strip_prefix(['P', 'p']).and_then(iso_8601) {
        return Some(iso);
    }
    let t = t.strip_prefix('@').unwrap_or(t);
    let mut tokens: Vec<&str> = t.split_whitespace().collect();
    let ago = tokens
        .last()
        .is_some_and(|last| last.eq_ignore_ascii_case("ago"));
    if ago {
        tokens.pop();
    }
    let mut changed = ago || t.len() != s.trim().len();
    let mut out: Vec<String> = Vec::with_capacity(tokens.len() + 4);
    for token in tokens {
        match time_of_day(token) {
            Some(parts) => {
                changed = true;
                out.extend(parts);
            }
            None => out.push(token.to_string()),
        }
    }
    if !changed {
        return None;
    }
    if ago {
        for token in &mut out {
            if token.parse::<f64>().is_ok() {
                *token = match token.strip_prefix('-') {
                    Some(positive) => positive.to_string(),
                    None => format!("-{}", token.trim_start_matches('+')),
                };
            }
        }
    }
    Some(out.join(" "))
}

/// `[+-]H:MM[:SS[.fff]]` as `H hours M minutes S seconds`, each with the sign.
fn time_of_day(token: &str) -> Option<Vec<String>> {
    let (sign, rest) = match token.as_bytes().first()? {
        b'-' => ("-", &token[1..]),
        b'+' => ("", &token[1..]),
        _ => ("", token),
    };
    let fields: Vec<&str> = rest.split(':').collect();
    if !(2..=3).contains(&fields.len()) {
        return None;
    }
    let whole = |f: &str| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit());
    let seconds = fields.get(2).copied().unwrap_or("0");
    let seconds_ok = seconds.split_once('.').map_or(whole(seconds), |(w, f)| {
        whole(w) && (f.is_empty() || whole(f))
    });
    if !whole(fields[0]) || !whole(fields[1]) || !seconds_ok {
        return None;
    }
    Some(vec![
        format!("{sign}{}", fields[0]),
        "hours".into(),
        format!("{sign}{}", fields[1]),
        "minutes".into(),
        format!("{sign}{seconds}"),
        "seconds".into(),
    ])
}

/// An ISO 8601 duration after its `P`: `nYnMnWnD` then `T` and `nHnMnS`.
fn iso_8601(rest: &str) -> Option<String> {
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return None;
    }
    let mut out = Vec::new();
    let mut in_time = false;
    let mut number = String::new();
    for c in rest.chars() {
        match c {
            'T' | 't' if number.is_empty() && !in_time => in_time = true,
            '0'..='9' | '.' | '-' | '+' => number.push(c),
            unit => {
                number.parse::<f64>().ok()?;
                let name = match (unit.to_ascii_uppercase(), in_time) {
                    ('Y', false) => "years",
                    ('M', false) => "months",
                    ('W', false) => "weeks",
                    ('D', false) => "days",
                    ('H', true) => "hours",
                    ('M', true) => "minutes",
                    ('S', true) => "seconds",
                    _ => return None,
                };
                out.push(format!("{} {name}", number.trim_start_matches('+')));
                number.clear();
            }
        }
    }
    (number.is_empty() && !out.is_empty()).then(|| out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_forms_become_units() {
        assert_eq!(
            arrow_text("3 days 05:47:12").as_deref(),
            Some("3 days 05 hours 47 minutes 12 seconds")
        );
        assert_eq!(
            arrow_text("-05:47:12.5").as_deref(),
            Some("-05 hours -47 minutes -12.5 seconds")
        );
        assert_eq!(
            arrow_text("1 day -02:00").as_deref(),
            Some("1 day -02 hours -00 minutes -0 seconds")
        );
        assert_eq!(
            arrow_text("P1Y2M3DT4H5M6.5S").as_deref(),
            Some("1 years 2 months 3 days 4 hours 5 minutes 6.5 seconds")
        );
        assert_eq!(arrow_text("PT1H").as_deref(), Some("1 hours"));
        assert_eq!(arrow_text("P2W").as_deref(), Some("2 weeks"));
        assert_eq!(
            arrow_text("@ 1 day 2 hours ago").as_deref(),
            Some("-1 day -2 hours")
        );
        assert_eq!(arrow_text("1 day ago").as_deref(), Some("-1 day"));
        // What Arrow reads already, and what is no interval, stay.
        assert_eq!(arrow_text("1 day 2 hours"), None);
        assert_eq!(arrow_text("nonsense"), None);
        assert_eq!(arrow_text("P"), None);
        assert_eq!(arrow_text("12:xx"), None);
    }
}
