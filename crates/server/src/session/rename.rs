//! `ALTER {TABLE | MATERIALIZED VIEW | VIEW | INDEX | SOURCE | SINK} name RENAME TO new`.
//!
//! Relations are known by id everywhere but in the queries stored for views, sinks,
//! indexes and plain views, which name what they read. Those are rewritten: each
//! reference to the old name reads the new one, aliased to the old name when it had no
//! alias, so that columns qualified with the old name still resolve. As in Postgres,
//! `ALTER TABLE … RENAME` renames any relation; the other forms want their kind.

use std::ops::ControlFlow;

use freshet_engine::coordinator::Ddl;
use freshet_planner::catalog::{Catalog, RelationKind};
use freshet_planner::parser::{self, Stmt, LOOKUP_PREFIX};
use freshet_planner::sqlparser::ast::{
    Ident, ObjectName, TableAlias, TableFactor, VisitMut, VisitorMut,
};
use freshet_planner::PlannerError;

use super::{command, relation_name, Output, Session};
use crate::error::{Result, ServerError};

impl Session {
    pub(super) async fn rename(
        &self,
        what: &'static str,
        name: &ObjectName,
        new_name: &ObjectName,
        if_exists: bool,
    ) -> Result<Output> {
        let tag = format!("ALTER {what}");
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let old = relation_name(&catalog, name)?;
        // The new name stays in the old one's schema, as in Postgres.
        let schema = freshet_planner::schemas::split(&old).0;
        let new = match relation_name(&catalog, new_name)? {
            n if new_name.0.len() == 1 => {
                freshet_planner::schemas::qualified(schema.unwrap_or("public"), &n)
            }
            n if freshet_planner::schemas::split(&n).0 == schema => n,
            _ => {
                return Err(ServerError::Unsupported(format!(
                    "ALTER {what} … RENAME TO a name in another schema ({new_name})"
                )))
            }
        };
        let Some((kind, id)) = catalog.kind_of(&old) else {
            if if_exists {
                self.notice_missing("relation", &old);
                return Ok(command(&tag));
            }
            return Err(PlannerError::UndefinedTable(old).into());
        };
        let (fits, expected) = match what {
            "TABLE" => (true, "table"),
            "MATERIALIZED VIEW" => (kind == RelationKind::View, "materialized view"),
            "VIEW" => (
                matches!(kind, RelationKind::PlainView | RelationKind::View),
                "view",
            ),
            "INDEX" => (kind == RelationKind::Index, "index"),
            "SOURCE" => (kind == RelationKind::Source, "source"),
            _ => (kind == RelationKind::Sink, "sink"),
        };
        if !fits {
            return Err(PlannerError::WrongObjectType {
                name: old,
                expected,
            }
            .into());
        }
        if catalog.kind_of(&new).is_some() {
            return Err(PlannerError::DuplicateTable(new).into());
        }
        let next = renamed(&catalog, id, &old, &new)?;
        self.db.engine.ddl(Ddl::Catalog, next.to_json()).await?;
        self.db.set_catalog(next);
        Ok(command(&tag))
    }
}

/// `catalog` with relation `id` called `new`, and every stored query reading it by its
/// new name.
fn renamed(catalog: &Catalog, id: u64, old: &str, new: &str) -> Result<Catalog> {
    let mut next = catalog.clone();
    for t in next.tables.iter_mut().filter(|t| t.id == id) {
        t.name = new.to_string();
    }
    for s in next.sources.iter_mut().filter(|s| s.id == id) {
        s.name = new.to_string();
    }
    for v in next.views.iter_mut() {
        if v.id == id {
            v.name = new.to_string();
        }
        v.sql = rewritten(&v.sql, old, new)?;
    }
    for v in next.plain_views.iter_mut() {
        if v.id == id {
            v.name = new.to_string();
        }
        v.sql = rewritten(&v.sql, old, new)?;
    }
    Ok(next)
}

/// Query `sql` reading `new` wherever it read `old` (unchanged if it did not).
fn rewritten(sql: &str, old: &str, new: &str) -> Result<String> {
    let mut stmt = match parser::parse(sql)?.into_iter().next() {
        Some(Stmt::Sql(s)) => s,
        _ => return Ok(sql.to_string()),
    };
    let mut r = Renamer { old, new, hits: 0 };
    let _ = stmt.visit(&mut r);
    Ok(match r.hits {
        0 => sql.to_string(),
        _ => stmt.to_string(),
    })
}

struct Renamer<'a> {
    old: &'a str,
    new: &'a str,
    hits: usize,
}

impl VisitorMut for Renamer<'_> {
    type Break = ServerError;

    fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<ServerError> {
        let TableFactor::Table { name, alias, .. } = tf else {
            return ControlFlow::Continue(());
        };
        let Some(current) = freshet_planner::schemas::catalog_name(name) else {
            return ControlFlow::Continue(());
        };
        let lookup = format!("{LOOKUP_PREFIX}{}", self.old);
        let replacement = if current == self.old {
            self.new.to_string()
        } else if current == lookup {
            format!("{LOOKUP_PREFIX}{}", self.new)
        } else {
            return ControlFlow::Continue(());
        };
        *name = freshet_planner::schemas::object_name(&replacement);
        if alias.is_none() {
            *alias = Some(TableAlias {
                explicit: true,
                // Columns qualified by the old name (`t.col`, also for `s.t`) still resolve.
                name: Ident::with_quote('"', freshet_planner::schemas::split(self.old).1),
                columns: Vec::new(),
                at: None,
            });
        }
        self.hits += 1;
        ControlFlow::Continue(())
    }
}
