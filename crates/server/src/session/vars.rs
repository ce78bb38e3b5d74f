//! Session variables: the ones Freshet knows and their defaults (`VARIABLES`), `SET`
//! and `SHOW`, and what a statement takes from them: its memory limit
//! (`query_memory_limit`), its deadline (`statement_timeout`) and whether a write waits
//! for its commit (`implicit_flush`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use freshet_engine::chunk::rows_to_batch;
use freshet_planner::context::Limits;
use freshet_planner::parser::Stmt;
use freshet_planner::pg_text::Zone;
use freshet_planner::sqlparser::ast;

use super::{command, Output, Session, SERVER_VERSION};
use crate::error::{Result, ServerError};

/// Session variables Freshet knows, with their defaults. Others that drivers commonly set
/// are accepted and echoed back by `SHOW`.
pub(super) const VARIABLES: &[(&str, &str)] = &[
    ("implicit_flush", "true"),
    ("application_name", ""),
    ("client_min_messages", "notice"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("extra_float_digits", "1"),
    ("intervalstyle", "postgres"),
    ("search_path", "public"),
    ("server_encoding", "UTF8"),
    ("server_version", SERVER_VERSION),
    ("server_version_num", "150000"),
    ("integer_datetimes", "on"),
    ("max_identifier_length", "63"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("transaction_read_only", "off"),
    ("lc_collate", "C.UTF-8"),
    ("lc_ctype", "C.UTF-8"),
    ("lc_messages", "C.UTF-8"),
    ("block_size", "8192"),
    ("max_index_keys", "32"),
    ("max_function_args", "100"),
    ("default_table_access_method", "heap"),
    ("default_tablespace", ""),
    ("is_superuser", "on"),
    ("session_authorization", "freshet"),
    ("standard_conforming_strings", "on"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("statement_timeout", "0"),
    ("subscribe_max_buffered_rows", "100000"),
    ("background_ddl", "false"),
    ("streaming_parallelism", "default"),
    ("streaming_max_parallelism", "default"),
    ("rw_enable_two_phase_agg", "true"),
];

impl Session {
    /// `DISCARD ALL`, `RESET ALL`: every variable back to the value the session started
    /// with (its startup packet's, or the default).
    pub(super) fn reset_all(&self) {
        let startup = self.startup_vars();
        *self.vars.lock().unwrap_or_else(|p| p.into_inner()) = startup.clone();
        self.keep_all_for_commit(&startup);
    }

    /// The settings as the session started.
    fn startup_vars(&self) -> std::collections::BTreeMap<String, String> {
        self.startup_vars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `RESET name` and `RESET ALL`: back to the value the session started with (a
    /// variable it started without is forgotten), as Postgres resets to the startup
    /// packet's value.
    pub(super) fn reset(&self, r: &ast::ResetStatement) -> Result<Output> {
        let name = match &r.reset {
            ast::Reset::ALL => {
                self.reset_all();
                return Ok(command("RESET"));
            }
            ast::Reset::ConfigurationParameter(name) => setting_name(name).to_ascii_lowercase(),
        };
        let name = if name == "time zone" {
            "timezone".to_string()
        } else {
            name
        };
        if !super::setting_names::known(&name) {
            return Err(ServerError::UnknownParameter(name));
        }
        let start = self.startup_vars().get(&name).cloned();
        {
            let mut vars = self.vars.lock().unwrap_or_else(|p| p.into_inner());
            match &start {
                Some(v) => vars.insert(name.clone(), v.clone()),
                None => vars.remove(&name),
            };
        }
        self.keep_for_commit(&name, start.as_deref());
        Ok(command("RESET"))
    }

    /// Replaces every setting (the end of a transaction restoring them).
    pub(super) fn replace_vars(&self, vars: std::collections::BTreeMap<String, String>) {
        *self.vars.lock().unwrap_or_else(|p| p.into_inner()) = vars;
    }

    /// A snapshot of the settings.
    pub(super) fn vars_snapshot(&self) -> std::collections::BTreeMap<String, String> {
        self.vars.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every session variable with its value, for `current_setting` and `pg_settings`.
    pub(super) fn settings(&self) -> Vec<(String, String)> {
        self.vars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub(super) fn var(&self, name: &str) -> Option<String> {
        self.vars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The server's limits, with this session's `query_memory_limit` if it set one.
    pub(super) fn limits(&self) -> Limits {
        let mut l = self.db.limits.clone();
        if let Some(bytes) = self
            .var("query_memory_limit")
            .and_then(|v| crate::limits::parse_bytes(&v))
        {
            l.query_memory_bytes = l.query_memory_bytes.min(bytes);
        }
        l
    }

    /// When the statement starting now must end by (`statement_timeout`), if ever.
    pub(super) fn deadline(&self) -> Option<std::time::Instant> {
        let ms = self
            .var("statement_timeout")
            .and_then(|v| crate::limits::parse_millis(&v))
            .unwrap_or(0);
        (ms > 0).then(|| std::time::Instant::now() + std::time::Duration::from_millis(ms))
    }

    /// Changed rows a subscriber may leave unread (`subscribe_max_buffered_rows`).
    pub(super) fn subscribe_limit(&self) -> usize {
        self.var("subscribe_max_buffered_rows")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000)
    }

    /// `SET background_ddl = true`: `CREATE MATERIALIZED VIEW` returns once planned, and
    /// the view is built in the background (`SHOW JOBS`).
    pub(super) fn background_ddl(&self) -> bool {
        self.vars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get("background_ddl")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "on" | "1"))
    }

    /// A number the session set for `name` (`None`: `default`).
    fn count_var(&self, name: &str) -> Option<usize> {
        self.var(name)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
    }

    /// The parallelism of a view created now, its shards, and whether the parallelism is
    /// adaptive: the session's `streaming_parallelism` (else the server's,
    /// `--streaming-parallelism`, followed at every start) and
    /// `streaming_max_parallelism` (else the parallelism). A parallelism the session set
    /// above the shards is refused; the server's is lowered to them.
    pub(super) fn new_view_parallelism(&self) -> Result<(usize, usize, bool)> {
        let set = self.count_var("streaming_parallelism");
        let shards = self
            .count_var("streaming_max_parallelism")
            .unwrap_or(set.unwrap_or(self.db.streaming_parallelism));
        match set {
            Some(p) if p > shards => Err(ServerError::InvalidOption(format!(
                "streaming_parallelism {p} exceeds streaming_max_parallelism {shards}: a view \
                 runs on at most as many threads as it has shards"
            ))),
            Some(p) => Ok((p, shards, false)),
            None => Ok((self.db.streaming_parallelism.min(shards), shards, true)),
        }
    }

    /// Whether a view created now runs its aggregates in two phases where they can
    /// (`rw_enable_two_phase_agg`, RisingWave's name).
    pub(super) fn two_phase_agg(&self) -> bool {
        self.var("rw_enable_two_phase_agg")
            .is_none_or(|v| v == "true")
    }

    pub(super) fn implicit_flush(&self) -> bool {
        self.vars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get("implicit_flush")
            .is_none_or(|v| v == "true")
    }

    pub(super) fn set(&self, set: &ast::Set) -> Result<Output> {
        let local = matches!(
            set,
            ast::Set::SingleAssignment {
                scope: Some(ast::ContextModifier::Local),
                ..
            } | ast::Set::SetTimeZone { local: true, .. }
        );
        let (name, value) = match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = setting_name(variable);
                let value = values
                    .iter()
                    .map(|v| match v {
                        ast::Expr::Value(v) => match &v.value {
                            ast::Value::SingleQuotedString(s)
                            | ast::Value::DoubleQuotedString(s) => s.clone(),
                            other => other.to_string(),
                        },
                        ast::Expr::Identifier(i) => i.value.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                (name, value)
            }
            ast::Set::SetTimeZone { value, .. } => (
                "timezone".to_string(),
                value.to_string().trim_matches('\'').to_string(),
            ),
            ast::Set::SetNames { .. } | ast::Set::SetNamesDefault {} => return Ok(command("SET")),
            other => return Err(ServerError::Unsupported(format!("{other}"))),
        };
        // `SET name TO DEFAULT`, `SET TIME ZONE DEFAULT | LOCAL`: the session's start.
        let default = match set {
            ast::Set::SingleAssignment { values, .. } => matches!(
                values.as_slice(),
                [ast::Expr::Identifier(i)] if i.quote_style.is_none()
                    && i.value.eq_ignore_ascii_case("default")
            ),
            ast::Set::SetTimeZone { value, .. } => matches!(
                value,
                ast::Expr::Identifier(i) if i.quote_style.is_none()
                    && (i.value.eq_ignore_ascii_case("default")
                        || i.value.eq_ignore_ascii_case("local"))
            ),
            _ => false,
        };
        let value = if default {
            let name = variable_name(&[ast::Ident::new(name.clone())]);
            let name = if name == "time zone" {
                "timezone".to_string()
            } else {
                name
            };
            match self.startup_vars().get(&name) {
                Some(v) => v.clone(),
                None => return Ok(command("SET")),
            }
        } else {
            value
        };
        if local && self.tx_status() == super::TxStatus::Idle {
            // Postgres warns and sets nothing: the transaction it would last for is
            // this statement's own.
            self.warning(
                "25P01",
                "SET LOCAL can only be used in transaction blocks".into(),
            );
            return Ok(command("SET"));
        }
        self.set_variable_scoped(&name, &value, local)?;
        Ok(command("SET"))
    }

    /// Applies the `set_config(name, value, is_local)` calls the statement that just
    /// ran made (Postgres applies them as the call runs; here when the statement ends).
    pub(super) fn apply_set_configs(&self) -> Result<()> {
        let calls =
            std::mem::take(&mut *self.set_configs.lock().unwrap_or_else(|p| p.into_inner()));
        for (name, value, local) in calls {
            // Outside a transaction block, a local setting lasts for the statement
            // only: it is over already.
            if local && self.tx_status() == super::TxStatus::Idle {
                continue;
            }
            self.set_variable_scoped(&name, &value, local)?;
        }
        Ok(())
    }

    /// Where a statement's `set_config(…)` calls are kept until it ends.
    pub(super) fn set_config_calls(&self) -> Arc<std::sync::Mutex<Vec<(String, String, bool)>>> {
        self.set_configs.clone()
    }

    /// The session's time zone (`SET TIME ZONE`), for `timestamptz` output.
    pub fn time_zone(&self) -> Zone {
        self.var("timezone")
            .and_then(|z| Zone::from_setting(&z))
            .unwrap_or(Zone::Utc)
    }

    /// The session's `TimeZone` if it is not the one last reported to the client
    /// (ParameterStatus, at startup or since): drivers such as psycopg show `timestamptz`
    /// values in the zone reported.
    pub fn take_zone_change(&self) -> Option<String> {
        let now = self.var("timezone").unwrap_or_else(|| "UTC".into());
        let mut reported = self.reported_zone.lock().unwrap_or_else(|p| p.into_inner());
        (*reported != now).then(|| {
            *reported = now.clone();
            now
        })
    }

    /// Parameters from the startup packet (`statement_timeout`, `TimeZone`,
    /// `application_name`, `options=-c name=value`), as if SET: one that Freshet does
    /// not take is logged and left alone.
    pub fn apply_startup_parameters<'a>(&self, params: impl Iterator<Item = (&'a str, &'a str)>) {
        let params: Vec<(&str, &str)> = params.collect();
        // What the startup's ParameterStatus said (`crate::auth::StartupParameters`).
        let sent = startup_zone(params.iter().copied());
        *self.reported_zone.lock().unwrap_or_else(|p| p.into_inner()) = sent;
        for (name, value) in params {
            let name = name.to_ascii_lowercase();
            if matches!(
                name.as_str(),
                "user" | "database" | "replication" | "client_encoding" | "datestyle"
            ) {
                continue;
            }
            if name == "options" {
                for (k, v) in parse_options(value) {
                    self.refuse_search_path(&k.to_ascii_lowercase(), &v);
                    if let Err(e) = self.set_variable(&k.to_ascii_lowercase(), &v) {
                        tracing::debug!(parameter = %k, error = %e, "startup option ignored");
                    }
                }
                continue;
            }
            self.refuse_search_path(&name, value);
            if let Err(e) = self.set_variable(&name, value) {
                tracing::debug!(parameter = %name, error = %e, "startup parameter ignored");
            }
        }
        *self.startup_vars.lock().unwrap_or_else(|p| p.into_inner()) = self.vars_snapshot();
    }

    /// Remembers a startup `search_path` Freshet does not follow (see
    /// `Session::refused_search_path`).
    fn refuse_search_path(&self, name: &str, value: &str) {
        if name == "search_path" && !freshet_planner::schemas::public_only_path(value) {
            *self
                .refused_search_path
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(value.to_string());
        }
    }

    /// Sets one variable for the session, checking the value of those Freshet acts on.
    pub fn set_variable(&self, name: &str, value: &str) -> Result<()> {
        self.set_variable_scoped(name, value, false)
    }

    /// Sets one variable; `local`: until the transaction ends (`SET LOCAL`), else for
    /// the session once the transaction commits (a rollback undoes it).
    pub(super) fn set_variable_scoped(&self, name: &str, value: &str, local: bool) -> Result<()> {
        // Setting names are case-insensitive, quoted too (`SET "TimeZone" = …`).
        let (name, value) = (name.to_ascii_lowercase(), value.to_string());
        let value = match name.as_str() {
            "implicit_flush" | "rw_enable_two_phase_agg" => match value.to_lowercase().as_str() {
                "true" | "on" | "1" | "yes" => "true".to_string(),
                "false" | "off" | "0" | "no" => "false".to_string(),
                _ => return Err(ServerError::InvalidParameterValue { name, value }),
            },
            // RisingWave's name; 0, `default` or `adaptive`: the server's setting.
            "streaming_parallelism" | "streaming_max_parallelism" => match value
                .to_lowercase()
                .as_str()
            {
                "0" | "default" | "adaptive" => "default".to_string(),
                v => match v.parse::<usize>() {
                    Ok(n) if (1..=freshet_engine::shards::MAX_SHARDS).contains(&n) => n.to_string(),
                    _ => return Err(ServerError::InvalidParameterValue { name, value }),
                },
            },
            "subscribe_max_buffered_rows" => match value.parse::<usize>() {
                Ok(n) if n > 0 => n.to_string(),
                _ => return Err(ServerError::InvalidParameterValue { name, value }),
            },
            "statement_timeout" => match crate::limits::parse_millis(&value) {
                Some(ms) => crate::limits::show_millis(ms),
                None => return Err(ServerError::InvalidParameterValue { name, value }),
            },
            "query_memory_limit" => match crate::limits::parse_bytes(&value) {
                Some(b) if b > 0 && b <= self.db.limits.query_memory_bytes => {
                    crate::limits::show_bytes(b)
                }
                Some(_) => {
                    return Err(ServerError::InvalidOption(format!(
                        "query_memory_limit must be positive and at most the server's \
                         limit of {} bytes (--query-memory-limit)",
                        self.db.limits.query_memory_bytes
                    )))
                }
                None => return Err(ServerError::InvalidParameterValue { name, value }),
            },
            // Unqualified names resolve in public only: a path that would find them
            // elsewhere is refused rather than ignored.
            "search_path" => {
                if !freshet_planner::schemas::public_only_path(&value) {
                    return Err(ServerError::Unsupported(format!(
                        "search_path {value}: unqualified names resolve in schema public; \
                         name a relation in schema s as s.name"
                    )));
                }
                value
            }
            "timezone" | "time zone" => {
                zone_setting(&value).ok_or_else(|| ServerError::InvalidParameterValue {
                    name: "TimeZone".into(),
                    value: value.clone(),
                })?
            }
            _ => value,
        };
        let name = if name == "time zone" {
            "timezone".to_string()
        } else {
            name
        };
        if !super::setting_names::known(&name) {
            return Err(ServerError::UnknownParameter(name));
        }
        if name == "search_path" {
            *self
                .refused_search_path
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.vars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), value.clone());
        if !local {
            self.keep_for_commit(&name, Some(&value));
        }
        Ok(())
    }

    pub(super) fn show(&self, variable: &[ast::Ident]) -> Result<Output> {
        let name = variable_name(variable);
        let vars = self.vars.lock().unwrap_or_else(|p| p.into_inner());
        if name == "all" {
            let schema: SchemaRef = Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("setting", DataType::Utf8, false),
            ]));
            let rows: Vec<Vec<ScalarValue>> = vars
                .iter()
                .map(|(k, v)| {
                    vec![
                        ScalarValue::Utf8(Some(k.clone())),
                        ScalarValue::Utf8(Some(v.clone())),
                    ]
                })
                .collect();
            let batch = rows_to_batch(schema.clone(), &rows)?;
            return Ok(Output::Rows {
                schema,
                batches: vec![batch],
            });
        }
        let value = vars
            .get(&name)
            .cloned()
            .ok_or(ServerError::UnknownParameter(name.clone()))?;
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            shown_name(&name),
            DataType::Utf8,
            true,
        )]));
        let batch = rows_to_batch(schema.clone(), &[vec![ScalarValue::Utf8(Some(value))]])?;
        Ok(Output::Rows {
            schema,
            batches: vec![batch],
        })
    }
}

