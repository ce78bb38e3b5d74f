//! Checks every frontend message before pgwire decodes it.
//!
//! pgwire 0.42's decoders trust the lengths and counts inside a message: a `Bind` whose
//! parameter length runs past the message, a startup packet shorter than its header or a
//! message length below 4 make them read out of bounds and panic. This check reads each
//! message the way Postgres' `pq_getmsg*` functions do — every count and length must fit
//! in the message, every string must end inside it, and nothing may be left over — so
//! pgwire only ever sees well-formed messages. It also enforces the message-size limit on
//! the header alone, before the body is buffered.

use std::fmt;

/// Postgres' limit on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;
/// Request codes a startup-phase packet may carry instead of a protocol version.
const CANCEL_REQUEST: u32 = 80_877_102;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
/// A cancel request: length, code, process id and a secret key of 4 (protocol 3.0) to
/// 256 bytes (3.2).
const CANCEL_MIN_LEN: usize = 16;
const CANCEL_MAX_LEN: usize = 12 + 256;

/// Where the connection is: before the startup packet (no type byte), after it (typed
/// messages), or after a cancel request (nothing more may come).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Startup,
    Regular,
    Closed,
}

/// A complete, well-formed message at the start of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its length on the wire, type byte included.
    pub len: usize,
    /// The phase after it.
    pub next: Phase,
}

/// Why a message was refused. Each ends the connection with a FATAL error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid length of startup packet: {0} bytes")]
    StartupLength(i64),
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0 to 3.2")]
    Protocol(u16, u16),
    #[error("invalid message length {len} for message type \"{kind}\"")]
    Length { kind: Kind, len: i64 },
    #[error(
        "message of type \"{kind}\" is {len} bytes long, over the limit of {limit} bytes \
         (max_message_size)"
    )]
    TooLarge {
        kind: Kind,
        len: usize,
        limit: usize,
    },
    #[error("invalid frontend message type {0}")]
    Type(Kind),
    #[error("invalid message format: {0}")]
    Format(&'static str),
    #[error("unexpected message after a cancel request")]
    AfterCancel,
}

impl FrameError {
    /// The SQLSTATE of the FATAL error the client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            FrameError::Protocol(..) => "0A000",
            _ => "08P01",
        }
    }
}

