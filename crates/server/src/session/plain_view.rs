//! Plain views: `CREATE [OR REPLACE] VIEW name [(columns)] AS query`, `DROP VIEW`. A view
//! stores its query only; statements that name it are expanded before anything else
//! sees them (`freshet_planner::plain_views`). Its columns are the query's, planned when
//! it is created and at every start, for the catalogs (`pg_class` relkind `v`).

use std::borrow::Cow;

use datafusion::arrow::datatypes::SchemaRef;
use freshet_engine::coordinator::Ddl;
use freshet_planner::catalog::{Catalog, PlainViewDef, RelationKind};
use freshet_planner::context::{bind, referenced_tables};
use freshet_planner::naming::name_select_items;
use freshet_planner::parser::{self, Stmt, Subscribe, SubscribeTarget};
use freshet_planner::sqlparser::ast::{self, Statement};
use freshet_planner::PlannerError;

use super::query::param_types;
use super::{command, relation_name, Db, Output, Session};
use crate::error::{Result, ServerError};

impl Session {
    /// `stmt` with the plain views it names expanded.
    pub(super) fn with_plain_views<'a>(&self, stmt: &'a Stmt) -> Result<Cow<'a, Stmt>> {
        Ok(match self.expand_plain_views(stmt)? {
            Some(s) => Cow::Owned(s),
            None => Cow::Borrowed(stmt),
        })
    }

    /// `stmt` with the plain views it names expanded (`None`: it names none).
    fn expand_plain_views(&self, stmt: &Stmt) -> Result<Option<Stmt>> {
        let catalog = self.db.catalog();
        if catalog.plain_views.is_empty() {
            return Ok(None);
        }
        Ok(match stmt {
            Stmt::Sql(s) => {
                // A view cannot be changed: the same error as INSERT's, not one about
                // the subquery it would become.
                if matches!(s.as_ref(), Statement::Update(_) | Statement::Delete(_)) {
                    if let Some(target) = super::query::dml_target(s) {
                        self.writable_table(target)?;
                    }
                }
                let mut s = s.clone();
                freshet_planner::plain_views::expand(s.as_mut(), &catalog)?.then_some(Stmt::Sql(s))
            }
            Stmt::CreateSink(cs) => {
                let mut cs = cs.clone();
                freshet_planner::plain_views::expand(cs.query.as_mut(), &catalog)?
                    .then_some(Stmt::CreateSink(cs))
            }
            Stmt::Subscribe(sub) => {
                subscription(sub, &catalog)?.map(|s| Stmt::Subscribe(Box::new(s)))
            }
            Stmt::CopySubscribe(c) => subscription(&c.0, &catalog)?
                .map(|s| Stmt::CopySubscribe(Box::new((s, c.1.clone())))),
            Stmt::DeclareSubscribe {
                name,
                hold,
                subscribe,
            } => subscription(subscribe, &catalog)?.map(|s| Stmt::DeclareSubscribe {
                name: name.clone(),
                hold: *hold,
                subscribe: Box::new(s),
            }),
            _ => None,
        })
    }

    /// `CREATE [OR REPLACE] VIEW` (its query has been expanded already).
    pub(super) async fn create_plain_view(&self, cv: &ast::CreateView) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let name = relation_name(&catalog, &cv.name)?;
        let replaces = match catalog.kind_of(&name) {
            None => None,
            Some((RelationKind::PlainView, id)) if cv.or_replace => Some(id),
            Some(_) if cv.if_not_exists => {
                self.notice_exists(&name);
                return Ok(command("CREATE VIEW"));
            }
            Some(_) => return Err(PlannerError::DuplicateTable(name).into()),
        };
        let mut query = cv.query.clone();
        name_select_items(&mut query, false);
        let sql = query.to_string();
        let columns: Vec<String> = cv
            .columns
            .iter()
            .map(|c| super::ident_name(&c.name))
            .collect();
        let schema = self
            .db
            .plain_view_schema(&self.limits(), &catalog, &sql)
            .await?;
        if columns.len() > schema.fields().len() {
            return Err(ServerError::Planner(PlannerError::InvalidParameter(
                format!(
                    "CREATE VIEW specifies more column names ({}) than the query has columns ({})",
                    columns.len(),
                    schema.fields().len()
                ),
            )));
        }
        let mut next = (*catalog).clone();
        let id = match replaces {
            Some(id) => id,
            None => next.allocate_id(),
        };
        next.plain_views.retain(|v| v.id != id);
        next.plain_views.push(PlainViewDef {
            id,
            name,
            sql,
            columns: columns.clone(),
        });
        self.db.engine.ddl(Ddl::Catalog, next.to_json()).await?;
        self.db.set_catalog(next);
        self.db
            .view_schemas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, renamed(&schema, &columns));
        Ok(command("CREATE VIEW"))
    }
}

