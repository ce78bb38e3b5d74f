//! SQL cursors: `DECLARE name [SCROLL] CURSOR [WITH HOLD] FOR query`, `FETCH`, `MOVE`,
//! `CLOSE`.
//!
//! A cursor holds its query's stream (see `Session::query`): rows are read from one
//! snapshot as they are fetched, so a client paging through 50 million rows keeps the
//! server's memory flat. A `SCROLL` cursor also keeps the rows it has read, to move
//! back over them; a plain one only goes forward (`55000` otherwise, as Postgres says).
//! A cursor without `WITH HOLD` lives in a transaction block and ends with it.

use std::collections::BTreeMap;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use freshet_planner::sqlparser::ast::{self, FetchDirection, Statement};
use futures::StreamExt;

use super::{command, ident_name, BatchStream, Output, Session};
use crate::error::{Result, ServerError};

pub(super) struct Cursor {
    schema: SchemaRef,
    stream: Option<BatchStream>,
    /// Rows read from the stream and not yet returned (forward-only cursors), or every
    /// row read so far (scroll cursors).
    rows: Vec<RecordBatch>,
    /// Rows in `rows`.
    read: usize,
    /// Scroll cursors: the current row (0 = before the first; `read + 1` = after the last).
    pos: usize,
    scroll: bool,
    pub(super) hold: bool,
    /// Over a `SUBSCRIBE`: a FETCH waits for the first row, then returns what has come.
    subscription: bool,
    /// An error that came after rows a FETCH returned: the next FETCH's.
    failed: Option<ServerError>,
}

/// The cursors of a session, by name.
pub(super) type Cursors = BTreeMap<String, Cursor>;

fn count(v: &ast::ValueWithSpan) -> Result<i64> {
    match &v.value {
        ast::Value::Number(n, _) => n
            .parse()
            .map_err(|_| ServerError::InvalidOption(format!("invalid FETCH count {n}"))),
        other => Err(ServerError::InvalidOption(format!(
            "invalid FETCH count {other}"
        ))),
    }
}

/// Where a FETCH or MOVE goes: rows forward (negative: backward), or an absolute position.
enum Step {
    Forward(i64),
    Absolute(i64),
    Last,
}

fn step(d: &FetchDirection) -> Result<Step> {
    Ok(match d {
        FetchDirection::Count { limit } => Step::Forward(count(limit)?),
        FetchDirection::Next => Step::Forward(1),
        FetchDirection::Prior => Step::Forward(-1),
        FetchDirection::First => Step::Absolute(1),
        FetchDirection::Last => Step::Last,
        FetchDirection::Absolute { limit } => Step::Absolute(count(limit)?),
        FetchDirection::Relative { limit } => Step::Forward(count(limit)?),
        FetchDirection::All | FetchDirection::ForwardAll => Step::Forward(i64::MAX),
        FetchDirection::Forward { limit } => {
            Step::Forward(limit.as_ref().map(count).transpose()?.unwrap_or(1))
        }
        FetchDirection::Backward { limit } => {
            Step::Forward(-limit.as_ref().map(count).transpose()?.unwrap_or(1))
        }
        FetchDirection::BackwardAll => Step::Forward(i64::MIN + 1),
    })
}

impl Cursor {
    /// Reads from the stream until `want` rows are buffered (or it ends).
    async fn fill(&mut self, want: usize) -> Result<()> {
        while self.read < want {
            let Some(s) = self.stream.as_mut() else {
                return Ok(());
            };
            match s.next().await {
                Some(b) => {
                    let b = b?;
                    self.read += b.num_rows();
                    self.rows.push(b);
                }
                None => self.stream = None,
            }
        }
        Ok(())
    }

    /// A subscription: waits until a row is buffered, then takes what has already come,
    /// up to `want` rows.
    async fn fill_available(&mut self, want: usize) -> Result<()> {
        use futures::FutureExt;
        if want == 0 {
            return Ok(());
        }
        if self.read == 0 {
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
        }
        self.fill(1).await?;
        while self.read < want {
            let Some(s) = self.stream.as_mut() else {
                return Ok(());
            };
            match s.next().now_or_never() {
                Some(Some(Ok(b))) => {
                    self.read += b.num_rows();
                    self.rows.push(b);
                }
                Some(Some(Err(e))) => {
                    self.failed = Some(e);
                    self.stream = None;
                }
                Some(None) => self.stream = None,
                None => break,
            }
        }
        Ok(())
    }

    /// Forgets the first `n` buffered rows (slices share the arrays: nothing is copied).
    fn drop_front(&mut self, mut n: usize) {
        self.read -= n;
        let mut kept = Vec::with_capacity(self.rows.len());
        for b in self.rows.drain(..) {
            let len = b.num_rows();
            if n >= len {
                n -= len;
            } else {
                kept.push(b.slice(n, len - n));
                n = 0;
            }
        }
        self.rows = kept;
    }

