//! The constraints of table writes (NOT NULL, primary keys), checked where the write is
//! applied (the coordinator) and, for a transaction's writes, at each statement: a
//! transaction keeps its writes until COMMIT, but Postgres reports a duplicate key at the
//! INSERT that makes it, which savepoint-based code (`begin_nested()`, psycopg's nested
//! `transaction()`) relies on.

use std::collections::HashMap;

use datafusion::common::ScalarValue;
use freshet_storage::{codec, keys};

use crate::chunk::{batch_rows, Row};
use crate::coordinator::{TableDesc, TableWrite};
use crate::EngineError;

/// `23502` if `row` has a NULL in a NOT NULL column; `22003` if it has an infinity in a
/// `numeric(p, s)` column (only an unconstrained `numeric` holds one, as in Postgres;
/// expressions keep them in the types they derive: `crate::numeric_special`).
pub fn check_row(desc: &TableDesc, row: &Row) -> Result<(), EngineError> {
    use crate::numeric_special::{holds_infinity, infinite_overflow, Special};
    for (i, v) in row.iter().enumerate() {
        if desc.not_null.get(i).copied().unwrap_or(false) && v.is_null() {
            return Err(EngineError::NotNull {
                table: desc.name.clone(),
                column: desc.schema.field(i).name().clone(),
            });
        }
        if let ScalarValue::Decimal128(Some(x), p, s) = v {
            let infinite = matches!(
                Special::of(*x),
                Some(Special::Infinity | Special::NegInfinity)
            );
            if infinite && !holds_infinity(*p) {
                return Err(EngineError::DataFusion(infinite_overflow(*p, *s)));
            }
        }
    }
    Ok(())
}

/// The storage key of `row` in a table with a primary key.
pub fn pk_row_key(desc: &TableDesc, row: &Row) -> Result<Vec<u8>, EngineError> {
    let pk: Row = desc.pk.iter().map(|&i| row[i].clone()).collect();
    Ok(keys::row_key(desc.id, &codec::encode_row(&pk)?))
}

/// The `23505` error for inserting `row` over an existing key.
pub fn duplicate_key(desc: &TableDesc, row: &Row) -> EngineError {
    let cols: Vec<&str> = desc
        .pk
        .iter()
        .map(|&i| desc.schema.field(i).name().as_str())
        .collect();
    let vals: Vec<String> = desc.pk.iter().map(|&i| display_value(&row[i])).collect();
    EngineError::DuplicateKey {
        table: desc.name.clone(),
        detail: format!(
            "Key ({})=({}) already exists.",
            cols.join(", "),
            vals.join(", ")
        ),
    }
}

/// A value as Postgres prints it in error details.
pub fn display_value(v: &ScalarValue) -> String {
    if v.is_null() {
        return "null".into();
    }
    match v {
        ScalarValue::Utf8(Some(s)) => s.clone(),
        ScalarValue::Decimal128(Some(x), ..)
            if crate::numeric_special::Special::of(*x).is_some() =>
        {
            crate::numeric_special::Special::of(*x).map_or_else(String::new, |s| s.text().into())
        }
        // Timestamps as text (ISO 8601), not their raw integer.
        other => other
            .to_array()
            .ok()
            .and_then(|a| datafusion::arrow::util::display::array_value_to_string(&a, 0).ok())
            .unwrap_or_else(|| other.to_string()),
    }
}

/// The primary keys a transaction's writes so far have made present or absent, over the
/// committed rows.
#[derive(Default, Clone)]
pub struct PendingKeys {
    present: HashMap<Vec<u8>, bool>,
}

impl PendingKeys {
    /// Checks one statement's `write` as if the transaction's earlier writes were applied
    /// (`committed` says whether a key exists in the committed rows), and records its keys.
    /// On an error nothing is recorded.
    pub fn check(
        &mut self,
        desc: &TableDesc,
        write: &TableWrite,
        committed: &mut dyn FnMut(&[u8]) -> Result<bool, EngineError>,
    ) -> Result<(), EngineError> {
        let mut changed: HashMap<Vec<u8>, bool> = HashMap::new();
        for b in &write.deletes {
            for row in batch_rows(b)? {
                if !desc.pk.is_empty() {
                    changed.insert(pk_row_key(desc, &row)?, false);
                }
            }
        }
        for b in &write.inserts {
            for row in batch_rows(b)? {
                check_row(desc, &row)?;
                if desc.pk.is_empty() {
                    continue;
                }
                let key = pk_row_key(desc, &row)?;
                let exists = match changed.get(&key).or_else(|| self.present.get(&key)) {
                    Some(p) => *p,
                    None => committed(&key)?,
                };
                if exists {
                    return Err(duplicate_key(desc, &row));
                }
                changed.insert(key, true);
            }
        }
        self.present.extend(changed);
        Ok(())
    }
}
