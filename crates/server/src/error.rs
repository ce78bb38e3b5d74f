//! Errors at the server edge and their one mapping to Postgres SQLSTATE codes.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use freshet_engine::EngineError;
use freshet_planner::PlannerError;
use freshet_storage::StorageError;
use pgwire::error::{ErrorInfo, PgWireError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Planner(#[from] PlannerError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    WrongObjectType(String),
    #[error("invalid value for parameter \"{name}\": \"{value}\"")]
    InvalidParameterValue { name: String, value: String },
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownParameter(String),
    #[error("cannot insert multiple commands into a prepared statement")]
    MultipleCommands,
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    InvalidOption(String),
    #[error("{message}")]
    Connector { code: &'static str, message: String },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// `57014`: canceled (statement_timeout, a cancel request).
    #[error("{0}")]
    QueryCanceled(String),
    /// `57P01`: `pg_terminate_backend` ended the session.
    #[error("terminating connection due to administrator command")]
    Terminated,
    #[error("internal error: {0}")]
    Internal(String),
    /// `42501`
    #[error("{0}")]
    PermissionDenied(String),
    /// `42710`
    #[error("{0}")]
    DuplicateObject(String),
    /// `42704`
    #[error("{0}")]
    UndefinedObject(String),
    /// `3F000`
    #[error("schema \"{0}\" does not exist")]
    UndefinedSchema(String),
    /// `42P06`
    #[error("schema \"{0}\" already exists")]
    DuplicateSchema(String),
    /// `42939`: a name reserved for the system (`pg_…` schemas, built-in schemas).
    #[error("{0}")]
    ReservedName(String),
    /// `42701`: a column named as a hidden column (`_row_id` of a table without a key).
    #[error("column name \"{0}\" conflicts with a system column name")]
    SystemColumn(String),
    /// `55000`: a view that failed at start-up.
    #[error("{0}")]
    ViewFailed(String),
    /// `25P02`
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    TransactionAborted,
    /// `25001`
    #[error("{0}")]
    ActiveTransaction(String),
    /// `25P01`
    #[error("{0}")]
    NoActiveTransaction(String),
    /// `3B001`
    #[error("savepoint \"{0}\" does not exist")]
    UndefinedSavepoint(String),
    /// `22P04`: COPY data that is not laid out as its format says.
    #[error("{0}")]
    BadCopyData(String),
    /// `22P02`
    #[error("{0}")]
    InvalidText(String),
    /// `42P10`: an ON CONFLICT target that is no key.
    #[error("{0}")]
    InvalidColumnReference(String),
    /// `21000`: ON CONFLICT DO UPDATE meeting one row twice.
    #[error("{0}")]
    CardinalityViolation(String),
    /// `42804`: a value of a type a column cannot take (a sink's into its table).
    #[error("{0}")]
    DatatypeMismatch(String),
    /// `53200`
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// `42P03`
    #[error("cursor \"{0}\" already exists")]
    DuplicateCursor(String),
    /// `34000`
    #[error("cursor \"{0}\" does not exist")]
    UndefinedCursor(String),
    /// `55000`
    #[error("{0}")]
    ObjectState(String),
    /// `25006`
    #[error("{0}")]
    ReadOnlyTransaction(String),
    /// `53400`: a subscriber left more changes unread than it may; its connection ends.
    #[error("{0}")]
    SubscriberTooSlow(String),
}

pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// SQLSTATE, message and (1-based) position of an error.
pub struct PgError {
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<usize>,
}

impl ServerError {
    pub fn to_pg(&self) -> PgError {
        let (code, detail, position) = match self {
            ServerError::Planner(e) => match e {
                PlannerError::Syntax { position, .. } => ("42601", None, *position),
                PlannerError::UndefinedTable(_) => ("42P01", None, None),
                PlannerError::DuplicateTable(_) => ("42P07", None, None),
                PlannerError::DuplicateColumn(_) => ("42701", None, None),
                PlannerError::UndefinedColumn(_) => ("42703", None, None),
                PlannerError::DependentObjects { detail, .. } => {
                    ("2BP01", Some(detail.clone()), None)
                }
                PlannerError::WrongObjectType { .. } => ("42809", None, None),
                PlannerError::Unsupported(_) => ("0A000", None, None),
                PlannerError::InvalidParameter(_) => ("22023", None, None),
                PlannerError::DataFusion(e) => (datafusion_code(e), None, None),
                PlannerError::TooComplex(_) => ("54001", None, None),
                PlannerError::Internal(_) => ("XX000", None, None),
            },
            ServerError::Engine(e) => match e {
                EngineError::Storage(e) if e.is_disk_full() => ("53100", None, None),
                EngineError::Storage(_) => ("58030", None, None),
                EngineError::DataFusion(e) => (datafusion_code(e), None, None),
                EngineError::DuplicateKey { detail, .. } => ("23505", Some(detail.clone()), None),
                EngineError::NotNull { .. } => ("23502", None, None),
                EngineError::OutOfRange(_) => ("22003", None, None),
                EngineError::Conflict => ("40001", None, None),
                EngineError::UnknownRelation(_) => ("42P01", None, None),
                EngineError::ShutDown => ("57P01", None, None),
                EngineError::CommitFailed(_, true) => ("53100", None, None),
                EngineError::CommitFailed(_, false) => ("58030", None, None),
                EngineError::Rewound => ("40001", None, None),
                EngineError::Internal(_) | EngineError::Panicked(_) => ("XX000", None, None),
            },
            ServerError::Storage(e) if e.is_disk_full() => ("53100", None, None),
            ServerError::Storage(_) => ("58030", None, None),
            ServerError::DataFusion(e) => (datafusion_code(e), None, None),
            ServerError::Unsupported(_) => ("0A000", None, None),
            ServerError::WrongObjectType(_) => ("42809", None, None),
            ServerError::InvalidParameterValue { .. } => ("22023", None, None),
            ServerError::UnknownParameter(_) => ("42704", None, None),
            ServerError::MultipleCommands => ("42601", None, None),
            ServerError::Protocol(_) => ("08P01", None, None),
            ServerError::InvalidOption(_) => ("22023", None, None),
            ServerError::Connector { code, .. } => (*code, None, None),
            ServerError::ShuttingDown => ("57P01", None, None),
            ServerError::QueryCanceled(_) => ("57014", None, None),
            ServerError::Terminated => ("57P01", None, None),
            ServerError::Internal(_) => ("XX000", None, None),
            ServerError::ViewFailed(_) => ("55000", None, None),
            ServerError::PermissionDenied(_) => ("42501", None, None),
            ServerError::DuplicateObject(_) => ("42710", None, None),
            ServerError::UndefinedObject(_) => ("42704", None, None),
            ServerError::UndefinedSchema(_) => ("3F000", None, None),
            ServerError::DuplicateSchema(_) => ("42P06", None, None),
            ServerError::ReservedName(_) => ("42939", None, None),
            ServerError::SystemColumn(_) => ("42701", None, None),
            ServerError::TransactionAborted => ("25P02", None, None),
            ServerError::ActiveTransaction(_) => ("25001", None, None),
            ServerError::NoActiveTransaction(_) => ("25P01", None, None),
            ServerError::UndefinedSavepoint(_) => ("3B001", None, None),
            ServerError::BadCopyData(_) => ("22P04", None, None),
            ServerError::InvalidText(_) => ("22P02", None, None),
            ServerError::InvalidColumnReference(_) => ("42P10", None, None),
            ServerError::CardinalityViolation(_) => ("21000", None, None),
            ServerError::DatatypeMismatch(_) => ("42804", None, None),
            ServerError::OutOfMemory(_) => ("53200", None, None),
            ServerError::DuplicateCursor(_) => ("42P03", None, None),
            ServerError::UndefinedCursor(_) => ("34000", None, None),
            ServerError::ObjectState(_) => ("55000", None, None),
            ServerError::SubscriberTooSlow(_) => ("53400", None, None),
            ServerError::ReadOnlyTransaction(_) => ("25006", None, None),
        };
        let message = self.message();
        // Postgres' hint for a call no function takes.
        let mut hint = (code == "42883"
            && message.starts_with("function ")
            && message.ends_with(" does not exist"))
        .then(|| crate::error_text::NO_FUNCTION_HINT.to_string())
        .or_else(|| {
            (code == "42883" && message.starts_with("operator does not exist: ")).then(|| {
                "No operator matches the given name and argument type. You might need to \
                 add an explicit type cast."
                    .to_string()
            })
        });
        // A function's own detail and hint.
        let mut detail = detail;
        if let Some(e) = self.sqlstate_error() {
            detail = detail.or_else(|| e.detail.clone());
            hint = hint.or_else(|| e.hint.clone());
        }
        PgError {
            code,
            message,
            detail,
            hint,
            position,
        }
    }

    /// The error a function raised with its SQLSTATE, if this is one.
    fn sqlstate_error(&self) -> Option<&freshet_planner::pg_catalog::SqlStateError> {
        let e = match self {
            ServerError::Planner(PlannerError::DataFusion(e))
            | ServerError::Engine(EngineError::DataFusion(e))
            | ServerError::DataFusion(e) => root(e),
            _ => return None,
        };
        match e {
            DataFusionError::External(e) => e.downcast_ref(),
            _ => None,
        }
    }

    /// The primary message, Postgres style (lower case, no trailing period).
    fn message(&self) -> String {
        match self {
            ServerError::Planner(PlannerError::DataFusion(e))
            | ServerError::Engine(EngineError::DataFusion(e))
            | ServerError::DataFusion(e) => datafusion_message(e),
            other => {
                let m = other.to_string();
                crate::error_text::reword(&m).unwrap_or(m)
            }
        }
    }

    pub fn into_pgwire(self) -> PgWireError {
        PgWireError::UserError(Box::new(self.error_info()))
    }

    pub fn error_info(&self) -> ErrorInfo {
        let e = self.to_pg();
        // A terminated session's statement ends with the session.
        let severity = match self {
            ServerError::Terminated | ServerError::SubscriberTooSlow(_) => "FATAL",
            _ => "ERROR",
        };
        let mut info = ErrorInfo::new(severity.to_string(), e.code.to_string(), e.message);
        // Postgres sends the severity twice: `S` (localized) and `V` (never localized).
        info.severity_nonlocalized = Some(severity.to_string());
        info.detail = e.detail;
        info.hint = e.hint;
        info.position = e.position.map(|p| p.to_string());
        info
    }
}

fn root(e: &DataFusionError) -> &DataFusionError {
    match e {
        DataFusionError::Context(_, inner) => root(inner),
        DataFusionError::Shared(inner) => root(inner),
        DataFusionError::Diagnostic(_, inner) => root(inner),
        // Several errors at once (DataFusion's SQL planner collects them): the first.
        DataFusionError::Collection(errs) if !errs.is_empty() => root(&errs[0]),
        // A planning error passed through a table provider or a planner extension.
        DataFusionError::External(inner) => match inner.downcast_ref::<DataFusionError>() {
            Some(e) => root(e),
            None => e,
        },
        other => other,
    }
}

fn datafusion_code(e: &DataFusionError) -> &'static str {
    match root(e) {
        DataFusionError::SQL(_, _) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::DivideByZero => "22012",
            // A value that does not fit the type cast to (`1e10::int`).
            ArrowError::CastError(m) if crate::error_text::cast_error(m).0 == "22003" => "22003",
            ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
            ArrowError::ArithmeticOverflow(_) | ArrowError::ComputeError(_) => "22003",
            ArrowError::InvalidArgumentError(m) if m.contains("Invalid arithmetic operation") => {
                "42883"
            }
            ArrowError::InvalidArgumentError(m)
                if m.contains("too small") || m.contains("too large") =>
            {
                "22003"
            }
            _ => "XX000",
        },
        DataFusionError::Plan(m) => plan_code(m),
        // An optimizer or planner step of DataFusion that failed on the query's types.
        DataFusionError::Internal(m) if m.contains("Error during planning") => plan_code(m),
        DataFusionError::Execution(m) => {
            if m.contains("requested length too large") {
                "54000"
            } else if m.contains(freshet_planner::single_row::MORE_THAN_ONE_ROW)
                || m.contains("subquery returned more than one row")
            {
                "21000"
            } else if m.contains("Divide by zero") || m.contains("division by zero") {
                "22012"
            } else if m.contains("Cannot cast") || m.contains("invalid") || m.contains("malformed")
            {
                "22P02"
            } else {
                "22000"
            }
        }
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::External(e) if e.is::<crate::stored::Canceled>() => "57014",
        DataFusionError::External(e) if e.is::<freshet_planner::pg_catalog::SqlStateError>() => e
            .downcast_ref::<freshet_planner::pg_catalog::SqlStateError>()
            .map_or("XX000", |s| s.code),
        // DataFusion reports some type errors of the query as internal ones.
        DataFusionError::Internal(m) if m.contains("failed to match any signature") => "42883",
        DataFusionError::Internal(m) if m.contains("Failed to coerce") => "42804",
        DataFusionError::Internal(m) if m.contains("Cannot run range queries") => "0A000",
        DataFusionError::External(_) => "XX000",
        _ => "XX000",
    }
}

