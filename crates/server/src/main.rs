//! The `freshet` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use freshet_server::config::{Config, FileConfig};
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
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run a server on a temporary data directory with built-in demo data and views.
    Playground {
        /// Address to listen on.
        #[arg(long, env = "FRESHET_LISTEN", default_value = "127.0.0.1:6877")]
        listen: SocketAddr,
        /// Plays generated per second (impressions: three times as many).
        #[arg(long, default_value_t = 200)]
        rate: u64,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on for Postgres clients [default: 127.0.0.1:6877].
    #[arg(long, env = "FRESHET_LISTEN")]
    listen: Option<SocketAddr>,
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
}

impl ServeArgs {
    fn config(self) -> Result<Config, String> {
        let mut c = Config::default();
        if let Some(path) = &self.config {
            FileConfig::load(path)?.apply(&mut c);
        }
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
            c.checkpoint_interval = Duration::from_millis(v.max(1));
        }
        Ok(c)
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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
            Command::Playground { listen, rate } => {
                freshet_server::playground::run(listen, rate).await
            }
        }
    });
    if let Err(e) = result {
        eprintln!("freshet: {e}");
        std::process::exit(1);
    }
}
