//! A sqllogictest database over the Postgres wire protocol, in either the simple or the
//! extended query protocol, talking to a [`TestServer`](crate::TestServer) it can restart.
//!
//! Directives understood in place of SQL (as `statement ok` records):
//! - `freshet:restart` — stop the server gracefully (SIGTERM) and start it again;
//! - `freshet:kill9` — `kill -9` the server and start it again.
//!
//! Every connection of the file reconnects after either.
//!
//! Logins (the connection's own: with `connection NAME` records, each named connection
//! logs in by itself):
//! - `freshet:connect USER [PASSWORD] [sslmode=disable|verify-full]` — this connection
//!   logs in again as USER; it fails with the server's SQLSTATE (`28P01`, `28000`,
//!   `53300`, …) and then stays as it was. `verify-full` uses TLS and trusts the
//!   certificate the runner made for the file (`# freshet-args: --tls …`).
//!
//! Kafka (a real Tansu broker, started on first use for the file):
//! - `${KAFKA}` anywhere in SQL is replaced by the broker's `host:port`;
//! - `freshet:create_topic NAME PARTITIONS` creates a topic;
//! - `freshet:produce TOPIC [partition=N] [key=K]` followed by one message per line
//!   produces them (a line `<null>` is a message with a null value).
//!
//! COPY and cancel (what sqllogictest has no record for):
//! - `freshet:copy_in COPY … FROM STDIN …` followed by the data, one line per line,
//!   sends the lines over the COPY protocol (`statement ok` / `statement error`);
//! - `freshet:copy_out COPY … TO STDOUT …` returns the lines the server sends, each as
//!   one value with its tabs shown as spaces (`query T`);
//! - `freshet:cancel_after MS SQL` runs SQL and sends a CancelRequest after MS
//!   milliseconds (`statement error 57014` when it was still running).
//!
//! Results: values of a column named `freshet_timestamp` (a `SUBSCRIBE`'s checkpoint
//! timestamps, which differ from run to run) read as `<ts>`.

/// A `SUBSCRIBE`'s timestamp column (masked in results).
const TIMESTAMP_COLUMN: &str = "freshet_timestamp";

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::TestServer;

/// Which wire protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Simple,
    Extended,
}

/// The server shared by all connections of one test file.
pub struct SharedServer {
    server: Mutex<TestServer>,
    generation: AtomicU64,
    kafka: Mutex<Option<crate::KafkaBroker>>,
    /// The server's TLS certificate (PEM), when it has TLS.
    ca: Option<String>,
}

impl SharedServer {
    pub fn new(server: TestServer) -> Arc<SharedServer> {
        Self::with_tls(server, None)
    }

    /// A server with TLS on, whose certificate (a PEM file) clients trust.
    pub fn with_tls(server: TestServer, ca: Option<String>) -> Arc<SharedServer> {
        Arc::new(SharedServer {
            server: Mutex::new(server),
            generation: AtomicU64::new(0),
            kafka: Mutex::new(None),
            ca,
        })
    }

    fn port(&self) -> u16 {
        self.server.lock().expect("server lock").port
    }

    /// Runs `f` with the file's broker, starting it on first use.
    pub fn with_kafka<R>(&self, f: impl FnOnce(&crate::KafkaBroker) -> R) -> R {
        let mut k = self.kafka.lock().expect("kafka lock");
        f(k.get_or_insert_with(crate::KafkaBroker::start))
    }

    pub fn conn_str(&self) -> String {
        self.server.lock().expect("server lock").conn_str()
    }

    pub fn log(&self) -> String {
        self.server.lock().expect("server lock").log()
    }
}

#[derive(Debug)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        // Render as "<SQLSTATE>: <message>" so that `statement error 42P01` style
        // expectations check the code, and message regexes still match.
        match e.as_db_error() {
            Some(db) => DbError(format!("{}: {}", db.code().code(), db.message())),
            None => DbError(e.to_string()),
        }
    }
}

impl DbError {
    /// The SQLSTATE of a server error (the text before the first `:`).
    pub fn sqlstate(&self) -> &str {
        self.0.split(':').next().unwrap_or("")
    }
}

/// The SQLSTATE `sql` fails with, or `"ok"`.
pub async fn sqlstate_of(c: &Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(_) => "ok".into(),
        Err(e) => DbError::from(e).sqlstate().to_string(),
    }
}

