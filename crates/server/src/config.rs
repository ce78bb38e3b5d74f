//! Server configuration: defaults, overridden by an optional TOML file, then by
//! environment variables, then by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
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
}

impl Config {
    pub fn limits(&self) -> freshet_planner::context::Limits {
        freshet_planner::context::Limits {
            max_hop_windows: self.max_hop_windows,
            query_memory_bytes: self.query_memory_limit,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 6877)),
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
        }
    }
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
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
            let text = match &v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            c.query_memory_limit = crate::limits::parse_bytes(&text).ok_or_else(|| {
                format!(
                    "invalid query_memory_limit {text}: expected bytes or a size such as \"512MB\""
                )
            })?;
        }
        Ok(())
    }
}