    /// Rows `from..to` of those buffered.
    fn slice(&self, from: usize, to: usize) -> Result<RecordBatch> {
        let mut parts = Vec::new();
        let mut offset = 0;
        for b in &self.rows {
            let n = b.num_rows();
            let (s, e) = (from.max(offset), to.min(offset + n));
            if s < e {
                parts.push(b.slice(s - offset, e - s));
            }
            offset += n;
        }
        Ok(concat_batches(&self.schema, &parts)?)
    }

    /// The rows a FETCH returns (and MOVE skips).
    async fn step(&mut self, s: Step) -> Result<RecordBatch> {
        if !self.scroll {
            let n = match s {
                Step::Forward(n) if n >= 0 => n as usize,
                _ => {
                    return Err(ServerError::ObjectState(
                        "cursor can only scan forward: declare it with the SCROLL option to \
                         enable backward scan"
                            .into(),
                    ))
                }
            };
            if self.subscription {
                self.fill_available(n).await?;
            } else {
                self.fill(n).await?;
            }
            let take = n.min(self.read);
            let out = self.slice(0, take)?;
            self.drop_front(take);
            return Ok(out);
        }
        // Scroll: positions are 1-based rows; 0 before the first, read + 1 after the last.
        match s {
            Step::Forward(0) => {
                if self.pos >= 1 && self.pos <= self.read {
                    self.slice(self.pos - 1, self.pos)
                } else {
                    Ok(RecordBatch::new_empty(self.schema.clone()))
                }
            }
            Step::Forward(n) if n > 0 => {
                let target = (self.pos as i64).saturating_add(n) as usize;
                self.fill(target).await?;
                let end = target.min(self.read);
                let out = self.slice(self.pos.min(self.read), end)?;
                self.pos = if target > self.read {
                    self.read + 1
                } else {
                    target
                };
                Ok(out)
            }
            Step::Forward(n) => {
                // Backward: the rows before the current one, nearest first.
                let back = n.unsigned_abs() as usize;
                let from = self.pos.saturating_sub(back.saturating_add(1));
                let to = self.pos.saturating_sub(1).min(self.read);
                let rows = self.slice(from, to)?;
                self.pos = self.pos.saturating_sub(back);
                reverse(&rows)
            }
            Step::Absolute(n) => {
                let target = if n >= 0 {
                    n as usize
                } else {
                    self.fill(usize::MAX).await?;
                    (self.read as i64 + 1 + n).max(0) as usize
                };
                self.fill(target).await?;
                self.pos = target.min(self.read + 1);
                if target >= 1 && target <= self.read {
                    self.slice(target - 1, target)
                } else {
                    Ok(RecordBatch::new_empty(self.schema.clone()))
                }
            }
            Step::Last => {
                self.fill(usize::MAX).await?;
                self.pos = self.read;
                self.slice(self.read.saturating_sub(1), self.read)
            }
        }
    }
}

