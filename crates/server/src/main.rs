//! The `freshet` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use freshet_server::config::{
    setting_age, setting_bytes, setting_duration, setting_rows, Config, FileConfig,
};
use freshet_server::server::{shutdown_signal, Server};

/// The engine allocates and frees many small buffers per row (keys, values, scalar
/// values); glibc's allocator spent close to half of a windowed aggregate's time there
/// (docs/benchmarks.md), mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "freshet",
    version,
    about = "Freshet: a streaming SQL database that speaks Postgres"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format: text, json or logfmt.
    #[arg(
        long,
        global = true,
        env = "FRESHET_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: String,
    /// Log level or filter (error, warn, info, debug, trace, or e.g.
    /// `info,freshet_engine=debug`); RUST_LOG also works.
    #[arg(long, global = true, env = "FRESHET_LOG_LEVEL")]
    log_level: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Run a server on a temporary data directory with built-in demo data and views.
    Playground {
        /// Address to listen on.
        #[arg(long, env = "FRESHET_LISTEN", default_value = "127.0.0.1:6877")]
        listen: SocketAddr,
        /// Plays generated per second (impressions: three times as many).
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// The HTTP port (metrics, status page), or off.
        #[arg(long, env = "FRESHET_HTTP_LISTEN", default_value = "127.0.0.1:6878")]
        http_listen: String,
    },
    /// Back up a running server's database to a new directory (a consistent RocksDB
    /// checkpoint), through its HTTP port.
    Backup {
        /// The directory to create (absent or empty; made absolute).
        #[arg(long)]
        to: PathBuf,
        /// The server's HTTP port.
        #[arg(long, env = "FRESHET_HTTP_LISTEN", default_value = "127.0.0.1:6878")]
        http: SocketAddr,
    },
    /// Make a new data directory from a backup; start the server on it to resume every
    /// view from the backup's offsets.
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
        /// The data directory to create (absent or empty).
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on for Postgres clients [default: 127.0.0.1:6877].
    #[arg(long, env = "FRESHET_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the HTTP port (GET /metrics, the status page at /, backups), or off
    /// [default: 127.0.0.1:6878].
    #[arg(long, env = "FRESHET_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// Data directory (created if missing) [default: ./freshet-data].
    #[arg(long, env = "FRESHET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML file with any of: listen, data_dir, max_connections, checkpoint_interval_ms.
    /// Flags and environment variables override it.
    #[arg(long, env = "FRESHET_CONFIG")]
    config: Option<PathBuf>,
    /// Maximum concurrent client connections; more are refused (SQLSTATE 53300) [default: 100].
    #[arg(long, env = "FRESHET_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Checkpoint interval in milliseconds [default: 1000].
    #[arg(long, env = "FRESHET_CHECKPOINT_INTERVAL_MS")]
    checkpoint_interval_ms: Option<u64>,
    /// The most windows a HOP may put one row into (size / slide); larger HOPs are refused
    /// (SQLSTATE 22023) [default: 1000].
    #[arg(long, env = "FRESHET_MAX_HOP_WINDOWS")]
    max_hop_windows: Option<u64>,
    /// Memory one query may use, e.g. 512MB or 2GB; past it the query spills where it can
    /// and fails with SQLSTATE 53200 where it cannot [default: 1GB].
    #[arg(long, env = "FRESHET_QUERY_MEMORY_LIMIT")]
    query_memory_limit: Option<String>,
    /// How users without a password authenticate: scram (refused), md5 (refused) or
    /// trust (let in). Users with a password always give it (SCRAM, or MD5 with md5), and
    /// the bootstrap superuser `freshet` without a password may connect from loopback
    /// [default: scram].
    #[arg(long, env = "FRESHET_AUTH")]
    auth: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key, TLS is offered.
    #[arg(long, env = "FRESHET_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "FRESHET_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS (SQLSTATE 28000).
    #[arg(long, env = "FRESHET_TLS_REQUIRED")]
    tls_required: bool,
    /// Time a client has from connecting to finishing authentication, e.g. 30s [default: 1min].
    #[arg(long, env = "FRESHET_AUTH_TIMEOUT")]
    auth_timeout: Option<String>,
    /// The longest message a client may send, e.g. 16MB; a longer one ends the connection
    /// (SQLSTATE 08P01) [default: 64MB].
    #[arg(long, env = "FRESHET_MAX_MESSAGE_SIZE")]
    max_message_size: Option<String>,
    /// Connections a user without a CONNECTION LIMIT of its own may hold (SQLSTATE 53300
    /// beyond) [default: no limit].
    #[arg(long, env = "FRESHET_MAX_CONNECTIONS_PER_USER")]
    max_connections_per_user: Option<u32>,
    /// Connection slots (of --max-connections) only superusers may take [default: 3].
    #[arg(long, env = "FRESHET_SUPERUSER_RESERVED_CONNECTIONS")]
    superuser_reserved_connections: Option<usize>,
    /// How long dead letters (late_events, source_errors) are kept per source, e.g. 3d,
    /// or none; a source's dead_letter_retention option overrides it [default: 7d].
    #[arg(long, env = "FRESHET_DEAD_LETTER_RETENTION")]
    dead_letter_retention: Option<String>,
    /// How many dead letters are kept per source and table, or none; a source's
    /// dead_letter_max_rows option overrides it [default: 100000].
    #[arg(long, env = "FRESHET_DEAD_LETTER_MAX_ROWS")]
    dead_letter_max_rows: Option<String>,
    /// This process is node i of N (e.g. 0/2): it reads the partitions p of every Kafka
    /// topic with p mod N = i, and so keeps the views' state for the keys in them
    /// (docs/scale-out.md) [default: all partitions].
    #[arg(long, env = "FRESHET_NODE")]
    node: Option<String>,
    /// Threads that apply the source batches of different views side by side (views that
    /// read only sources and that nothing else reads); 1 applies everything on the
    /// coordinator thread [default: the number of cores].
    #[arg(long, env = "FRESHET_VIEW_THREADS")]
    view_threads: Option<usize>,
    /// The threads a new view's keyed stateful operators (grouped aggregates, equi-joins,
    /// partitioned top-N) run on, and by default the shards their state is split into; a
    /// session's `SET streaming_parallelism` overrides it (and `SET
    /// streaming_max_parallelism` the shards), `ALTER MATERIALIZED VIEW … SET PARALLELISM`
    /// changes a view's, up to its shards [default: the number of cores, at most 64].
    #[arg(long, env = "FRESHET_STREAMING_PARALLELISM")]
    streaming_parallelism: Option<usize>,
}

