//! The listener: accepts connections (at most `max_connections` at a time; more are
//! refused with SQLSTATE 53300), runs each on its own task, and shuts down gracefully:
//! stop accepting, let running statements finish, commit, exit.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use pgwire::tokio::TlsAcceptor;

use crate::auth::{AuthMethod, Authenticator};
use crate::config::Config;
use crate::connections::Connections;
use crate::handler::{Connection, TooManyConnections};
use crate::session::{Db, Session};

pub struct Server {
    db: Arc<Db>,
    listener: TcpListener,
    /// The HTTP port's listener (`/metrics`, the status page), if on.
    http: Option<TcpListener>,
    config: Config,
    auth: Arc<Authenticator>,
    tls: Option<TlsAcceptor>,
}

impl Server {
    /// Opens the data directory and binds the listen address.
    pub async fn bind(config: Config) -> Result<Server, String> {
        let engine_config = freshet_engine::coordinator::EngineConfig {
            checkpoint_interval: config.checkpoint_interval,
            view_threads: config.view_threads,
            dead_letters: freshet_engine::dead_letters::Policies::new(config.dead_letters),
        };
        if let Some(node) = config.node {
            tracing::info!(%node, "reading the partitions p of every topic with p mod {} = {}", node.count, node.index);
        }
        let db = Db::open(
            &config.data_dir,
            engine_config,
            config.limits(),
            config.node,
            config.streaming_parallelism,
        )
        .await
        .map_err(|e| {
            format!(
                "cannot open data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            (None, None) if config.tls_required => {
                return Err("--tls-required needs --tls-cert and --tls-key".into())
            }
            (None, None) => None,
            _ => return Err("TLS needs both --tls-cert and --tls-key".into()),
        };
        if config.auth == AuthMethod::Trust && !config.listen.ip().is_loopback() {
            tracing::warn!(listen = %config.listen, "authentication is off (--auth trust) on a non-loopback address: anyone who can reach it connects as any user without a password");
        }
        let auth = Arc::new(Authenticator::new(
            db.clone(),
            config.superuser_password.as_deref(),
            config.auth,
            config.tls_required,
            Connections::new(config.connection_limits()),
        ));
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let http = match config.http_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                format!("cannot listen on {addr} for HTTP (--http-listen ADDR:PORT, or off): {e}")
            })?),
            None => None,
        };
        Ok(Server {
            db,
            listener,
            http,
            config,
            auth,
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub fn db(&self) -> Arc<Db> {
        self.db.clone()
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), String> {
        let limit = Arc::new(Semaphore::new(self.config.max_connections));
        let http = self.http.take().map(|l| {
            if let Ok(a) = l.local_addr() {
                tracing::info!(http = %a, "metrics at http://{a}/metrics, status page at http://{a}/");
            }
            tokio::spawn(crate::http::serve(l, Arc::downgrade(&self.db)))
        });
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
                            let session = Session::new(self.db.clone());
                            let backend = session.backend().clone();
                            let handlers = Arc::new(Connection::new(session, self.auth.clone()));
                            let tls = self.tls.clone();
                            let limits = self.config.wire_limits();
                            tokio::spawn(async move {
                                use futures::FutureExt;
                                let conn = crate::wire::serve(socket, tls, handlers, limits, Some(backend));
                                match std::panic::AssertUnwindSafe(conn).catch_unwind().await {
                                    Ok(Ok(())) => {}
                                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                                    // Already logged by the panic hook.
                                    Err(_) => tracing::warn!(%peer, "connection closed after a panic"),
                                }
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            tracing::warn!(%peer, limit = self.config.max_connections, "connection refused: too many clients");
                            let limits = self.config.wire_limits();
                            let backends = self.db.backends.clone();
                            tokio::spawn(async move {
                                let _ = crate::wire::serve(socket, None, Arc::new(TooManyConnections(backends)), limits, None).await;
                            });
                        }
                    }
                }
            }
        }
        if let Some(h) = http {
            h.abort();
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

/// TLS from a PEM certificate chain and key.
fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use pgwire::tokio::tokio_rustls::rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
        ServerConfig,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key.display()))?;
    let mut cfg =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("TLS certificate and key: {e}"))?;
    // Postgres 17 clients with sslnegotiation=direct ask for this ALPN protocol.
    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
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