fn reverse(b: &RecordBatch) -> Result<RecordBatch> {
    let n = b.num_rows() as u32;
    let idx = datafusion::arrow::array::UInt32Array::from_iter_values((0..n).rev());
    let cols = b
        .columns()
        .iter()
        .map(|c| datafusion::arrow::compute::take(c, &idx, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(b.schema(), cols)?)
}

fn moved(rows: usize) -> Output {
    Output::Command {
        tag: "MOVE".into(),
        rows: Some(rows),
    }
}

impl Session {
    fn cursors(&self) -> std::sync::MutexGuard<'_, Cursors> {
        self.cursors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The columns of cursor `name` (for Describe of its portal, and of FETCH).
    pub fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors().get(name).map(|c| c.schema.clone())
    }

    pub(super) async fn declare(&self, decls: &[ast::Declare]) -> Result<Output> {
        let [d] = decls else {
            return Err(ServerError::Unsupported(
                "DECLARE of several cursors".into(),
            ));
        };
        let (Some(q), [name]) = (&d.for_query, d.names.as_slice()) else {
            return Err(ServerError::Unsupported(
                "DECLARE of something other than a cursor".into(),
            ));
        };
        let name = ident_name(name);
        let hold = d.hold == Some(true);
        if !hold && self.tx_status() == super::TxStatus::Idle {
            return Err(ServerError::NoActiveTransaction(
                "DECLARE CURSOR can only be used in transaction blocks".into(),
            ));
        }
        if self.cursors().contains_key(&name) {
            return Err(ServerError::DuplicateCursor(name));
        }
        let stmt = Statement::Query(q.clone());
        self.authorize(&freshet_planner::parser::Stmt::Sql(Box::new(stmt.clone())))?;
        let (schema, stream) = match self.query(&stmt, &[]).await? {
            Output::Stream { schema, batches } => (schema, Some(batches)),
            Output::Rows { schema, batches } => {
                let read = batches.iter().map(|b| b.num_rows()).sum();
                let c = Cursor {
                    schema,
                    stream: None,
                    rows: batches,
                    read,
                    pos: 0,
                    scroll: d.scroll == Some(true),
                    hold,
                    subscription: false,
                    failed: None,
                };
                self.cursors().insert(name, c);
                return Ok(command("DECLARE CURSOR"));
            }
            _ => {
                return Err(ServerError::Internal(
                    "cursor query returned no rows".into(),
                ))
            }
        };
        self.cursors().insert(
            name,
            Cursor {
                schema,
                stream,
                rows: Vec::new(),
                read: 0,
                pos: 0,
                scroll: d.scroll == Some(true),
                hold,
                subscription: false,
                failed: None,
            },
        );
        Ok(command("DECLARE CURSOR"))
    }

    /// `DECLARE name CURSOR [WITH HOLD] FOR SUBSCRIBE …`: FETCH then waits for changes.
    pub(super) async fn declare_subscribe(
        &self,
        name: &str,
        hold: bool,
        sub: &freshet_planner::parser::Subscribe,
    ) -> Result<Output> {
        if !hold && self.tx_status() == super::TxStatus::Idle {
            return Err(ServerError::NoActiveTransaction(
                "DECLARE CURSOR can only be used in transaction blocks".into(),
            ));
        }
        if self.cursors().contains_key(name) {
            return Err(ServerError::DuplicateCursor(name.to_string()));
        }
        let (schema, stream) = self.subscribe(sub).await?;
        self.cursors().insert(
            name.to_string(),
            Cursor {
                schema,
                stream: Some(stream),
                rows: Vec::new(),
                read: 0,
                pos: 0,
                scroll: false,
                hold,
                subscription: true,
                failed: None,
            },
        );
        Ok(command("DECLARE CURSOR"))
    }

    /// `FETCH` (rows) or `MOVE` (their count).
    pub(super) async fn fetch(&self, stmt: &Statement, is_move: bool) -> Result<Output> {
        let Statement::Fetch {
            name, direction, ..
        } = stmt
        else {
            return Err(ServerError::Internal("not a FETCH".into()));
        };
        let name = ident_name(name);
        let s = step(direction)?;
        // The cursor leaves the map while it reads (the lock is not held across awaits).
        let mut c = self
            .cursors()
            .remove(&name)
            .ok_or_else(|| ServerError::UndefinedCursor(name.clone()))?;
        if !c.scroll && !c.subscription && matches!(s, Step::Forward(i64::MAX)) {
            // Forward-only FETCH ALL / MOVE ALL: the rest of the stream goes to the
            // client (or is counted) as it is read, never buffered here.
            let buffered = std::mem::take(&mut c.rows);
            c.read = 0;
            let rest = c.stream.take();
            let schema = c.schema.clone();
            self.cursors().insert(name, c);
            let head = futures::stream::iter(buffered.into_iter().map(Ok));
            let batches: BatchStream = match rest {
                Some(rest) => Box::pin(head.chain(rest)),
                None => Box::pin(head),
            };
            if is_move {
                let mut batches = batches;
                let mut n = 0;
                while let Some(b) = batches.next().await {
                    n += b?.num_rows();
                }
                return Ok(moved(n));
            }
            return Ok(Output::Fetched { schema, batches });
        }
        let res = c.step(s).await;
        self.cursors().insert(name, c);
        let rows = res?;
        if is_move {
            return Ok(moved(rows.num_rows()));
        }
        Ok(Output::Fetched {
            schema: rows.schema(),
            batches: Box::pin(futures::stream::iter([Ok(rows)])),
        })
    }

    pub(super) fn close_cursor(&self, which: &ast::CloseCursor) -> Result<Output> {
        match which {
            ast::CloseCursor::All => self.cursors().clear(),
            ast::CloseCursor::Specific { name } => {
                let name = ident_name(name);
                if self.cursors().remove(&name).is_none() {
                    return Err(ServerError::UndefinedCursor(name));
                }
            }
        }
        Ok(command("CLOSE CURSOR"))
    }

    /// A transaction ended: its cursors (those without `WITH HOLD`) end with it.
    pub(super) fn end_transaction_cursors(&self) {
        self.cursors().retain(|_, c| c.hold);
    }

    /// `DISCARD ALL`: every cursor ends.
    pub(super) fn close_all_cursors(&self) {
        self.cursors().clear();
    }
}
