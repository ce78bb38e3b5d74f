//! Fuzzing the server through its real front door.
//!
//! - SQL: grammar-based random statements (queries, views with windows and joins, DML,
//!   DDL, EXPLAIN), some mutated token by token, against a real server. Any statement may
//!   fail, but only with an error: the session must stay usable, the process alive, and
//!   no statement may panic (a caught panic is logged as "statement panicked").
//! - Wire protocol: connections that send random, truncated and lying messages, before
//!   and after the startup packet. The server must go on serving everyone else.
//!
//! `FRESHET_FUZZ_STATEMENTS` (default 1,500), `FRESHET_FUZZ_CONNECTIONS` (default 300) and
//! `FRESHET_FUZZ_SEED` set the run; the seed is printed.

use std::io::{Read, Write};
use std::time::Duration;

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::TestServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    env_or("FRESHET_FUZZ_SEED", 20261201)
}

use freshet_sql_tests::runtime as rt;

/// Column name and type, per table.
const COLUMNS: &[(&str, &str)] = &[
    ("a", "INT"),
    ("b", "BIGINT"),
    ("c", "VARCHAR"),
    ("d", "TIMESTAMP"),
    ("e", "DOUBLE PRECISION"),
    ("f", "NUMERIC(10, 2)"),
    ("g", "BOOLEAN"),
];

const LITERALS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2147483647",
    "-2147483648",
    "9223372036854775807",
    "1.5",
    "-0.0",
    "1e308",
    "'x'",
    "''",
    "'2026-11-28 12:00:00'",
    "NULL",
    "TRUE",
    "FALSE",
    "INTERVAL '1 minute'",
    "INTERVAL '-1 day'",
    "'NaN'::double precision",
    "CAST('12.34' AS NUMERIC(10, 2))",
    "DATE '2026-02-28'",
    "'é'",
];

const FUNCS1: &[&str] = &[
    "abs",
    "upper",
    "lower",
    "length",
    "trim",
    "round",
    "floor",
    "ceil",
    "sqrt",
    "ln",
    "md5",
    "to_hex",
    "reverse",
    "sign",
    "exp",
    "char_length",
];
const FUNCS2: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "substr",
    "left",
    "right",
    "repeat",
    "power",
    "mod",
    "date_trunc",
    "strpos",
    "concat",
    "starts_with",
    "lpad",
];
const AGGS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "stddev",
    "median",
    "approx_count_distinct",
];
const BINOPS: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "||",
    "=",
    "<>",
    "<",
    ">=",
    "AND",
    "OR",
    "IS DISTINCT FROM",
];
const TYPES: &[&str] = &[
    "INT",
    "BIGINT",
    "SMALLINT",
    "VARCHAR",
    "TEXT",
    "DOUBLE PRECISION",
    "REAL",
    "NUMERIC(5, 1)",
    "BOOLEAN",
    "DATE",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "INTERVAL",
];

struct Gen {
    rng: StdRng,
    views: Vec<String>,
    next_view: usize,
}

