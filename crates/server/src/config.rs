//! Server configuration: defaults, overridden by an optional TOML file, then by
//! environment variables, then by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// The HTTP port (`/metrics`, the status page, backups); `None`: off.
    pub http_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub max_connections: usize,
    pub checkpoint_interval: Duration,
    /// The most windows a `HOP` may put one row into (size / slide).
    pub max_hop_windows: u64,
    /// Memory one query may use, in bytes.
    pub query_memory_limit: usize,
    /// How users without a password of their own authenticate.
    pub auth: crate::auth::AuthMethod,
    /// The bootstrap superuser's password, if it has one.
    pub superuser_password: Option<String>,
    /// PEM certificate (chain) and private key: TLS on.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse connections that did not negotiate TLS.
    pub tls_required: bool,
    /// From accept to the end of authentication; a client slower than this is dropped.
    pub auth_timeout: Duration,
    /// The longest message a client may send, in bytes.
    pub max_message_size: usize,
    /// Connections a user without a `CONNECTION LIMIT` of its own may hold.
    pub max_connections_per_user: Option<u32>,
    /// Of `max_connections`, how many only superusers may take.
    pub superuser_reserved_connections: usize,
    /// Dead letters kept per source unless it says otherwise.
    pub dead_letters: freshet_engine::dead_letters::Retention,
    /// This process's share of every topic's partitions (`--node i/N`); `None`: all.
    pub node: Option<crate::node::Node>,
    /// Threads that apply the source batches of different views side by side.
    pub view_threads: usize,
    /// The shards a new view's keyed stateful operators run as, unless the session sets
    /// `streaming_parallelism`.
    pub streaming_parallelism: usize,
}

/// The default shard count: the cores, at most `shards::MAX_SHARDS`.
pub fn default_streaming_parallelism() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |c| c.get())
        .min(freshet_engine::shards::MAX_SHARDS)
}

/// A shard count setting, checked.
pub fn streaming_parallelism(name: &str, v: usize) -> Result<usize, String> {
    let max = freshet_engine::shards::MAX_SHARDS;
    if (1..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{name} must be between 1 and {max}, not {v}"))
    }
}

impl Config {
    pub fn limits(&self) -> freshet_planner::context::Limits {
        freshet_planner::context::Limits {
            max_hop_windows: self.max_hop_windows,
            query_memory_bytes: self.query_memory_limit,
        }
    }

    pub fn wire_limits(&self) -> crate::wire::WireLimits {
        crate::wire::WireLimits {
            auth_timeout: self.auth_timeout,
            max_message_size: self.max_message_size,
        }
    }

    pub fn connection_limits(&self) -> crate::connections::ConnectionLimits {
        crate::connections::ConnectionLimits {
            max_connections: self.max_connections,
            superuser_reserved: self.superuser_reserved_connections,
            per_user: self.max_connections_per_user,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 6877)),
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 6878))),
            data_dir: PathBuf::from("./freshet-data"),
            max_connections: 100,
            checkpoint_interval: Duration::from_secs(1),
            max_hop_windows: freshet_planner::context::Limits::default().max_hop_windows,
            query_memory_limit: freshet_planner::context::Limits::default().query_memory_bytes,
            auth: crate::auth::AuthMethod::Scram,
            superuser_password: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            auth_timeout: Duration::from_secs(60),
            max_message_size: 64 << 20,
            max_connections_per_user: None,
            superuser_reserved_connections: 3,
            dead_letters: freshet_engine::dead_letters::Retention::default(),
            node: None,
            view_threads: freshet_engine::coordinator::default_view_threads(),
            streaming_parallelism: default_streaming_parallelism(),
        }
    }
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    /// `"ADDR:PORT"` or `"off"`.
    pub http_listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub checkpoint_interval_ms: Option<u64>,
    pub max_hop_windows: Option<u64>,
    /// Bytes, or a size such as `"512MB"`.
    pub query_memory_limit: Option<toml::Value>,
    /// `scram`, `md5` or `trust`.
    pub auth: Option<String>,
    pub superuser_password: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_required: Option<bool>,
    /// Milliseconds, or a duration such as `"30s"`.
    pub auth_timeout: Option<toml::Value>,
    /// Bytes, or a size such as `"64MB"`.
    pub max_message_size: Option<toml::Value>,
    pub max_connections_per_user: Option<u32>,
    pub superuser_reserved_connections: Option<usize>,
    /// A duration such as `"7d"`, or `"none"`.
    pub dead_letter_retention: Option<String>,
    /// Rows, or `"none"`.
    pub dead_letter_max_rows: Option<toml::Value>,
    /// `"i/N"`: read the partitions p of every topic with p mod N = i.
    pub node: Option<String>,
    /// Threads that apply the source batches of different views side by side.
    pub view_threads: Option<usize>,
    /// The shards a new view's keyed stateful operators run as.
    pub streaming_parallelism: Option<usize>,
}

