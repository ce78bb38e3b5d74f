//! Test harness: starts a real `freshet serve` process on a free port with a fresh data
//! directory, and lets tests restart it gracefully or `kill -9` it.
//!
//! The `freshet` binary is looked up next to the test executable's `deps/` folder (so
//! `cargo build --bins` must have run first; `scripts/test.sh` does that), or taken from
//! the `FRESHET_BIN` environment variable.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod pgclient;

/// Path of the `freshet` binary under test.
pub fn freshet_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FRESHET_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // Tests live in target/<profile>/deps/, binaries such as the benchmarks in target/<profile>/.
    let mut profile_dir = exe.parent().expect("executable has a directory");
    if profile_dir.ends_with("deps") {
        profile_dir = profile_dir.parent().expect("target/<profile>");
    }
    let bin = profile_dir.join("freshet");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --bins` first or set FRESHET_BIN",
        bin.display()
    );
    bin
}

/// A two-worker tokio runtime for a test's clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// TLS files for a test server, made with openssl in a directory.
pub struct TestCerts {
    /// The CA certificate clients trust (`sslrootcert`).
    pub ca: String,
    /// The server's certificate, for localhost and 127.0.0.1, signed by the CA.
    pub cert: String,
    pub key: String,
}

/// A CA and a server certificate signed by it in `dir` (a CA and a leaf, as real
/// deployments have: rustls refuses a CA certificate as the server's own).
pub fn certificate(dir: &Path) -> TestCerts {
    let path = |name: &str| dir.join(name).to_string_lossy().to_string();
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write extensions");
    let steps: [Vec<String>; 3] = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=freshet-test-ca",
            "-keyout",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([path("ca.key"), "-out".into(), path("ca.crt")])
        .collect(),
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([path("server.key"), "-out".into(), path("server.csr")])
        .collect(),
        ["x509", "-req", "-days", "2", "-CAcreateserial", "-in"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                path("server.csr"),
                "-CA".into(),
                path("ca.crt"),
                "-CAkey".into(),
                path("ca.key"),
                "-extfile".into(),
                ext.to_string_lossy().to_string(),
                "-out".into(),
                path("server.crt"),
            ])
            .collect(),
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    TestCerts {
        ca: path("ca.crt"),
        cert: path("server.crt"),
        key: path("server.key"),
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// Whether process `pid` holds the listening TCP socket on `port` (Linux: the socket's
/// inode in `/proc/net/tcp` among the process's file descriptors).
fn listens_on(pid: u32, port: u16) -> bool {
    const LISTEN: &str = "0A";
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return true; // no procfs: trust the connect
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit(':').next()?;
            let listening = *f.get(3)? == LISTEN;
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| f.get(9).map(|s| format!("socket:[{s}]")))?
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
            .unwrap_or(false)
    })
}

/// A running `freshet serve` process owned by a test.
pub struct TestServer {
    pub port: u16,
    data_dir: tempfile::TempDir,
    child: Option<Child>,
    log_path: PathBuf,
    extra_args: Vec<String>,
    /// The data directory, if not `data` inside `data_dir`.
    data_path: Option<PathBuf>,
    /// Environment variables of the server process (see [`TestServer::set_env`]).
    env: Vec<(String, String)>,
    /// The HTTP port (`/metrics`, the status page), unless the test set `--http-listen`.
    pub http_port: u16,
}

impl TestServer {
    /// Starts a server on a free port with a fresh data directory.
    pub fn start() -> TestServer {
        Self::start_with_args(&[])
    }

    pub fn start_with_args(args: &[&str]) -> TestServer {
        Self::start_in(None, args)
    }

    /// Starts a server whose data directory is `data_path` (say, on a small filesystem)
    /// instead of a fresh temporary one.
    pub fn start_in(data_path: Option<PathBuf>, args: &[&str]) -> TestServer {
        let data_dir = tempfile::Builder::new()
            .prefix("freshet-test-")
            .tempdir()
            .expect("tempdir");
        let log_path = data_dir.path().with_extension("log");
        let mut s = TestServer {
            port: free_port(),
            data_dir,
            child: None,
            log_path,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            data_path,
            env: Vec::new(),
            http_port: free_port(),
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// `http://127.0.0.1:PORT` of the HTTP port.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=freshet dbname=freshet",
            self.port
        )
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open server log");
        let child = Command::new(freshet_bin())
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(
                self.data_path
                    .clone()
                    .unwrap_or_else(|| self.data_dir.path().join("data")),
            )
            .args(&self.extra_args)
            .args(
                (!self.extra_args.iter().any(|a| a == "--http-listen"))
                    .then(|| {
                        [
                            "--http-listen".to_string(),
                            format!("127.0.0.1:{}", self.http_port),
                        ]
                    })
                    .into_iter()
                    .flatten(),
            )
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn freshet");
        self.child = Some(child);
        if !self.wait_ready() {
            // Another process took the port between `free_port` and the bind (tests run
            // in parallel): start again on another one.
            self.port = free_port();
            self.http_port = free_port();
            self.spawn();
        }
    }

    /// Waits until the server listens; `false` if it could not bind its port.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        let exited = |s: &mut TestServer| -> Option<std::process::ExitStatus> {
            s.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
        };
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // The listener may be another process's (a parallel test's server, broker
                // or proxy that drew the same port): ready only once ours holds it.
                let ours = self.pid().is_some_and(|pid| listens_on(pid, self.port));
                match exited(self) {
                    None if ours => return true,
                    None => {}
                    Some(_) if self.log().contains("cannot listen on") => {
                        self.child = None;
                        return false;
                    }
                    Some(status) => panic!(
                        "freshet exited during startup ({status}); log:\n{}",
                        self.log()
                    ),
                }
            }
            if let Some(status) = exited(self) {
                if self.log().contains("cannot listen on") {
                    self.child = None;
                    return false;
                }
                panic!(
                    "freshet exited during startup ({status}); log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("freshet did not start listening; log:\n{}", self.log());
    }

    /// The server process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The server's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Starts the server again after [`TestServer::stop`], with `args` instead of the
    /// ones it was started with.
    pub fn start_again(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "the server is running");
        self.extra_args = args.iter().map(|s| s.to_string()).collect();
        self.spawn();
    }

    /// Graceful stop (SIGTERM); returns how the process exited.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.stop_graceful()
    }

    /// Graceful stop (SIGTERM) and start again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop_graceful();
        self.spawn();
    }

    /// Sets (`Some`) or removes an environment variable of the server's next start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Waits up to `timeout` for the server to exit by itself; whether it did (then it
    /// can be started again with [`TestServer::start_again`]).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `kill -9` and start again on the same port and data directory.
    pub fn kill9_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        self.spawn();
    }

    fn stop_graceful(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                _ if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("freshet did not stop within 30 s of SIGTERM");
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A Tansu broker (Kafka-compatible) with in-memory storage on a free port, owned by a
/// test and killed when dropped. The binary comes from `scripts/tansu.sh path`, which
/// installs it on first use.
pub struct KafkaBroker {
    /// Where the broker itself listens.
    pub port: u16,
    bin: PathBuf,
    child: Child,
    /// A proxy every client goes through (the broker advertises it), to cut the broker
    /// off and bring it back.
    proxy: Option<Proxy>,
}

/// A TCP proxy that can drop every connection and refuse new ones, then heal.
struct Proxy {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::net::TcpStream>::new()));
        let (open2, conns2) = (open.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !open2.load(Ordering::SeqCst) {
                    drop(client); // refused: closed at once
                    continue;
                }
                let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut held = conns2.lock().unwrap_or_else(|p| p.into_inner());
                for (from, to) in [(&client, &upstream), (&upstream, &client)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
                held.push(client);
                held.push(upstream);
            }
        });
        Proxy { port, open, conns }
    }
}

