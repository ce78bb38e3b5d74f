//! `ALTER MATERIALIZED VIEW name AS query` (RisingWave's): the view computed by a new
//! query under the same name. The new view is built beside the old one (planned,
//! backfilled from the current rows), then one commit drops the old view and gives the
//! new one its name and its grants; until then queries read the old view. It keeps the old
//! view's `EMIT ON WINDOW CLOSE`. A view that other views, sinks, indexes, subscriptions
//! or plain views read is refused (`0A000`): their plans are built on its columns.

use freshet_planner::catalog::RelationKind;
use freshet_planner::sqlparser::ast::{ObjectName, Query};
use freshet_planner::{schemas, PlannerError};

use super::ddl::ViewKind;
use super::{command, relation_name, Db, Output, Session};
use crate::error::{Result, ServerError};

impl Session {
    pub(super) async fn alter_view_as(&self, name: &ObjectName, query: &Query) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let catalog = self.db.catalog();
        let old_name = relation_name(&catalog, name)?;
        let old = match catalog.kind_of(&old_name) {
            Some((RelationKind::View, id)) => catalog
                .view_by_id(id)
                .cloned()
                .ok_or_else(|| PlannerError::UndefinedTable(old_name.clone()))?,
            Some(_) => {
                return Err(PlannerError::WrongObjectType {
                    name: old_name,
                    expected: "materialized view",
                }
                .into())
            }
            None => return Err(PlannerError::UndefinedTable(old_name).into()),
        };
        let mut readers: Vec<String> = catalog
            .dependents(old.id)
            .iter()
            .map(|v| v.name.clone())
            .collect();
        readers.extend(
            Db::plain_views_reading(&catalog, &old_name)
                .into_iter()
                .map(|v| v.name),
        );
        if !readers.is_empty() {
            return Err(ServerError::Unsupported(format!(
                "ALTER MATERIALIZED VIEW {old_name} AS … while {} read it: drop them first \
                 (their plans are built on its columns)",
                readers.join(", ")
            )));
        }
        let mut query = Box::new(query.clone());
        freshet_planner::plain_views::expand(query.as_mut(), &catalog)?;
        let (query_sql, planned) = self
            .plan_new_view(&catalog, &query, &[], old.emit_on_window_close)
            .await?;
        // Built under a name of its own in the same schema, then renamed.
        let (schema, _) = schemas::split(&old_name);
        let building = schemas::qualified(
            schema.unwrap_or("public"),
            &format!("__freshet_alter_{}", old.id),
        );
        if catalog.kind_of(&building).is_some() {
            return Err(ServerError::Unsupported(format!(
                "a relation named {building} is left from an earlier ALTER of {old_name}: drop it \
                 first"
            )));
        }
        let new_id = self
            .install_view(
                &catalog,
                building.clone(),
                query_sql,
                planned,
                old.emit_on_window_close,
                ViewKind::Materialized,
            )
            .await?;
        let (old_id, renamed) = (old.id, old_name.clone());
        self.db
            .drop_one_and(old_id, move |next| {
                for v in next.views.iter_mut().filter(|v| v.id == new_id) {
                    v.name = renamed.clone();
                }
                // Who could read the old view can read the new one.
                for u in next.users.iter_mut() {
                    for (relation, _) in u.grants.iter_mut() {
                        if *relation == old_id {
                            *relation = new_id;
                        }
                    }
                }
            })
            .await?;
        freshet_engine::metrics::metrics().forget_relation(&building);
        Ok(command("ALTER MATERIALIZED VIEW"))
    }
}
