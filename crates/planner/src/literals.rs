//! Literals Postgres reads that DataFusion does not, rewritten when a statement is parsed
//! (so queries, views, sinks and DML all see the same value):
//!
//! - a timestamp without seconds (`TIMESTAMP '2024-01-01 10:00'`,
//!   `'2024-01-01 10:00'::timestamptz`) gets `:00`: Postgres reads it as that minute,
//!   DataFusion refused it.

use std::ops::ControlFlow;

use crate::sqlparser::ast::{visit_expressions_mut, DataType, Expr, Value, VisitMut};

/// Rewrites the literals of `node` (a statement or a query) in place.
pub fn normalize<T: VisitMut>(node: &mut T) {
    let _ = visit_expressions_mut(node, |e| {
        match e {
            Expr::TypedString(ts) if is_timestamp(&ts.data_type) => {
                with_seconds_in(&mut ts.value.value);
            }
            Expr::Cast {
                expr, data_type, ..
            } if is_timestamp(data_type) => {
                if let Expr::Value(v) = expr.as_mut() {
                    with_seconds_in(&mut v.value);
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_timestamp(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..) | DataType::TimestampNtz(..) | DataType::Datetime(_)
    )
}

fn with_seconds_in(v: &mut Value) {
    if let Value::SingleQuotedString(s) = v {
        if let Some(fixed) = with_seconds(s) {
            *s = fixed;
        }
    }
}

/// `s` as DataFusion reads it, if it is a date and a time of day that Postgres reads and
/// DataFusion does not: without seconds (`YYYY-MM-DD HH:MM` gets `:00`) or with a
/// one-digit hour (`9:05` becomes `09:05`); `T` may stand for the space and a zone may
/// follow. `None` if it needs nothing.
fn with_seconds(s: &str) -> Option<String> {
    let b = s.trim_start().as_bytes();
    let lead = s.len() - b.len();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let dashes = b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-');
    if !(digits(0..4) && digits(5..7) && digits(8..10) && dashes) {
        return None;
    }
    if !matches!(b.get(10), Some(b' ' | b'T' | b't')) {
        return None;
    }
    let colon = (12..14).find(|&i| b.get(i) == Some(&b':'))?;
    if !digits(11..colon) || !digits(colon + 1..colon + 3) {
        return None;
    }
    let end = colon + 3;
    let seconds = match b.get(end) {
        Some(b':') => true,
        // A digit of something else: left alone.
        Some(c) if c.is_ascii_digit() || *c == b'.' => return None,
        _ => false,
    };
    if seconds && colon == 13 {
        return None;
    }
    let hour = if colon == 12 { "0" } else { "" };
    let (at, end) = (lead + 11, lead + end);
    let tail = if seconds { "" } else { ":00" };
    Some(format!(
        "{}{hour}{}{tail}{}",
        &s[..at],
        &s[at..end],
        &s[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_get_seconds() {
        assert_eq!(
            with_seconds("2024-01-01 10:00").as_deref(),
            Some("2024-01-01 10:00:00")
        );
        assert_eq!(
            with_seconds("2024-01-01T9:05").as_deref(),
            Some("2024-01-01T09:05:00")
        );
        assert_eq!(
            with_seconds(" 2024-01-01 9:05:07.5").as_deref(),
            Some(" 2024-01-01 09:05:07.5")
        );
        assert_eq!(
            with_seconds("2024-01-01 10:00+02").as_deref(),
            Some("2024-01-01 10:00:00+02")
        );
        assert_eq!(
            with_seconds("2024-01-01 10:00 UTC").as_deref(),
            Some("2024-01-01 10:00:00 UTC")
        );
        assert_eq!(with_seconds("2024-01-01 10:00:30"), None);
        assert_eq!(with_seconds("2024-01-01 10:00:30.5"), None);
        assert_eq!(with_seconds("2024-01-01"), None);
        assert_eq!(with_seconds("2024-01-01 10"), None);
        assert_eq!(with_seconds("now"), None);
        assert_eq!(with_seconds("2024-01-01 10:0"), None);
    }
}
