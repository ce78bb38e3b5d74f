//! Users and privileges: `CREATE`/`ALTER`/`DROP USER`, `GRANT`/`REVOKE`, and the check
//! every statement passes before it runs.
//!
//! A superuser may do anything. Any other user may read a table or view it was granted
//! `SELECT` on, write a table it was granted `INSERT`/`UPDATE`/`DELETE` on, read
//! `freshet_catalog`, set session variables, and change its own password; everything
//! else (DDL, users, grants) is `42501`.

use freshet_planner::context::referenced_tables;
use freshet_planner::parser::{Stmt, UserStmt};
use freshet_planner::sqlparser::ast::{self, Statement};
use freshet_planner::users::{Privilege, UserDef, BOOTSTRAP_USER};

use super::{command, object_name, Output, Session};
use crate::auth::{md5_hash, scram_verifier};
use crate::error::{Result, ServerError};
use freshet_engine::coordinator::Ddl;

fn denied(what: &str) -> ServerError {
    ServerError::PermissionDenied(format!("permission denied: only a superuser may {what}"))
}

impl Session {
    /// The user this session runs as, as the catalog has it now (the bootstrap superuser
    /// is always a superuser).
    pub(super) fn current_user(&self) -> UserDef {
        let name = self.user_name();
        let found = self.db.catalog().user(&name).cloned();
        match found {
            Some(mut u) => {
                u.superuser |= name == BOOTSTRAP_USER;
                u
            }
            None if name == BOOTSTRAP_USER => UserDef::bootstrap(),
            None => UserDef {
                login: true,
                name,
                ..UserDef::default()
            },
        }
    }

    /// An error (`42501`) if the current user may not run `stmt`.
    pub(super) fn authorize(&self, stmt: &Stmt) -> Result<()> {
        let me = self.current_user();
        if me.superuser {
            return Ok(());
        }
        match stmt {
            Stmt::Empty
            | Stmt::Flush
            | Stmt::ShowSources
            | Stmt::ShowSinks
            | Stmt::ShowCreate { .. }
            | Stmt::Move(_) => Ok(()),
            Stmt::AlterUser(u)
                if u.name == me.name && u.superuser.is_none() && u.login.is_none() =>
            {
                Ok(())
            }
            Stmt::CreateUser(_) | Stmt::AlterUser(_) | Stmt::DropUser { .. } => {
                Err(denied("create, change or drop users"))
            }
            Stmt::Sql(s) => self.authorize_sql(&me, s),
            // A subscription reads what its query reads (its own view, if it has one,
            // is the server's business).
            Stmt::Subscribe(sub) | Stmt::DeclareSubscribe { subscribe: sub, .. } => {
                self.authorize_sql(&me, &super::subscribe::subscribed_query(sub)?)
            }
            Stmt::CopySubscribe(c) => {
                self.authorize_sql(&me, &super::subscribe::subscribed_query(&c.0)?)
            }
            _ => Err(denied("create or drop sources, tables, views and sinks")),
        }
    }

