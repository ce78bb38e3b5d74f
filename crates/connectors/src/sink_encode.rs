//! A Kafka sink's messages: its changes as JSON, per format (RisingWave's `FORMAT PLAIN |
//! UPSERT | DEBEZIUM ENCODE JSON`).
//!
//! Keyed formats (UPSERT, DEBEZIUM) first fold a batch's changes per key, one commit at a
//! time: within a commit a key's update is a delete of the old row and an insert of the
//! new one, in either order, and only the commit's net effect is a state the view was in.
//! Each key whose state a commit changed gets one message per batch: its state after the
//! batch's last commit that changed it.
//!
//! The message is sent even when the key ends the batch as it started it (inserted and
//! deleted again, or moved and moved back): after a crash, at-least-once delivery sends a
//! batch again from its start, and the topic may already hold a message from the middle
//! of it that only this one overrides. Only a key no commit changed (its changes cancel
//! out within each commit) gets no message: every state the topic can hold for it is the
//! one it still has.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, SecondsFormat};
use datafusion::common::ScalarValue;
use freshet_engine::sink_log::Change;
use serde_json::{Map, Value};

/// How the rows are written (see `freshet_planner::sink_def::SinkFormat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Plain,
    Upsert,
    Debezium,
}

/// One Kafka message; `seq`: the outbox sequence number of the last change it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub value: Option<Vec<u8>>,
    pub seq: u64,
}

/// Turns changes into messages.
pub struct Encoder {
    format: Format,
    names: Vec<String>,
    key_columns: Vec<usize>,
    /// The sink's name, in Debezium's `source` block.
    sink_name: String,
}

type Row = Vec<ScalarValue>;

/// What a commit that changed a key did: the row it left (if any) and the row it deleted
/// (if any).
struct CommitEffect {
    left: Option<Row>,
    deleted: Option<Row>,
}

/// A key's changes in a batch.
struct Folded {
    /// Net multiplicity per row within the commit being folded (`commit`).
    rows: Vec<(Vec<ScalarValue>, i64)>,
    commit: u64,
    /// The row the first commit that changed the key deleted (`Some(None)`: it deleted
    /// none; `None`: no commit changed the key yet).
    before: Option<Option<Vec<ScalarValue>>>,
    /// The last commit that changed the key.
    after: Option<CommitEffect>,
    /// The sequence number of the key's last change.
    seq: u64,
}

impl Folded {
    /// Ends the commit being folded: its net effect, if any, is the key's latest state.
    fn close_commit(&mut self) {
        let rows = std::mem::take(&mut self.rows);
        let inserted = rows.iter().rev().find(|(_, w)| *w > 0).map(|(r, _)| r);
        let deleted = rows.iter().rev().find(|(_, w)| *w < 0).map(|(r, _)| r);
        if inserted.is_none() && deleted.is_none() {
            return;
        }
        if self.before.is_none() {
            self.before = Some(deleted.cloned());
        }
        self.after = Some(CommitEffect {
            left: inserted.cloned(),
            deleted: deleted.cloned(),
        });
    }
}

/// A batch's changes folded per key, in the order keys were first seen.
#[derive(Default)]
pub struct Fold {
    index: HashMap<Vec<u8>, usize>,
    keys: Vec<(Vec<u8>, Folded)>,
    /// Commits seen (the current change's commit).
    commit: u64,
}

impl Fold {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Encoder {
    pub fn new(
        format: Format,
        names: Vec<String>,
        key_columns: Vec<usize>,
        sink_name: &str,
    ) -> Encoder {
        Encoder {
            format,
            names,
            key_columns,
            sink_name: sink_name.to_string(),
        }
    }

    pub fn keyed(&self) -> bool {
        self.format != Format::Plain
    }

    /// A row as a JSON object, its members in column order.
    fn row_json(&self, row: &[ScalarValue]) -> String {
        object(self.names.iter().zip(row))
    }

    fn key_bytes(&self, row: &[ScalarValue]) -> Option<Vec<u8>> {
        if self.key_columns.is_empty() {
            return None;
        }
        let null = ScalarValue::Null;
        let members = self
            .key_columns
            .iter()
            .map(|&c| (&self.names[c], row.get(c).unwrap_or(&null)));
        Some(object(members).into_bytes())
    }

    /// PLAIN: one message per inserted row (a row inserted n times, n messages). Deletes
    /// do not reach a PLAIN sink (it is append-only, or drops them).
    pub fn plain(&self, changes: &[Change], out: &mut Vec<Message>) {
        for c in changes {
            let value = self.row_json(&c.row).into_bytes();
            for _ in 0..c.weight.max(0) {
                out.push(Message {
                    key: self.key_bytes(&c.row),
                    value: Some(value.clone()),
                    seq: c.seq,
                });
            }
        }
    }

