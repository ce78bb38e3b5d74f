//! Transactions: `BEGIN … COMMIT | ROLLBACK`, savepoints, and what a statement inside
//! one sees.
//!
//! A transaction's writes to tables are kept in the session until `COMMIT`, which hands
//! them to the engine as one statement: all of them reach the tables and every view in
//! one commit, or none does. NOT NULL and primary keys are checked at each statement,
//! over the committed rows and the transaction's own writes (`23502`, `23505` at the
//! statement, as Postgres reports them), and again at COMMIT, where a key another
//! session committed meanwhile fails the whole transaction. `ROLLBACK` drops them. Statements inside the transaction read the last committed checkpoint with
//! the transaction's own table writes on top (read committed, as Postgres' default);
//! views show the transaction's writes once it commits. An error aborts the
//! transaction: every statement but `ROLLBACK` (or `ROLLBACK TO SAVEPOINT`) then fails
//! with `25P02`, and `COMMIT` rolls back. DDL is not transactional: inside a
//! transaction it runs (and commits) at once if the transaction has written nothing,
//! and is refused (`25001`) after a write.

use std::collections::BTreeMap;

use freshet_engine::coordinator::TableWrite;
use freshet_engine::write_check::PendingKeys;
use freshet_engine::EngineError;
use freshet_planner::catalog::TableDef;
use freshet_planner::parser::Stmt;
use freshet_planner::sqlparser::ast::{self, Statement};

use super::{command, Output, Session};
use crate::error::{Result, ServerError};

/// Session settings by name.
type Vars = BTreeMap<String, String>;

#[derive(Default)]
pub(super) struct Transaction {
    /// Table writes in the order they were made.
    writes: Vec<TableWrite>,
    /// The primary keys those writes add and remove (to report a duplicate key at the
    /// statement that makes it).
    keys: PendingKeys,
    /// Savepoints, innermost last.
    savepoints: Vec<Savepoint>,
    /// An error happened: only a rollback may follow.
    failed: bool,
    /// The settings at `BEGIN`: a rollback puts them back.
    vars_at_begin: Vars,
    /// The settings a commit leaves: those at `BEGIN` with the transaction's `SET`s,
    /// without its `SET LOCAL`s (which last until it ends).
    session_vars: Vars,
}

/// What `ROLLBACK TO SAVEPOINT` goes back to.
struct Savepoint {
    name: String,
    /// How many writes were made before it.
    writes: usize,
    keys: PendingKeys,
    vars: Vars,
    session_vars: Vars,
}

/// Where the session is, for the `ReadyForQuery` status the client gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

/// The isolation levels Freshet gives, and what it says of the others.
fn check_modes(modes: &[ast::TransactionMode]) -> Result<()> {
    for m in modes {
        if let ast::TransactionMode::IsolationLevel(level) = m {
            match level {
                ast::TransactionIsolationLevel::ReadCommitted
                | ast::TransactionIsolationLevel::ReadUncommitted => {}
                other => {
                    return Err(ServerError::Unsupported(format!(
                        "isolation level {other} is not supported: Freshet transactions are \
                         READ COMMITTED (each statement reads the last committed checkpoint, \
                         with the transaction's own writes)"
                    )))
                }
            }
        }
    }
    Ok(())
}

/// The isolation level and access mode `modes` set, as `SHOW` spells them (READ
/// UNCOMMITTED reads as it was set and behaves as READ COMMITTED, as in Postgres).
fn mode_settings(modes: &[ast::TransactionMode]) -> Vec<(&'static str, &'static str)> {
    modes
        .iter()
        .map(|m| match m {
            ast::TransactionMode::IsolationLevel(
                ast::TransactionIsolationLevel::ReadUncommitted,
            ) => ("isolation", "read uncommitted"),
            ast::TransactionMode::IsolationLevel(_) => ("isolation", "read committed"),
            ast::TransactionMode::AccessMode(ast::TransactionAccessMode::ReadOnly) => {
                ("read_only", "on")
            }
            ast::TransactionMode::AccessMode(ast::TransactionAccessMode::ReadWrite) => {
                ("read_only", "off")
            }
        })
        .collect()
}

