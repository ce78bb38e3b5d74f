//! Postgres' wording of DataFusion's and Arrow's messages: a cast out of range is
//! `integer out of range`, a call no function takes is `function upper(bigint) does not
//! exist` with Postgres' hint.

/// Postgres' name of an Arrow type as DataFusion's messages print it (`Int32`,
/// `Decimal128(2, 1)`, `Timestamp(Nanosecond, None)`); `None` for others.
pub fn pg_type(arrow: &str) -> Option<&'static str> {
    let arrow = arrow.trim();
    Some(match arrow {
        "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "Float32" => "real",
        "Float64" => "double precision",
        "Boolean" => "boolean",
        "Utf8" | "Utf8View" | "LargeUtf8" => "text",
        "Date32" => "date",
        "Binary" | "LargeBinary" | "BinaryView" => "bytea",
        "Null" => "unknown",
        _ if arrow.starts_with("Decimal128(") => "numeric",
        _ if arrow.starts_with("Interval(") => "interval",
        _ if arrow.starts_with("Timestamp(") && arrow.ends_with("None)") => {
            "timestamp without time zone"
        }
        _ if arrow.starts_with("Timestamp(") => "timestamp with time zone",
        _ => return None,
    })
}

/// `a, b(c, d), e` split at its top-level commas.
fn top_level_items(list: &str) -> Vec<&str> {
    let (mut items, mut depth, mut from) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' | '[' | '<' => depth += 1,
            ')' | ']' | '>' => depth -= 1,
            ',' if depth == 0 => {
                items.push(list[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    if !list[from..].trim().is_empty() {
        items.push(list[from..].trim());
    }
    items
}

/// Postgres' wording of a DataFusion message that exposes DataFusion's internals, if
/// `m` is one.
pub fn reword(m: &str) -> Option<String> {
    if let Some(f) = missing_function(m) {
        return Some(f);
    }
    // `sum(generate_series(…))`, `WHERE unnest(…) > 1`: DataFusion's planner leaves the
    // set-returning call where it cannot expand it.
    if m.contains("nnest should be rewritten to LogicalPlan::Unnest") {
        return Some(
            "set-returning functions (generate_series, unnest) are not allowed here: not \
             in an aggregate's arguments, WHERE, JOIN … ON or CASE; call one in FROM \
             (FROM generate_series(1, 3) AS g(x)) or alone in a select list"
                .into(),
        );
    }
    None
}

/// The hint Postgres gives with a call no function takes.
pub const NO_FUNCTION_HINT: &str =
    "No function matches the given name and argument types. You might need to add explicit type casts.";

/// Postgres' message for DataFusion's "no function matches" errors (`function
/// upper(bigint) does not exist`), if `m` is one.
pub fn missing_function(m: &str) -> Option<String> {
    // "Invalid function 'foo'.\nDid you mean 'cos'?": DataFusion knows no such name.
    if let Some(rest) = m.strip_prefix("Invalid function '") {
        let name = rest.split('\'').next()?;
        return Some(format!("function {name} does not exist"));
    }
    const MARK: &str = "No function matches the given name and argument types '";
    let at = m.find(MARK)? + MARK.len();
    let call = &m[at..];
    let open = call.find('(')?;
    let name = &call[..open];
    // The argument list ends at the parenthesis matching the first.
    let mut depth = 0i32;
    let mut close = None;
    for (i, c) in call.char_indices().skip(open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let args = &call[open + 1..close?];
    let types: Vec<String> = top_level_items(args)
        .into_iter()
        .map(|a| pg_type(a).map_or_else(|| a.to_lowercase(), str::to_string))
        .collect();
    // `~x` is planned as a call (`freshet_planner::pg_functions`).
    if name == "__freshet_bitwise_not" {
        return Some(format!("operator does not exist: ~ {}", types.join(", ")));
    }
    Some(format!(
        "function {name}({}) does not exist",
        types.join(", ")
    ))
}

/// SQLSTATE and Postgres' message for an Arrow cast error: a value out of its target
/// type's range is `22003` (`integer out of range`; `value "…" is out of range for type
/// integer` for text), anything else `22P02`.
pub fn cast_error(m: &str) -> (&'static str, String) {
    // "Can't cast value 2147483648 to type Int32"
    if let Some(rest) = m.strip_prefix("Can't cast value ") {
        if let Some((_, ty)) = rest.rsplit_once(" to type ") {
            if let Some(t) = pg_type(ty).filter(|t| t.ends_with("int") || *t == "integer") {
                return ("22003", format!("{t} out of range"));
            }
        }
    }
    // "Cannot cast string '99999999999' to value of Int32 type"
    if let Some(rest) = m.strip_prefix("Cannot cast string '") {
        if let Some((value, tail)) = rest.rsplit_once("' to value of ") {
            let ty = tail.strip_suffix(" type").and_then(pg_type);
            // A whole number too long for the type; `1.5` or `abc` is no integer at all.
            let digits = value.trim().trim_start_matches(['-', '+']);
            let number = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            if let Some(t) = ty {
                return if number {
                    (
                        "22003",
                        format!("value \"{value}\" is out of range for type {t}"),
                    )
                } else {
                    (
                        "22P02",
                        format!("invalid input syntax for type {t}: \"{value}\""),
                    )
                };
            }
        }
    }
    if m.contains("out of range") || m.contains("Overflow") {
        return ("22003", m.to_string());
    }
    ("22P02", format!("invalid input syntax: {m}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_calls_as_postgres() {
        let m = "Error during planning: Function 'generate_series' failed to match any \
                 signature ... No function matches the given name and argument types \
                 'generate_series(Decimal128(2, 1), Decimal128(2, 1), Float64)'. You might \
                 need to add explicit type casts.\n\tCandidate functions:";
        assert_eq!(
            missing_function(m).as_deref(),
            Some("function generate_series(numeric, numeric, double precision) does not exist")
        );
        let m = "No function matches the given name and argument types 'upper(Int64)'.";
        assert_eq!(
            missing_function(m).as_deref(),
            Some("function upper(bigint) does not exist")
        );
        assert_eq!(
            missing_function("Invalid function 'foo'.\nDid you mean 'cos'?").as_deref(),
            Some("function foo does not exist")
        );
        assert_eq!(missing_function("column x does not exist"), None);
    }

    #[test]
    fn casts_out_of_range_are_22003() {
        assert_eq!(
            cast_error("Can't cast value 70000 to type Int16"),
            ("22003", "smallint out of range".to_string())
        );
        assert_eq!(
            cast_error("Cannot cast string 'abc' to value of Int32 type").0,
            "22P02"
        );
        assert_eq!(
            cast_error("Cannot cast string '99999999999' to value of Int32 type").0,
            "22003"
        );
    }
}