impl Db {
    /// The columns of query `sql`, planned over `catalog` without reading anything.
    pub(super) async fn plain_view_schema(
        &self,
        limits: &freshet_planner::context::Limits,
        catalog: &Catalog,
        sql: &str,
    ) -> Result<SchemaRef> {
        let stmt = match parser::parse(sql)?.into_iter().next() {
            Some(Stmt::Sql(s)) => s,
            _ => return Err(PlannerError::Internal("a view's query is empty".into()).into()),
        };
        super::query::reject_sinks(catalog, &stmt)?;
        let ctx = self.context_for(limits, catalog, &stmt, false, None, &[])?;
        let plan = bind(&ctx, &stmt).await?;
        if !param_types(&plan)?.is_empty() {
            return Err(ServerError::Unsupported("parameters in a view".into()));
        }
        let plan = freshet_planner::context::analyzed(&ctx, plan)?;
        Ok(std::sync::Arc::new(plan.schema().as_arrow().clone()))
    }

    /// The plain views that read relation `name` (by their queries' names).
    pub(super) fn plain_views_reading(catalog: &Catalog, name: &str) -> Vec<PlainViewDef> {
        catalog
            .plain_views
            .iter()
            .filter(|v| {
                parser::parse(&v.sql)
                    .ok()
                    .and_then(|s| s.into_iter().next())
                    .is_some_and(|s| match s {
                        Stmt::Sql(s) => reads(&s, name),
                        _ => false,
                    })
            })
            .cloned()
            .collect()
    }

    /// Forgets plain view `id`.
    pub(super) async fn drop_plain_view(&self, id: u64) -> Result<()> {
        let mut next = (*self.catalog()).clone();
        next.plain_views.retain(|v| v.id != id);
        self.engine.ddl(Ddl::Catalog, next.to_json()).await?;
        self.set_catalog(next);
        self.view_schemas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        Ok(())
    }
}

/// A subscription to a view, or to a query naming views, as one to the expanded query.
fn subscription(sub: &Subscribe, catalog: &Catalog) -> Result<Option<Subscribe>> {
    let mut query = match &sub.target {
        SubscribeTarget::Query(q) => q.clone(),
        SubscribeTarget::Relation(name) => {
            if relation_name(catalog, name)
                .ok()
                .and_then(|n| catalog.plain_view(&n))
                .is_none()
            {
                return Ok(None);
            }
            match parser::parse(&format!("SELECT * FROM {name}"))?
                .into_iter()
                .next()
            {
                Some(Stmt::Sql(s)) => match *s {
                    Statement::Query(q) => q,
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            }
        }
    };
    if !freshet_planner::plain_views::expand(query.as_mut(), catalog)? {
        return Ok(None);
    }
    Ok(Some(Subscribe {
        target: SubscribeTarget::Query(query),
        ..sub.clone()
    }))
}

fn reads(stmt: &Statement, name: &str) -> bool {
    referenced_tables(stmt)
        .iter()
        .any(|n| parser::lookup_target(n).unwrap_or(n) == name)
}

/// `schema` with its first columns named `columns`.
pub(super) fn renamed(schema: &SchemaRef, columns: &[String]) -> SchemaRef {
    use datafusion::arrow::datatypes::{Field, Schema};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match columns.get(i) {
            Some(n) => f.as_ref().clone().with_name(n),
            None => f.as_ref().clone(),
        })
        .collect();
    std::sync::Arc::new(Schema::new(fields))
}
