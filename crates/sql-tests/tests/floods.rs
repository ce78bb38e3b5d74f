//! Floods and slow clients (issue 19, item 5), through a real server over raw sockets:
//! an oversized or malformed message ends only its own connection with a FATAL error, a
//! client that never authenticates is dropped after `--auth-timeout`, and a client that
//! stops reading a large result blocks only itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::{runtime, TestServer};

/// A startup packet for user `freshet`, protocol 3.0.
fn startup() -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", "freshet"), ("database", "freshet")] {
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

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Reads backend messages until `kind` arrives (returning its body) or the server
/// closes the connection (`None`).
fn read_until(s: &mut TcpStream, kind: u8) -> Option<Vec<u8>> {
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).ok()?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        s.read_exact(&mut body).ok()?;
        if head[0] == kind {
            return Some(body);
        }
    }
}

/// The SQLSTATE and message of an ErrorResponse body.
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut msg) = (String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        match field.first() {
            Some(b'C') => code = String::from_utf8_lossy(&field[1..]).into(),
            Some(b'M') => msg = String::from_utf8_lossy(&field[1..]).into(),
            _ => {}
        }
    }
    (code, msg)
}

/// A logged-in raw connection (the bootstrap superuser from loopback needs no password).
fn logged_in(server: &TestServer) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(&startup()).expect("startup");
    read_until(&mut s, b'Z').expect("ReadyForQuery after startup");
    s
}

fn assert_serving(server: &TestServer) {
    runtime().block_on(async {
        let c = connect(&server.conn_str()).await.expect("a new client");
        c.simple_query("SELECT 1").await.expect("SELECT 1");
    });
}

#[test]
fn an_oversized_message_ends_its_connection_with_08p01() {
    let server = TestServer::start_with_args(&["--max-message-size", "64kB"]);
    // A query just under the limit runs.
    let mut s = logged_in(&server);
    let mut sql = b"SELECT '".to_vec();
    sql.extend(std::iter::repeat_n(b'x', 60_000));
    sql.extend_from_slice(b"' IS NOT NULL\0");
    s.write_all(&message(b'Q', &sql)).expect("send");
    read_until(&mut s, b'C').expect("CommandComplete under the limit");
    read_until(&mut s, b'Z').expect("ReadyForQuery");
    // Its header alone says this one is over: refused before its body arrives.
    let mut head = vec![b'Q'];
    head.extend_from_slice(&(10u32 << 20).to_be_bytes());
    s.write_all(&head).expect("send header");
    let err = read_until(&mut s, b'E').expect("an ErrorResponse");
    let (code, msg) = error_fields(&err);
    assert_eq!(code, "08P01", "{msg}");
    assert!(msg.contains("max_message_size"), "{msg}");
    assert!(
        read_until(&mut s, b'Z').is_none(),
        "the connection stays open"
    );
    assert_serving(&server);
}

#[test]
fn malformed_messages_get_a_fatal_error_and_no_panic() {
    let server = TestServer::start();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length below 4", vec![b'Q', 0, 0, 0, 1]),
        ("unterminated query", message(b'Q', b"SELECT 1")),
        ("bytes after the query", message(b'Q', b"SELECT 1\0junk")),
        // A Bind whose one parameter claims 1,000 bytes and carries 3.
        (
            "bind past its end",
            message(b'B', b"\0\0\0\0\0\x01\0\0\x03\xe8abc\0\0"),
        ),
        ("unknown type", message(b'y', b"")),
        (
            "parse with a negative count",
            message(b'P', b"\0SELECT 1\0\xff\xff"),
        ),
    ];
    for (what, bytes) in cases {
        let mut s = logged_in(&server);
        s.write_all(&bytes).expect("send");
        let err = read_until(&mut s, b'E').unwrap_or_else(|| panic!("{what}: no ErrorResponse"));
        let (code, msg) = error_fields(&err);
        assert_eq!(code, "08P01", "{what}: {msg}");
        assert!(
            read_until(&mut s, b'Z').is_none(),
            "{what}: connection kept"
        );
    }
    // A startup packet of a length no startup packet has, and of another protocol.
    for (what, bytes, code) in [
        ("short startup", vec![0, 0, 0, 5, 0], "08P01"),
        (
            "protocol 2.0",
            {
                let mut p = startup();
                p[4..8].copy_from_slice(&0x0002_0000u32.to_be_bytes());
                p
            },
            "0A000",
        ),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(&bytes).expect("send");
        let err = read_until(&mut s, b'E').unwrap_or_else(|| panic!("{what}: no ErrorResponse"));
        assert_eq!(error_fields(&err).0, code, "{what}");
    }
    assert_serving(&server);
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

#[test]
fn a_client_that_never_authenticates_is_dropped_after_the_auth_timeout() {
    let server = TestServer::start_with_args(&["--auth-timeout", "1s", "--max-connections", "3"]);
    let started = Instant::now();
    // Three silent sockets take every slot...
    let mut silent: Vec<TcpStream> = (0..3)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            s
        })
        .collect();
    // ...until the server drops them: each read ends (EOF or reset) within the timeout
    // plus slack, not the 30 s the client would wait.
    for s in &mut silent {
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "the server sent something to a silent client");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "silent clients were kept {:?}",
        started.elapsed()
    );
    // A client half-way through startup (a truncated packet) is dropped too.
    let mut half = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    half.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    half.write_all(&startup()[..6]).expect("send");
    let mut buf = [0u8; 16];
    assert_eq!(half.read(&mut buf).unwrap_or(0), 0);
    drop(half);
    assert_serving(&server);
}

#[test]
fn a_client_that_stops_reading_blocks_only_itself() {
    let mut server = TestServer::start();
    runtime().block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE big (id BIGINT PRIMARY KEY, pad VARCHAR);
             INSERT INTO big SELECT x, repeat('p', 200) FROM generate_series(1, 200000) t(x);
             CREATE TABLE t (id BIGINT PRIMARY KEY);
             CREATE MATERIALIZED VIEW n AS SELECT count(*) AS c FROM t;",
        )
        .await
        .expect("setup");
    });
    // About 40 MB of rows, and this client reads none of them.
    let mut stuck = logged_in(&server);
    stuck
        .write_all(&message(b'Q', b"SELECT * FROM big\0"))
        .expect("send");
    std::thread::sleep(Duration::from_millis(500));
    // Everyone else goes on: queries, writes and the view over them.
    runtime().block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        for i in 0..50i64 {
            c.execute("INSERT INTO t VALUES ($1)", &[&i])
                .await
                .expect("insert");
        }
        let n: i64 = c
            .query_one("SELECT c FROM n", &[])
            .await
            .expect("query")
            .get(0);
        assert_eq!(n, 50);
        let big: i64 = c
            .query_one("SELECT count(*) FROM big", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(big, 200_000);
    });
    // And a stop does not wait for it.
    let stopped = Instant::now();
    server.restart();
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "the stop waited {:?} for a client that reads nothing",
        stopped.elapsed()
    );
    drop(stuck);
    assert_serving(&server);
}
