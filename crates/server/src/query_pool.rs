//! The threads ad-hoc queries run on, apart from the runtime that serves connections.
//!
//! A query's DataFusion work is CPU-bound and yields rarely; on the serving runtime it
//! could hold every worker, so timers (`statement_timeout`) and other clients' messages
//! would wait for it. Here a query is a task of its own runtime: its caller waits on the
//! serving runtime, gives up at the deadline (`57014`) and aborts the task, and a
//! client that goes away aborts it too.

use std::future::Future;
use std::time::Instant;

use tokio::task::JoinHandle;

use crate::error::{Result, ServerError};

pub struct QueryPool {
    rt: Option<tokio::runtime::Runtime>,
}

/// Aborts the task when dropped (the statement ended, or its client went away).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl QueryPool {
    /// A pool of `threads` workers.
    pub fn new(threads: usize) -> std::io::Result<QueryPool> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("freshet-query")
            .thread_stack_size(crate::STACK_SIZE)
            .enable_all()
            .build()?;
        Ok(QueryPool { rt: Some(rt) })
    }

    /// Runs `work` on the pool until it ends or `deadline` passes.
    pub async fn run<T: Send + 'static>(
        &self,
        deadline: Option<Instant>,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let rt = self.rt.as_ref().ok_or_else(|| ServerError::ShuttingDown)?;
        let mut task = AbortOnDrop(rt.spawn(work));
        let joined = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), &mut task.0).await {
                Ok(j) => j,
                Err(_) => {
                    return Err(ServerError::QueryCanceled(
                        "canceling statement due to statement timeout".into(),
                    ))
                }
            },
            None => (&mut task.0).await,
        };
        match joined {
            Ok(res) => res,
            Err(e) if e.is_panic() => {
                let what = freshet_engine::panic_message(e.into_panic().as_ref());
                tracing::error!(panic = %what, "query panicked");
                Err(ServerError::Internal(format!(
                    "the query failed with an internal error ({what}); the server goes on"
                )))
            }
            Err(_) => Err(ServerError::QueryCanceled("canceling statement".into())),
        }
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        // Dropped from within the serving runtime: its threads must not be joined here.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
