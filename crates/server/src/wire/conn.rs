//! One client connection from the accepted socket to its end.
//!
//! This is pgwire's `process_socket` loop with Freshet's limits put in: the whole
//! startup (TLS negotiation and authentication) must finish within `auth_timeout`, and
//! every message goes through [`Checked`] first, so a malformed or oversized message ends
//! the connection with a FATAL error instead of reaching pgwire's decoders.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::checked::{frame_error, Checked};
use super::frame::FrameError;
use crate::backends::Backend;

/// The limits one connection runs under.
#[derive(Clone, Copy, Debug)]
pub struct WireLimits {
    /// From accept to the end of authentication.
    pub auth_timeout: Duration,
    /// The longest message a client may send, in bytes.
    pub max_message_size: usize,
}

/// Serves one client until it leaves, fails, times out or its session is terminated
/// (`pg_terminate_backend`).
pub async fn serve<H: PgWireServerHandlers>(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
    limits: WireLimits,
    backend: Option<Arc<Backend>>,
) -> io::Result<()> {
    let deadline = tokio::time::sleep(limits.auth_timeout);
    tokio::pin!(deadline);
    let checked = tokio::select! {
        _ = &mut deadline => return Ok(()),
        c = check_first_length(&tcp) => c,
    };
    if let Err(e) = checked {
        return refuse_raw(tcp, e).await;
    }
    let negotiated = tokio::select! {
        _ = &mut deadline => return Ok(()),
        n = negotiate_tls(tcp, tls) => n?,
    };
    // A direct TLS handshake with TLS off: nothing to talk to.
    let Some(plain) = negotiated else {
        return Ok(());
    };
    let parts = plain.into_parts();
    let io = Checked::new(parts.io, parts.read_buf, limits.max_message_size);
    let mut checked = FramedParts::new::<PgWireBackendMessage>(io, parts.codec);
    checked.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(checked);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let authenticating = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let msg = if authenticating {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::debug!(peer = %socket.socket_addr(), "authentication timed out");
                    break;
                }
                m = socket.next() => m,
            }
        } else if let Some(b) = &backend {
            // Terminated while a statement ran: it ended with the FATAL error.
            if b.is_terminated() {
                break;
            }
            tokio::select! {
                _ = b.terminated() => {
                    terminated(&mut socket).await;
                    break;
                }
                m = socket.next() => m,
            }
        } else {
            socket.next().await
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                refuse_malformed(&mut socket, e).await;
                break;
            }
            None => break,
        };
        // Terminate: the client is leaving and may wait for the socket to close.
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        let is_cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        let result = process_message(
            msg,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut e) = result {
            errors.on_error(&socket, &mut e);
            let fatal = e.is_fatal();
            process_error(&mut socket, e, is_extended).await?;
            if fatal {
                break;
            }
        }
        if is_cancel {
            break;
        }
    }
    Ok(())
}

/// Checks the length field of the first packet before pgwire's TLS negotiation reads it
/// (which waits for 8 bytes, however short the packet says it is). A direct TLS
/// handshake (first byte 0x16) is left to the negotiation.
async fn check_first_length(tcp: &TcpStream) -> Result<(), FrameError> {
    let mut head = [0u8; 4];
    loop {
        let n = match tcp.peek(&mut head).await {
            Ok(n) => n,
            // The client is gone: the negotiation finds out.
            Err(_) => return Ok(()),
        };
        if n == 0 || head[0] == 0x16 {
            return Ok(());
        }
        if n == 4 {
            break;
        }
        // Fewer than 4 bytes so far. The socket stays readable while they wait unread,
        // so poll gently for the rest (the caller's deadline bounds this).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let len = i32::from_be_bytes(head);
    if !(8..=super::frame::MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(FrameError::StartupLength(len.into()));
    }
    Ok(())
}

/// Answers a refused first packet with a FATAL error on the bare socket.
async fn refuse_raw(mut tcp: TcpStream, e: FrameError) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    tracing::info!(peer = ?tcp.peer_addr().ok(), error = %e, "connection closed: malformed startup packet");
    let info = ErrorInfo::new("FATAL".into(), e.sqlstate().into(), e.to_string());
    let mut buf = bytes::BytesMut::new();
    if PgWireBackendMessage::ErrorResponse(info.into())
        .encode(&mut buf)
        .is_ok()
    {
        let _ = tcp.write_all(&buf).await;
    }
    Ok(())
}

/// Answers a message [`Checked`] refused with a FATAL error, as Postgres does.
/// `pg_terminate_backend` ended the session: tell the client, as Postgres does.
async fn terminated<S>(socket: &mut S)
where
    S: futures::Sink<PgWireBackendMessage> + ClientInfo + Unpin,
{
    tracing::info!(peer = %socket.socket_addr(), "connection terminated by pg_terminate_backend");
    let info = ErrorInfo::new(
        "FATAL".into(),
        "57P01".into(),
        "terminating connection due to administrator command".into(),
    );
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await;
}

async fn refuse_malformed<S>(socket: &mut S, e: pgwire::error::PgWireError)
where
    S: futures::Sink<PgWireBackendMessage> + ClientInfo + Unpin,
{
    let pgwire::error::PgWireError::IoError(io) = &e else {
        return;
    };
    let Some(frame) = frame_error(io) else {
        // The client went away or the socket failed: nobody to tell.
        return;
    };
    tracing::info!(peer = %socket.socket_addr(), error = %frame, "connection closed: malformed message");
    let info = ErrorInfo::new("FATAL".into(), frame.sqlstate().into(), frame.to_string());
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await;
}