pub async fn connect(conn_str: &str) -> Result<Client, DbError> {
    let (client, conn) = tokio_postgres::connect(conn_str, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Who a connection logs in as, and how.
#[derive(Clone, Debug)]
pub struct Login {
    pub user: String,
    pub password: Option<String>,
    pub tls: bool,
}

impl Login {
    /// The bootstrap superuser from loopback, without a password or TLS.
    fn superuser() -> Login {
        Login {
            user: "freshet".into(),
            password: None,
            tls: false,
        }
    }

    /// `USER [PASSWORD] [sslmode=disable|verify-full]`.
    fn parse(words: &str) -> Result<Login, DbError> {
        let mut login = Login::superuser();
        let mut it = words.split_whitespace();
        login.user = it
            .next()
            .ok_or_else(|| DbError("freshet:connect needs a user".into()))?
            .to_string();
        for w in it {
            match w.strip_prefix("sslmode=") {
                Some("disable") => login.tls = false,
                Some("verify-full") => login.tls = true,
                Some(other) => return Err(DbError(format!("unknown sslmode {other}"))),
                None => login.password = Some(w.to_string()),
            }
        }
        Ok(login)
    }
}

/// A client logged in as `login` to `shared`'s server.
pub async fn connect_as(shared: &SharedServer, login: &Login) -> Result<Client, DbError> {
    let mut conf = format!(
        "host=127.0.0.1 port={} user={} dbname=freshet",
        shared.port(),
        login.user
    );
    if let Some(p) = &login.password {
        conf.push_str(&format!(
            " password='{}'",
            p.replace('\\', "\\\\").replace('\'', "\\'")
        ));
    }
    if !login.tls {
        conf.push_str(" sslmode=disable");
        return connect(&conf).await;
    }
    let ca = shared
        .ca
        .as_ref()
        .ok_or_else(|| DbError("sslmode=verify-full needs a file with --tls".into()))?;
    conf.push_str(" sslmode=require");
    let (client, conn) = tokio_postgres::connect(&conf, tls_connector(ca)?).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// TLS that trusts only the certificate in PEM file `ca` (and checks the host name).
fn tls_connector(ca: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| DbError(e.to_string()))? {
        roots
            .add(cert.map_err(|e| DbError(e.to_string()))?)
            .map_err(|e| DbError(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| DbError(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// One sqllogictest connection. It connects on its first statement, so a named
/// connection whose first record is `freshet:connect` never holds a superuser's
/// connection (which would count against the server's connection limits).
pub struct FreshetDb {
    shared: Arc<SharedServer>,
    client: Option<Client>,
    generation: u64,
    protocol: Protocol,
    login: Login,
}

impl FreshetDb {
    pub async fn connect(shared: Arc<SharedServer>, protocol: Protocol) -> Result<Self, DbError> {
        let generation = shared.generation.load(Ordering::SeqCst);
        // On a server with TLS, connections use it unless they log in without.
        let login = Login {
            tls: shared.ca.is_some(),
            ..Login::superuser()
        };
        Ok(FreshetDb {
            shared,
            client: None,
            generation,
            protocol,
            login,
        })
    }

    /// The client, connecting first if needed.
    async fn client(&mut self) -> Result<&Client, DbError> {
        if self.client.is_none() {
            self.client = Some(connect_as(&self.shared, &self.login).await?);
        }
        self.client
            .as_ref()
            .ok_or_else(|| DbError("not connected".into()))
    }

    async fn restart(&mut self, kill9: bool) -> Result<(), DbError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = shared.server.lock().expect("server lock");
            if kill9 {
                s.kill9_restart();
            } else {
                s.restart();
            }
            shared.generation.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .map_err(|e| DbError(format!("restart task failed: {e}")))?;
        self.reconnect().await
    }

    async fn reconnect(&mut self) -> Result<(), DbError> {
        self.generation = self.shared.generation.load(Ordering::SeqCst);
        self.client = Some(connect_as(&self.shared, &self.login).await?);
        Ok(())
    }

    async fn run_simple(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let msgs = self.client().await?.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut ncols = None;
        let mut affected = 0;
        for m in msgs {
            match m {
                SimpleQueryMessage::RowDescription(desc) => ncols = Some(desc.len()),
                SimpleQueryMessage::Row(r) => {
                    ncols = Some(r.len());
                    rows.push(
                        (0..r.len())
                            .map(|i| match r.get(i) {
                                _ if r.columns()[i].name() == TIMESTAMP_COLUMN => "<ts>".into(),
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => affected = n,
                _ => {}
            }
        }
        Ok(match ncols {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(affected),
        })
    }

    async fn run_extended(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let client = self.client().await?;
        let stmt = client.prepare(sql).await?;
        if stmt.columns().is_empty() {
            let n = client.execute(&stmt, &[]).await?;
            return Ok(DBOutput::StatementComplete(n));
        }
        let rows = client.query(&stmt, &[]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut cells = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                cells.push(if col.name() == TIMESTAMP_COLUMN {
                    "<ts>".into()
                } else {
                    binary_cell_to_text(row, i, col.type_())?
                });
            }
            out.push(cells);
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; stmt.columns().len()],
            rows: out,
        })
    }
}

#[async_trait::async_trait]
impl AsyncDB for FreshetDb {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let trimmed = sql.trim();
        if let Some(rest) = trimmed.strip_prefix("freshet:connect ") {
            let login = Login::parse(rest.trim_end_matches(';'))?;
            // The old login's connection goes first (it would hold a slot).
            self.client = None;
            self.client = Some(connect_as(&self.shared, &login).await?);
            self.login = login;
            return Ok(DBOutput::StatementComplete(0));
        }
        if let Some(rest) = trimmed.strip_prefix("freshet:create_topic") {
            let mut it = rest.split_whitespace();
            let name = it
                .next()
                .ok_or_else(|| DbError("create_topic needs a name".into()))?
                .to_string();
            let parts: u32 = it
                .next()
                .unwrap_or("1")
                .parse()
                .map_err(|_| DbError("bad partition count".into()))?;
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || {
                shared.with_kafka(|k| k.create_topic(&name, parts))
            })
            .await
            .map_err(|e| DbError(e.to_string()))?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if let Some(rest) = trimmed.strip_prefix("freshet:produce") {
            let mut lines = rest.lines();
            let header = lines.next().unwrap_or_default();
            let mut words = header.split_whitespace();
            let topic = words
                .next()
                .ok_or_else(|| DbError("produce needs a topic".into()))?
                .to_string();
            let mut partition = None;
            let mut key = None;
            for w in words {
                if let Some(p) = w.strip_prefix("partition=") {
                    partition = Some(
                        p.parse::<i32>()
                            .map_err(|_| DbError("bad partition".into()))?,
                    );
                } else if let Some(k) = w.strip_prefix("key=") {
                    key = Some(k.to_string());
                } else {
                    return Err(DbError(format!("unknown produce option {w}")));
                }
            }
            let payloads: Vec<Option<Vec<u8>>> = lines
                .map(|l| {
                    if l == "<null>" {
                        None
                    } else {
                        Some(l.as_bytes().to_vec())
                    }
                })
                .collect();
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || {
                shared.with_kafka(|k| k.produce(&topic, partition, key.as_deref(), &payloads))
            })
            .await
            .map_err(|e| DbError(e.to_string()))?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if let Some(rest) = trimmed.strip_prefix("freshet:copy_in ") {
            let (stmt, data) = rest.split_once('\n').unwrap_or((rest, ""));
            let mut bytes = data.to_string();
            if !bytes.is_empty() && !bytes.ends_with('\n') {
                bytes.push('\n');
            }
            let client = self.client().await?;
            let sink = client
                .copy_in::<_, std::io::Cursor<Vec<u8>>>(stmt.trim())
                .await?;
            futures::pin_mut!(sink);
            use futures::SinkExt;
            sink.send(std::io::Cursor::new(bytes.into_bytes())).await?;
            let n = sink.as_mut().finish().await?;
            return Ok(DBOutput::StatementComplete(n));
        }
        if let Some(stmt) = trimmed.strip_prefix("freshet:copy_out ") {
            use futures::StreamExt;
            let client = self.client().await?;
            let stream = client.copy_out(stmt.trim()).await?;
            futures::pin_mut!(stream);
            let mut text = Vec::new();
            while let Some(chunk) = stream.next().await {
                text.extend_from_slice(&chunk?);
            }
            let rows: Vec<Vec<String>> = String::from_utf8_lossy(&text)
                .lines()
                .map(|l| {
                    vec![if l.is_empty() {
                        "(empty)".to_string()
                    } else {
                        l.replace('\t', " ")
                    }]
                })
                .collect();
            return Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any],
                rows,
            });
        }
        if let Some(rest) = trimmed.strip_prefix("freshet:cancel_after ") {
            let (ms, stmt) = rest
                .trim()
                .split_once(char::is_whitespace)
                .ok_or_else(|| DbError("cancel_after needs MS and SQL".into()))?;
            let ms: u64 = ms
                .parse()
                .map_err(|_| DbError(format!("bad cancel_after delay {ms}")))?;
            if self.login.tls {
                return Err(DbError(
                    "cancel_after needs a connection without TLS".into(),
                ));
            }
            let client = self.client().await?;
            let token = client.cancel_token();
            let canceler = tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                let _ = token.cancel_query(NoTls).await;
            });
            let res = client.simple_query(stmt).await;
            canceler.abort();
            return match res {
                Ok(_) => Ok(DBOutput::StatementComplete(0)),
                Err(e) => Err(e.into()),
            };
        }
        let owned;
        let sql = if sql.contains("${KAFKA}") {
            let shared = self.shared.clone();
            let addr = tokio::task::spawn_blocking(move || shared.with_kafka(|k| k.addr()))
                .await
                .map_err(|e| DbError(e.to_string()))?;
            owned = sql.replace("${KAFKA}", &addr);
            owned.as_str()
        } else {
            sql
        };
        match sql.trim().trim_end_matches(';') {
            "freshet:restart" => {
                self.restart(false).await?;
                return Ok(DBOutput::StatementComplete(0));
            }
            "freshet:kill9" => {
                self.restart(true).await?;
                return Ok(DBOutput::StatementComplete(0));
            }
            _ => {}
        }
        if self.generation != self.shared.generation.load(Ordering::SeqCst) {
            self.reconnect().await?;
        }
        match self.protocol {
            Protocol::Simple => self.run_simple(sql).await,
            Protocol::Extended => self.run_extended(sql).await,
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "freshet"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await
    }

    async fn run_command(
        mut command: std::process::Command,
    ) -> std::io::Result<std::process::Output> {
        tokio::task::spawn_blocking(move || command.output())
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Raw bytes of a value, for types tokio-postgres does not decode itself.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// Renders a binary-format value the way the server renders it in text format, so that
/// the same `.slt` expectations hold in both protocols.
fn binary_cell_to_text(row: &tokio_postgres::Row, i: usize, ty: &Type) -> Result<String, DbError> {
    let raw = row
        .try_get::<_, Option<Raw>>(i)
        .map_err(|e| DbError(format!("decoding column {i}: {e}")))?;
    Ok(match raw {
        None => "NULL".to_string(),
        Some(raw) => match binary_text(ty, &raw.0)
            .map_err(|e| DbError(format!("decoding column {i}: {}", e.0)))?
        {
            s if s.is_empty() => "(empty)".to_string(),
            s => s,
        },
    })
}

/// One binary value (not NULL) of type `ty` in the server's text form.
fn binary_text(ty: &Type, raw: &[u8]) -> Result<String, DbError> {
    fn get<'a, T: FromSql<'a>>(ty: &Type, raw: &'a [u8]) -> Result<Option<T>, DbError> {
        T::from_sql(ty, raw)
            .map(Some)
            .map_err(|e| DbError(format!("{ty}: {e}")))
    }
    let s = match *ty {
        Type::BOOL => get::<bool>(ty, raw)?.map(|b| if b { "t" } else { "f" }.to_string()),
        Type::INT2 => get::<i16>(ty, raw)?.map(|v| v.to_string()),
        Type::INT4 => get::<i32>(ty, raw)?.map(|v| v.to_string()),
        Type::INT8 => get::<i64>(ty, raw)?.map(|v| v.to_string()),
        Type::FLOAT4 => get::<f32>(ty, raw)?.map(|v| format!("{v}")),
        Type::FLOAT8 => get::<f64>(ty, raw)?.map(format_float),
        Type::DATE => get::<NaiveDate>(ty, raw)?.map(|v| v.format("%Y-%m-%d").to_string()),
        Type::TIMESTAMP => get::<NaiveDateTime>(ty, raw)?.map(|v| format_timestamp(&v)),
        Type::TIMESTAMPTZ => get::<DateTime<Utc>>(ty, raw)?
            .map(|v| format!("{}+00", format_timestamp(&v.naive_utc()))),
        Type::NUMERIC => get::<Raw>(ty, raw)?
            .map(|r| decode_numeric(&r.0))
            .transpose()?,
        Type::INTERVAL => get::<Raw>(ty, raw)?
            .map(|r| decode_interval(&r.0))
            .transpose()?,
        // Binary jsonb: a version byte (1), then the text.
        Type::JSONB => get::<Raw>(ty, raw)?
            .map(|r| match r.0.split_first() {
                Some((1, text)) => Ok(String::from_utf8_lossy(text).into_owned()),
                _ => Err(DbError("a jsonb value without version 1".into())),
            })
            .transpose()?,
        Type::OID | Type::REGCLASS | Type::REGTYPE | Type::REGPROC => {
            get::<u32>(ty, raw)?.map(|v| v.to_string())
        }
        // Arrays as Postgres prints them: `{a,"b c",NULL}`.
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::NAME_ARRAY => {
            get::<Vec<Option<String>>>(ty, raw)?.map(|v| {
                array_text(
                    v.into_iter()
                        .map(|e| e.map_or_else(|| "NULL".into(), |s| quoted_element(&s))),
                )
            })
        }
        // bytea as Postgres prints it (`bytea_output = hex`).
        Type::BYTEA => get::<Vec<u8>>(ty, raw)?.map(|b| {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("\\x{hex}")
        }),
        Type::INT2_ARRAY => get::<Vec<Option<i16>>>(ty, raw)?.map(|v| {
            array_text(
                v.into_iter()
                    .map(|e| e.map_or("NULL".into(), |n| n.to_string())),
            )
        }),
        Type::INT4_ARRAY => get::<Vec<Option<i32>>>(ty, raw)?.map(|v| {
            array_text(
                v.into_iter()
                    .map(|e| e.map_or("NULL".into(), |n| n.to_string())),
            )
        }),
        Type::INT8_ARRAY => get::<Vec<Option<i64>>>(ty, raw)?.map(|v| {
            array_text(
                v.into_iter()
                    .map(|e| e.map_or("NULL".into(), |n| n.to_string())),
            )
        }),
        Type::OID_ARRAY => get::<Vec<Option<u32>>>(ty, raw)?.map(|v| {
            array_text(
                v.into_iter()
                    .map(|e| e.map_or("NULL".into(), |n| n.to_string())),
            )
        }),
        // A record: the field count, then each field's type OID, length (-1: NULL) and
        // bytes; printed as `record_out` does.
        Type::RECORD => Some(record_text(raw)?),
        Type::RECORD_ARRAY => Some(array_of_records_text(raw)?),
        _ => get::<String>(ty, raw)?,
    };
    Ok(s.unwrap_or_default())
}

/// A one-dimensional binary array of records: ndim, has-nulls, element OID, length,
/// lower bound, then each element's length (-1: NULL) and bytes.
fn array_of_records_text(raw: &[u8]) -> Result<String, DbError> {
    let short = || DbError("short array".into());
    let word = |at: usize| -> Result<i32, DbError> {
        raw.get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(short)
    };
    if word(0)? == 0 {
        return Ok("{}".into());
    }
    let n = word(12)?;
    let mut at = 20;
    let mut items = Vec::new();
    for _ in 0..n {
        let len = word(at)?;
        at += 4;
        if len < 0 {
            items.push("NULL".to_string());
            continue;
        }
        let bytes = raw.get(at..at + len as usize).ok_or_else(short)?;
        at += len as usize;
        items.push(quoted_element(&record_text(bytes)?));
    }
    Ok(array_text(items.into_iter()))
}

fn record_text(raw: &[u8]) -> Result<String, DbError> {
    let short = || DbError("short record".into());
    let word = |at: usize| -> Result<[u8; 4], DbError> {
        raw.get(at..at + 4)
            .map(|b| [b[0], b[1], b[2], b[3]])
            .ok_or_else(short)
    };
    let n = i32::from_be_bytes(word(0)?);
    let mut at = 4;
    let mut parts = Vec::new();
    for _ in 0..n {
        let oid = u32::from_be_bytes(word(at)?);
        let len = i32::from_be_bytes(word(at + 4)?);
        at += 8;
        if len < 0 {
            parts.push(String::new());
            continue;
        }
        let bytes = raw.get(at..at + len as usize).ok_or_else(short)?;
        at += len as usize;
        let fty = Type::from_oid(oid).ok_or_else(|| DbError(format!("record field type {oid}")))?;
        let t = binary_text(&fty, bytes)?;
        let plain = !t.is_empty()
            && !t
                .chars()
                .any(|c| matches!(c, ',' | '(' | ')' | '"' | '\\') || c.is_whitespace());
        parts.push(if plain {
            t
        } else {
            format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\"\""))
        });
    }
    Ok(format!("({})", parts.join(",")))
}

/// A text array element as Postgres prints it: quoted when empty, `NULL`-like, or holding
/// a character that separates or quotes.
fn quoted_element(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.eq_ignore_ascii_case("null")
        && !s
            .chars()
            .any(|c| matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace());
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn array_text(items: impl Iterator<Item = String>) -> String {
    format!("{{{}}}", items.collect::<Vec<_>>().join(","))
}

/// Postgres' timestamp output: fractional seconds only when non-zero, without trailing zeros.
fn format_timestamp(t: &NaiveDateTime) -> String {
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = t.and_utc().timestamp_subsec_micros();
    if micros != 0 {
        let f = format!("{micros:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

/// Postgres' float output (shortest round-trip digits, exponent for very large/small).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e15).contains(&a) {
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{v}")
    }
}

fn be_i16(b: &[u8], at: usize) -> Result<i16, DbError> {
    b.get(at..at + 2)
        .map(|s| i16::from_be_bytes([s[0], s[1]]))
        .ok_or_else(|| DbError("short numeric".into()))
}

/// Decodes Postgres' binary NUMERIC into its text form.
fn decode_numeric(b: &[u8]) -> Result<String, DbError> {
    let ndigits = be_i16(b, 0)? as usize;
    let weight = be_i16(b, 2)? as i32;
    let sign = be_i16(b, 4)? as u16;
    let dscale = be_i16(b, 6)? as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let mut digits = Vec::with_capacity(ndigits);
    for k in 0..ndigits {
        digits.push(be_i16(b, 8 + 2 * k)? as i32);
    }
    let mut int_part = String::new();
    for w in 0..=weight.max(-1) {
        let d = digits.get(w as usize).copied().unwrap_or(0);
        if int_part.is_empty() {
            if d != 0 || w == weight {
                int_part = d.to_string();
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part = "0".into();
    }
    let mut frac = String::new();
    let mut idx = weight + 1;
    while frac.len() < dscale {
        let d = if idx < 0 {
            0
        } else {
            digits.get(idx as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{d:04}"));
        idx += 1;
    }
    frac.truncate(dscale);
    let neg = if sign == 0x4000 { "-" } else { "" };
    Ok(if dscale > 0 {
        format!("{neg}{int_part}.{frac}")
    } else {
        format!("{neg}{int_part}")
    })
}

/// Decodes Postgres' binary INTERVAL into the `postgres` output style.
fn decode_interval(b: &[u8]) -> Result<String, DbError> {
    if b.len() < 16 {
        return Err(DbError("short interval".into()));
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[0..8]);
    let micros = i64::from_be_bytes(a);
    let days = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    let months = i32::from_be_bytes([b[12], b[13], b[14], b[15]]);
    Ok(format_interval(months, days, micros))
}

/// Postgres' `postgres`-style interval output, e.g. `1 year 2 mons 3 days 04:05:06`.
pub fn format_interval(months: i32, days: i32, micros: i64) -> String {
    let mut parts = Vec::new();
    let years = months / 12;
    let mons = months % 12;
    let plural = |n: i64, one: &str, many: &str| {
        if n == 1 || n == -1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    if years != 0 {
        parts.push(plural(years as i64, "year", "years"));
    }
    if mons != 0 {
        parts.push(plural(mons as i64, "mon", "mons"));
    }
    if days != 0 {
        parts.push(plural(days as i64, "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let neg = micros < 0;
        let m = micros.unsigned_abs();
        let secs = m / 1_000_000;
        let frac = m % 1_000_000;
        let mut t = format!(
            "{}{:02}:{:02}:{:02}",
            if neg { "-" } else { "" },
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        );
        if frac != 0 {
            let f = format!("{frac:06}");
            t.push('.');
            t.push_str(f.trim_end_matches('0'));
        }
        parts.push(t);
    }
    parts.join(" ")
}
