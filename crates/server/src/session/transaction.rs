//! Transactions: `BEGIN … COMMIT | ROLLBACK`, savepoints, and what a statement inside
//! one sees.
//!
//! A transaction's writes to tables are kept in the session until `COMMIT`, which hands
//! them to the engine as one statement: all of them reach the tables and every view in
//! one commit, or none does (a conflict with a concurrent writer is `40001`, a
//! constraint `23505`/`23502`, as Postgres reports them at the statement). `ROLLBACK`
//! drops them. Statements inside the transaction read the last committed checkpoint with
//! the transaction's own table writes on top (read committed, as Postgres' default);
//! views show the transaction's writes once it commits. An error aborts the
//! transaction: every statement but `ROLLBACK` (or `ROLLBACK TO SAVEPOINT`) then fails
//! with `25P02`, and `COMMIT` rolls back. DDL is not transactional: inside a
//! transaction it runs (and commits) at once if the transaction has written nothing,
//! and is refused (`25001`) after a write.

use freshet_engine::coordinator::TableWrite;
use freshet_planner::parser::Stmt;
use freshet_planner::sqlparser::ast::{self, Statement};

use super::{command, BatchStream, Output, Session};
use crate::error::{Result, ServerError};

#[derive(Default)]
pub(super) struct Transaction {
    /// Table writes in the order they were made.
    writes: Vec<TableWrite>,
    /// Savepoints: name and how many writes were made before it.
    savepoints: Vec<(String, usize)>,
    /// An error happened: only a rollback may follow.
    failed: bool,
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
    pub(super) fn failing_transaction_on_error(&self, stream: BatchStream) -> BatchStream {
        use futures::StreamExt;
        let tx = self.tx.clone();
        Box::pin(stream.inspect(move |item| {
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

    /// Keeps a table write for the transaction's `COMMIT`; hands it back when there is no
    /// transaction (the caller sends it at once).
    pub(super) fn defer_write(&self, write: TableWrite) -> Option<TableWrite> {
        match self.tx().as_mut() {
            Some(t) => {
                t.writes.push(write);
                None
            }
            None => Some(write),
        }
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
        let mut tx = self.tx();
        if tx.is_some() {
            // Postgres warns and goes on.
            tracing::debug!("BEGIN inside a transaction block");
        } else {
            *tx = Some(Transaction::default());
        }
        Ok(Output::TxStart("BEGIN".into()))
    }

    pub(super) fn set_transaction(&self, modes: &[ast::TransactionMode]) -> Result<Output> {
        check_modes(modes)?;
        Ok(command("SET"))
    }

    pub(super) async fn commit(&self) -> Result<Output> {
        self.end_transaction_cursors();
        let Some(t) = self.tx().take() else {
            // Postgres warns "there is no transaction in progress" and succeeds.
            return Ok(Output::TxEnd("COMMIT".into()));
        };
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
            *self.tx() = None;
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
        let Some(i) = t.savepoints.iter().rposition(|(n, _)| *n == name) else {
            t.failed = true;
            return Err(ServerError::UndefinedSavepoint(name));
        };
        let at = t.savepoints[i].1;
        t.writes.truncate(at);
        t.savepoints.truncate(i + 1);
        t.failed = false;
        Ok(command("ROLLBACK"))
    }

    pub(super) fn savepoint(&self, name: &ast::Ident) -> Result<Output> {
        let mut tx = self.tx();
        let Some(t) = tx.as_mut() else {
            return Err(ServerError::NoActiveTransaction(
                "SAVEPOINT can only be used in transaction blocks".into(),
            ));
        };
        t.savepoints.push((super::ident_name(name), t.writes.len()));
        Ok(command("SAVEPOINT"))
    }

    pub(super) fn release(&self, name: &ast::Ident) -> Result<Output> {
        let name = super::ident_name(name);
        let mut tx = self.tx();
        let Some(t) = tx.as_mut() else {
            return Err(ServerError::NoActiveTransaction(
                "RELEASE SAVEPOINT can only be used in transaction blocks".into(),
            ));
        };
        let Some(i) = t.savepoints.iter().rposition(|(n, _)| *n == name) else {
            t.failed = true;
            return Err(ServerError::UndefinedSavepoint(name));
        };
        t.savepoints.truncate(i);
        Ok(command("RELEASE"))
    }
}