impl ServeArgs {
    fn config(self) -> Result<Config, String> {
        let mut c = Config::default();
        if let Some(path) = &self.config {
            FileConfig::load(path)?.apply(&mut c)?;
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = &self.http_listen {
            c.http_listen = freshet_server::config::parse_http_listen(v)?;
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.checkpoint_interval_ms {
            c.checkpoint_interval = Duration::from_millis(v.max(1));
        }
        if let Some(v) = self.max_hop_windows {
            c.max_hop_windows = v;
        }
        if let Some(v) = &self.auth {
            c.auth = freshet_server::auth::AuthMethod::parse(v)?;
        }
        // Only from the environment (or the TOML file): a flag would show in `ps`.
        if let Ok(p) = std::env::var("FRESHET_SUPERUSER_PASSWORD") {
            c.superuser_password = Some(p);
        }
        if self.tls_cert.is_some() {
            c.tls_cert = self.tls_cert.clone();
        }
        if self.tls_key.is_some() {
            c.tls_key = self.tls_key.clone();
        }
        if self.tls_required {
            c.tls_required = true;
        }
        if let Some(v) = &self.query_memory_limit {
            c.query_memory_limit = setting_bytes("--query-memory-limit", v)?;
        }
        if let Some(v) = &self.max_message_size {
            c.max_message_size = setting_bytes("--max-message-size", v)?;
        }
        if let Some(v) = &self.auth_timeout {
            c.auth_timeout = setting_duration("--auth-timeout", v)?;
        }
        if let Some(v) = self.max_connections_per_user {
            c.max_connections_per_user = Some(v);
        }
        if let Some(v) = self.superuser_reserved_connections {
            c.superuser_reserved_connections = v;
        }
        if let Some(v) = &self.dead_letter_retention {
            c.dead_letters.max_age_micros = setting_age("--dead-letter-retention", v)?;
        }
        if let Some(v) = &self.dead_letter_max_rows {
            c.dead_letters.max_rows = setting_rows("--dead-letter-max-rows", v)?;
        }
        if let Some(v) = &self.node {
            c.node = Some(freshet_server::node::Node::parse(v)?);
        }
        if let Some(v) = self.view_threads {
            c.view_threads = v.max(1);
        }
        if let Some(v) = self.streaming_parallelism {
            c.streaming_parallelism =
                freshet_server::config::streaming_parallelism("--streaming-parallelism", v)?;
        }
        Ok(c)
    }
}

/// Logs to stderr in `format` (text, json, logfmt) at `level` (else RUST_LOG, else info).
fn init_logging(format: &str, level: Option<&str>) -> Result<(), String> {
    use tracing_subscriber::prelude::*;
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::try_new(l)
            .map_err(|e| format!("invalid --log-level {l}: {e}"))?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        "text" => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
        "json" => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .init(),
        "logfmt" => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
        other => {
            return Err(format!(
                "invalid --log-format {other}: expected text, json or logfmt"
            ))
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log_format, cli.log_level.as_deref()) {
        eprintln!("freshet: {e}");
        std::process::exit(2);
    }
    // One line per panic, through the log. Panics are caught where they happen (a
    // statement, a connection, a reader, a statement in the engine) and end only that.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let what = freshet_engine::panic_message(info.payload());
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            "thread '{}' panicked at {at}: {what}",
            thread.name().unwrap_or("?")
        );
    }));
    // Deep (but allowed, see freshet_planner::complexity) expressions recurse in
    // DataFusion's evaluation and Freshet's walkers: give them room.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(freshet_server::STACK_SIZE)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("freshet: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let config = args.config()?;
                let server = Server::bind(config.clone()).await?;
                tracing::info!(
                    listen = %config.listen,
                    data_dir = %config.data_dir.display(),
                    "freshet is ready: psql -h {} -p {} -U freshet freshet",
                    config.listen.ip(),
                    config.listen.port()
                );
                server.run(shutdown_signal()).await
            }
            Command::Playground {
                listen,
                rate,
                http_listen,
            } => {
                let http = freshet_server::config::parse_http_listen(&http_listen)?;
                freshet_server::playground::run(listen, http, rate).await
            }
            Command::Backup { to, http } => backup(&to, http),
            Command::Restore { from, data_dir } => {
                freshet_server::backup::restore(&from, &data_dir)?;
                println!(
                    "restored {} into {}: start the server with --data-dir {}",
                    from.display(),
                    data_dir.display(),
                    data_dir.display()
                );
                Ok(())
            }
        }
    });
    // Drop every task (and with them the last handles on the database, which closes
    // RocksDB) before the process exits: RocksDB must not be running when the statics it
    // uses are destroyed.
    runtime.shutdown_timeout(Duration::from_secs(10));
    if let Err(e) = result {
        eprintln!("freshet: {e}");
        std::process::exit(1);
    }
}

/// `freshet backup`: `POST /api/backup?to=…` to the server's HTTP port.
fn backup(to: &std::path::Path, http: SocketAddr) -> Result<(), String> {
    use std::io::{Read, Write};
    let to = std::path::absolute(to).map_err(|e| format!("bad path {}: {e}", to.display()))?;
    let path: String = to
        .to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect();
    let mut s = std::net::TcpStream::connect(http)
        .map_err(|e| format!("cannot reach the server's HTTP port {http}: {e}"))?;
    write!(
        s,
        "POST /api/backup?to={path} HTTP/1.1\r\nHost: {http}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    if head.starts_with("HTTP/1.1 200") {
        println!("{body}");
        Ok(())
    } else {
        Err(format!("backup failed: {}", body.trim()))
    }
}
