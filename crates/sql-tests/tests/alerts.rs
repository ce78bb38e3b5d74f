//! The shipped alert rules (`deploy/prometheus/freshet-alerts.yml`) and Grafana dashboard
//! (`deploy/grafana/freshet-dashboard.json`): promtool checks the rules and runs their unit
//! tests (one firing and one quiet case per rule); every metric they name must be in a
//! real server's `/metrics`; and the rules are evaluated over two real scrapes (before and
//! after a bad message arrives): exactly the parse-error alert fires.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use freshet_sql_tests::pgclient::connect;
use freshet_sql_tests::{http_get, KafkaBroker, TestServer};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// promtool (Debian's `prometheus` package; `scripts/clients.sh` installs it).
fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool is not installed ({e}): run scripts/clients.sh"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn alert_rules_pass_promtool() {
    let dir = deploy().join("prometheus");
    let (ok, out) = promtool(&["check", "rules", "freshet-alerts.yml"], &dir);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "freshet-alerts.test.yml"], &dir);
    assert!(ok, "{out}");
}

/// The metric names an expression text uses.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["freshet_", "process_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            // Not a word inside another (`freshet_catalog` in a summary, say).
            let before = rest[..i].chars().last();
            let name = &tail[..end];
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                out.insert(name.to_string());
            }
            rest = &tail[end..];
        }
    }
    out.retain(|n| !n.starts_with("freshet_catalog"));
    out
}

fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("- alert: ")
                .map(|s| s.trim().to_string())
        })
        .collect()
}

/// An alert expected to fire: its name, labels and summary.
type Expected<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

/// A promtool unit test over two scrapes: the first for minutes 0–2, the second from 3 on.
fn scrape_test(before: &str, after: &str, expected: &[Expected<'_>], all: &[String]) -> String {
    let samples = |m: &str| -> Vec<(String, String)> {
        m.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect()
    };
    let first: std::collections::BTreeMap<String, String> = samples(before).into_iter().collect();
    let mut t = String::from("rule_files:\n  - rules.yml\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n");
    for (series, b) in samples(after) {
        let a = first.get(&series).cloned().unwrap_or_else(|| b.clone());
        let series = series.replace('\'', "''");
        t.push_str(&format!(
            "      - series: '{series}'\n        values: '{a} {a} {a} {b} {b} {b} {b} {b}'\n"
        ));
    }
    t.push_str("    alert_rule_test:\n");
    for name in all {
        t.push_str(&format!(
            "      - eval_time: 7m\n        alertname: {name}\n"
        ));
        match expected.iter().find(|(n, _, _)| n == name) {
            None => t.push_str("        exp_alerts: []\n"),
            Some((_, labels, summary)) => {
                let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                t.push_str(&format!(
                    "        exp_alerts:\n          - exp_labels: {{{}}}\n            exp_annotations: {{summary: \"{summary}\"}}\n",
                    labels.join(", ")
                ));
            }
        }
    }
    t
}

#[test]
fn rules_and_dashboard_use_real_metrics_and_fire_on_real_scrapes() {
    let rules =
        std::fs::read_to_string(deploy().join("prometheus/freshet-alerts.yml")).expect("rules");
    let dashboard = std::fs::read_to_string(deploy().join("grafana/freshet-dashboard.json"))
        .expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(
        exprs.len() >= 20,
        "the dashboard has {} queries",
        exprs.len()
    );

    let broker = KafkaBroker::start();
    broker.create_topic("ev", 1);
    broker.create_topic("out", 1);
    broker.create_topic("lw", 1);
    let server = TestServer::start_with_args(&["--checkpoint-interval-ms", "100"]);
    let rt = freshet_sql_tests::runtime();
    let scrape = || {
        let (status, body) = http_get(&format!("{}/metrics", server.http_url()));
        assert_eq!(status, 200);
        body
    };
    let (before, after) = rt.block_on(async {
        let c = connect(&server.conn_str()).await.expect("connect");
        let addr = broker.addr();
        c.batch_execute(&format!(
            "CREATE SOURCE ev (k BIGINT, g VARCHAR)
               WITH (connector = 'kafka', topic = 'ev', properties.bootstrap.server = '{addr}')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW per_g AS SELECT g, count(*) AS c FROM ev GROUP BY g;
             CREATE SINK out_g FROM per_g WITH (connector = 'kafka', topic = 'out',
               properties.bootstrap.server = '{addr}', primary_key = 'g') FORMAT UPSERT ENCODE JSON;
             CREATE SOURCE lw (k BIGINT, ts TIMESTAMPTZ, WATERMARK FOR ts AS ts - INTERVAL '1 minute')
               WITH (connector = 'kafka', topic = 'lw', properties.bootstrap.server = '{addr}')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW lw_n AS SELECT count(*) AS n FROM lw;"
        ))
        .await
        .expect("setup");
        let good: Vec<Option<Vec<u8>>> = (0..200)
            .map(|k| Some(format!(r#"{{"k": {k}, "g": "g{}"}}"#, k % 3).into_bytes()))
            .collect();
        broker.produce("ev", None, None, &good);
        broker.produce("lw", None, None, &[Some(br#"{"k": 1, "ts": "2026-01-01T00:00:00Z"}"#.to_vec())]);
        c.batch_execute("FLUSH").await.expect("flush");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = scrape();
        broker.produce("ev", None, None, &[Some(b"{\"k\": oops".to_vec())]);
        c.batch_execute("FLUSH").await.expect("flush");
        tokio::time::sleep(Duration::from_millis(500)).await;
        (before, scrape())
    });
    // Every metric the rules and the dashboard name is served.
    let served: BTreeSet<String> = after
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect();
    let mut named = metric_names(&rules);
    for e in &exprs {
        named.extend(metric_names(e));
    }
    for n in &named {
        assert!(
            served.contains(n),
            "{n} is used by the rules or the dashboard but not served:\n{after}"
        );
    }
    // The rules over the two real scrapes: the bad message fires FreshetParseErrors for
    // its source, and nothing else fires on a healthy server.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("rules.yml"), &rules).expect("rules");
    let mut expected = vec![(
        "FreshetParseErrors",
        vec![("severity", "warning"), ("source", "ev")],
        "Source ev has messages that do not decode (see freshet_catalog.source_errors)",
    )];
    // This machine's disk decides that one.
    let disk = |name: &str| {
        after
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    if disk("freshet_disk_free_bytes") / disk("freshet_disk_total_bytes") < 0.10 {
        expected.push((
            "FreshetDiskNearlyFull",
            vec![("severity", "critical")],
            "Less than 10% disk free under Freshet's data directory on ",
        ));
    }
    let test = scrape_test(&before, &after, &expected, &alert_names(&rules));
    std::fs::write(dir.path().join("scrapes.test.yml"), &test).expect("test");
    let (ok, out) = promtool(&["test", "rules", "scrapes.test.yml"], dir.path());
    assert!(ok, "{out}\n{test}");
}