/// The column name `SHOW` gives a variable: Postgres' own spelling of its name.
pub(super) fn shown_name(name: &str) -> &str {
    match name {
        "timezone" => "TimeZone",
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        other => other,
    }
}

/// `-c name=value` pairs of the `options` startup parameter (also `--name=value`).
pub(crate) fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(w) = words.next() {
        let pair = if w == "-c" {
            words.next()
        } else {
            w.strip_prefix("-c").or_else(|| w.strip_prefix("--"))
        };
        if let Some((k, v)) = pair.and_then(|p| p.split_once('=')) {
            out.push((k.replace('-', "_"), v.to_string()));
        }
    }
    out
}

/// The variable `SHOW` names: the SQL standard's spellings (`SHOW TIME ZONE`, `SHOW
/// TRANSACTION ISOLATION LEVEL`) as their settings; other words are the parts of a
/// custom name (`SHOW app.tenant`).
pub(super) fn variable_name(variable: &[ast::Ident]) -> String {
    let words: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
    match words.join(" ").as_str() {
        "time zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        _ => words.join("."),
    }
}

/// The setting `SET` and `RESET` name: every part of a custom name (`app.tenant`; the
/// last part alone set `tenant`).
fn setting_name(n: &ast::ObjectName) -> String {
    n.0.iter()
        .filter_map(|p| p.as_ident())
        .map(super::ident_name)
        .collect::<Vec<_>>()
        .join(".")
}

