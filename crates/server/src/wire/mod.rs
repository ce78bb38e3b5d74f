//! The connection layer under pgwire: each client's message loop, with the startup
//! timeout and the message checks that keep malformed input away from pgwire.
//!
//! - [`frame`]: the well-formedness and size check of one frontend message;
//! - [`checked`]: a socket that passes on only checked messages;
//! - [`conn`]: one connection's loop.

pub mod checked;
pub mod conn;
pub mod frame;

pub use conn::{serve, WireLimits};
