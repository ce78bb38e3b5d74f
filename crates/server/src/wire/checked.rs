//! A socket that hands its reader only whole, checked messages ([`super::frame`]).
//!
//! Bytes read from the client wait in a buffer until the message they belong to is
//! complete and well-formed; only then are they passed on. A malformed or oversized
//! message turns into a read error carrying its [`FrameError`], and the connection loop
//! answers it with a FATAL error. Writes pass straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{self, FrameError, Phase};

pub struct Checked<S> {
    inner: S,
    /// Bytes read from the client and not yet passed on.
    raw: BytesMut,
    /// How many bytes at the front of `raw` are checked and may be passed on.
    ready: usize,
    phase: Phase,
    max_len: usize,
    failed: Option<FrameError>,
    scratch: Box<[u8]>,
}

impl<S> Checked<S> {
    /// Wraps a socket whose next message is the startup packet; `pending` holds bytes
    /// already read from it.
    pub fn new(inner: S, pending: BytesMut, max_len: usize) -> Self {
        Checked {
            inner,
            raw: pending,
            ready: 0,
            phase: Phase::Startup,
            max_len,
            failed: None,
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
        }
    }
}

/// The frame error inside an I/O error that [`Checked`] returned, if it is one.
pub fn frame_error(e: &io::Error) -> Option<&FrameError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<FrameError>())
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.raw[..n]);
                this.raw.advance(n);
                this.ready -= n;
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &this.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e.clone())));
            }
            match frame::check(&this.raw, this.phase, this.max_len) {
                Ok(Some(f)) => {
                    this.ready = f.len;
                    this.phase = f.next;
                    continue;
                }
                Err(e) => {
                    this.failed = Some(e);
                    continue;
                }
                Ok(None) => {}
            }
            // Read more. `check` refuses an oversized message from its header, so the
            // buffer stays within one message plus one read.
            let mut rb = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // End of stream: a partial message is dropped, the reader sees a clean end.
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    this.raw.clear();
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => this.raw.extend_from_slice(rb.filled()),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