/// Statements a read-only transaction may not run: writes and DDL.
pub(super) fn writes(stmt: &Stmt) -> Option<&'static str> {
    match stmt {
        Stmt::Sql(s) => match s.as_ref() {
            Statement::Insert(_) => Some("INSERT"),
            Statement::Update(_) => Some("UPDATE"),
            Statement::Delete(_) => Some("DELETE"),
            Statement::Copy { to: false, .. } => Some("COPY FROM"),
            Statement::CreateTable(_) => Some("CREATE TABLE"),
            Statement::CreateView(_) => Some("CREATE MATERIALIZED VIEW"),
            Statement::Drop { .. } => Some("DROP"),
            Statement::Grant(_) => Some("GRANT"),
            Statement::Revoke(_) => Some("REVOKE"),
            _ => None,
        },
        Stmt::CreateSource(_) => Some("CREATE SOURCE"),
        Stmt::CreateTableWithConnector(_) | Stmt::CreateTableExt(_) => Some("CREATE TABLE"),
        Stmt::CreateSink(_) => Some("CREATE SINK"),
        Stmt::CreateIndex(_) => Some("CREATE INDEX"),
        Stmt::Rename { .. } => Some("ALTER"),
        Stmt::DropSink { .. } | Stmt::DropSource { .. } => Some("DROP"),
        Stmt::CreateUser(_) => Some("CREATE ROLE"),
        Stmt::AlterUser(_) => Some("ALTER ROLE"),
        Stmt::AlterParallelism {
            kind: freshet_planner::catalog::RelationKind::Sink,
            ..
        } => Some("ALTER SINK"),
        Stmt::AlterParallelism { .. } | Stmt::AlterViewAs { .. } => Some("ALTER MATERIALIZED VIEW"),
        Stmt::DropUser { .. } => Some("DROP ROLE"),
        _ => None,
    }
}

