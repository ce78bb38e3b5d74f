//! Schemas: `CREATE SCHEMA [IF NOT EXISTS] s`, `DROP SCHEMA [IF EXISTS] s [CASCADE]`,
//! `SHOW SCHEMAS`, and `SHOW TABLES | VIEWS … FROM s`. A relation in schema `s` is named
//! `s.t` in the catalog (see `freshet_planner::schemas`).

use freshet_engine::coordinator::Ddl;
use freshet_planner::catalog::{Catalog, RelationKind, SchemaDef};
use freshet_planner::schemas::{self, BUILT_IN};
use freshet_planner::sqlparser::ast::{ObjectName, SchemaName, ShowStatementOptions};
use freshet_planner::PlannerError;

use super::{command, ident_name, names_output, Output, Session};
use crate::error::{Result, ServerError};

impl Session {
    /// `CREATE SCHEMA [IF NOT EXISTS] name [AUTHORIZATION role]`.
    pub(super) async fn create_schema(
        &self,
        schema_name: &SchemaName,
        if_not_exists: bool,
    ) -> Result<Output> {
        let name = match schema_name {
            SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _) => one_part(n)?,
            SchemaName::UnnamedAuthorization(role) => ident_name(role),
        };
        if let SchemaName::NamedAuthorization(_, role) | SchemaName::UnnamedAuthorization(role) =
            schema_name
        {
            let role = ident_name(role);
            if role != self.current_user().name {
                return Err(ServerError::Unsupported(format!(
                    "CREATE SCHEMA … AUTHORIZATION {role}: schemas have no owner other than \
                     the user who creates them"
                )));
            }
        }
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        if BUILT_IN.contains(&name.as_str()) || catalog.schema(&name).is_some() {
            if if_not_exists {
                self.notice(
                    "42P06",
                    format!("schema \"{name}\" already exists, skipping"),
                );
                return Ok(command("CREATE SCHEMA"));
            }
            return Err(ServerError::DuplicateSchema(name));
        }
        if name.starts_with("pg_") {
            return Err(ServerError::ReservedName(format!(
                "unacceptable schema name \"{name}\": the prefix \"pg_\" is reserved for \
                 system schemas"
            )));
        }
        let mut next = (*catalog).clone();
        let id = next.allocate_id();
        next.schemas.push(SchemaDef { id, name });
        self.db.engine.ddl(Ddl::Catalog, next.to_json()).await?;
        self.db.set_catalog(next);
        Ok(command("CREATE SCHEMA"))
    }

    /// `DROP SCHEMA [IF EXISTS] name [, …] [CASCADE | RESTRICT]`. With CASCADE the
    /// relations in it go first, each with its dependents, as `DROP … CASCADE` drops them.
    pub(super) async fn drop_schemas(
        &self,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
    ) -> Result<Output> {
        for n in names {
            let name = one_part(n)?;
            if BUILT_IN.contains(&name.as_str()) {
                return Err(ServerError::ReservedName(format!(
                    "cannot drop schema {name}: it is built in"
                )));
            }
            if self.db.catalog().schema(&name).is_none() {
                if if_exists {
                    self.notice_missing("schema", &name);
                    continue;
                }
                return Err(ServerError::UndefinedSchema(name));
            }
            let catalog = self.db.catalog();
            let inside = catalog.relations_in(&name);
            if !inside.is_empty() && !cascade {
                let mut detail: Vec<String> = inside
                    .iter()
                    .map(|(kind, rel)| {
                        format!("{} {rel} depends on schema {name}", kind_name(*kind))
                    })
                    .collect();
                detail.extend(readers_outside(&catalog, &name, &inside));
                return Err(PlannerError::DependentObjects {
                    kind: "schema",
                    name,
                    detail: detail.join("\n"),
                }
                .into());
            }
            // Newest first, so a view goes before what it reads; each DROP takes its own
            // dependents (also those outside the schema) with it.
            for (kind, rel) in inside.into_iter().rev() {
                if kind == RelationKind::Index {
                    continue; // dropped with its relation
                }
                self.drop_relations(kind, true, &[schemas::object_name(&rel)], true)
                    .await?;
            }
            let _ddl = self.db.ddl_lock.lock().await;
            let catalog = self.db.catalog();
            // Something created in it meanwhile stops the drop.
            if let Some((kind, rel)) = catalog.relations_in(&name).first() {
                return Err(PlannerError::DependentObjects {
                    kind: "schema",
                    detail: format!("{} {rel} depends on schema {name}", kind_name(*kind)),
                    name,
                }
                .into());
            }
            let mut next = (*catalog).clone();
            next.schemas.retain(|s| s.name != name);
            self.db.engine.ddl(Ddl::Catalog, next.to_json()).await?;
            self.db.set_catalog(next);
        }
        Ok(command("DROP SCHEMA"))
    }

    /// `SHOW SCHEMAS`: the built-in schemas and those `CREATE SCHEMA` made, by name.
    pub(super) fn show_schemas(&self) -> Result<Output> {
        let catalog = self.db.catalog();
        let mut names: Vec<String> = BUILT_IN
            .iter()
            .map(|s| s.to_string())
            .chain(catalog.schemas.iter().map(|s| s.name.clone()))
            .collect();
        names.sort();
        names_output(names)
    }
}