/// A message type byte, printed as Postgres prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind(pub u8);

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "{}", self.0 as char)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Checks the message at the start of `buf`: `Ok(None)` while it is incomplete (and
/// within the limits), the frame once it is whole and well-formed, an error otherwise.
/// `max_len` bounds a typed message's length field (its body plus 4).
pub fn check(buf: &[u8], phase: Phase, max_len: usize) -> Result<Option<Frame>, FrameError> {
    match phase {
        Phase::Startup => check_startup(buf),
        Phase::Regular => check_typed(buf, max_len),
        Phase::Closed if buf.is_empty() => Ok(None),
        Phase::Closed => Err(FrameError::AfterCancel),
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn check_startup(buf: &[u8]) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let declared = be_u32(buf) as i32;
    let len = declared as usize;
    if declared < 8 || len > MAX_STARTUP_LEN {
        return Err(FrameError::StartupLength(declared.into()));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let code = be_u32(&buf[4..8]);
    let next = match code {
        CANCEL_REQUEST if (CANCEL_MIN_LEN..=CANCEL_MAX_LEN).contains(&len) => Phase::Closed,
        CANCEL_REQUEST => return Err(FrameError::StartupLength(declared.into())),
        // TLS and GSS encryption are negotiated before this check runs: asking again
        // is a protocol violation, as in Postgres.
        SSL_REQUEST | GSSENC_REQUEST => {
            return Err(FrameError::Format("repeated SSL or GSS request"))
        }
        _ => {
            let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
            if major != 3 {
                return Err(FrameError::Protocol(major, minor));
            }
            let mut r = Reader::new(&buf[8..len]);
            loop {
                let key = r.cstring()?;
                if key.is_empty() {
                    break;
                }
                r.cstring()?;
            }
            r.end()?;
            Phase::Regular
        }
    };
    Ok(Some(Frame { len, next }))
}

fn check_typed(buf: &[u8], max_len: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let kind = Kind(buf[0]);
    if !KNOWN.contains(&buf[0]) {
        return Err(FrameError::Type(kind));
    }
    let declared = be_u32(&buf[1..5]) as i32;
    if declared < 4 {
        return Err(FrameError::Length {
            kind,
            len: declared.into(),
        });
    }
    let len = declared as usize;
    if len > max_len {
        return Err(FrameError::TooLarge {
            kind,
            len,
            limit: max_len,
        });
    }
    if buf.len() < 1 + len {
        return Ok(None);
    }
    check_body(kind, &buf[5..1 + len])?;
    Ok(Some(Frame {
        len: 1 + len,
        next: Phase::Regular,
    }))
}

/// The message types a client may send after startup (`F`, the fast-path function call,
/// is not supported).
const KNOWN: &[u8] = b"QPBDECSHXdcfp";

fn check_body(kind: Kind, body: &[u8]) -> Result<(), FrameError> {
    let mut r = Reader::new(body);
    match kind.0 {
        b'Q' => {
            r.cstring()?;
        }
        b'P' => {
            r.cstring()?;
            r.cstring()?;
            let n = r.count()?;
            r.skip(n * 4)?;
        }
        b'B' => {
            r.cstring()?;
            r.cstring()?;
            let formats = r.count()?;
            r.skip(formats * 2)?;
            for _ in 0..r.count()? {
                let n = r.i32()?;
                if n < -1 {
                    return Err(FrameError::Format("negative parameter length"));
                }
                if n > 0 {
                    r.skip(n as usize)?;
                }
            }
            let results = r.count()?;
            r.skip(results * 2)?;
        }
        b'D' | b'C' => {
            if !matches!(r.u8()?, b'S' | b'P') {
                return Err(FrameError::Format("expected 'S' or 'P'"));
            }
            r.cstring()?;
        }
        b'E' => {
            r.cstring()?;
            r.i32()?;
        }
        b'f' => {
            r.cstring()?;
        }
        // Copy data and the password family (whose layout depends on the authentication
        // step: see `check_password_message`) are bytes.
        b'd' | b'p' => return Ok(()),
        // Sync, Flush, Terminate, CopyDone: no body.
        _ => {}
    }
    r.end()
}

/// What a password-family message must hold at one step of authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordStep {
    /// A password (cleartext or MD5): one string.
    Password,
    /// SASLInitialResponse: a mechanism name and a length-prefixed answer.
    SaslInitial,
    /// SASLResponse: bytes.
    SaslResponse,
}

/// Checks the body of a `p` message for the step authentication is at.
pub fn check_password_message(body: &[u8], step: PasswordStep) -> Result<(), FrameError> {
    let mut r = Reader::new(body);
    match step {
        PasswordStep::Password => {
            r.cstring()?;
        }
        PasswordStep::SaslInitial => {
            r.cstring()?;
            let n = r.i32()?;
            if n < -1 {
                return Err(FrameError::Format("negative SASL response length"));
            }
            if n > 0 {
                r.skip(n as usize)?;
            }
        }
        PasswordStep::SaslResponse => return Ok(()),
    }
    r.end()
}

/// Bounds-checked reads over one message body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Reader { rest }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if n > self.rest.len() {
            return Err(FrameError::Format("field runs past the end of the message"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn skip(&mut self, n: usize) -> Result<(), FrameError> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(be_u32(self.take(4)?) as i32)
    }

    /// An Int16 count, which must not be negative.
    fn count(&mut self) -> Result<usize, FrameError> {
        let b = self.take(2)?;
        let n = i16::from_be_bytes([b[0], b[1]]);
        if n < 0 {
            return Err(FrameError::Format("negative count"));
        }
        Ok(n as usize)
    }

    /// A string ending in `\0` inside the message, without the `\0`.
    fn cstring(&mut self) -> Result<&'a [u8], FrameError> {
        let Some(end) = self.rest.iter().position(|&b| b == 0) else {
            return Err(FrameError::Format("string not terminated"));
        };
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(s)
    }

    fn end(&self) -> Result<(), FrameError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Format(
                "bytes left over at the end of the message",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut body = 196608u32.to_be_bytes().to_vec();
        for (k, v) in params {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        m.extend(body);
        m
    }

    const MAX: usize = 1 << 20;

    #[test]
    fn well_formed_messages_pass_whole() {
        let s = startup(&[("user", "freshet"), ("database", "freshet")]);
        assert_eq!(
            check(&s, Phase::Startup, MAX),
            Ok(Some(Frame {
                len: s.len(),
                next: Phase::Regular
            }))
        );
        let q = typed(b'Q', b"SELECT 1\0");
        assert_eq!(
            check(&q, Phase::Regular, MAX).unwrap().unwrap().len,
            q.len()
        );
        // Bind: portal "", statement "s", 1 format (binary), 2 params (4 bytes, NULL), 0 results.
        let mut b = b"\0s\0".to_vec();
        b.extend_from_slice(&[0, 1, 0, 1, 0, 2]);
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 7]);
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        assert!(check(&typed(b'B', &b), Phase::Regular, MAX)
            .unwrap()
            .is_some());
        for m in [
            typed(b'S', b""),
            typed(b'D', b"Sname\0"),
            typed(b'E', b"\0\0\0\0\0"),
        ] {
            assert!(check(&m, Phase::Regular, MAX).unwrap().is_some(), "{m:?}");
        }
        let mut cancel = 16u32.to_be_bytes().to_vec();
        cancel.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        cancel.extend_from_slice(&[0; 8]);
        assert_eq!(
            check(&cancel, Phase::Startup, MAX).unwrap().unwrap().next,
            Phase::Closed
        );
    }

    #[test]
    fn incomplete_messages_wait() {
        let q = typed(b'Q', b"SELECT 1\0");
        for cut in 0..q.len() {
            assert_eq!(
                check(&q[..cut], Phase::Regular, MAX),
                Ok(None),
                "cut at {cut}"
            );
        }
        let s = startup(&[("user", "u")]);
        for cut in 0..s.len() {
            assert_eq!(
                check(&s[..cut], Phase::Startup, MAX),
                Ok(None),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn lying_messages_are_refused() {
        // A Bind whose parameter runs past the message (pgwire panicked on this).
        let mut b = b"\0\0".to_vec();
        b.extend_from_slice(&[0, 0, 0, 1]);
        b.extend_from_slice(&1000i32.to_be_bytes());
        b.extend_from_slice(&[1, 2, 3]);
        assert!(check(&typed(b'B', &b), Phase::Regular, MAX).is_err());
        // Lengths below the header's own size.
        assert!(matches!(
            check(&[b'Q', 0, 0, 0, 2], Phase::Regular, MAX),
            Err(FrameError::Length { .. })
        ));
        assert!(check(&[0, 0, 0, 5, 0, 3, 0, 0], Phase::Startup, MAX).is_err());
        // An unterminated string, leftovers, an unknown type, a negative count.
        assert!(check(&typed(b'Q', b"SELECT 1"), Phase::Regular, MAX).is_err());
        assert!(check(&typed(b'Q', b"SELECT 1\0x"), Phase::Regular, MAX).is_err());
        assert!(check(&typed(b'Z', b""), Phase::Regular, MAX).is_err());
        assert!(check(&typed(b'P', b"\0q\0\xff\xff"), Phase::Regular, MAX).is_err());
        assert!(check(&typed(b'S', b"x"), Phase::Regular, MAX).is_err());
        // A startup packet of another protocol, or missing its final terminator.
        let mut v2 = startup(&[("user", "u")]);
        v2[4..8].copy_from_slice(&0x0002_0000u32.to_be_bytes());
        assert_eq!(
            check(&v2, Phase::Startup, MAX),
            Err(FrameError::Protocol(2, 0))
        );
        let mut s = startup(&[("user", "u")]);
        s.pop();
        let n = s.len() as u32;
        s[0..4].copy_from_slice(&n.to_be_bytes());
        assert!(check(&s, Phase::Startup, MAX).is_err());
        // Anything after a cancel request.
        assert_eq!(
            check(b"Q", Phase::Closed, MAX),
            Err(FrameError::AfterCancel)
        );
    }

    #[test]
    fn the_size_limit_is_checked_on_the_header() {
        let mut header = vec![b'Q'];
        header.extend_from_slice(&((MAX + 1) as u32).to_be_bytes());
        assert!(matches!(
            check(&header, Phase::Regular, MAX),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(check(&[0, 0, 0x27, 0x11], Phase::Startup, MAX).is_err());
    }

    #[test]
    fn password_messages_by_step() {
        use PasswordStep::*;
        assert!(check_password_message(b"secret\0", Password).is_ok());
        assert!(check_password_message(b"secret", Password).is_err());
        let mut init = b"SCRAM-SHA-256\0".to_vec();
        init.extend_from_slice(&3i32.to_be_bytes());
        init.extend_from_slice(b"abc");
        assert!(check_password_message(&init, SaslInitial).is_ok());
        init.pop();
        assert!(check_password_message(&init, SaslInitial).is_err());
        assert!(check_password_message(b"\xff\x00", SaslResponse).is_ok());
    }

    /// Random bytes, and random cuts and flips of valid messages: the check never
    /// panics, and whatever it passes is exactly one frame.
    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(19);
        let seeds = [
            startup(&[("user", "freshet")]),
            typed(b'Q', b"SELECT 1\0"),
            typed(b'P', b"s\0SELECT $1\0\0\x01\0\0\0\x17"),
        ];
        for _ in 0..200_000 {
            let mut m = if rng.gen_bool(0.3) {
                (0..rng.gen_range(0..40))
                    .map(|_| rng.gen())
                    .collect::<Vec<u8>>()
            } else {
                seeds[rng.gen_range(0..seeds.len())].clone()
            };
            for _ in 0..rng.gen_range(0..4) {
                if !m.is_empty() {
                    let i = rng.gen_range(0..m.len());
                    m[i] = rng.gen();
                }
            }
            for phase in [Phase::Startup, Phase::Regular] {
                if let Ok(Some(f)) = check(&m, phase, MAX) {
                    assert!(f.len <= m.len());
                }
            }
        }
    }
}
