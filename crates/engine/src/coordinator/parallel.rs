//! Source batches of different views applied side by side, on several threads.
//!
//! The coordinator gathers the source batches queued at one moment. Those of a view that
//! only reads sources, and that nothing else reads (no view over it, no subscriber, no
//! view being built from it), touch its own keys only: its rows, its operator state, its
//! offsets and watermarks. Each such view gets a transaction of its own, split off the
//! coordinator's ([`Txn::split_off`]: the writes buffered for the view's key ranges move
//! with it), and its batches are pushed through its dataflow on a thread, next to the
//! other views'. Then the transactions are merged back ([`Txn::absorb`]) and the rest of
//! each batch — dead letters, late events, offsets — is recorded on the coordinator, in
//! order. The next checkpoint commits every view's writes and offsets in one batch, as
//! before: views stay consistent with each other and exactly-once holds.
//!
//! A batch that fails is retried row by row inside the view's transaction, as on the
//! coordinator (see `ingest`); a panic rolls back its statement and rebuilds that view's
//! dataflow from its state.

use super::ingest::{push_rows, Rest};
use super::positions::watermark_key;
use super::*;

/// Source batches gathered at most before they are applied.
pub(super) const GATHER: usize = 16;

/// One queued source batch and who waits for it.
type Queued = (SourceData, Reply<()>);

/// A view's batches to apply on a thread: its dataflow, its definition (to rebuild the
/// dataflow after a panic), its transaction and the batches.
type Job<'a> = (&'a mut Dataflow, &'a ViewDesc, Txn, Vec<Queued>);

/// What is left to record of a batch its view applied on another thread.
struct Applied {
    view: RelationId,
    reply: Reply<()>,
    result: Result<Rest, EngineError>,
}

/// A view's key ranges: its rows and its state (offsets and watermarks included).
fn view_ranges(view: RelationId) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let rows = keys::rows_prefix(view);
    let state = keys::view_state_prefix(view);
    Some(vec![
        (rows.clone(), prefix_end(&rows)?),
        (state.clone(), prefix_end(&state)?),
    ])
}

impl Coordinator {
    /// Whether `view`'s source batches touch its own keys only (see the module
    /// documentation).
    fn applies_alone(&self, view: RelationId) -> bool {
        let Some(df) = self.views.iter().find(|d| d.view() == view) else {
            return false;
        };
        df.inputs().iter().all(|r| self.sources.contains(r))
            && self.sink_target(view).is_none()
            && !self.views.iter().any(|d| d.reads(view))
            && !self.subscribers.watches(view)
            && self.backfill.as_ref().is_none_or(|(b, _)| !b.reads(view))
    }

    /// Applies queued source batches: those of views that apply alone side by side, each
    /// view's in order; the others one after another, as [`Coordinator::handle`] does.
    pub(super) fn apply_sources(&mut self, batches: Vec<(Box<SourceData>, u64, Reply<()>)>) {
        let mut groups: Vec<(RelationId, Vec<Queued>)> = Vec::new();
        for (data, epoch, reply) in batches {
            if let Err(e) = self.current(epoch) {
                let _ = reply.send(Err(e));
                continue;
            }
            if !self.applies_alone(data.view) {
                self.handle(Command::Source(data, epoch, reply));
                continue;
            }
            match groups.iter_mut().find(|(v, _)| *v == data.view) {
                Some((_, g)) => g.push((*data, reply)),
                None => groups.push((data.view, vec![(*data, reply)])),
            }
        }
        if groups.len() < 2 || self.config.view_threads <= 1 {
            for (data, reply) in groups.into_iter().flat_map(|(_, g)| g) {
                self.apply_one(data, reply);
            }
            return;
        }
        // Each view's buffered writes go with it.
        let mut jobs: Vec<(RelationId, Txn, Vec<Queued>)> = Vec::new();
        for (view, g) in groups {
            match view_ranges(view).map(|r| self.txn.split_off(&r)) {
                Some(txn) => jobs.push((view, txn, g)),
                None => {
                    for (data, reply) in g {
                        self.apply_one(data, reply);
                    }
                }
            }
        }
        let n: usize = jobs.iter().map(|(_, _, g)| g.len()).sum();
        crate::metrics::metrics().parallel_batches.inc_by(n as u64);
        let done = self.run_jobs(jobs);
        for (txn, applied) in done {
            self.txn.absorb(txn);
            for a in applied {
                let res = a.result.and_then(|rest| self.record(rest));
                if res.is_err() {
                    self.count_failure(a.view);
                }
                let _ = a.reply.send(res);
            }
        }
    }

    /// A source batch applied on the coordinator thread, answered.
    fn apply_one(&mut self, data: SourceData, reply: Reply<()>) {
        let view = data.view;
        let res = self.apply_source(data);
        if res.is_err() {
            self.count_failure(view);
        }
        let _ = reply.send(res);
    }

