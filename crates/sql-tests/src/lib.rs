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
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("freshet");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --bins` first or set FRESHET_BIN",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// A running `freshet serve` process owned by a test.
pub struct TestServer {
    pub port: u16,
    data_dir: tempfile::TempDir,
    child: Option<Child>,
    log_path: PathBuf,
    extra_args: Vec<String>,
}

impl TestServer {
    /// Starts a server on a free port with a fresh data directory.
    pub fn start() -> TestServer {
        Self::start_with_args(&[])
    }

    pub fn start_with_args(args: &[&str]) -> TestServer {
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
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
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
            .arg(self.data_dir.path().join("data"))
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn freshet");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "freshet exited during startup ({status}); log:\n{}",
                        self.log()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("freshet did not start listening; log:\n{}", self.log());
    }

    /// The server's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Graceful stop (SIGTERM) and start again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop_graceful();
        self.spawn();
    }

    /// `kill -9` and start again on the same port and data directory.
    pub fn kill9_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        self.spawn();
    }

    fn stop_graceful(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
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