/// A TOML value as the text a flag would carry.
fn text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
    }

    pub fn apply(self, c: &mut Config) -> Result<(), String> {
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = &self.http_listen {
            c.http_listen = parse_http_listen(v)?;
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.checkpoint_interval_ms {
            c.checkpoint_interval = Duration::from_millis(v);
        }
        if let Some(v) = self.max_hop_windows {
            c.max_hop_windows = v;
        }
        if let Some(v) = &self.auth {
            c.auth = crate::auth::AuthMethod::parse(v)?;
        }
        if self.superuser_password.is_some() {
            c.superuser_password = self.superuser_password;
        }
        if self.tls_cert.is_some() {
            c.tls_cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            c.tls_key = self.tls_key;
        }
        if let Some(v) = self.tls_required {
            c.tls_required = v;
        }
        if let Some(v) = self.query_memory_limit {
            c.query_memory_limit = setting_bytes("query_memory_limit", &text(&v))?;
        }
        if let Some(v) = self.max_message_size {
            c.max_message_size = setting_bytes("max_message_size", &text(&v))?;
        }
        if let Some(v) = self.auth_timeout {
            c.auth_timeout = setting_duration("auth_timeout", &text(&v))?;
        }
        if let Some(v) = self.max_connections_per_user {
            c.max_connections_per_user = Some(v);
        }
        if let Some(v) = self.superuser_reserved_connections {
            c.superuser_reserved_connections = v;
        }
        if let Some(v) = &self.dead_letter_retention {
            c.dead_letters.max_age_micros = setting_age("dead_letter_retention", v)?;
        }
        if let Some(v) = &self.dead_letter_max_rows {
            c.dead_letters.max_rows = setting_rows("dead_letter_max_rows", &text(v))?;
        }
        if let Some(v) = &self.node {
            c.node = Some(crate::node::Node::parse(v)?);
        }
        if let Some(v) = self.view_threads {
            c.view_threads = v.max(1);
        }
        if let Some(v) = self.streaming_parallelism {
            c.streaming_parallelism = streaming_parallelism("streaming_parallelism", v)?;
        }
        Ok(())
    }
}

/// `--http-listen`: an address, or `off`.
pub fn parse_http_listen(v: &str) -> Result<Option<SocketAddr>, String> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| format!("invalid http_listen {v}: expected ADDR:PORT or off"))
}

/// A size setting (`512MB`, or bytes), or an error naming it.
pub fn setting_bytes(name: &str, v: &str) -> Result<usize, String> {
    crate::limits::parse_bytes(v)
        .ok_or_else(|| format!("invalid {name} {v}: expected bytes or a size such as \"512MB\""))
}

/// A duration setting (`30s`, `2min`, or milliseconds), or an error naming it.
pub fn setting_duration(name: &str, v: &str) -> Result<Duration, String> {
    crate::limits::parse_millis(v)
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid {name} {v}: expected a duration such as \"30s\""))
}

/// A retention age (`7d`, `12h`, or milliseconds), or `none`: in µs.
pub fn setting_age(name: &str, v: &str) -> Result<Option<i64>, String> {
    if v.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let d = setting_duration(name, v)?;
    Ok(Some(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
}

/// A row count, or `none`.
pub fn setting_rows(name: &str, v: &str) -> Result<Option<u64>, String> {
    if v.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    v.trim()
        .parse()
        .map(Some)
        .map_err(|_| format!("invalid {name} {v}: expected a number of rows or \"none\""))
}