impl Gen {
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.rng.gen_range(0..xs.len())]
    }

    fn column(&mut self, alias: Option<&str>) -> String {
        let (c, _) = COLUMNS[self.rng.gen_range(0..COLUMNS.len())];
        match alias {
            Some(a) => format!("{a}.{c}"),
            None => c.to_string(),
        }
    }

    fn expr(&mut self, depth: u32, alias: Option<&str>, agg: bool) -> String {
        if depth == 0 || self.rng.gen_bool(0.25) {
            return if self.rng.gen_bool(0.6) {
                self.column(alias)
            } else {
                self.pick(LITERALS).to_string()
            };
        }
        let d = depth - 1;
        match self.rng.gen_range(0..14) {
            0..=2 => {
                let op = self.pick(BINOPS);
                format!(
                    "({} {op} {})",
                    self.expr(d, alias, agg),
                    self.expr(d, alias, agg)
                )
            }
            3 => format!("{}({})", self.pick(FUNCS1), self.expr(d, alias, agg)),
            4 => format!(
                "{}({}, {})",
                self.pick(FUNCS2),
                self.expr(d, alias, agg),
                self.expr(d, alias, agg)
            ),
            5 => format!("CAST({} AS {})", self.expr(d, alias, agg), self.pick(TYPES)),
            6 => format!(
                "CASE WHEN {} THEN {} ELSE {} END",
                self.expr(d, alias, agg),
                self.expr(d, alias, agg),
                self.expr(d, alias, agg)
            ),
            7 => format!(
                "{} IN ({}, {})",
                self.expr(d, alias, agg),
                self.expr(d, alias, agg),
                self.pick(LITERALS)
            ),
            8 => format!(
                "{} BETWEEN {} AND {}",
                self.expr(d, alias, agg),
                self.pick(LITERALS),
                self.pick(LITERALS)
            ),
            9 => format!("{} IS NULL", self.expr(d, alias, agg)),
            10 => format!("{} LIKE '%x_'", self.expr(d, alias, agg)),
            11 if agg => {
                let f = self.pick(AGGS);
                if f == "count" && self.rng.gen_bool(0.3) {
                    "count(*)".into()
                } else {
                    let distinct = if self.rng.gen_bool(0.2) {
                        "DISTINCT "
                    } else {
                        ""
                    };
                    format!("{f}({distinct}{})", self.expr(d, alias, false))
                }
            }
            12 => format!(
                "EXISTS (SELECT 1 FROM t2 WHERE t2.a = {})",
                self.expr(d, alias, false)
            ),
            13 => format!("EXTRACT(HOUR FROM {})", self.expr(d, alias, agg)),
            _ => format!("-{}", self.expr(d, alias, agg)),
        }
    }

    fn relation(&mut self) -> (String, Option<String>) {
        let base = if !self.views.is_empty() && self.rng.gen_bool(0.2) {
            let i = self.rng.gen_range(0..self.views.len());
            return (self.views[i].clone(), None);
        } else if self.rng.gen_bool(0.5) {
            "t1"
        } else {
            "t2"
        };
        match self.rng.gen_range(0..6) {
            0 => (
                format!(
                    "TUMBLE({base}, d, INTERVAL '{} minutes') w",
                    self.rng.gen_range(0..20)
                ),
                Some("w".into()),
            ),
            1 => (
                format!(
                    "HOP({base}, d, INTERVAL '{} minutes', INTERVAL '{} minutes') w",
                    self.rng.gen_range(0..5),
                    self.rng.gen_range(0..30)
                ),
                Some("w".into()),
            ),
            2 => (
                format!("{base} x JOIN t2 y ON x.a = y.{}", self.column(None)),
                Some("x".into()),
            ),
            3 => (
                format!("{base} x LEFT JOIN t1 y ON x.b = y.b AND y.g"),
                Some("x".into()),
            ),
            _ => (base.to_string(), None),
        }
    }

    fn select(&mut self, for_view: bool) -> String {
        let (rel, alias) = self.relation();
        let alias = alias.as_deref();
        let grouped = self.rng.gen_bool(0.4);
        let depth = self.rng.gen_range(1..4);
        let mut items = Vec::new();
        let n = self.rng.gen_range(1..4);
        let mut group = Vec::new();
        for i in 0..n {
            if grouped && i == 0 {
                let g = self.column(alias);
                group.push(g.clone());
                items.push(format!("{g} AS k{i}"));
            } else {
                items.push(format!("{} AS v{i}", self.expr(depth, alias, grouped)));
            }
        }
        if rel.contains(" w") && self.rng.gen_bool(0.7) {
            items.push("w.window_start".into());
            if grouped {
                group.push("w.window_start".into());
            }
        }
        let mut sql = format!("SELECT {} FROM {rel}", items.join(", "));
        if self.rng.gen_bool(0.5) {
            sql.push_str(&format!(" WHERE {}", self.expr(depth, alias, false)));
        }
        if grouped {
            sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
            if self.rng.gen_bool(0.3) {
                sql.push_str(&format!(" HAVING {}", self.expr(1, alias, true)));
            }
        }
        if !for_view && self.rng.gen_bool(0.3) {
            sql.push_str(&format!(" ORDER BY 1 LIMIT {}", self.rng.gen_range(0..5)));
        }
        if self.rng.gen_bool(0.1) {
            sql = format!("SELECT * FROM ({sql}) s UNION ALL SELECT * FROM ({sql}) s2");
        }
        if self.rng.gen_bool(0.1) {
            sql = format!(
                "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY v0 ORDER BY v0) AS rn \
                 FROM ({sql}) s) r WHERE rn <= 3"
            );
        }
        sql
    }

    fn literal_for(&mut self, ty: &str) -> String {
        if self.rng.gen_bool(0.15) {
            return self.pick(LITERALS).to_string();
        }
        match ty {
            "INT" | "BIGINT" => self.rng.gen_range(-5..50).to_string(),
            "VARCHAR" => format!("'s{}'", self.rng.gen_range(0..9)),
            "TIMESTAMP" => format!(
                "'2026-11-28 12:{:02}:{:02}'",
                self.rng.gen_range(0..60),
                self.rng.gen_range(0..60)
            ),
            "BOOLEAN" => if self.rng.gen_bool(0.5) {
                "true"
            } else {
                "false"
            }
            .into(),
            _ => format!(
                "{}.{}",
                self.rng.gen_range(-9..99),
                self.rng.gen_range(0..99)
            ),
        }
    }

    fn statement(&mut self) -> String {
        match self.rng.gen_range(0..20) {
            0..=6 => self.select(false),
            7..=9 => {
                let name = format!("mv{}", self.next_view);
                self.next_view += 1;
                let emit = if self.rng.gen_bool(0.15) {
                    " EMIT ON WINDOW CLOSE"
                } else {
                    ""
                };
                let sql = format!(
                    "CREATE MATERIALIZED VIEW {name} AS {}{emit}",
                    self.select(true)
                );
                self.views.push(name);
                sql
            }
            10..=12 => {
                let table = if self.rng.gen_bool(0.5) { "t1" } else { "t2" };
                let rows: Vec<String> = (0..self.rng.gen_range(1..4))
                    .map(|_| {
                        let vals: Vec<String> =
                            COLUMNS.iter().map(|(_, t)| self.literal_for(t)).collect();
                        format!("({})", vals.join(", "))
                    })
                    .collect();
                format!("INSERT INTO {table} VALUES {}", rows.join(", "))
            }
            13 => format!(
                "UPDATE t1 SET b = {}, c = {} WHERE {}",
                self.expr(2, None, false),
                self.expr(1, None, false),
                self.expr(2, None, false)
            ),
            14 => format!("DELETE FROM t2 WHERE {}", self.expr(2, None, false)),
            15 => format!("EXPLAIN {}", self.select(false)),
            16 => format!(
                "EXPLAIN CREATE MATERIALIZED VIEW x AS {}",
                self.select(true)
            ),
            17 if !self.views.is_empty() => {
                let i = self.rng.gen_range(0..self.views.len());
                let v = self.views.remove(i);
                format!("DROP MATERIALIZED VIEW IF EXISTS {v} CASCADE")
            }
            _ => {
                // A valid statement, mutated token by token.
                let s = self.select(false);
                let mut words: Vec<&str> = s.split(' ').collect();
                for _ in 0..self.rng.gen_range(1..4) {
                    if words.is_empty() {
                        break;
                    }
                    let at = self.rng.gen_range(0..words.len());
                    match self.rng.gen_range(0..3) {
                        0 => {
                            words.remove(at);
                        }
                        1 => {
                            let w = words[self.rng.gen_range(0..words.len())];
                            words.insert(at, w);
                        }
                        _ => words.truncate(at),
                    }
                }
                words.join(" ")
            }
        }
    }
}