    /// Folds changes into `fold` (keyed formats). `changes` continue those folded before
    /// (in sequence order); the batch begins at a commit's start.
    pub fn fold(&self, changes: &[Change], fold: &mut Fold) {
        for c in changes {
            if c.commit_start {
                fold.commit += 1;
            }
            let key = self.key_bytes(&c.row).unwrap_or_default();
            let i = match fold.index.get(&key) {
                Some(&i) => i,
                None => {
                    fold.index.insert(key.clone(), fold.keys.len());
                    fold.keys.push((
                        key,
                        Folded {
                            rows: Vec::new(),
                            commit: fold.commit,
                            before: None,
                            after: None,
                            seq: 0,
                        },
                    ));
                    fold.keys.len() - 1
                }
            };
            let f = &mut fold.keys[i].1;
            if f.commit != fold.commit {
                f.close_commit();
                f.commit = fold.commit;
            }
            f.seq = c.seq;
            match f.rows.iter_mut().find(|(r, _)| *r == c.row) {
                Some((_, w)) => *w += c.weight,
                None => f.rows.push((c.row.clone(), c.weight)),
            }
        }
    }

    /// The messages of a folded batch: per key a commit changed, its state after the
    /// batch (UPSERT: the row, or a tombstone if none is left; DEBEZIUM: `c`, `u` or `d`
    /// with the rows before and after the batch, and a tombstone after a `d`, as Debezium
    /// writes them).
    pub fn finish(&self, fold: Fold, ts_ms: i64, out: &mut Vec<Message>) {
        for (key, mut f) in fold.keys {
            f.close_commit();
            // No commit changed the key: nothing to send (see the module's comment).
            let Some(CommitEffect {
                left: after,
                deleted,
            }) = f.after
            else {
                continue;
            };
            match self.format {
                Format::Plain => {}
                Format::Upsert => out.push(Message {
                    key: Some(key),
                    value: after.map(|r| self.row_json(&r).into_bytes()),
                    seq: f.seq,
                }),
                Format::Debezium => {
                    let before = f.before.flatten();
                    let (op, before) = match (&after, before) {
                        (Some(_), Some(b)) => ("u", Some(b)),
                        (Some(_), None) => ("c", None),
                        // The row deleted last (the batch may have inserted it first).
                        (None, _) => ("d", deleted),
                    };
                    let row = |r: Option<&Vec<ScalarValue>>| {
                        r.map_or("null".into(), |r| self.row_json(r))
                    };
                    let mut source = Map::new();
                    source.insert("connector".into(), Value::from("freshet"));
                    source.insert("name".into(), Value::from(self.sink_name.clone()));
                    source.insert("seq".into(), Value::from(f.seq));
                    let v = format!(
                        r#"{{"before":{},"after":{},"op":"{op}","ts_ms":{ts_ms},"source":{}}}"#,
                        row(before.as_ref()),
                        row(after.as_ref()),
                        Value::Object(source)
                    );
                    out.push(Message {
                        key: Some(key.clone()),
                        value: Some(v.into_bytes()),
                        seq: f.seq,
                    });
                    if op == "d" {
                        out.push(Message {
                            key: Some(key),
                            value: None,
                            seq: f.seq,
                        });
                    }
                }
            }
        }
    }
}

/// A JSON object of `members`, in their order.
fn object<'a>(members: impl Iterator<Item = (&'a String, &'a ScalarValue)>) -> String {
    let mut out = String::from("{");
    for (i, (name, v)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(name.as_str()).to_string());
        out.push(':');
        out.push_str(&value_json(v).to_string());
    }
    out.push('}');
    out
}

