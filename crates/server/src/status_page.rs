//! The status page (`GET /` on the HTTP port): sources with lag and rates, views with
//! freshness, state size and dataflow plan, sinks, reader problems and the latest dead
//! letters, from the same relations as `freshet_catalog` and the same counters as
//! `/metrics`. Server-rendered HTML; a little JavaScript reloads it every few seconds.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;

use crate::session::Db;

const STYLE: &str = r#"
:root { --bg:#0f1419; --panel:#171e26; --line:#263241; --text:#dde6ee; --dim:#8899a8;
        --ok:#3fb950; --warn:#d29922; --bad:#f85149; --accent:#58a6ff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;
       background:var(--bg); color:var(--text); }
header { display:flex; align-items:baseline; gap:24px; padding:14px 24px;
         border-bottom:1px solid var(--line); background:var(--panel); flex-wrap:wrap; }
header h1 { margin:0; font-size:20px; color:var(--accent); }
.kpi { color:var(--dim); } .kpi b { color:var(--text); font-size:16px; }
main { padding:8px 24px 40px; }
section { margin-top:22px; }
h2 { font-size:15px; text-transform:uppercase; letter-spacing:.06em; color:var(--dim);
     margin:0 0 8px; }
table { border-collapse:collapse; width:100%; background:var(--panel);
        border:1px solid var(--line); border-radius:6px; overflow:hidden; }
th, td { padding:6px 10px; text-align:left; border-bottom:1px solid var(--line);
         vertical-align:top; }
th { color:var(--dim); font-weight:600; font-size:12px; text-transform:uppercase; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
tr:last-child td { border-bottom:none; }
.bad { color:var(--bad); font-weight:600; } .warn { color:var(--warn); } .ok { color:var(--ok); }
.empty { color:var(--dim); padding:10px; background:var(--panel); border:1px dashed var(--line);
         border-radius:6px; }
details { background:var(--panel); border:1px solid var(--line); border-radius:6px;
          margin:6px 0; padding:6px 10px; }
summary { cursor:pointer; } pre { margin:8px 0 2px; color:#b8c7d4; overflow:auto; }
footer { color:var(--dim); padding:0 24px 20px; font-size:12px; }
"#;

const SCRIPT: &str = r#"
const box = document.getElementById('autorefresh');
box.checked = localStorage.getItem('freshet-autorefresh') !== 'off';
box.onchange = () => localStorage.setItem('freshet-autorefresh', box.checked ? 'on' : 'off');
setInterval(() => { if (box.checked) location.reload(); }, 5000);
"#;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A timestamp as how long ago it was.
fn ago(micros: i64) -> String {
    let secs = (freshet_engine::wall_clock_micros() - micros) as f64 / 1e6;
    if secs < 0.0 {
        "now".into()
    } else if secs < 120.0 {
        format!("{secs:.1} s ago")
    } else if secs < 7200.0 {
        format!("{:.0} min ago", secs / 60.0)
    } else {
        format!("{:.1} h ago", secs / 3600.0)
    }
}

fn bytes(n: i64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n} B"),
    }
}

/// One cell: its text, its CSS class.
fn cell(column: &str, v: &ScalarValue) -> (String, &'static str) {
    if v.is_null() {
        return (String::new(), "");
    }
    match v {
        ScalarValue::TimestampMicrosecond(Some(t), _) => (ago(*t), ""),
        ScalarValue::Int64(Some(n)) if column.contains("bytes") => (bytes(*n), "num"),
        ScalarValue::Int64(Some(n)) => {
            let class = match column {
                "lag" | "backlog" | "parse_errors" | "late_events" | "failures" | "restarts"
                    if *n > 0 =>
                {
                    "num warn"
                }
                _ => "num",
            };
            (n.to_string(), class)
        }
        ScalarValue::Int32(Some(n)) => (n.to_string(), "num"),
        ScalarValue::Float64(Some(f)) if column == "rows_per_second" => {
            (format!("{f:.1}/s"), "num")
        }
        ScalarValue::Float64(Some(f)) => (format!("{f:.4}"), "num"),
        ScalarValue::Boolean(Some(b)) => (
            b.to_string(),
            if *b && column == "paused" { "bad" } else { "" },
        ),
        other => {
            let s = other.to_string();
            let class = match (column, s.as_str()) {
                ("last_error" | "error", _) => "bad",
                ("status" | "state", "failed") => "bad",
                ("status" | "state", "restarting") => "warn",
                ("status" | "state", "running") => "ok",
                _ => "",
            };
            (s, class)
        }
    }
}

