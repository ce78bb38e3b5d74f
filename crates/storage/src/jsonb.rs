//! `jsonb` values: stored as their canonical text in an Arrow `LargeUtf8` column (the
//! type that marks a column as `jsonb` throughout Freshet), written as Postgres prints
//! jsonb: object keys sorted by length then bytes, the last of duplicate keys kept,
//! `", "` and `": "` between items, so equal documents have equal text (and compare,
//! group and key equal).

use serde_json::Value;

/// The canonical text of JSON text `s`; an error names what is wrong.
pub fn normalize(s: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(s)
        .map_err(|e| format!("invalid input syntax for type json: \"{s}\" ({e})"))?;
    Ok(text(&v))
}

/// The canonical text of a JSON value.
pub fn text(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push_str(": ");
                write(&map[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_like_postgres() {
        assert_eq!(
            normalize(r#"{"bb":1,"a":[1,{"y":null,"x":true}],"c":"q\"","a":2}"#).unwrap(),
            r#"{"a": 2, "c": "q\"", "bb": 1}"#
        );
        assert_eq!(normalize(" [ ] ").unwrap(), "[]");
        assert_eq!(normalize("\"s\"").unwrap(), "\"s\"");
        assert!(normalize("{").is_err());
    }
}