/// A value as JSON: numbers and booleans as such, decimals as strings (exact), times as
/// ISO 8601 strings (a `timestamptz` in UTC with `Z`), NaN and infinities as strings.
pub fn value_json(v: &ScalarValue) -> Value {
    use freshet_engine::numeric_special::Special;
    use ScalarValue as S;
    if v.is_null() {
        return Value::Null;
    }
    let float = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::from(pg_float(f)))
    };
    match v {
        S::Boolean(Some(b)) => Value::from(*b),
        S::Int8(Some(i)) => Value::from(*i),
        S::Int16(Some(i)) => Value::from(*i),
        S::Int32(Some(i)) => Value::from(*i),
        S::Int64(Some(i)) => Value::from(*i),
        S::UInt8(Some(i)) => Value::from(*i),
        S::UInt16(Some(i)) => Value::from(*i),
        S::UInt32(Some(i)) => Value::from(*i),
        S::UInt64(Some(i)) => Value::from(*i),
        S::Float32(Some(f)) => float(f64::from(*f)),
        S::Float64(Some(f)) => float(*f),
        S::Decimal128(Some(d), ..) if Special::of(*d).is_some() => {
            Value::from(Special::of(*d).map_or("NaN", Special::text))
        }
        S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => Value::from(s.as_str()),
        S::Date32(Some(d)) => NaiveDate::from_num_days_from_ce_opt(d + 719_163)
            .map_or(Value::from(*d), |d| Value::from(d.to_string())),
        S::TimestampMicrosecond(Some(t), tz) => timestamp(*t, tz.is_some()),
        S::TimestampMillisecond(Some(t), tz) => timestamp(t.saturating_mul(1000), tz.is_some()),
        S::TimestampSecond(Some(t), tz) => timestamp(t.saturating_mul(1_000_000), tz.is_some()),
        S::TimestampNanosecond(Some(t), tz) => timestamp(t / 1000, tz.is_some()),
        // Arrays as JSON arrays, structs as objects (as RisingWave's JSON encoder writes
        // them).
        S::List(a) => {
            let items = a.value(0);
            Value::Array(
                (0..items.len())
                    .map(|i| {
                        ScalarValue::try_from_array(&items, i)
                            .map_or(Value::Null, |v| value_json(&v))
                    })
                    .collect(),
            )
        }
        S::Struct(a) => Value::Object(
            a.fields()
                .iter()
                .zip(a.columns())
                .map(|(f, col)| {
                    let v =
                        ScalarValue::try_from_array(col, 0).map_or(Value::Null, |v| value_json(&v));
                    (f.name().clone(), v)
                })
                .collect(),
        ),
        other => Value::from(other.to_string()),
    }
}

