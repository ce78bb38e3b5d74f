//! The Freshet server: the `freshet` binary's library.
//!
//! - [`config`]: settings from flags, environment and TOML;
//! - [`server`]: the listener, connection limit and graceful shutdown;
//! - [`handler`]: the Postgres wire protocol (simple and extended) over a session;
//! - [`session`]: statement execution against the shared database;
//! - [`encode`]: Arrow values to Postgres wire values;
//! - [`error`]: the one mapping from errors to SQLSTATE codes;
//! - [`playground`]: the demo started by `freshet playground`.

pub mod config;
pub mod encode;
pub mod error;
pub mod handler;
pub mod lookup;
pub mod playground;
pub mod server;
pub mod session;
pub mod sources;
pub mod stored;