    fn authorize_sql(&self, me: &UserDef, stmt: &Statement) -> Result<()> {
        let (target, needed) = match stmt {
            Statement::Query(_) => (None, None),
            Statement::Explain { statement, .. }
                if matches!(statement.as_ref(), Statement::Query(_)) =>
            {
                (None, None)
            }
            Statement::Insert(i) => (
                Some(match &i.table {
                    ast::TableObject::TableName(n) => written_name(n),
                    other => other.to_string(),
                }),
                Some(Privilege::Insert),
            ),
            Statement::Update(u) => (
                Some(match &u.table.relation {
                    ast::TableFactor::Table { name, .. } => written_name(name),
                    other => other.to_string(),
                }),
                Some(Privilege::Update),
            ),
            Statement::Delete(d) => {
                let from = match &d.from {
                    ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
                };
                let name = from.first().map(|t| match &t.relation {
                    ast::TableFactor::Table { name, .. } => written_name(name),
                    other => other.to_string(),
                });
                (name, Some(Privilege::Delete))
            }
            // COPY … FROM writes the table; COPY … TO is authorized as its query.
            Statement::Copy {
                source: ast::CopySource::Table { table_name, .. },
                to: false,
                ..
            } => (Some(written_name(table_name)), Some(Privilege::Insert)),
            Statement::Copy { to: true, .. } => return Ok(()),
            Statement::Set(_)
            | Statement::Reset(_)
            | Statement::ShowVariable { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowSchemas { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Deallocate { .. }
            | Statement::Discard { .. }
            // A cursor's query is authorized when it is declared.
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. } => return Ok(()),
            Statement::Grant(_) | Statement::Revoke(_) => {
                return Err(denied("grant or revoke privileges"))
            }
            _ => {
                return Err(denied(
                    "create, change or drop sources, tables, views and sinks",
                ))
            }
        };
        let catalog = self.db.catalog();
        let target = target.map(|t| t.trim_start_matches("public.").to_string());
        for name in referenced_tables(stmt) {
            // A lookup join's table (FOR SYSTEM_TIME AS OF PROCTIME()) is read as the table.
            let name =
                freshet_planner::parser::lookup_target(&name).map_or(name.clone(), str::to_string);
            let Some((_, id)) = catalog.kind_of(&name) else {
                // freshet_catalog relations, CTE names, unknown names (an error later).
                continue;
            };
            let privilege = match (&target, needed) {
                (Some(t), Some(p)) if *t == name => p,
                _ => Privilege::Select,
            };
            if !me.may(id, privilege) {
                return Err(ServerError::PermissionDenied(format!(
                    "permission denied for relation {name}: {} needs {} on it \
                     (GRANT {} ON {name} TO {})",
                    me.name,
                    privilege.name(),
                    privilege.name(),
                    me.name
                )));
            }
        }
        Ok(())
    }

    pub(super) async fn create_user(&self, u: &UserStmt) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let mut next = (*self.db.catalog()).clone();
        if next.user(&u.name).is_some() || u.name == BOOTSTRAP_USER {
            if u.if_not_exists {
                return Ok(command("CREATE ROLE"));
            }
            return Err(ServerError::DuplicateObject(format!(
                "role \"{}\" already exists",
                u.name
            )));
        }
        let mut def = UserDef {
            id: next.allocate_id(),
            name: u.name.clone(),
            superuser: false,
            login: !u.role,
            ..UserDef::default()
        };
        apply_options(&mut def, u);
        next.users.push(def);
        self.store_catalog(next).await?;
        Ok(command("CREATE ROLE"))
    }