fn table(id: &str, schema: &SchemaRef, rows: &[Vec<ScalarValue>]) -> String {
    if rows.is_empty() {
        return format!(r#"<div class="empty" id="{id}">none</div>"#);
    }
    let mut out = format!(r#"<table id="{id}"><thead><tr>"#);
    for f in schema.fields() {
        out.push_str(&format!("<th>{}</th>", esc(&f.name().replace('_', " "))));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for (f, v) in schema.fields().iter().zip(row) {
            let (text, class) = cell(f.name(), v);
            out.push_str(&format!(r#"<td class="{class}">{}</td>"#, esc(&text)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

fn relation(db: &Db, name: &str, id: &str) -> String {
    match db.system_relation(name) {
        Ok(Some((schema, rows))) => table(id, &schema, &rows),
        Ok(None) => String::new(),
        Err(e) => format!(
            r#"<div class="empty bad" id="{id}">{}</div>"#,
            esc(&e.to_string())
        ),
    }
}

/// The whole page.
pub fn render(db: &Db) -> String {
    let m = freshet_engine::metrics::metrics();
    let last = m.last_checkpoint.get();
    let last = if last > 0.0 {
        ago((last * 1e6) as i64)
    } else {
        "never".into()
    };
    let disk = m.disk_free_bytes.get();
    // On disk plus not yet flushed.
    let live = m.rocksdb.with_label_values(&["total-sst-files-size"]).get()
        + m.rocksdb
            .with_label_values(&["cur-size-all-mem-tables"])
            .get();
    let mut plans = String::new();
    for (name, kind, plan) in db.view_plans() {
        plans.push_str(&format!(
            "<details><summary><b>{}</b> <span class=\"kpi\">{kind}</span></summary><pre>{}</pre></details>",
            esc(&name),
            esc(&plan)
        ));
    }
    if plans.is_empty() {
        plans = r#"<div class="empty">none</div>"#.into();
    }
    let letters = match db.recent_dead_letters(10) {
        Ok(rows) if !rows.is_empty() => {
            let mut t = String::from(
                r#"<table id="dead-letters"><thead><tr><th>kind</th><th>source</th><th>partition</th><th>offset</th><th>detail</th></tr></thead><tbody>"#,
            );
            for r in rows {
                let detail = r.get(4..).map(|c| c.join(" · ")).unwrap_or_default();
                t.push_str(&format!(
                    "<tr><td class=\"warn\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    esc(&r[0]),
                    esc(r.get(1).map_or("", String::as_str)),
                    esc(r.get(2).map_or("", String::as_str)),
                    esc(r.get(3).map_or("", String::as_str)),
                    esc(&detail)
                ));
            }
            t.push_str("</tbody></table>");
            t
        }
        Ok(_) => r#"<div class="empty" id="dead-letters">none</div>"#.into(),
        Err(e) => format!(
            r#"<div class="empty bad" id="dead-letters">{}</div>"#,
            esc(&e.to_string())
        ),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Freshet status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head>
<body>
<header><h1>Freshet</h1>
<span class="kpi">last checkpoint <b id="last-checkpoint">{last}</b></span>
<span class="kpi">checkpoints <b>{checkpoints}</b> (failed <b class="{failed_class}">{failed}</b>)</span>
<span class="kpi">connections <b>{connections}</b></span>
<span class="kpi">data <b>{data}</b></span>
<span class="kpi">disk free <b>{disk}</b></span>
<label class="kpi"><input type="checkbox" id="autorefresh"> refresh every 5 s</label>
</header>
<main>
<section><h2>Sources</h2>{sources}</section>
<section><h2>Source readers</h2>{readers}</section>
<section><h2>Views and sinks</h2>{views}</section>
<section><h2>Sinks</h2>{sinks}</section>
<section><h2>Dataflows</h2>{plans}</section>
<section><h2>Latest dead letters</h2>{letters}</section>
</main>
<footer>Freshet {version} · <a href="/metrics" style="color:var(--accent)">/metrics</a> ·
SQL: <code>freshet_catalog.source_partitions</code>, <code>.views</code>, <code>.sinks</code>,
<code>.checkpoints</code></footer>
<script>{SCRIPT}</script>
</body></html>"#,
        checkpoints = m.checkpoints.get(),
        failed = m.checkpoint_failures.get(),
        failed_class = if m.checkpoint_failures.get() > 0 {
            "bad"
        } else {
            ""
        },
        connections = m.connections.get(),
        data = bytes(live),
        disk = bytes(disk),
        sources = relation(db, "source_partitions", "sources"),
        readers = relation(db, "source_status", "readers"),
        views = relation(db, "views", "views"),
        sinks = relation(db, "sinks", "sinks"),
        version = env!("CARGO_PKG_VERSION"),
    )
}
