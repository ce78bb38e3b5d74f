//! Schemas (`CREATE SCHEMA s`, `CREATE TABLE s.t`).
//!
//! A relation in schema `public` is named by its name alone; one in a schema made by
//! `CREATE SCHEMA` is named `schema.name` in the catalog, in system tables and in
//! metrics. Neither part may contain a `.`, so the split is unambiguous. DataFusion sees
//! such a relation as `schema.name` in a schema of its own ([`table_ref`]), and a plan's
//! scans map back to the catalog's name with [`relation_key`]. Unqualified names resolve
//! in `public` only (there is no `search_path`).

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::prelude::SessionContext;

use crate::PlannerError;

/// The schemas that always exist and cannot be created or dropped.
pub const BUILT_IN: &[&str] = &[
    "public",
    "pg_catalog",
    "information_schema",
    "freshet_catalog",
];

/// Whether a `search_path` value finds unqualified names in `public` only (the one path
/// Freshet follows): `public`, `"$user", public`, `pg_catalog, public`, `default`.
pub fn public_only_path(value: &str) -> bool {
    value.split(',').all(|p| {
        matches!(
            p.trim().trim_matches('"').to_lowercase().as_str(),
            "public" | "$user" | "pg_catalog" | "" | "default"
        )
    })
}

/// `("s", "t")` for `s.t`, `(None, "t")` for a relation in `public`.
pub fn split(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((schema, rel)) => (Some(schema), rel),
        None => (None, name),
    }
}

/// The catalog's name of relation `rel` in `schema` (`public`: the name alone).
pub fn qualified(schema: &str, rel: &str) -> String {
    if schema == "public" {
        rel.to_string()
    } else {
        format!("{schema}.{rel}")
    }
}

/// The catalog's name for a relation SQL names `t`, `public.t` or `s.t` (`None` for
/// more parts, or parts that are not identifiers).
pub fn catalog_name(name: &crate::sqlparser::ast::ObjectName) -> Option<String> {
    let parts: Option<Vec<String>> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(crate::naming::ident_name))
        .collect();
    let parts = parts?;
    // A quoted name holding a `.` names nothing (no relation's name has one).
    if parts.iter().any(|p| p.contains('.')) {
        return None;
    }
    match parts.as_slice() {
        [rel] => Some(rel.clone()),
        [schema, rel] => Some(qualified(schema, rel)),
        _ => None,
    }
}

/// Relation `name` as a quoted SQL name: `"t"` or `"s"."t"`.
pub fn object_name(name: &str) -> crate::sqlparser::ast::ObjectName {
    use crate::sqlparser::ast::{Ident, ObjectName};
    let parts = match split(name) {
        (Some(schema), rel) => vec![Ident::with_quote('"', schema), Ident::with_quote('"', rel)],
        (None, rel) => vec![Ident::with_quote('"', rel)],
    };
    ObjectName::from(parts)
}

/// How DataFusion names relation `name`.
pub fn table_ref(name: &str) -> TableReference {
    match split(name) {
        (Some(schema), rel) => TableReference::partial(schema, rel),
        // `bare`: a `&str` would be parsed as SQL, folding a quoted `"Cnt"` to `cnt`.
        (None, rel) => TableReference::bare(rel),
    }
}

/// The catalog's name of the relation a scan reads (the inverse of [`table_ref`]).
pub fn relation_key(r: &TableReference) -> String {
    match r.schema() {
        Some(schema) => qualified(schema, r.table()),
        None => r.table().to_string(),
    }
}

/// Registers `provider` as relation `name`, creating its schema in `ctx` if needed.
pub fn register(
    ctx: &SessionContext,
    name: &str,
    provider: Arc<dyn TableProvider>,
) -> Result<(), PlannerError> {
    if let (Some(schema), _) = split(name) {
        ensure(ctx, schema)?;
    }
    ctx.register_table(table_ref(name), provider)?;
    Ok(())
}

/// Makes schema `schema` exist in `ctx`'s default catalog.
pub fn ensure(ctx: &SessionContext, schema: &str) -> Result<(), PlannerError> {
    let catalog_name = ctx.state().config_options().catalog.default_catalog.clone();
    let catalog = ctx
        .catalog(&catalog_name)
        .ok_or_else(|| PlannerError::Internal("no default catalog".into()))?;
    if catalog.schema(schema).is_none() {
        catalog.register_schema(
            schema,
            Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
        )?;
    }
    Ok(())
}

/// Relation `name` as SQL writes it: `t`, `s.t`, each part quoted when it must be.
pub fn quote(name: &str) -> String {
    use crate::pg_catalog::functions::quote_ident;
    match split(name) {
        (Some(schema), rel) => format!("{}.{}", quote_ident(schema), quote_ident(rel)),
        (None, rel) => quote_ident(rel),
    }
}

/// Relation `name` with every part quoted, for SQL the server writes itself.
pub fn quote_always(name: &str) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    match split(name) {
        (Some(schema), rel) => format!("{}.{}", q(schema), q(rel)),
        (None, rel) => q(rel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_datafusion_references() {
        for name in ["t", "Cnt", "s.t", "My Schema.My Table"] {
            assert_eq!(relation_key(&table_ref(name)), name);
        }
        assert_eq!(relation_key(&TableReference::partial("public", "t")), "t");
        assert_eq!(quote("s.My T"), "s.\"My T\"");
        assert_eq!(quote_always("s.t"), "\"s\".\"t\"");
    }
}
