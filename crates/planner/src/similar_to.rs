//! `x [NOT] SIMILAR TO 'pattern'` as Postgres matches it: the pattern must match the
//! whole string, `%` is any text, `_` any character, `.` only a dot, and `|`, `*`, `+`,
//! `?`, `{…}`, `(…)` and `[…]` are regular expression syntax. DataFusion matched the
//! pattern as an unanchored regular expression (`'xabcx' SIMILAR TO 'abc'` was true,
//! `'abc' SIMILAR TO 'a%'` false). A constant pattern is translated into a regular
//! expression as Postgres' `similar_to_escape` does, and matched with `~`. From dialect
//! level 6 on (`crate::dialect`).

use std::ops::ControlFlow;

use crate::sqlparser::ast::{
    visit_expressions_mut, BinaryOperator, Expr, Value, ValueWithSpan, VisitMut,
};

/// Rewrites every `SIMILAR TO` with a constant pattern in `node`.
pub fn rewrite<T: VisitMut>(node: &mut T) {
    let _ = visit_expressions_mut(node, |e| {
        if let Some(new) = rewritten(e) {
            *e = new;
        }
        ControlFlow::<()>::Continue(())
    });
}

fn string(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s),
            ..
        }) => Some(s),
        _ => None,
    }
}

fn rewritten(e: &Expr) -> Option<Expr> {
    let Expr::SimilarTo {
        negated,
        expr,
        pattern,
        escape_char,
        ..
    } = e
    else {
        return None;
    };
    let escape = match escape_char {
        None => Some('\\'),
        Some(v) => match &v.value {
            Value::SingleQuotedString(s) if s.is_empty() => None,
            Value::SingleQuotedString(s) if s.chars().count() == 1 => s.chars().next(),
            _ => return None,
        },
    };
    let regex = to_regex(string(pattern)?, escape);
    Some(Expr::BinaryOp {
        left: expr.clone(),
        op: if *negated {
            BinaryOperator::PGRegexNotMatch
        } else {
            BinaryOperator::PGRegexMatch
        },
        right: Box::new(Expr::Value(Value::SingleQuotedString(regex).into())),
    })
}

/// The anchored regular expression of SIMILAR TO pattern `p` with escape character
/// `escape`.
pub fn to_regex(p: &str, escape: Option<char>) -> String {
    let mut out = String::from("^(?:");
    let mut chars = p.chars();
    let mut in_brackets = false;
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(n) => push_literal(&mut out, n),
                None => push_literal(&mut out, c),
            }
            continue;
        }
        if in_brackets {
            if c == ']' {
                in_brackets = false;
            }
            out.push(c);
            continue;
        }
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            '[' => {
                in_brackets = true;
                out.push(c);
            }
            '.' | '^' | '$' | '\\' => push_literal(&mut out, c),
            c => out.push(c),
        }
    }
    out.push_str(")$");
    out
}

/// `c` as itself in a regular expression (escaped as `regex::escape` escapes).
fn push_literal(out: &mut String, c: char) {
    if "\\.+*?()|[]{}^$#&-~".contains(c) {
        out.push('\\');
    }
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::to_regex;

    #[test]
    fn translates_as_postgres() {
        assert_eq!(to_regex("a%", Some('\\')), "^(?:a.*)$");
        assert_eq!(to_regex("a_c", Some('\\')), "^(?:a.c)$");
        assert_eq!(to_regex("(a|b)c", Some('\\')), "^(?:(a|b)c)$");
        assert_eq!(to_regex("a.b", Some('\\')), "^(?:a\\.b)$");
        assert_eq!(to_regex("100\\%", Some('\\')), "^(?:100%)$");
        assert_eq!(to_regex("[a-c]%", Some('\\')), "^(?:[a-c].*)$");
        assert_eq!(to_regex("a#%", Some('#')), "^(?:a%)$");
    }
}