impl Session {
    fn tx(&self) -> std::sync::MutexGuard<'_, Option<Transaction>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tx_status(&self) -> TxStatus {
        match self.tx().as_ref() {
            None => TxStatus::Idle,
            Some(t) if t.failed => TxStatus::Failed,
            Some(_) => TxStatus::InTransaction,
        }
    }

    /// An error ended a statement: inside a transaction, the transaction is aborted.
    pub fn note_error(&self) {
        if let Some(t) = self.tx().as_mut() {
            t.failed = true;
        }
    }

    /// `stream`, marking the transaction failed if it ends in an error.
    pub(super) fn failing_transaction_on_error<T: Send + 'static>(
        &self,
        stream: futures::stream::BoxStream<'static, Result<T>>,
    ) -> futures::stream::BoxStream<'static, Result<T>> {
        use futures::StreamExt;
        let tx = self.tx.clone();
        let backend = self.backend().clone();
        Box::pin(stream.inspect(move |item| {
            // A subscriber that fell behind is told why, then its connection ends.
            if let Err(ServerError::SubscriberTooSlow(_)) = item {
                backend.end_after_statement();
            }
            if item.is_err() {
                if let Some(t) = tx.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                    t.failed = true;
                }
            }
        }))
    }

    /// `25P02` for any statement but the ones that end a failed transaction.
    pub(super) fn check_not_aborted(&self, stmt: &Stmt) -> Result<()> {
        if self.tx_status() != TxStatus::Failed {
            return Ok(());
        }
        let ends = matches!(
            stmt,
            Stmt::Sql(s) if matches!(s.as_ref(), Statement::Rollback { .. } | Statement::Commit { .. })
        );
        if ends || matches!(stmt, Stmt::Empty) {
            Ok(())
        } else {
            Err(ServerError::TransactionAborted)
        }
    }

    /// Keeps a table write for the transaction's `COMMIT`, once its NOT NULL and
    /// primary-key constraints hold over the committed rows and the transaction's earlier
    /// writes (`23502`, `23505` at this statement, as Postgres reports them); hands it
    /// back when there is no transaction (the caller sends it at once).
    pub(super) fn defer_write(
        &self,
        table: &TableDef,
        write: TableWrite,
    ) -> Result<Option<TableWrite>> {
        let mut tx = self.tx();
        let Some(t) = tx.as_mut() else {
            return Ok(Some(write));
        };
        let desc = super::db::table_desc(table);
        self.db.store.read_snapshot(|r| {
            t.keys.check(&desc, &write, &mut |key| {
                Ok(r.get(key).map_err(EngineError::from)?.is_some())
            })
        })?;
        t.writes.push(write);
        Ok(None)
    }

    /// The transaction's table writes so far (what its reads see on top of the committed
    /// rows).
    pub(super) fn pending_writes(&self) -> Vec<TableWrite> {
        self.tx()
            .as_ref()
            .map(|t| t.writes.clone())
            .unwrap_or_default()
    }

    /// DDL in a transaction: fine before any write (it commits at once), refused after.
    pub(super) fn check_ddl_allowed(&self) -> Result<()> {
        match self.tx().as_ref() {
            Some(t) if !t.writes.is_empty() => Err(ServerError::ActiveTransaction(
                "DDL cannot follow writes in a transaction block: Freshet's DDL commits at \
                 once; COMMIT or ROLLBACK first"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    pub(super) fn begin(&self, modes: &[ast::TransactionMode]) -> Result<Output> {
        check_modes(modes)?;
        let vars = self.vars_snapshot();
        let mut tx = self.tx();
        if tx.is_some() {
            // Postgres warns and goes on.
            tracing::debug!("BEGIN inside a transaction block");
        } else {
            *tx = Some(Transaction {
                vars_at_begin: vars.clone(),
                session_vars: vars,
                ..Transaction::default()
            });
            drop(tx);
            self.transaction_modes(&mode_settings(modes));
        }
        Ok(Output::TxStart("BEGIN".into()))
    }

    /// `SET TRANSACTION …` (this transaction) or `SET SESSION CHARACTERISTICS AS
    /// TRANSACTION …` (the defaults of the next ones).
    pub(super) fn set_transaction(
        &self,
        modes: &[ast::TransactionMode],
        session: bool,
    ) -> Result<Output> {
        check_modes(modes)?;
        let settings = mode_settings(modes);
        if session {
            for (what, value) in &settings {
                let name = match *what {
                    "isolation" => "default_transaction_isolation",
                    _ => "default_transaction_read_only",
                };
                self.set_variable(name, value)?;
            }
        }
        match (session, self.tx_status() == TxStatus::Idle) {
            (true, true) => self.transaction_modes(&[]),
            (true, false) => {}
            // Outside a transaction block Postgres warns and ignores it.
            (false, true) => {}
            (false, false) => self.transaction_modes(&settings),
        }
        Ok(command("SET"))
    }

    /// Sets `transaction_isolation` and `transaction_read_only` from `settings`, the
    /// session's defaults for the rest.
    fn transaction_modes(&self, settings: &[(&str, &str)]) {
        for (what, current, default) in [
            (
                "isolation",
                "transaction_isolation",
                "default_transaction_isolation",
            ),
            (
                "read_only",
                "transaction_read_only",
                "default_transaction_read_only",
            ),
        ] {
            let value = settings
                .iter()
                .rev()
                .find(|(w, _)| *w == what)
                .map(|(_, v)| v.to_string())
                .or_else(|| {
                    self.settings()
                        .into_iter()
                        .find(|(k, _)| k == default)
                        .map(|(_, v)| v)
                })
                .unwrap_or_default();
            let _ = self.set_variable(current, &value);
        }
    }

    /// `25006` if the statement writes and the transaction (or, outside one, the
    /// session's default) is read-only.
    pub(super) fn check_writable(&self, stmt: &Stmt) -> Result<()> {
        let Some(what) = writes(stmt) else {
            return Ok(());
        };
        let setting = if self.tx_status() == TxStatus::Idle {
            "default_transaction_read_only"
        } else {
            "transaction_read_only"
        };
        let read_only = self
            .settings()
            .into_iter()
            .any(|(k, v)| k == setting && matches!(v.as_str(), "on" | "true"));
        if read_only {
            return Err(ServerError::ReadOnlyTransaction(format!(
                "cannot execute {what} in a read-only transaction"
            )));
        }
        Ok(())
    }

    pub(super) async fn commit(&self) -> Result<Output> {
        self.end_transaction_cursors();
        let Some(mut t) = self.tx().take() else {
            // Postgres warns "there is no transaction in progress" and succeeds.
            return Ok(Output::TxEnd("COMMIT".into()));
        };
        // A failed transaction rolls back its settings too; a committed one keeps its
        // SETs, not its SET LOCALs.
        self.replace_vars(std::mem::take(if t.failed {
            &mut t.vars_at_begin
        } else {
            &mut t.session_vars
        }));
        self.transaction_modes(&[]);
        if t.failed {
            return Ok(Output::TxEnd("ROLLBACK".into()));
        }
        if !t.writes.is_empty() {
            self.db.engine.write_all(t.writes, true).await?;
        }
        Ok(Output::TxEnd("COMMIT".into()))
    }

    pub(super) fn rollback(&self, savepoint: Option<&ast::Ident>) -> Result<Output> {
        let Some(name) = savepoint else {
            let ended = self.tx().take();
            if let Some(t) = ended {
                self.replace_vars(t.vars_at_begin);
            }
            self.transaction_modes(&[]);
            self.end_transaction_cursors();
            return Ok(Output::TxEnd("ROLLBACK".into()));
        };
        let name = super::ident_name(name);
        let mut tx = self.tx();
        let Some(t) = tx.as_mut() else {
            return Err(ServerError::NoActiveTransaction(
                "ROLLBACK TO SAVEPOINT can only be used in transaction blocks".into(),
            ));
        };
        let Some(i) = t.savepoints.iter().rposition(|sp| sp.name == name) else {
            t.failed = true;
            return Err(ServerError::UndefinedSavepoint(name));
        };
        let sp = &t.savepoints[i];
        let (at, vars) = (sp.writes, sp.vars.clone());
        t.keys = sp.keys.clone();
        t.session_vars = sp.session_vars.clone();
        t.writes.truncate(at);
        t.savepoints.truncate(i + 1);
        t.failed = false;
        drop(tx);
        self.replace_vars(vars);
        Ok(command("ROLLBACK"))
    }

    pub(super) fn savepoint(&self, name: &ast::Ident) -> Result<Output> {
        let vars = self.vars_snapshot();
        let mut tx = self.tx();
        let Some(t) = tx.as_mut() else {
            return Err(ServerError::NoActiveTransaction(
                "SAVEPOINT can only be used in transaction blocks".into(),
            ));
        };
        let sp = Savepoint {
            name: super::ident_name(name),
            writes: t.writes.len(),
            keys: t.keys.clone(),
            vars,
            session_vars: t.session_vars.clone(),
        };
        t.savepoints.push(sp);
        Ok(command("SAVEPOINT"))
    }

    /// A session-level change of setting `name` (`None`: forgotten) made inside a
    /// transaction: kept for its commit.
    pub(super) fn keep_for_commit(&self, name: &str, value: Option<&str>) {
        if let Some(t) = self.tx().as_mut() {
            match value {
                Some(v) => t.session_vars.insert(name.to_string(), v.to_string()),
                None => t.session_vars.remove(name),
            };
        }
    }

    /// Every setting changed at once (`RESET ALL`) inside a transaction.
    pub(super) fn keep_all_for_commit(&self, vars: &Vars) {
        if let Some(t) = self.tx().as_mut() {
            t.session_vars = vars.clone();
        }
    }

    pub(super) fn release(&self, name: &ast::Ident) -> Result<Output> {
        let name = super::ident_name(name);
        let mut tx = self.tx();
        let Some(t) = tx.as_mut() else {
            return Err(ServerError::NoActiveTransaction(
                "RELEASE SAVEPOINT can only be used in transaction blocks".into(),
            ));
        };
        let Some(i) = t.savepoints.iter().rposition(|sp| sp.name == name) else {
            t.failed = true;
            return Err(ServerError::UndefinedSavepoint(name));
        };
        t.savepoints.truncate(i);
        Ok(command("RELEASE"))
    }
}
