//! The listener: accepts connections (at most `max_connections` at a time; more are
//! refused with SQLSTATE 53300), runs each on its own task, and shuts down gracefully:
//! stop accepting, let running statements finish, commit, exit.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::handler::{Connection, TooManyConnections};
use crate::session::{Db, Session};

pub struct Server {
    db: Arc<Db>,
    listener: TcpListener,
    config: Config,
}

impl Server {
    /// Opens the data directory and binds the listen address.
    pub async fn bind(config: Config) -> Result<Server, String> {
        let engine_config = freshet_engine::coordinator::EngineConfig {
            checkpoint_interval: config.checkpoint_interval,
        };
        let db = Db::open(&config.data_dir, engine_config)
            .await
            .map_err(|e| {
                format!(
                    "cannot open data directory {}: {e}",
                    config.data_dir.display()
                )
            })?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        Ok(Server {
            db,
            listener,
            config,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub fn db(&self) -> Arc<Db> {
        self.db.clone()
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
        let limit = Arc::new(Semaphore::new(self.config.max_connections));
        tokio::pin!(shutdown);
        let mut backoff = 1u64;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => { backoff = 1; a }
                        Err(e) => {
                            // Out of file descriptors and the like: back off, don't spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(backoff)).await;
                            backoff = (backoff * 2).min(1000);
                            continue;
                        }
                    };
                    let _ = socket.set_nodelay(true);
                    match limit.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let handlers = Arc::new(Connection::new(Session::new(self.db.clone())));
                            tokio::spawn(async move {
                                if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                                }
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            tracing::warn!(%peer, limit = self.config.max_connections, "connection refused: too many clients");
                            tokio::spawn(async move {
                                let _ = pgwire::tokio::process_socket(socket, None, Arc::new(TooManyConnections)).await;
                            });
                        }
                    }
                }
            }
        }
        tracing::info!("shutting down: waiting for running statements");
        let _quiet = self.db.inflight.write().await;
        self.db
            .shutdown()
            .await
            .map_err(|e| format!("shutdown failed: {e}"))?;
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
