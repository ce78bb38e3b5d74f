//! Runs every `.slt` file under `crates/sql-tests/slt/` against a real `freshet serve`
//! process, once over the simple query protocol and once over the extended protocol, each
//! run with a fresh server and data directory.
//!
//! `cargo test -p freshet-sql-tests --test slt -- [FILTER]` runs the files whose path
//! contains FILTER. Records can be limited to one protocol with `onlyif simple` /
//! `onlyif extended` (e.g. several statements in one query string, which the extended
//! protocol does not allow).
//!
//! A file starts its server with extra flags given in comment lines at its top:
//! `# freshet-args: --auth md5 --max-connections 5`. The pseudo-flag `--tls` gives the
//! server a fresh self-signed certificate, which the file's `freshet:connect …
//! sslmode=verify-full` logins trust.

use std::path::{Path, PathBuf};

use freshet_sql_tests::pgclient::{FreshetDb, Protocol, SharedServer};
use freshet_sql_tests::{certificate, TestServer};

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read slt dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            slt_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "slt") {
            out.push(p);
        }
    }
}

/// The server flags a file asks for (`# freshet-args: …` lines before its first record).
fn file_args(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .take_while(|l| l.trim().is_empty() || l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# freshet-args:"))
        .flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

async fn run_file(path: &Path, protocol: Protocol) -> Result<(), String> {
    let mut args = file_args(path);
    let certs = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut ca = None;
    if let Some(i) = args.iter().position(|a| a == "--tls") {
        let c = certificate(certs.path());
        args.splice(
            i..=i,
            ["--tls-cert".to_string(), c.cert, "--tls-key".into(), c.key],
        );
        ca = Some(c.ca);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let shared = SharedServer::with_tls(TestServer::start_with_args(&args), ca);
    let label = match protocol {
        Protocol::Simple => "simple",
        Protocol::Extended => "extended",
    };
    let mut runner = sqllogictest::Runner::new(|| {
        let shared = shared.clone();
        async move { FreshetDb::connect(shared, protocol).await }
    });
    runner.add_label(label);
    runner.with_hash_threshold(0);
    let res = runner.run_file_async(path).await;
    match res {
        Ok(()) => Ok(()),
        Err(e) => Err(format!(
            "{e}\n--- server log (tail) ---\n{}",
            tail(&shared.log(), 40)
        )),
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    files.retain(|f| {
        filter.is_empty()
            || filter
                .iter()
                .any(|x| f.to_string_lossy().contains(x.as_str()))
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut passed = 0;
    let mut failed = Vec::new();
    for f in &files {
        let name = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        for protocol in [Protocol::Simple, Protocol::Extended] {
            let started = std::time::Instant::now();
            match rt.block_on(run_file(f, protocol)) {
                Ok(()) => {
                    passed += 1;
                    println!("ok    {name} [{protocol:?}] {:.1?}", started.elapsed());
                }
                Err(e) => {
                    println!("FAIL  {name} [{protocol:?}]\n{e}\n");
                    failed.push(format!("{name} [{protocol:?}]"));
                }
            }
        }
    }
    println!("\nslt: {} passed, {} failed", passed, failed.len());
    for f in &failed {
        println!("  failed: {f}");
    }
    if files.is_empty() {
        println!("no .slt files matched");
        std::process::exit(1);
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