#[test]
fn random_statements_never_crash_the_server() {
    let server = TestServer::start();
    let n = env_or("FRESHET_FUZZ_STATEMENTS", 1500);
    let seed = seed();
    println!("sql fuzz: {n} statements, FRESHET_FUZZ_SEED={seed}");
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        views: Vec::new(),
        next_view: 0,
    };
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut codes = std::collections::BTreeMap::<String, u64>::new();
    let mut internal = Vec::new();
    rt().block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        let cols: Vec<String> = COLUMNS.iter().map(|(n, t)| format!("{n} {t}")).collect();
        c.batch_execute(&format!(
            "CREATE TABLE t1 ({}, PRIMARY KEY (a)); CREATE TABLE t2 ({});",
            cols.join(", "),
            cols.join(", ")
        ))
        .await
        .expect("tables");
        c.simple_query("SET statement_timeout = '5s'")
            .await
            .expect("timeout");
        let mut trace = std::env::var("FRESHET_FUZZ_LOG")
            .ok()
            .map(|p| std::fs::File::create(p).expect("FRESHET_FUZZ_LOG"));
        // FRESHET_FUZZ_REPLAY=<log>: the statements of an earlier run's log (lines
        // `N: sql;`), to narrow a failure down; each one's outcome goes to `<log>.out`.
        let replay: Option<Vec<String>> = std::env::var("FRESHET_FUZZ_REPLAY").ok().map(|p| {
            std::fs::read_to_string(p)
                .expect("FRESHET_FUZZ_REPLAY")
                .lines()
                .filter_map(|l| {
                    let (_, sql) = l.split_once(": ")?;
                    Some(sql.trim_end_matches(';').to_string())
                })
                .collect()
        });
        let mut outcomes = std::env::var("FRESHET_FUZZ_REPLAY")
            .ok()
            .map(|p| std::fs::File::create(format!("{p}.out")).expect("replay outcomes"));
        let n = replay.as_ref().map_or(n, |r| r.len() as u64);
        for i in 0..n {
            let sql = match &replay {
                Some(r) => r[i as usize].clone(),
                None => g.statement(),
            };
            if let Some(f) = trace.as_mut() {
                use std::io::Write;
                let _ = writeln!(f, "{i}: {sql};");
            }
            let res = c.simple_query(&sql).await;
            if let Some(f) = outcomes.as_mut() {
                use std::io::Write;
                let what = match &res {
                    Ok(_) => "ok".to_string(),
                    Err(e) => e
                        .as_db_error()
                        .map(|d| format!("{} {}", d.code().code(), d.message()))
                        .unwrap_or_else(|| e.to_string()),
                };
                let _ = writeln!(f, "{i}\t{what}");
            }
            match res {
                Ok(_) => ok += 1,
                Err(e) => {
                    let Some(db) = e.as_db_error() else {
                        panic!(
                            "statement {i} broke the connection: {e}\n{sql}\nserver log:\n{}",
                            server.log()
                        );
                    };
                    failed += 1;
                    *codes.entry(db.code().code().to_string()).or_default() += 1;
                    if db.code().code() == "XX000" && internal.len() < 8 {
                        internal.push(format!(
                            "{} <- {}",
                            db.message(),
                            &sql[..sql.len().min(160)]
                        ));
                    }
                    assert!(
                        db.code().code() != "XX000" || !db.message().contains("panic"),
                        "statement {i} panicked: {}\n{sql}",
                        db.message()
                    );
                }
            }
        }
        // Still serving, and still right.
        let row = c
            .query_one("SELECT count(*) FROM t1", &[])
            .await
            .expect("after the fuzz");
        let _: i64 = row.get(0);
    });
    println!("sql fuzz: {ok} succeeded, {failed} failed with errors {codes:?}, 0 panics");
    for m in &internal {
        println!("sql fuzz: internal error: {m}");
    }
    // An internal error is a bug too (a broken invariant, an error without its SQLSTATE).
    assert!(
        internal.is_empty(),
        "internal errors (replay with FRESHET_FUZZ_SEED={seed} FRESHET_FUZZ_STATEMENTS={n} \
         FRESHET_FUZZ_LOG=<file> to see every statement): {internal:#?}"
    );
    // A panic caught inside a guarded function is that statement's error (see
    // `freshet_planner::guarded_udfs`); one that reaches a statement boundary is a bug.
    let log = server.log();
    assert!(
        !log.contains("statement panicked") && !log.contains("panicked in the engine"),
        "a statement panicked:\n{log}"
    );
    assert!(
        ok > n / 10,
        "too few statements succeeded: the generator is off"
    );
}

