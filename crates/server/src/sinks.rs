//! The running Kafka sinks: one delivery thread per sink
//! ([`freshet_connectors::kafka_sink`]), started with the sink (or the server) and
//! stopped before the sink's readers when it is dropped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::datatypes::SchemaRef;
use freshet_connectors::kafka_sink::{self, SinkHandle, SinkSpec, SinkStatus};
use freshet_connectors::sink_encode::Format;
use freshet_planner::catalog::{Catalog, SinkFormat, ViewDef};
use freshet_storage::Store;

use crate::error::ServerError;

/// Undelivered changes past which the readers feeding a sink wait for it.
pub const MAX_BACKLOG: u64 = 1_000_000;

/// A running delivery: what it runs with, its thread, and the relations whose readers
/// wait for it.
type Running = (SinkSpec, SinkHandle, Vec<u64>);

#[derive(Default)]
pub struct Sinks {
    running: Mutex<HashMap<u64, Running>>,
    /// Per relation fed by readers (a view or sink reading sources, a table fed by a
    /// topic), the sinks downstream of it.
    gates: Mutex<HashMap<u64, Arc<Gate>>>,
}

/// What a reader waits on before it hands over a batch: every Kafka sink its relation
/// feeds, directly or through views. So a sink whose broker is slow or away holds back
/// the topics that feed it (through whatever views) instead of growing its outbox
/// without end; other relations' readers go on.
#[derive(Default)]
pub struct Gate {
    sinks: RwLock<Vec<Held>>,
}

/// A sink a gate waits for.
struct Held {
    status: Arc<SinkStatus>,
    sink_name: String,
    sink_id: u64,
    max_backlog: u64,
    store: Store,
}

impl Held {
    /// Whether the sink's committed backlog is over its bound, read from the store now
    /// (the delivery's own figures can be seconds old while its broker is away).
    fn over(&self) -> bool {
        if self.status.closed.load(Ordering::Relaxed) {
            return false;
        }
        let id = self.sink_id;
        let over = match self
            .store
            .read_snapshot(|r| freshet_engine::sink_log::position(r, id))
        {
            Ok(p) => p.backlog() > self.max_backlog,
            // Unreadable: go by what the delivery last saw.
            Err(_) => self.status.paused.load(Ordering::Relaxed),
        };
        self.status.paused.store(over, Ordering::Relaxed);
        over
    }
}

impl Gate {
    /// Waits while a sink downstream is over its backlog bound (and not stopping). The
    /// backlog is what is committed, so it can pass the bound by what the readers had
    /// handed over and the next checkpoint commits.
    pub fn wait(&self) {
        loop {
            if !self.is_held() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Whether a sink downstream is over its backlog bound now ([`Gate::wait`] would wait).
    pub fn is_held(&self) -> bool {
        self.sinks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(Held::over)
    }

    /// Why the readers are held back now, if they are: the sink over its bound.
    pub fn held_by(&self) -> Option<String> {
        let sinks = self.sinks.read().unwrap_or_else(|p| p.into_inner());
        let h = sinks.iter().find(|h| h.over())?;
        Some(format!(
            "Kafka sink \"{}\" has {} changes not yet delivered (its bound is {}): its \
             broker is slow or unreachable, and the source readers feeding it wait for it \
             (see freshet_catalog.sinks.last_error)",
            h.sink_name,
            h.status.backlog(),
            h.max_backlog
        ))
    }

    fn sinks(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Held>> {
        self.sinks.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sinks {
    /// Starts sink `def`'s delivery, if it has a connector that delivers (Kafka).
    pub fn start(
        &self,
        store: &Store,
        catalog: &Catalog,
        def: &ViewDef,
        schema: &SchemaRef,
    ) -> Result<(), ServerError> {
        match spec(def, schema) {
            Some(spec) => self.start_spec(store, spec, upstream(catalog, def)),
            None => Ok(()),
        }
    }

    /// Starts a delivery as `spec` says (again, after [`Sinks::take`]); the readers of
    /// `upstream` wait for it.
    pub fn start_spec(
        &self,
        store: &Store,
        spec: SinkSpec,
        upstream: Vec<u64>,
    ) -> Result<(), ServerError> {
        let handle = kafka_sink::spawn(spec.clone(), store.clone()).map_err(|message| {
            ServerError::Connector {
                code: "58000",
                message,
            }
        })?;
        for rel in &upstream {
            self.gate(*rel).sinks().push(Held {
                status: handle.status.clone(),
                sink_name: spec.sink_name.clone(),
                sink_id: spec.sink_id,
                max_backlog: spec.max_backlog,
                store: store.clone(),
            });
        }
        self.lock().insert(spec.sink_id, (spec, handle, upstream));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the readers feeding relation `rel` are held back, if they are.
    pub fn held_by(&self, rel: u64) -> Option<String> {
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&rel)
            .cloned()?;
        gate.held_by()
    }

    /// The gate of the readers feeding relation `rel`.
    pub fn gate(&self, rel: u64) -> Arc<Gate> {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(rel)
            .or_default()
            .clone()
    }

    /// Takes sink `id`'s delivery out, told to stop: what it ran with (its spec and the
    /// relations it held back), and its handle (dropping it waits for the thread, which
    /// can take a while with a broker away: drop it on a blocking thread).
    pub fn take(&self, id: u64) -> Option<Running> {
        let (spec, h, upstream) = self.lock().remove(&id)?;
        h.signal_stop();
        for rel in &upstream {
            self.gate(*rel)
                .sinks()
                .retain(|s| !Arc::ptr_eq(&s.status, &h.status));
        }
        Some((spec, h, upstream))
    }

    /// Every sink's handle, each told to stop; dropping them waits for their threads.
    pub fn take_all(&self) -> Vec<SinkHandle> {
        let all: Vec<SinkHandle> = self.lock().drain().map(|(_, (_, h, _))| h).collect();
        for h in &all {
            h.signal_stop();
        }
        self.gates.lock().unwrap_or_else(|p| p.into_inner()).clear();
        all
    }

    /// Relation `rel` was dropped: its readers' gate goes.
    pub fn forget_relation(&self, rel: u64) {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rel);
    }

    /// Sink `id`'s live figures, if it delivers.
    pub fn status(&self, id: u64) -> Option<Arc<SinkStatus>> {
        self.lock().get(&id).map(|(_, h, _)| h.status.clone())
    }
}

/// The relations whose readers feed sink `def`: itself (a sink over sources has readers
/// of its own), and every view and table it reads, directly or through views.
fn upstream(catalog: &Catalog, def: &ViewDef) -> Vec<u64> {
    let mut out = vec![def.id];
    let mut todo: Vec<u64> = def.depends_on.clone();
    while let Some(id) = todo.pop() {
        if out.contains(&id) {
            continue;
        }
        if let Some(v) = catalog.view_by_id(id) {
            out.push(id);
            todo.extend(v.depends_on.iter().copied());
        } else if catalog.tables.iter().any(|t| t.id == id) {
            out.push(id);
        }
    }
    out
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
        max_backlog: k.max_backlog.unwrap_or(MAX_BACKLOG),
    })
}