    /// Runs each view's batches through its dataflow in its own transaction, the views
    /// spread over up to as many threads as there are cores (this one included).
    fn run_jobs(&mut self, jobs: Vec<(RelationId, Txn, Vec<Queued>)>) -> Vec<(Txn, Vec<Applied>)> {
        let lanes = self.config.view_threads.clamp(1, jobs.len().max(1));
        let Coordinator { views, descs, .. } = self;
        // Each job with its view's dataflow and definition.
        let mut work: Vec<Vec<Job<'_>>> = (0..lanes).map(|_| Vec::new()).collect();
        let mut jobs: HashMap<RelationId, (Txn, Vec<Queued>)> =
            jobs.into_iter().map(|(v, t, g)| (v, (t, g))).collect();
        let mut lane = 0;
        for df in views.iter_mut() {
            let Some(desc) = descs.iter().find(|d| d.id == df.view()) else {
                continue;
            };
            if let Some((txn, g)) = jobs.remove(&df.view()) {
                work[lane % lanes].push((df, desc, txn, g));
                lane += 1;
            }
        }
        // A view without its definition (never: they are kept together) stays alone.
        let orphans: Vec<(Txn, Vec<Queued>)> = jobs.into_values().collect();
        let run_lane = |lane: Vec<Job<'_>>| {
            lane.into_iter()
                .map(|(df, desc, mut txn, g)| {
                    let applied = g
                        .into_iter()
                        .map(|(data, reply)| {
                            let view = data.view;
                            // Statements catch their panics; this catches the rest, so
                            // that the view's transaction always comes back.
                            let caught =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    push_batch(df, desc, &mut txn, data)
                                }));
                            let result = match caught {
                                Ok(r) => r,
                                Err(p) => {
                                    // Its statements are undone; what is in memory may
                                    // not be: the dataflow is built anew from its state.
                                    rebuild(df, desc);
                                    Err(EngineError::Panicked(crate::panic_message(p.as_ref())))
                                }
                            };
                            Applied {
                                view,
                                reply,
                                result,
                            }
                        })
                        .collect::<Vec<_>>();
                    (txn, applied)
                })
                .collect::<Vec<_>>()
        };
        // Each lane in a slot it is taken from: by its thread, or by this one if the
        // thread cannot start, so no view's transaction is ever dropped.
        let mut lanes_iter = work.into_iter();
        let mine = lanes_iter.next().unwrap_or_default();
        let slots: Vec<std::sync::Mutex<Option<Vec<Job<'_>>>>> = lanes_iter
            .map(|lane| std::sync::Mutex::new(Some(lane)))
            .collect();
        let mut done = std::thread::scope(|scope| {
            let others: Vec<_> = slots
                .iter()
                .map(|slot| {
                    std::thread::Builder::new()
                        .name("freshet-view".into())
                        .stack_size(crate::STACK_SIZE)
                        .spawn_scoped(scope, || run_lane(take_lane(slot)))
                })
                .collect();
            let mut done = run_lane(mine);
            for (h, slot) in others.into_iter().zip(&slots) {
                match h {
                    Ok(h) => match h.join() {
                        Ok(d) => done.extend(d),
                        // Every batch catches its panics (above): not reached.
                        Err(p) => {
                            tracing::error!(panic = %crate::panic_message(p.as_ref()), "a view's thread panicked")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a view's thread; its views run here");
                        done.extend(run_lane(take_lane(slot)));
                    }
                }
            }
            done
        });
        for (txn, g) in orphans {
            done.push((
                txn,
                g.into_iter()
                    .map(|(data, reply)| Applied {
                        view: data.view,
                        reply,
                        result: Err(EngineError::UnknownRelation(data.view)),
                    })
                    .collect(),
            ));
        }
        done
    }
}

/// Runs `f` as one statement of `txn`: all its writes or none. A panic rolls it back and
/// builds the view's dataflow anew (its state is read back from `txn`), as
/// [`Coordinator::statement`] does for every view.
fn statement(
    df: &mut Dataflow,
    desc: &ViewDesc,
    txn: &mut Txn,
    f: impl FnOnce(&mut Dataflow, &mut Txn) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    txn.begin_statement();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(df, txn)))
        .unwrap_or_else(|p| {
            let what = crate::panic_message(p.as_ref());
            tracing::error!(panic = %what, view = %desc.name, "a statement panicked in a view; it is undone");
            Err(EngineError::Panicked(what))
        });
    match res {
        Ok(()) => {
            txn.end_statement();
            Ok(())
        }
        Err(e) => {
            txn.rollback_statement();
            if matches!(e, EngineError::Panicked(_)) {
                rebuild(df, desc);
            }
            Err(e)
        }
    }
}

/// What a lane's slot holds, taken out (nothing if it was taken already).
fn take_lane<T>(slot: &std::sync::Mutex<Option<Vec<T>>>) -> Vec<T> {
    slot.lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or_default()
}

/// Builds the view's dataflow anew; it reads its state back from the transaction.
fn rebuild(df: &mut Dataflow, desc: &ViewDesc) {
    match Dataflow::for_view(desc) {
        Ok(d) => *df = d,
        Err(e) => tracing::error!(error = %e, "rebuilding the view failed"),
    }
}

/// [`Coordinator::apply_source`]'s part that touches the view alone: the rows (one by one
/// if the batch fails, the failing ones becoming dead letters) and the watermark.
fn push_batch(
    df: &mut Dataflow,
    desc: &ViewDesc,
    txn: &mut Txn,
    data: SourceData,
) -> Result<Rest, EngineError> {
    let (chunk, positions, watermark, mut rest) = data.split();
    let (view, source) = (rest.view, rest.source);
    push_rows(&desc.name, &chunk, &positions, &mut rest.errors, |c| {
        statement(df, desc, txn, |df, txn| df.push(source, c, txn).map(|_| ()))
    })?;
    if let Some(wm) = watermark {
        let res = statement(df, desc, txn, |df, txn| {
            df.watermark(source, wm, txn).map(|_| ())
        });
        if let Err(e) = res {
            rest.errors
                .push(window_close_error(&format!("view {}", desc.name), wm, &e));
        }
        txn.put(watermark_key(view, source), wm.to_be_bytes().to_vec());
    }
    Ok(rest)
}