/// A startup packet for protocol 3.0, user freshet.
/// A startup packet for `user` (the bootstrap superuser logs in at once; `alice` and
/// `carol` have passwords, so their connections reach the SCRAM exchange).
fn startup(user: &str) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for s in ["user", user, "database", "freshet", ""] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend(body);
    m
}

/// Password-family bodies: a SASLInitialResponse (well-formed or lying about its
/// length), a password string, or bytes.
fn password_body(rng: &mut StdRng) -> Vec<u8> {
    match rng.gen_range(0..3) {
        0 => {
            let mut b = b"SCRAM-SHA-256\0".to_vec();
            let data = b"n,,n=,r=fuzzfuzzfuzz";
            let len: i32 = *[data.len() as i32, -1, -7, 1 << 20]
                .get(rng.gen_range(0..4))
                .unwrap_or(&0);
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(data);
            b
        }
        1 => b"md5d41d8cd98f00b204e9800998ecf8427e\0".to_vec(),
        _ => (0..rng.gen_range(0..48)).map(|_| rng.gen()).collect(),
    }
}

fn random_message(rng: &mut StdRng) -> Vec<u8> {
    let tag = *[
        b'Q', b'P', b'B', b'E', b'D', b'S', b'H', b'C', b'X', b'd', b'f', b'p', 0, 255,
    ]
    .get(rng.gen_range(0..14))
    .unwrap_or(&b'Q');
    let body: Vec<u8> = match rng.gen_range(0..5) {
        0 => b"SELECT 1\0".to_vec(),
        4 => password_body(rng),
        1 => (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
        2 => {
            let mut b = b"\0SELECT $1\0".to_vec();
            b.extend_from_slice(&(rng.gen::<u16>()).to_be_bytes());
            b.extend((0..rng.gen_range(0..16)).map(|_| rng.gen::<u8>()));
            b
        }
        _ => Vec::new(),
    };
    let len: i64 = match rng.gen_range(0..6) {
        0 => -1,
        1 => 0,
        2 => rng.gen_range(0..1 << 30),
        3 => body.len() as i64 + 4 + rng.gen_range(1..100),
        _ => body.len() as i64 + 4,
    };
    let mut m = vec![tag];
    m.extend_from_slice(&(len as i32).to_be_bytes());
    m.extend(body);
    if rng.gen_bool(0.2) {
        let cut = rng.gen_range(0..m.len());
        m.truncate(cut);
    }
    m
}

#[test]
fn random_wire_messages_never_crash_the_server() {
    let server = TestServer::start();
    let n = env_or("FRESHET_FUZZ_CONNECTIONS", 300);
    let seed = seed();
    println!("wire fuzz: {n} connections, FRESHET_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let runtime = rt();
    runtime.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        c.batch_execute("CREATE USER alice PASSWORD 'a-pw'; CREATE USER carol PASSWORD 'c-pw'")
            .await
            .expect("users");
    });
    for i in 0..n {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut bytes = Vec::new();
        if rng.gen_bool(0.8) {
            let user = *["freshet", "alice", "carol"]
                .get(rng.gen_range(0..3))
                .unwrap_or(&"freshet");
            let mut packet = startup(user);
            if rng.gen_bool(0.1) {
                // A startup packet cut short, or with its length field changed.
                match rng.gen_range(0..2) {
                    0 => packet.truncate(rng.gen_range(0..packet.len())),
                    _ => packet[..4].copy_from_slice(&rng.gen_range(0u32..20_000).to_be_bytes()),
                }
            }
            bytes.extend(packet);
        } else if rng.gen_bool(0.5) {
            // An SSL or cancel request, or garbage, first.
            let code: u32 = *[80877103u32, 80877102, 80877104, rng.gen()]
                .get(rng.gen_range(0..4))
                .unwrap_or(&0);
            bytes.extend_from_slice(&8u32.to_be_bytes());
            bytes.extend_from_slice(&code.to_be_bytes());
        }
        for _ in 0..rng.gen_range(0..6) {
            bytes.extend(random_message(&mut rng));
        }
        let _ = s.write_all(&bytes);
        let mut sink = [0u8; 4096];
        let _ = s.read(&mut sink);
        drop(s);
        if i % 25 == 24 {
            runtime.block_on(async {
                let c = connect(&server.conn_str()).await.unwrap_or_else(|e| {
                    panic!(
                        "server stopped serving after {i} fuzzed connections: {e}\n{}",
                        server.log()
                    )
                });
                c.simple_query("SELECT 1").await.expect("SELECT 1");
            });
        }
    }
    runtime.block_on(async {
        let c = connect(&server.conn_str())
            .await
            .expect("connect after the fuzz");
        c.simple_query("SELECT 1").await.expect("SELECT 1");
    });
    // Every message is checked before pgwire decodes it (server/src/wire): no panic at all.
    let log = server.log();
    assert!(!log.contains("panicked at"), "the server panicked:\n{log}");
    println!("wire fuzz: {n} connections, server up, 0 panics");
}
