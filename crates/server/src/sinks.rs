//! The running Kafka sinks: one delivery thread per sink
//! ([`freshet_connectors::kafka_sink`]), started with the sink (or the server) and
//! stopped before the sink's readers when it is dropped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use freshet_connectors::kafka_sink::{self, SinkHandle, SinkSpec, SinkStatus};
use freshet_connectors::sink_encode::Format;
use freshet_planner::catalog::{SinkFormat, ViewDef};
use freshet_storage::Store;

use crate::error::ServerError;

/// Undelivered changes past which a sink's source readers wait for it.
pub const MAX_BACKLOG: u64 = 1_000_000;

#[derive(Default)]
pub struct Sinks {
    running: Mutex<HashMap<u64, (SinkSpec, SinkHandle)>>,
}

impl Sinks {
    /// Starts sink `def`'s delivery, if it has a connector that delivers (Kafka).
    pub fn start(
        &self,
        store: &Store,
        def: &ViewDef,
        schema: &SchemaRef,
    ) -> Result<(), ServerError> {
        match spec(def, schema) {
            Some(spec) => self.start_spec(store, spec),
            None => Ok(()),
        }
    }

    /// Starts a delivery as `spec` says (again, after [`Sinks::stop`]).
    pub fn start_spec(&self, store: &Store, spec: SinkSpec) -> Result<(), ServerError> {
        let handle = kafka_sink::spawn(spec.clone(), store.clone()).map_err(|message| {
            ServerError::Connector {
                code: "58000",
                message,
            }
        })?;
        self.lock().insert(spec.sink_id, (spec, handle));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (SinkSpec, SinkHandle)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes sink `id`'s delivery out, told to stop: what it ran with, and its handle
    /// (dropping it waits for the thread, which can take a while with a broker away: drop
    /// it on a blocking thread).
    pub fn take(&self, id: u64) -> Option<(SinkSpec, SinkHandle)> {
        let (spec, h) = self.lock().remove(&id)?;
        h.signal_stop();
        Some((spec, h))
    }

    /// Every sink's handle, each told to stop; dropping them waits for their threads.
    pub fn take_all(&self) -> Vec<SinkHandle> {
        let all: Vec<SinkHandle> = self.lock().drain().map(|(_, (_, h))| h).collect();
        for h in &all {
            h.signal_stop();
        }
        all
    }

    /// Sink `id`'s live figures, if it delivers.
    pub fn status(&self, id: u64) -> Option<Arc<SinkStatus>> {
        self.lock().get(&id).map(|(_, h)| h.status.clone())
    }
}

/// What sink `def` (with columns `schema`) delivers with, if it is a Kafka sink.
pub fn spec(def: &ViewDef, schema: &SchemaRef) -> Option<SinkSpec> {
    let k = def.sink.as_ref().and_then(|s| s.kafka.as_ref())?;
    Some(SinkSpec {
        sink_id: def.id,
        sink_name: def.name.clone(),
        topic: k.topic.clone(),
        properties: k.properties.clone(),
        format: match k.format {
            SinkFormat::Plain => Format::Plain,
            SinkFormat::Upsert => Format::Upsert,
            SinkFormat::Debezium => Format::Debezium,
        },
        names: schema.fields().iter().map(|f| f.name().clone()).collect(),
        types: schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect(),
        key_columns: k.key_columns.clone(),
        exactly_once: k.exactly_once,
        max_backlog: MAX_BACKLOG,
    })
}

/// Waits while `status`'s backlog is over its bound (the broker is slow or away), unless
/// the sink stops: so a reader feeding a sink holds back the topic it reads instead of
/// growing the outbox without end.
pub fn wait_for_sink(status: &SinkStatus) {
    while status.paused.load(Ordering::Relaxed) && !status.closed.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
