//! The threads ad-hoc queries run on, apart from the runtime that serves connections.
//!
//! A query's DataFusion work is CPU-bound and yields rarely; on the serving runtime it
//! could hold every worker, so timers (`statement_timeout`) and other clients' messages
//! would wait for it. Here a query is a task of its own runtime: its caller waits on the
//! serving runtime, gives up at the deadline (`57014`) and aborts the task, and a
//! client that goes away aborts it too.

use std::future::Future;
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Result, ServerError};
use crate::session::BatchStream;

/// `f`'s output, or `Err(())` if `deadline` passes first.
async fn within<F: Future>(deadline: Option<Instant>, f: F) -> std::result::Result<F::Output, ()> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), f).await.map_err(|_| ()),
        None => Ok(f.await),
    }
}

fn timed_out() -> ServerError {
    ServerError::QueryCanceled("canceling statement due to statement timeout".into())
}

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

impl QueryPool {
    /// Runs `work` (planning, then a stream of batches) on the pool, and streams its
    /// batches to the caller as it takes them (two at a time: a slow client slows the
    /// query, it does not fill the server's memory), each passed through `fix`. Waits for
    /// the first batch, so that an error before any row is the statement's error. The
    /// query stops when the caller drops the stream, or with `57014` at `deadline`.
    pub async fn stream(
        &self,
        deadline: Option<Instant>,
        work: impl Future<Output = Result<SendableRecordBatchStream>> + Send + 'static,
        fix: impl Fn(RecordBatch) -> Result<RecordBatch> + Send + 'static,
    ) -> Result<BatchStream> {
        let rt = self.rt.as_ref().ok_or_else(|| ServerError::ShuttingDown)?;
        let (tx, mut rx) = mpsc::channel::<Result<RecordBatch>>(2);
        let task = rt.spawn(async move {
            let mut batches = match within(deadline, work).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Err(()) => {
                    let _ = tx.send(Err(timed_out())).await;
                    return;
                }
            };
            loop {
                let next = match within(deadline, batches.next()).await {
                    Ok(n) => n,
                    Err(()) => {
                        let _ = tx.send(Err(timed_out())).await;
                        return;
                    }
                };
                let Some(b) = next else { return };
                let b = b.map_err(ServerError::from).and_then(&fix);
                if tx.send(b).await.is_err() {
                    return;
                }
            }
        });
        let mut guard = AbortOnDrop(task);
        let first = match next_batch(&mut rx, &mut guard).await {
            Some(Err(e)) => return Err(e),
            Some(b) => b,
            // Done (the task has been joined: it must not be awaited again).
            None => return Ok(futures::stream::empty().boxed()),
        };
        let rest = futures::stream::unfold(Some((rx, guard)), |state| async move {
            let (mut rx, mut guard) = state?;
            match next_batch(&mut rx, &mut guard).await {
                Some(Err(e)) => Some((Err(e), None)),
                Some(b) => Some((b, Some((rx, guard)))),
                None => None,
            }
        });
        Ok(futures::stream::iter([first]).chain(rest).boxed())
    }
}

/// The next batch a streaming query's task sends; at the end of the channel, an error if
/// the task panicked (a query cut short must not look like a complete result).
async fn next_batch(
    rx: &mut mpsc::Receiver<Result<RecordBatch>>,
    task: &mut AbortOnDrop<()>,
) -> Option<Result<RecordBatch>> {
    if let Some(b) = rx.recv().await {
        return Some(b);
    }
    match (&mut task.0).await {
        Ok(()) => None,
        Err(e) if e.is_panic() => {
            let what = freshet_engine::panic_message(e.into_panic().as_ref());
            tracing::error!(panic = %what, "query panicked");
            Some(Err(ServerError::Internal(format!(
                "the query failed with an internal error ({what}); the server goes on"
            ))))
        }
        Err(_) => Some(Err(ServerError::QueryCanceled(
            "canceling statement".into(),
        ))),
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
