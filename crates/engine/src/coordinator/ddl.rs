//! Definitions: tables, sources and views created and dropped, a new view built a step
//! at a time between the engine's other work (see [`crate::backfill`]), and every view's
//! dataflow rebuilt from its definition after a failed commit.

use super::*;

impl Coordinator {
    /// Every view's dataflow built anew from its definition (its state is read from the
    /// write buffer and what is committed).
    pub(super) fn rebuild_views(&mut self) -> Result<(), EngineError> {
        // A view being built is rebuilt too (its state is read back the same way; where
        // its scan is stays right, since a statement never moves it).
        if let Some((b, _)) = &mut self.backfill {
            let v = &b.desc;
            b.df = Dataflow::for_view(v)?;
        }
        self.views = self
            .descs
            .iter()
            .map(Dataflow::for_view)
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// Starts building view `v` (see [`crate::backfill`]): its dataflow, its initial
    /// output, the mark on its state until it is done, and the count of rows to read.
    pub(super) fn start_view(
        &mut self,
        mut v: ViewDesc,
        catalog: Vec<u8>,
    ) -> Result<Backfill, EngineError> {
        // A sink into a table keeps what it builds until it is done.
        if let Output::IntoTable { table, .. } = v.output {
            if !self.tables.contains_key(&table) {
                return Err(EngineError::UnknownRelation(table));
            }
            v.output = Output::IntoTable {
                table,
                staging: true,
            };
        }
        if self.schemas.contains_key(&v.id) {
            return Err(EngineError::Internal(format!(
                "relation id {} is taken: the view was not created",
                v.id
            )));
        }
        self.clean_slate(v.id)?;
        // Its operator state entries, counted by every commit from here (see
        // `freshet_storage::state_entries`): none yet.
        self.txn
            .put(keys::state_entries_key(v.id), 0i64.to_be_bytes().to_vec());
        let mut df = Dataflow::for_view(&v)?;
        df.init(&mut self.txn)?;
        let progress = crate::progress::start_backfill(v.id);
        self.txn
            .put(keys::BACKFILL.to_vec(), v.id.to_be_bytes().to_vec());
        let mut total = 0;
        for rel in df.source_entries() {
            total += self.count_stored(rel)?;
        }
        progress.total.store(total, Ordering::Relaxed);
        Ok(Backfill::new(v, df, catalog, progress))
    }

    /// Nothing stored under a new relation's id: an earlier build of a view that got it
    /// may have left state behind (its DDL failed at the last commit, say), and ids are
    /// handed out again when the catalog did not commit.
    pub(super) fn clean_slate(&mut self, id: RelationId) -> Result<(), EngineError> {
        self.clean_abandoned_backfill()?;
        for p in keys::relation_prefixes(id) {
            if let Some(end) = prefix_end(&p) {
                self.txn.delete_range(&p, &end)?;
            }
        }
        Ok(())
    }

    /// One step of the view being built; once it has read everything, it joins the
    /// views (committed with the next checkpoint, which answers its DDL).
    pub(super) fn backfill_step(&mut self) {
        let Some((mut b, w)) = self.backfill.take() else {
            return;
        };
        let res = self.statement(|c| {
            let inputs = Inputs {
                schemas: &c.schemas,
                tables: &c.tables,
                sources: &c.sources,
                views: &c.descs,
            };
            b.step(&mut c.txn, &inputs)
        });
        if let Err(e) = res {
            crate::progress::forget_backfill(b.desc.id);
            w(Err(e));
            self.clean_after_backfill();
            return;
        }
        if !b.done() {
            self.backfill = Some((b, w));
            return;
        }
        let id = b.desc.id;
        match self.statement(|c| c.complete_view(b)) {
            Ok(()) => self.waiters.push(w),
            Err(e) => {
                // Not a view after all: out of memory too, then its state goes.
                self.views.retain(|d| d.view() != id);
                self.descs.retain(|d| d.id != id);
                self.schemas.remove(&id);
                crate::progress::forget_backfill(id);
                w(Err(e));
                self.clean_after_backfill();
            }
        }
    }

    /// The view built: it joins the others, and its catalog entry is written.
    pub(super) fn complete_view(&mut self, b: Backfill) -> Result<(), EngineError> {
        if self.committed.is_none() {
            self.committed = Some(self.definitions());
        }
        let mut v = b.desc;
        b.progress.finished.store(true, Ordering::Relaxed);
        self.schemas.insert(v.id, v.schema.clone());
        let mut df = b.df;
        let mut staged = None;
        if let Output::IntoTable {
            table,
            staging: true,
        } = v.output
        {
            // Its rows so far go into the table now; from here on each change does.
            v.output = Output::IntoTable {
                table,
                staging: false,
            };
            df = Dataflow::for_view(&v)?;
            staged = Some((table, self.take_staged(&v)?));
        }
        self.views.push(df);
        self.descs.push(v.clone());
        if let Some((table, chunk)) = staged {
            let changes = self.apply_sink_chunk(table, &chunk)?;
            if !changes.is_empty() {
                self.propagate(table, changes)?;
            }
        }
        self.txn.delete(keys::BACKFILL.to_vec());
        self.txn.put(keys::CATALOG.to_vec(), b.catalog);
        // Tables with a watermark: the new view starts at the table's.
        for rel in self.views[self.views.len() - 1].inputs() {
            if self.tables.get(&rel).is_some_and(|t| t.watermark.is_some()) {
                if let Some(wm) = stored_watermark_in(&self.txn, rel, rel)? {
                    self.push_watermark(v.id, rel, wm)?;
                }
            }
        }
        Ok(())
    }

    /// The rows a sink into a table kept while it was built (a multiset under its id),
    /// removed.
    fn take_staged(&mut self, v: &ViewDesc) -> Result<Chunk, EngineError> {
        let prefix = keys::rows_prefix(v.id);
        let types = crate::chunk::column_types(&v.schema);
        let mut rows = Vec::new();
        let mut weights = Vec::new();
        for (k, val) in self.txn.scan_prefix(&prefix)? {
            let count = crate::operators::decode_count(&val)?;
            rows.push(codec::decode_row(&k[prefix.len()..], &types)?);
            weights.push(count);
        }
        if let Some(end) = prefix_end(&prefix) {
            self.txn.delete_range(&prefix, &end)?;
        }
        Chunk::from_rows(v.schema.clone(), &rows, weights)
    }

    /// Builds the view under way to the end, now (before another DDL runs).
    pub(super) fn finish_backfill(&mut self) {
        while self.backfill.is_some() {
            self.backfill_step();
            // Commit as it goes: its memory stays bounded.
            if let Err(e) = self.commit() {
                tracing::error!(error = %e, "a checkpoint during a backfill failed");
            }
        }
        self.answer_abandoned();
    }

    /// Answers the DDL of each backfill stopped by a failed commit or an engine error,
    /// and removes what it had made.
    pub(super) fn answer_abandoned(&mut self) {
        if self.abandoned.is_empty() {
            return;
        }
        for (b, w) in std::mem::take(&mut self.abandoned) {
            crate::progress::forget_backfill(b.desc.id);
            tracing::warn!(view = %b.desc.name, "a view's backfill was stopped by a failed commit or an engine error");
            w(Err(EngineError::Internal(format!(
                "building materialized view \"{}\" was stopped by a failed commit or an \
                 engine error; create it again",
                b.desc.name
            ))));
        }
        self.clean_after_backfill();
    }

    pub(super) fn clean_after_backfill(&mut self) {
        if let Err(e) = self.statement(|c| c.clean_abandoned_backfill()) {
            tracing::error!(error = %e, "removing a stopped backfill's state failed");
        }
    }

    /// Whether any view, or the view being built, reads `rel`.
    pub(super) fn any_reads(&self, rel: RelationId) -> bool {
        self.views.iter().any(|d| d.reads(rel))
            || self.backfill.as_ref().is_some_and(|(b, _)| b.reads(rel))
    }

    /// The partial state of a view whose backfill did not finish (the server died, or
    /// its DDL failed after a page was committed) goes, in range deletions.
    pub(super) fn clean_abandoned_backfill(&mut self) -> Result<(), EngineError> {
        let Some(v) = self.txn.get(keys::BACKFILL)? else {
            return Ok(());
        };
        let id = <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| EngineError::Internal("bad stored backfill marker".into()))?;
        if !self.schemas.contains_key(&id) {
            tracing::warn!(
                view = id,
                "removing the state of a backfill that did not finish"
            );
            for p in keys::relation_prefixes(id) {
                if let Some(end) = prefix_end(&p) {
                    self.txn.delete_range(&p, &end)?;
                }
            }
        }
        self.txn.delete(keys::BACKFILL.to_vec());
        Ok(())
    }