    pub(super) async fn alter_user(&self, u: &UserStmt) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let mut next = (*self.db.catalog()).clone();
        if next.user(&u.name).is_none() {
            if u.name != BOOTSTRAP_USER {
                return Err(ServerError::UndefinedObject(format!(
                    "role \"{}\" does not exist",
                    u.name
                )));
            }
            next.users.push(UserDef::bootstrap());
        }
        if u.name == BOOTSTRAP_USER && (u.superuser == Some(false) || u.login == Some(false)) {
            return Err(ServerError::InvalidOption(format!(
                "the bootstrap superuser \"{BOOTSTRAP_USER}\" stays a superuser that may log in"
            )));
        }
        if let Some(def) = next.users.iter_mut().find(|d| d.name == u.name) {
            apply_options(def, u);
        }
        self.store_catalog(next).await?;
        Ok(command("ALTER ROLE"))
    }

    pub(super) async fn drop_users(&self, names: &[String], if_exists: bool) -> Result<Output> {
        let _ddl = self.db.ddl_lock.lock().await;
        let mut next = (*self.db.catalog()).clone();
        for name in names {
            if name == BOOTSTRAP_USER {
                return Err(ServerError::InvalidOption(format!(
                    "the bootstrap superuser \"{BOOTSTRAP_USER}\" cannot be dropped"
                )));
            }
            if *name == self.user_name() {
                return Err(ServerError::InvalidOption(
                    "current user cannot be dropped".into(),
                ));
            }
            if next.user(name).is_none() {
                if !if_exists {
                    return Err(ServerError::UndefinedObject(format!(
                        "role \"{name}\" does not exist"
                    )));
                }
                self.notice_missing("role", name);
            }
            next.users.retain(|u| u.name != *name);
        }
        self.store_catalog(next).await?;
        Ok(command("DROP ROLE"))
    }

    /// `GRANT`/`REVOKE` privileges ON tables and views TO/FROM users.
    pub(super) async fn grant(&self, stmt: &Statement) -> Result<Output> {
        let (privileges, objects, grantees, granting) = match stmt {
            Statement::Grant(g) => (&g.privileges, &g.objects, &g.grantees, true),
            Statement::Revoke(r) => (&r.privileges, &r.objects, &r.grantees, false),
            _ => return Err(ServerError::Internal("not a GRANT or REVOKE".into())),
        };
        // USAGE on a schema: Freshet needs no privilege to look up names in a schema
        // (reading or writing a relation needs a grant on the relation), so this grants
        // and revokes nothing beyond what every user has. The schemas must exist.
        if let (ast::Privileges::Actions(actions), Some(ast::GrantObjects::Schemas(schemas))) =
            (privileges, objects)
        {
            if actions.iter().all(|a| matches!(a, ast::Action::Usage)) {
                let catalog = self.db.catalog();
                for schema in schemas.iter().map(super::object_name) {
                    if !freshet_planner::schemas::BUILT_IN.contains(&schema.as_str())
                        && catalog.schema(&schema).is_none()
                    {
                        return Err(ServerError::UndefinedSchema(schema));
                    }
                }
                return Ok(command(if granting { "GRANT" } else { "REVOKE" }));
            }
        }
        let privileges: Vec<Privilege> = match privileges {
            ast::Privileges::All { .. } => Privilege::ALL.to_vec(),
            ast::Privileges::Actions(actions) => actions
                .iter()
                .map(|a| {
                    let word = a.to_string();
                    let word = word.split_whitespace().next().unwrap_or("");
                    Privilege::parse(word).ok_or_else(|| {
                        ServerError::Unsupported(format!(
                            "privilege {word}: Freshet grants SELECT, INSERT, UPDATE and DELETE"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        };
        let _ddl = self.db.ddl_lock.lock().await;
        let mut next = (*self.db.catalog()).clone();
        let relations: Vec<u64> = match objects {
            Some(ast::GrantObjects::Tables(names)) | Some(ast::GrantObjects::Views(names)) => names
                .iter()
                .map(|n| {
                    let name = super::relation_name(&next, n)?;
                    match next.kind_of(&name) {
                        Some((_, id)) => Ok(id),
                        None => Err(freshet_planner::PlannerError::UndefinedTable(name).into()),
                    }
                })
                .collect::<Result<_>>()?,
            Some(ast::GrantObjects::AllTablesInSchema { schemas }) => {
                let mut ids = Vec::new();
                for schema in schemas.iter().map(super::object_name) {
                    if schema != "public" && next.schema(&schema).is_none() {
                        return Err(ServerError::UndefinedSchema(schema));
                    }
                    let inside = |name: &str| {
                        freshet_planner::schemas::split(name).0.unwrap_or("public") == schema
                    };
                    ids.extend(
                        next.tables
                            .iter()
                            .filter(|t| inside(&t.name))
                            .map(|t| t.id)
                            .chain(
                                next.materialized_views()
                                    .filter(|v| inside(&v.name))
                                    .map(|v| v.id),
                            ),
                    );
                }
                ids
            }
            _ => return Err(ServerError::Unsupported(
                "GRANT … ON: Freshet grants on tables and views (ON t, ON ALL TABLES IN SCHEMA s)"
                    .into(),
            )),
        };
        for g in grantees {
            let name = match &g.name {
                Some(ast::GranteeName::ObjectName(n)) => object_name(n),
                _ => {
                    return Err(ServerError::Unsupported(format!(
                        "grantee {g}: name a user"
                    )))
                }
            };
            let Some(user) = next.users.iter_mut().find(|u| u.name == name) else {
                return Err(ServerError::UndefinedObject(format!(
                    "role \"{name}\" does not exist"
                )));
            };
            for &rel in &relations {
                for &p in &privileges {
                    let entry = (rel, p);
                    if granting && !user.grants.contains(&entry) {
                        user.grants.push(entry);
                    } else if !granting {
                        user.grants.retain(|e| *e != entry);
                    }
                }
            }
        }
        self.store_catalog(next).await?;
        Ok(command(if granting { "GRANT" } else { "REVOKE" }))
    }

    /// Commits a catalog in which only users changed.
    async fn store_catalog(&self, next: freshet_planner::catalog::Catalog) -> Result<()> {
        self.db.engine.ddl(Ddl::Catalog, next.to_json()).await?;
        self.db.set_catalog(next);
        Ok(())
    }
}

fn apply_options(def: &mut UserDef, u: &UserStmt) {
    if let Some(s) = u.superuser {
        def.superuser = s;
    }
    if let Some(l) = u.login {
        def.login = l;
    }
    if let Some(n) = u.connection_limit {
        def.connection_limit = u32::try_from(n).ok();
    }
    match &u.password {
        Some(Some(p)) => {
            def.scram = Some(scram_verifier(p));
            def.md5 = Some(md5_hash(&def.name, p));
        }
        Some(None) => {
            def.scram = None;
            def.md5 = None;
        }
        None => {}
    }
}

/// The catalog's name of a relation a statement writes (`t`, `public.t`, `s.t`).
fn written_name(n: &ast::ObjectName) -> String {
    freshet_planner::schemas::catalog_name(n).unwrap_or_else(|| n.to_string())
}
