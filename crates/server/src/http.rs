//! The HTTP port (default `127.0.0.1:6878`): `GET /metrics` (Prometheus text format),
//! `GET /` (the status page, see [`crate::status_page`]), `GET /healthz`, and
//! `POST /api/backup?to=DIR` (see [`crate::backup`]).

use std::convert::Infallible;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::session::Db;

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Serves the HTTP port until the database is gone.
pub async fn serve(listener: TcpListener, db: Weak<Db>) {
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if db.strong_count() == 0 {
            return;
        }
        let db = db.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let db = db.clone();
                async move { Ok::<_, Infallible>(route(req, db).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

async fn route(req: Request<Incoming>, db: Weak<Db>) -> Reply {
    let Some(db) = db.upgrade() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "shutting down\n",
        );
    };
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => {
            blocking(db, |db| {
                refresh_gauges(&db);
                match freshet_engine::metrics::metrics().encode() {
                    Ok(text) => reply(
                        StatusCode::OK,
                        "text/plain; version=0.0.4; charset=utf-8",
                        text,
                    ),
                    Err(e) => reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        e.to_string(),
                    ),
                }
            })
            .await
        }
        (&Method::GET, "/") | (&Method::GET, "/status") => {
            blocking(db, |db| {
                refresh_gauges(&db);
                reply(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    crate::status_page::render(&db),
                )
            })
            .await
        }
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::POST, "/api/backup") => {
            // A web page in a local browser can send this request too: browsers add an
            // Origin header to cross-site POSTs, `freshet backup` does not.
            if req.headers().contains_key(hyper::header::ORIGIN) {
                return reply(
                    StatusCode::FORBIDDEN,
                    "text/plain",
                    "cross-origin requests are refused\n",
                );
            }
            let Some(to) = param(&query, "to") else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "POST /api/backup?to=DIR\n",
                );
            };
            blocking(db, move |db| {
                match crate::backup::backup(&db, std::path::Path::new(&to)) {
                    Ok(b) => reply(StatusCode::OK, "application/json", b.to_json()),
                    Err(e) => reply(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
                }
            })
            .await
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /, /metrics\n",
        ),
    }
}

/// Runs `f` on a blocking thread (it reads RocksDB).
async fn blocking(db: Arc<Db>, f: impl FnOnce(Arc<Db>) -> Reply + Send + 'static) -> Reply {
    tokio::task::spawn_blocking(move || f(db))
        .await
        .unwrap_or_else(|e| {
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                e.to_string(),
            )
        })
}

/// Query parameter `key`, percent-decoded.
fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sets the gauges that describe stored state, from RocksDB's properties and estimates
/// and the views' counters (no scans).
pub fn refresh_gauges(db: &Db) {
    let m = freshet_engine::metrics::metrics();
    let store = db.store();
    for p in [
        "estimate-live-data-size",
        "total-sst-files-size",
        "cur-size-all-mem-tables",
        "estimate-pending-compaction-bytes",
        "num-running-compactions",
        "num-running-flushes",
        "estimate-num-keys",
    ] {
        if let Some(v) = store.property(&format!("rocksdb.{p}")) {
            m.rocksdb.with_label_values(&[p]).set(v as i64);
        }
    }
    if let Ok(st) = rustix::fs::statvfs(db.data_dir()) {
        m.disk_free_bytes
            .set((st.f_bavail.saturating_mul(st.f_frsize)) as i64);
        m.disk_total_bytes
            .set((st.f_blocks.saturating_mul(st.f_frsize)) as i64);
    }
    db.refresh_relation_gauges();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        assert_eq!(
            param("a=1&to=%2Ftmp%2Fb+c", "to").as_deref(),
            Some("/tmp/b c")
        );
        assert_eq!(param("a=1", "to"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
