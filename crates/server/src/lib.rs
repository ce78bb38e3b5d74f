//! The Freshet server: the `freshet` binary's library.
//!
//! - [`config`]: settings from flags, environment and TOML;
//! - [`server`]: the listener, connection limit and graceful shutdown;
//! - [`handler`]: the Postgres wire protocol (simple and extended) over a session;
//!   [`respond`]: rows and COPY data sent as they are produced;
//! - [`session`]: statement execution against the shared database ([`session::Db`]), one
//!   file per concern under `session/` (queries, DML, DDL, session variables, the
//!   `freshet_catalog` tables, users and privileges);
//! - [`encode`]: Arrow values to Postgres wire values;
//! - [`error`]: the one mapping from errors to SQLSTATE codes;
//! - [`playground`]: the demo started by `freshet playground`.

pub mod auth;
pub mod backends;
pub mod backup;
pub mod config;
pub mod connections;
pub mod copy_format;
pub mod declared_params;
pub mod encode;
pub mod error;
pub mod error_text;
pub mod handler;
pub mod http;
pub mod index_scan;
pub mod jobs;
pub mod limits;
pub mod lookup;
pub mod node;
pub mod params;
pub mod playground;
pub mod query_pool;
pub mod readers;
pub mod respond;
pub mod scan;
pub mod server;
pub mod session;
pub mod sinks;
pub mod sources;
pub mod status_page;
pub mod stored;
pub mod wire;

/// The stack of every thread that plans or runs statements (the runtime's workers); the
/// coordinator's is the engine's [`freshet_engine::STACK_SIZE`].
pub const STACK_SIZE: usize = 16 * 1024 * 1024;