/// The SQLSTATE of a DataFusion planning error, from its message.
fn plan_code(m: &str) -> &'static str {
    if m.contains("not found") && m.contains("table") {
        "42P01"
    } else if m.contains("Invalid function")
        || m.contains("No function matches")
        || m.contains("failed to match any signature")
    {
        "42883"
    } else if m.contains("require unique expression names") {
        "42701"
    } else if m.contains("Cannot infer common")
        || m.contains("Cannot coerce")
        || m.contains("only supports")
        || m.contains("non-boolean predicate")
    {
        "42804"
    } else if m.contains("must appear in the GROUP BY") || m.contains("must be in GROUP BY") {
        "42803"
    } else {
        "42000"
    }
}

/// DataFusion's message without its "Error during planning:" style prefixes.
fn datafusion_message(e: &DataFusionError) -> String {
    let e = root(e);
    let msg = match e {
        DataFusionError::Plan(m)
        | DataFusionError::Execution(m)
        | DataFusionError::NotImplemented(m) => m.clone(),
        DataFusionError::ResourcesExhausted(m) => {
            format!("out of memory: the query needs more than its memory limit: {m}")
        }
        DataFusionError::External(e) if e.is::<crate::stored::Canceled>() => e.to_string(),
        DataFusionError::External(e) if e.is::<freshet_planner::pg_catalog::SqlStateError>() => {
            e.to_string()
        }
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { field, .. } => {
                format!("column \"{}\" does not exist", field.name())
            }
            other => other.to_string(),
        },
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::DivideByZero => "division by zero".to_string(),
            ArrowError::CastError(m) => crate::error_text::cast_error(m).1,
            // Postgres' own words, from `freshet_planner::checked_arith`.
            ArrowError::ArithmeticOverflow(m) if m.contains("out of range") => m.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    };
    let msg = msg.trim();
    if let Some(m) = crate::error_text::reword(msg) {
        return m;
    }
    // A correlated subquery DataFusion could not turn into a join reaches the physical
    // planner as such: name the feature.
    if let Some(rest) = msg.strip_prefix("Physical plan does not support logical expression ") {
        if rest.starts_with("ScalarSubquery")
            || rest.starts_with("OuterReferenceColumn")
            || rest.starts_with("Exists")
            || rest.starts_with("InSubquery")
        {
            return "this correlated subquery is not supported: its correlation cannot be \
                    turned into a join (correlate by equality, e.g. WHERE inner.k = outer.k; \
                    with an inequality, qualify the outer columns by their relation's name, \
                    and read them only in WHERE)"
                .to_string();
        }
    }
    // DataFusion words "table 'freshet.public.x' not found" → Postgres' wording.
    if let Some(rest) = msg.strip_prefix("table '") {
        if let Some(name) = rest.strip_suffix("' not found") {
            // Without the catalog, and without the schema when it is public.
            let parts: Vec<&str> = name.splitn(3, '.').collect();
            let short = match parts.as_slice() {
                [_, "public", t] | [t] => t.to_string(),
                [_, schema, t] => format!("{schema}.{t}"),
                _ => name.to_string(),
            };
            return format!("relation \"{short}\" does not exist");
        }
    }
    // Postgres' messages start in lower case; an acronym ("UNION queries …") stays.
    let mut chars = msg.chars();
    match (chars.next(), msg.chars().nth(1)) {
        (Some(c), Some(d)) if !d.is_uppercase() => {
            c.to_lowercase().collect::<String>() + chars.as_str()
        }
        _ => msg.to_string(),
    }
}

impl From<ServerError> for PgWireError {
    fn from(e: ServerError) -> Self {
        e.into_pgwire()
    }
}

impl From<ArrowError> for ServerError {
    fn from(e: ArrowError) -> Self {
        ServerError::DataFusion(e.into())
    }
}