/// The schema `SHOW … [FROM | IN] schema` lists (`public` without one).
pub(super) fn shown_schema(catalog: &Catalog, options: &ShowStatementOptions) -> Result<String> {
    let Some(n) = options
        .show_in
        .as_ref()
        .and_then(|i| i.parent_name.as_ref())
    else {
        return Ok("public".to_string());
    };
    let name = one_part(n)?;
    if name != "public" && catalog.schema(&name).is_none() {
        return Err(ServerError::UndefinedSchema(name));
    }
    Ok(name)
}

/// The names (without their schema) of relations in `schema`, sorted.
pub(super) fn names_in<'a>(schema: &str, names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = names
        .filter_map(|n| match schemas::split(n) {
            (Some(s), rel) if s == schema => Some(rel.to_string()),
            (None, rel) if schema == "public" => Some(rel.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// A schema's name: one identifier, without a `.`.
fn one_part(n: &ObjectName) -> Result<String> {
    match n.0.as_slice() {
        [p] => match p.as_ident().map(ident_name) {
            Some(name) if !name.contains('.') && !name.is_empty() => Ok(name),
            _ => Err(ServerError::Unsupported(format!(
                "schema name {n}: a schema's name is not empty and has no \".\" (Freshet \
                 writes a relation in schema s as s.name)"
            ))),
        },
        _ => Err(ServerError::Unsupported(format!(
            "cross-database references are not implemented: {n}"
        ))),
    }
}

/// What CASCADE would drop outside schema `schema` because it reads `inside` (directly or
/// through other views), as `DROP SCHEMA`'s detail lists it.
fn readers_outside(
    catalog: &Catalog,
    schema: &str,
    inside: &[(RelationKind, String)],
) -> Vec<String> {
    let outside = |n: &str| schemas::split(n).0 != Some(schema);
    let mut doomed: Vec<u64> = inside
        .iter()
        .filter_map(|(_, n)| catalog.kind_of(n).map(|(_, id)| id))
        .collect();
    let mut out = Vec::new();
    for v in &catalog.views {
        if v.index.is_none() && !doomed.contains(&v.id) && doomed.iter().any(|d| v.needs(*d)) {
            doomed.push(v.id);
            if outside(&v.name) {
                let kind = if v.sink.is_some() {
                    "sink"
                } else {
                    "materialized view"
                };
                out.push(format!("{kind} {} depends on schema {schema}", v.name));
            }
        }
    }
    for (_, n) in inside {
        for v in super::Db::plain_views_reading(catalog, n) {
            if outside(&v.name) {
                out.push(format!("view {} depends on {n}", v.name));
            }
        }
    }
    out
}

fn kind_name(kind: RelationKind) -> &'static str {
    match kind {
        RelationKind::Table => "table",
        RelationKind::View => "materialized view",
        RelationKind::Source => "source",
        RelationKind::Sink => "sink",
        RelationKind::Index => "index",
        RelationKind::PlainView => "view",
    }
}