fn pg_float(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn timestamp(micros: i64, with_zone: bool) -> Value {
    let Some(t) = DateTime::from_timestamp_micros(micros) else {
        return Value::from(micros);
    };
    if with_zone {
        Value::from(t.to_rfc3339_opts(SecondsFormat::Micros, true))
    } else {
        Value::from(t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(seq: u64, weight: i64, k: i64, n: i64) -> Change {
        Change {
            seq,
            weight,
            commit_start: seq == 1,
            row: vec![ScalarValue::Int64(Some(k)), ScalarValue::Int64(Some(n))],
        }
    }

    /// The first change of a commit.
    fn start(c: Change) -> Change {
        Change {
            commit_start: true,
            ..c
        }
    }

    fn upserts(e: &Encoder, changes: &[Change]) -> Vec<(String, Option<String>, u64)> {
        let mut fold = Fold::default();
        e.fold(changes, &mut fold);
        let mut out = Vec::new();
        e.finish(fold, 0, &mut out);
        out.iter()
            .map(|m| (text(&m.key).unwrap(), text(&m.value), m.seq))
            .collect()
    }

    fn enc(format: Format) -> Encoder {
        Encoder::new(format, vec!["k".into(), "n".into()], vec![0], "s")
    }

    fn text(b: &Option<Vec<u8>>) -> Option<String> {
        b.as_ref().map(|b| String::from_utf8(b.clone()).unwrap())
    }

    #[test]
    fn upsert_folds_each_commit_whatever_the_order() {
        let e = enc(Format::Upsert);
        // Commit 1: key 1 updated with the insert first; key 2 inserted and deleted again
        // (no net change); key 3 deleted; key 4 deleted and inserted again as it was.
        // Commit 2: key 2's old row deleted.
        let got = upserts(
            &e,
            &[
                ch(1, 1, 1, 20),
                ch(2, -1, 1, 10),
                ch(3, 1, 2, 5),
                ch(4, -1, 2, 5),
                ch(5, -1, 3, 7),
                ch(6, -1, 4, 1),
                ch(7, 1, 4, 1),
                start(ch(8, -1, 2, 9)),
            ],
        );
        assert_eq!(
            got,
            vec![
                (r#"{"k":1}"#.into(), Some(r#"{"k":1,"n":20}"#.into()), 2),
                (r#"{"k":2}"#.into(), None, 8),
                (r#"{"k":3}"#.into(), None, 5),
            ],
            "key 4: no commit changed it, nothing to send"
        );
    }

    /// A batch sent again after a crash: the topic may hold a message from the middle of
    /// it, so a key that ends the batch as it began still gets its state.
    #[test]
    fn upsert_sends_a_key_that_commits_changed_and_changed_back() {
        let e = enc(Format::Upsert);
        let got = upserts(
            &e,
            &[
                // Key 5 inserted in commit 1, deleted in commit 2.
                ch(1, 1, 5, 1),
                // Key 6 moved in commit 1 (insert first) and back in commit 2.
                ch(2, 1, 6, 2),
                ch(3, -1, 6, 1),
                start(ch(4, -1, 5, 1)),
                ch(5, -1, 6, 2),
                ch(6, 1, 6, 1),
            ],
        );
        assert_eq!(
            got,
            vec![
                (r#"{"k":5}"#.into(), None, 4),
                (r#"{"k":6}"#.into(), Some(r#"{"k":6,"n":1}"#.into()), 6),
            ]
        );
    }

    #[test]
    fn debezium_envelopes() {
        let e = enc(Format::Debezium);
        let mut fold = Fold::default();
        e.fold(
            &[
                ch(1, -1, 1, 10),
                ch(2, 1, 1, 20),
                ch(3, 1, 2, 5),
                ch(4, -1, 3, 7),
            ],
            &mut fold,
        );
        let mut out = Vec::new();
        e.finish(fold, 9, &mut out);
        // A row inserted in one commit and deleted in the next: a delete of that row.
        let mut fold = Fold::default();
        e.fold(&[ch(1, 1, 9, 3), start(ch(2, -1, 9, 3))], &mut fold);
        let mut transient = Vec::new();
        e.finish(fold, 9, &mut transient);
        let v: Value = serde_json::from_str(&text(&transient[0].value).unwrap()).unwrap();
        assert_eq!(
            (v["op"].as_str(), v["before"]["n"].as_i64()),
            (Some("d"), Some(3))
        );
        assert!(transient[1].value.is_none());
        let ops: Vec<_> = out
            .iter()
            .map(|m| {
                text(&m.value).map(|v| {
                    let v: Value = serde_json::from_str(&v).unwrap();
                    (
                        v["op"].as_str().unwrap().to_string(),
                        v["before"].clone(),
                        v["after"].clone(),
                    )
                })
            })
            .collect();
        assert_eq!(ops[0].as_ref().unwrap().0, "u");
        assert_eq!(ops[0].as_ref().unwrap().1["n"], 10);
        assert_eq!(ops[0].as_ref().unwrap().2["n"], 20);
        assert_eq!(ops[1].as_ref().unwrap().0, "c");
        assert_eq!(ops[2].as_ref().unwrap().0, "d");
        assert!(ops[3].is_none(), "a tombstone follows a delete");
    }

    #[test]
    fn plain_repeats_multiplicity_and_encodes_values() {
        let e = Encoder::new(Format::Plain, vec!["k".into(), "n".into()], vec![], "s");
        let mut out = Vec::new();
        e.plain(&[ch(7, 2, 1, 1)], &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].key.is_none());
        assert_eq!(
            value_json(&ScalarValue::Float64(Some(f64::NAN))),
            Value::from("NaN")
        );
        assert_eq!(
            value_json(&ScalarValue::TimestampMicrosecond(
                Some(1_500_000),
                Some("UTC".into())
            )),
            Value::from("1970-01-01T00:00:01.500000Z")
        );
        assert_eq!(
            value_json(&ScalarValue::Date32(Some(1))),
            Value::from("1970-01-02")
        );
        // numeric NaN and infinities as Postgres' text, numbers as exact strings.
        let numeric = |v: i128| value_json(&ScalarValue::Decimal128(Some(v), 38, 2));
        assert_eq!(
            numeric(freshet_engine::numeric_special::NAN),
            Value::from("NaN")
        );
        assert_eq!(
            numeric(freshet_engine::numeric_special::NEG_INFINITY),
            Value::from("-Infinity")
        );
        assert_eq!(numeric(-150), Value::from("-1.50"));
    }

    /// Arrays go out as JSON arrays and structs as objects, nested ones too.
    #[test]
    fn arrays_and_structs_as_json() {
        use datafusion::arrow::datatypes::{DataType, Field};
        let fs = vec![
            Field::new("os", DataType::Utf8, true),
            Field::new("v", DataType::Int32, true),
        ];
        let s = freshet_storage::codec::struct_value(
            &fs.into(),
            vec![
                ScalarValue::Utf8(Some("tv".into())),
                ScalarValue::Int32(None),
            ],
        )
        .unwrap();
        let list = ScalarValue::List(ScalarValue::new_list_nullable(
            &[s.clone(), ScalarValue::try_from(s.data_type()).unwrap()],
            &s.data_type(),
        ));
        assert_eq!(
            value_json(&list).to_string(),
            r#"[{"os":"tv","v":null},null]"#
        );
    }
}