impl KafkaBroker {
    pub fn start() -> KafkaBroker {
        Self::launch(false)
    }

    /// A broker that clients reach through a proxy: [`KafkaBroker::cut`] makes it
    /// unreachable (connections reset, new ones refused) with its data intact, as a
    /// broker restart or a network partition does; [`KafkaBroker::heal`] brings it back.
    pub fn start_proxied() -> KafkaBroker {
        Self::launch(true)
    }

    /// Drops every client connection and refuses new ones.
    pub fn cut(&self) {
        if let Some(p) = &self.proxy {
            p.open.store(false, std::sync::atomic::Ordering::SeqCst);
            for c in p.conns.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Lets clients in again.
    pub fn heal(&self) {
        if let Some(p) = &self.proxy {
            p.open.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn launch(proxied: bool) -> KafkaBroker {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tansu.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("path")
            .output()
            .expect("run scripts/tansu.sh");
        assert!(
            out.status.success(),
            "scripts/tansu.sh path failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let proxy = proxied.then(|| Proxy::start(port));
        let advertised = match &proxy {
            Some(p) => format!("tcp://127.0.0.1:{}", p.port),
            None => url.clone(),
        };
        let child = Command::new(&bin)
            .arg("broker")
            .arg("--storage-engine=memory://tansu/")
            .arg(format!("--listener-url={url}"))
            .arg(format!("--advertised-listener-url={advertised}"))
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("CLUSTER_ID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        KafkaBroker {
            port,
            bin,
            child,
            proxy,
        }
    }

    /// `host:port` for `properties.bootstrap.server` (the proxy's, if it has one).
    pub fn addr(&self) -> String {
        let port = self.proxy.as_ref().map_or(self.port, |p| p.port);
        format!("127.0.0.1:{port}")
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .arg("--broker")
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success(),
            "creating topic {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Events/s of this process consuming `n` messages of `topic` (partitions
    /// `0..partitions`) from the start and decoding each with `decoder`: the ceiling the
    /// benchmarks compare Freshet's Kafka ingest with.
    pub fn consume_and_decode(
        &self,
        topic: &str,
        partitions: u32,
        decoder: &freshet_connectors::decode::Decoder,
        n: usize,
    ) -> f64 {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Message;
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("group.id", "bench-ceiling")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let t = Instant::now();
        let mut seen = 0;
        while seen < n {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let row = decoder.decode(m.payload().unwrap_or_default());
                assert!(matches!(row, Ok(Some(_))), "decode failed");
                seen += 1;
            }
        }
        n as f64 / t.elapsed().as_secs_f64()
    }

    /// Every message of `topic` now, per partition in offset order (partitions in
    /// order), read with a plain consumer from the start to each partition's end.
    pub fn read_topic(&self, topic: &str) -> Vec<TopicMessage> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::{Headers, Message};
        let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition_offset(topic, *p, rdkafka::Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let mut ended = std::collections::HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while ended.len() < parts.len() {
            assert!(Instant::now() < deadline, "reading {topic} took too long");
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    let header = |k: &str| {
                        m.headers().and_then(|h| {
                            h.iter()
                                .find(|x| x.key == k)
                                .and_then(|x| x.value)
                                .map(|v| String::from_utf8_lossy(v).to_string())
                        })
                    };
                    out.push(TopicMessage {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).to_string()),
                        value: m.payload().map(|v| String::from_utf8_lossy(v).to_string()),
                        seq: header("freshet_seq").and_then(|s| s.parse().ok()),
                    });
                }
            }
        }
        out.sort_by_key(|m| (m.partition, m.offset));
        out
    }

    /// A producer for this broker (it never auto-creates topics).
    pub fn producer(&self) -> rdkafka::producer::BaseProducer {
        rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("allow.auto.create.topics", "false")
            .set("linger.ms", "5")
            .create()
            .expect("kafka producer")
    }

    /// Produces messages (`None` payload: a null value) and waits until all are acknowledged.
    pub fn produce(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&str>,
        payloads: &[Option<Vec<u8>>],
    ) {
        use rdkafka::producer::{BaseRecord, Producer};
        let producer = self.producer();
        for p in payloads {
            let mut rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic);
            if let Some(p) = p {
                rec = rec.payload(p.as_slice());
            }
            if let Some(k) = key {
                rec = rec.key(k);
            }
            if let Some(part) = partition {
                rec = rec.partition(part);
            }
            let mut rec = rec;
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        assert!(
                            matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            ),
                            "produce to {topic} failed: {e}"
                        );
                        producer.poll(Duration::from_millis(10));
                        rec = r;
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("flush produced messages");
    }
}