/// Refuses `stmt` while the session runs with a startup `search_path` Freshet does not
/// follow, unless it is a `SET`/`RESET` (which can replace it).
pub(super) fn check_search_path(session: &Session, stmt: &Stmt) -> Result<()> {
    let refused = session
        .refused_search_path
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(path) = refused else {
        return Ok(());
    };
    if let Stmt::Sql(s) = stmt {
        if matches!(
            s.as_ref(),
            ast::Statement::Set(_) | ast::Statement::Reset(_)
        ) {
            return Ok(());
        }
    }
    Err(ServerError::Unsupported(format!(
        "search_path {path} (asked for when connecting): unqualified names resolve in schema \
         public; name a relation in schema s as s.name, and connect without it or SET \
         search_path TO public"
    )))
}

/// How a `TimeZone` setting is kept and shown (`None`: no zone): an IANA name as the zone
/// database spells it, an offset as written (`+05:30`: its sign depends on how it was
/// written, as Postgres shows it), `UTC` for `DEFAULT` and `LOCAL`.
pub fn zone_setting(value: &str) -> Option<String> {
    if value.eq_ignore_ascii_case("default") || value.eq_ignore_ascii_case("local") {
        return Some("UTC".into());
    }
    Some(match Zone::from_setting(value)? {
        Zone::Fixed(_) => value.trim().to_string(),
        zone => zone.name(),
    })
}

/// The `TimeZone` of startup parameters (`options=-c TimeZone=…` before `TimeZone`, as
/// Postgres applies them), as kept ([`zone_setting`]); UTC if none.
pub fn startup_zone<'a>(params: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut zone = None;
    let mut from_options = None;
    for (k, v) in params {
        if k.eq_ignore_ascii_case("timezone") {
            zone = zone_setting(v);
        } else if k == "options" {
            from_options = parse_options(v)
                .into_iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("timezone"))
                .find_map(|(_, v)| zone_setting(&v));
        }
    }
    from_options.or(zone).unwrap_or_else(|| "UTC".into())
}
