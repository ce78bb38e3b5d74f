//! The process's Prometheus metrics (the `prometheus` crate), in one registry served at
//! `GET /metrics`. Counters and histograms are updated where things happen (readers,
//! the coordinator, sinks, sessions); gauges that describe stored state (RocksDB sizes,
//! a view's rows) are set when scraped, from counters and RocksDB's estimates, never by
//! scanning. See `docs/operations.md` for the reference.

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    // Sources, per (source, relation it feeds, partition).
    pub source_rows: IntCounterVec,
    pub source_bytes: IntCounterVec,
    pub source_lag: IntGaugeVec,
    pub source_parse_errors: IntCounterVec,
    pub source_late_events: IntCounterVec,
    /// Per source: messages its readers fetched, each decoded once for every view the
    /// reader feeds.
    pub source_fetched: IntCounterVec,
    /// Per (source, relation): the watermark, seconds since the epoch.
    pub source_watermark: GaugeVec,
    // Views and sinks, per name.
    pub view_rows_in: IntCounterVec,
    pub view_rows_out: IntCounterVec,
    pub view_rows: IntGaugeVec,
    pub view_state_bytes: IntGaugeVec,
    pub view_state_entries: IntGaugeVec,
    pub view_last_checkpoint: GaugeVec,
    pub view_failures: IntCounterVec,
    pub sink_messages: IntCounterVec,
    pub sink_bytes: IntCounterVec,
    pub sink_backlog: IntGaugeVec,
    pub sink_failures: IntCounterVec,
    pub sink_paused: IntGaugeVec,
    pub sink_last_delivery: GaugeVec,
    pub sink_batch_seconds: HistogramVec,
    // The server.
    pub checkpoint_seconds: prometheus::Histogram,
    pub checkpoints: IntCounter,
    /// Source batches applied side by side with other views' (see `coordinator::parallel`).
    pub parallel_batches: IntCounter,
    pub checkpoint_failures: IntCounter,
    pub last_checkpoint: prometheus::Gauge,
    pub connections: IntGauge,
    pub queries: IntCounterVec,
    pub query_seconds: HistogramVec,
    pub rocksdb: IntGaugeVec,
    pub disk_free_bytes: IntGauge,
    pub disk_total_bytes: IntGauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    fn new() -> Result<Metrics, prometheus::Error> {
        let r = Registry::new();
        let partition = &["source", "relation", "partition"];
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(opts(name, help), labels)?;
                r.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(opts(name, help), labels)?;
                r.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let fgauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
                let g = GaugeVec::new(opts(name, help), labels)?;
                r.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(exponential_buckets(0.0005, 2.5, 14)?),
                    labels,
                )?;
                r.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let m = Metrics {
            source_rows: counter("freshet_source_rows_total", "Messages read from a source partition.", partition)?,
            source_bytes: counter("freshet_source_bytes_total", "Payload bytes read from a source partition.", partition)?,
            source_lag: gauge("freshet_source_lag_messages", "Messages in a source partition not yet read (high watermark minus position).", partition)?,
            source_parse_errors: counter("freshet_source_parse_errors_total", "Messages of a source partition that did not decode (sent to freshet_catalog.source_errors).", partition)?,
            source_late_events: counter("freshet_source_late_events_total", "Events of a source partition below the watermark (sent to freshet_catalog.late_events).", partition)?,
            source_fetched: counter("freshet_source_fetched_total", "Messages the readers of a source fetched from the broker (a reader shared by several views fetches and decodes each message once).", &["source"])?,
            source_watermark: fgauge("freshet_source_watermark_seconds", "A source's watermark as a relation reading it saw it, seconds since the epoch.", &["source", "relation"])?,
            view_rows_in: counter("freshet_view_rows_in_total", "Changes that entered a view's (or sink's) dataflow.", &["view"])?,
            view_rows_out: counter("freshet_view_rows_out_total", "Changes a view's (or sink's) dataflow emitted.", &["view"])?,
            view_rows: gauge("freshet_view_rows", "Rows a materialized view holds (a counter kept with the view, not a scan).", &["view"])?,
            view_state_bytes: gauge("freshet_view_state_bytes", "Bytes a view's rows and operator state take in RocksDB (RocksDB's estimate).", &["view"])?,
            view_state_entries: gauge("freshet_view_state_entries", "Entries of a view's operator state (a count every commit keeps).", &["view"])?,
            view_last_checkpoint: fgauge("freshet_view_last_checkpoint_seconds", "When a checkpoint last committed changes of this view, seconds since the epoch.", &["view"])?,
            view_failures: counter("freshet_view_failures_total", "Batches a view's dataflow refused with an error.", &["view"])?,
            sink_messages: counter("freshet_sink_messages_total", "Messages a sink delivered.", &["sink"])?,
            sink_bytes: counter("freshet_sink_bytes_total", "Key and value bytes a sink delivered.", &["sink"])?,
            sink_backlog: gauge("freshet_sink_backlog_changes", "Changes committed for a sink and not yet delivered.", &["sink"])?,
            sink_failures: counter("freshet_sink_failures_total", "Failed delivery attempts of a sink (each retried).", &["sink"])?,
            sink_paused: gauge("freshet_sink_paused", "1 while a sink's backlog is over its bound and its readers wait.", &["sink"])?,
            sink_last_delivery: fgauge("freshet_sink_last_delivery_seconds", "When a sink last delivered a batch, seconds since the epoch.", &["sink"])?,
            sink_batch_seconds: histogram("freshet_sink_batch_seconds", "Time to deliver one batch to the broker.", &["sink"])?,
            checkpoint_seconds: {
                let h = prometheus::Histogram::with_opts(
                    HistogramOpts::new("freshet_checkpoint_seconds", "Time to commit one checkpoint (every view's changes, offsets, synced).")
                        .buckets(exponential_buckets(0.0005, 2.5, 14)?),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            parallel_batches: {
                let c = IntCounter::new("freshet_parallel_batches_total", "Source batches a view applied on a thread of its own, side by side with other views' batches.")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            checkpoints: {
                let c = IntCounter::new("freshet_checkpoints_total", "Checkpoints committed.")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            checkpoint_failures: {
                let c = IntCounter::new("freshet_checkpoint_failures_total", "Checkpoints that failed to commit (their work is redone).")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            last_checkpoint: {
                let g = prometheus::Gauge::new("freshet_last_checkpoint_seconds", "When the last checkpoint committed, seconds since the epoch.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            connections: {
                let g = IntGauge::new("freshet_connections", "Open client connections.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            queries: counter("freshet_queries_total", "Statements run, by kind (select, insert, update, delete, copy, ddl, subscribe, other) and outcome (ok, error).", &["kind", "outcome"])?,
            query_seconds: histogram("freshet_query_seconds", "Statement latency, by kind.", &["kind"])?,
            rocksdb: gauge("freshet_rocksdb", "RocksDB properties (rocksdb.<property>): live data, SST files, memtables, pending compaction bytes, running compactions and flushes.", &["property"])?,
            disk_free_bytes: {
                let g = IntGauge::new("freshet_disk_free_bytes", "Free bytes on the data directory's filesystem (for unprivileged users).")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            disk_total_bytes: {
                let g = IntGauge::new("freshet_disk_total_bytes", "Size of the data directory's filesystem in bytes.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            registry: Registry::new(),
        };
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics { registry: r, ..m })
    }

    /// Everything in Prometheus' text format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Forgets a dropped view's or sink's series.
    pub fn forget_relation(&self, name: &str) {
        for v in [&self.view_rows_in, &self.view_rows_out, &self.view_failures] {
            let _ = v.remove_label_values(&[name]);
        }
        for v in [
            &self.view_rows,
            &self.view_state_bytes,
            &self.view_state_entries,
            &self.sink_backlog,
            &self.sink_paused,
        ] {
            let _ = v.remove_label_values(&[name]);
        }
        for v in [&self.view_last_checkpoint, &self.sink_last_delivery] {
            let _ = v.remove_label_values(&[name]);
        }
        for v in [&self.sink_messages, &self.sink_bytes, &self.sink_failures] {
            let _ = v.remove_label_values(&[name]);
        }
        let _ = self.sink_batch_seconds.remove_label_values(&[name]);
        // The source series of the readers that fed it, every partition.
        for f in self.registry.gather() {
            if !f.name().starts_with("freshet_source_") {
                continue;
            }
            for m in f.get_metric() {
                let labels: std::collections::HashMap<&str, &str> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                if labels.get("relation") != Some(&name) {
                    continue;
                }
                let _ = match f.name() {
                    "freshet_source_rows_total" => self.source_rows.remove(&labels),
                    "freshet_source_bytes_total" => self.source_bytes.remove(&labels),
                    "freshet_source_lag_messages" => self.source_lag.remove(&labels),
                    "freshet_source_parse_errors_total" => self.source_parse_errors.remove(&labels),
                    "freshet_source_late_events_total" => self.source_late_events.remove(&labels),
                    "freshet_source_watermark_seconds" => self.source_watermark.remove(&labels),
                    _ => Ok(()),
                };
            }
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| match Metrics::new() {
    Ok(m) => m,
    // Only a bug (a duplicate or malformed name) gets here, and every test would see it.
    Err(e) => panic!("cannot register the metrics: {e}"),
});

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}