/// A message read back by [`KafkaBroker::read_topic`]; `seq`: its `freshet_seq` header.
#[derive(Clone, Debug)]
pub struct TopicMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// `None`: a tombstone.
    pub value: Option<String>,
    pub seq: Option<u64>,
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET url` (plain `http://host:port/path`); the status code and body.
pub fn http_get(url: &str) -> (u16, String) {
    http_request("GET", url)
}

/// A bodiless HTTP/1.1 request; the status code and body.
pub fn http_request(method: &str, url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s =
        std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).expect("read reply");
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // hyper answers small bodies with Content-Length; a chunked one would need decoding.
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked reply"
    );
    (status, body.to_string())
}

/// Produces test events to a broker from any thread, knowing only its port.
pub struct BrokerAddr(pub u16);

impl BrokerAddr {
    /// Events `{"k", "g", "n", "ts"}` for `k` in `from..to`, `k % partitions` being the
    /// partition (as `tests/operations.rs` expects them).
    pub fn produce_events(&self, topic: &str, from: i64, to: i64, partitions: i32) {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{}", self.0))
            .set("allow.auto.create.topics", "false")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        for k in from..to {
            let payload = format!(
                r#"{{"k": {k}, "g": "g{}", "n": {}, "ts": "2026-01-01T00:{:02}:00Z"}}"#,
                k % 7,
                k % 100,
                (k / 50) % 60
            );
            let mut rec = BaseRecord::<'_, (), str>::to(topic)
                .payload(payload.as_str())
                .partition((k % partitions as i64) as i32);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        producer.poll(Duration::from_millis(10));
                        rec = r;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }
}

/// The `p`-th percentile (0–100) of `sorted`, nearest rank; NaN when it is empty. For the
/// benchmarks' latency figures.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