    /// The rows of an input of a backfill (`weights` not summed: stored entries).
    pub(super) fn count_stored(&self, id: RelationId) -> Result<u64, EngineError> {
        if self.sources.contains(&id) {
            return Ok(0);
        }
        let mut n = 0u64;
        self.txn.visit_prefix(&keys::rows_prefix(id), |_, _| {
            n += 1;
            true
        })?;
        Ok(n)
    }

    pub(super) fn apply_ddl(&mut self, ddl: Ddl, catalog: Vec<u8>) -> Result<(), EngineError> {
        match ddl {
            Ddl::CreateTable(t) => {
                self.clean_slate(t.id)?;
                self.schemas.insert(t.id, t.schema.clone());
                self.tables.insert(t.id, t);
            }
            Ddl::CreateSource { id, schema } => {
                self.clean_slate(id)?;
                self.schemas.insert(id, schema);
                self.sources.insert(id);
            }
            Ddl::CreateView(v) => {
                // Built step by step (see `Command::Ddl`); here only if called directly.
                return Err(EngineError::Internal(format!(
                    "view {} must be built through a backfill",
                    v.name
                )));
            }
            Ddl::SetParallelism { view, threads } => {
                let desc = self
                    .descs
                    .iter_mut()
                    .find(|v| v.id == view)
                    .ok_or_else(|| EngineError::Internal(format!("no view {view}")))?;
                desc.parallelism.threads = threads.clamp(1, desc.parallelism.shards);
                for df in self.views.iter_mut().filter(|df| df.view() == view) {
                    df.set_threads(threads);
                }
            }
            Ddl::Drop(id) => {
                self.tables.remove(&id);
                self.sources.remove(&id);
                self.schemas.remove(&id);
                self.views.retain(|df| df.view() != id);
                self.descs.retain(|v| v.id != id);
                // Range deletions: nothing is read, one tombstone per range.
                for p in keys::relation_prefixes(id) {
                    if let Some(end) = prefix_end(&p) {
                        self.txn.delete_range(&p, &end)?;
                    }
                }
                crate::progress::forget_backfill(id);
            }
            Ddl::Catalog => {}
        }
        self.txn.put(keys::CATALOG.to_vec(), catalog);
        Ok(())
    }
}
