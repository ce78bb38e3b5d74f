//! pgwire glue: the simple and extended query protocols over a [`Session`].

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use freshet_planner::parser::{self, Stmt};
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{send_describe_response, send_execution_response, send_ready_for_query};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{DataRow, NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Describe, Execute, PortalSuspended, Sync as PgSync, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::PgWireBackendMessage;

use crate::auth::Authenticator;
use crate::backends::{Backend, Backends};
use crate::encode::{encode_batch, field_infos, pg_type};
use crate::error::ServerError;
use crate::session::{BatchStream, Output, Session, TxStatus};
use freshet_planner::pg_text::Zone;

/// A statement prepared over the extended protocol.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The SQL text (what `pg_stat_activity` shows while it runs).
    sql: Arc<str>,
    stmt: Stmt,
    param_types: Vec<Option<DataType>>,
    /// The types the client declared in Parse (`crate::declared_params`).
    declared: Vec<Option<Type>>,
    schema: Option<SchemaRef>,
}

/// One connection's handlers.
pub struct Connection {
    session: Arc<Session>,
    parser: Arc<Parser>,
    auth: Arc<Authenticator>,
}

pub struct Parser {
    session: Arc<Session>,
}

impl Connection {
    pub fn new(session: Session, auth: Arc<Authenticator>) -> Connection {
        let session = Arc::new(session);
        Connection {
            parser: Arc::new(Parser {
                session: session.clone(),
            }),
            session,
            auth,
        }
    }
}

/// The user the client authenticated as.
fn login_user<C: ClientInfo>(client: &C) -> &str {
    client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .map(String::as_str)
        .unwrap_or(freshet_planner::users::BOOTSTRAP_USER)
}

fn to_response(
    out: Output,
    format: &dyn Fn(usize) -> FieldFormat,
    zone: Zone,
) -> PgWireResult<Response> {
    Ok(match out {
        Output::Rows { schema, batches } => {
            let fields = Arc::new(field_infos(&schema, format));
            // Encoded a batch at a time as the client takes them: a result is held once,
            // as Arrow batches, not a second time as wire rows.
            let encoding = fields.clone();
            let rows = stream::iter(batches).flat_map(move |b| {
                let rows: Vec<PgWireResult<DataRow>> = match encode_batch(&b, &encoding, &zone) {
                    Ok(rows) => rows.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                stream::iter(rows)
            });
            Response::Query(QueryResponse::new(fields, rows))
        }
        Output::Stream { schema, batches } => stream_response(schema, batches, format, None, zone),
        Output::Fetched { schema, batches } => {
            stream_response(schema, batches, format, Some("FETCH"), zone)
        }
        Output::Command { tag, rows } => {
            let mut t = Tag::new(&tag);
            if let Some(n) = rows {
                t = t.with_rows(n);
            }
            Response::Execution(t)
        }
        Output::TxStart(tag) => Response::TransactionStart(Tag::new(&tag)),
        Output::TxEnd(tag) => Response::TransactionEnd(Tag::new(&tag)),
        Output::Empty => Response::EmptyQuery,
        Output::CopyIn { columns } => Response::CopyIn(CopyResponse::new(
            0,
            columns,
            stream::empty::<PgWireResult<CopyData>>(),
        )),
        Output::CopyOut { columns, lines } => Response::CopyOut(CopyResponse::new(
            0,
            columns,
            lines.map(|l| {
                l.map(|l| CopyData::new(l.into_bytes().into()))
                    .map_err(ServerError::into_pgwire)
            }),
        )),
    })
}

/// Rows encoded a batch at a time as the client takes them.
fn stream_response(
    schema: SchemaRef,
    batches: BatchStream,
    format: &dyn Fn(usize) -> FieldFormat,
    tag: Option<&str>,
    zone: Zone,
) -> Response {
    let fields = Arc::new(field_infos(&schema, format));
    let encoding = fields.clone();
    let rows = batches.flat_map(move |b| {
        let rows: Vec<PgWireResult<DataRow>> = match b
            .map_err(ServerError::into_pgwire)
            .and_then(|b| encode_batch(&b, &encoding, &zone))
        {
            Ok(rows) => rows.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        stream::iter(rows)
    });
    let mut r = QueryResponse::new(fields, rows);
    if let Some(tag) = tag {
        r.set_command_tag(tag);
    }
    Response::Query(r)
}

fn error_response(e: ServerError) -> Response {
    Response::Error(Box::new(e.error_info()))
}

/// The `ReadyForQuery` status of a session: the session, not the protocol layer, knows
/// whether its transaction goes on (after `ROLLBACK TO SAVEPOINT`, say).
fn ready_status(session: &Session) -> TransactionStatus {
    match session.tx_status() {
        TxStatus::Idle => TransactionStatus::Idle,
        TxStatus::InTransaction => TransactionStatus::Transaction,
        TxStatus::Failed => TransactionStatus::Error,
    }
}

impl Connection {
    /// Sends one statement's response to a simple query; whether the next statement of
    /// the query string may run (not after an error, nor once COPY FROM STDIN waits).
    async fn send_simple<C>(&self, client: &mut C, response: Response) -> PgWireResult<bool>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match response {
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?
            }
            Response::Query(results) => {
                let sent = crate::respond::send_rows(client, results, true).await;
                return self.after_streaming(client, sent).await;
            }
            Response::Execution(tag)
            | Response::TransactionStart(tag)
            | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
            Response::Error(e) => {
                return self
                    .after_streaming(client, Err(PgWireError::UserError(e)))
                    .await;
            }
            Response::CopyIn(result) => {
                pgwire::api::copy::send_copy_in_response(client, result).await?;
                client.set_state(PgWireConnectionState::CopyInProgress(false));
                return Ok(false);
            }
            Response::CopyOut(result) => {
                let sent = crate::respond::send_copy_out(client, result).await;
                return self.after_streaming(client, sent).await;
            }
            Response::CopyBoth(result) => {
                pgwire::api::copy::send_copy_both_response(client, result).await?;
                client.set_state(PgWireConnectionState::CopyInProgress(false));
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Connection {
    /// The NOTICEs the statement just run left (`relation "t" already exists,
    /// skipping`), sent before its response as Postgres sends them.
    async fn send_notices<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: Sink<PgWireBackendMessage> + Unpin,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        for n in self.session.take_notices() {
            client
                .feed(PgWireBackendMessage::NoticeResponse(n.info().into()))
                .await?;
        }
        // A changed TimeZone is reported, as Postgres reports it after SET.
        if let Some(zone) = self.session.take_zone_change() {
            client
                .feed(PgWireBackendMessage::ParameterStatus(
                    pgwire::messages::startup::ParameterStatus::new("TimeZone".into(), zone),
                ))
                .await?;
        }
        Ok(())
    }

    /// After a statement's rows or COPY data were sent: whether the next statement of a
    /// simple query may run. A failure while they were sent (a cancel, a timeout, an
    /// error in a later batch) follows the rows sent so far as an ErrorResponse.
    async fn after_streaming<C>(&self, client: &mut C, sent: PgWireResult<()>) -> PgWireResult<bool>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match sent {
            Ok(()) => Ok(true),
            Err(PgWireError::UserError(e)) => {
                self.session.note_error();
                client
                    .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                    .await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// What an Execute answers for a statement that returns no rows.
    async fn send_execute_result<C>(&self, client: &mut C, response: Response) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match response {
            Response::Query(_) => {}
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?
            }
            Response::Execution(tag)
            | Response::TransactionStart(tag)
            | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
            Response::Error(e) => {
                self.session.note_error();
                client
                    .send(PgWireBackendMessage::ErrorResponse((*e).into()))
                    .await?;
            }
            Response::CopyIn(result) => {
                client.set_state(PgWireConnectionState::CopyInProgress(true));
                pgwire::api::copy::send_copy_in_response(client, result).await?;
            }
            Response::CopyOut(result) => {
                let sent = crate::respond::send_copy_out(client, result).await;
                self.after_streaming(client, sent).await?;
            }
            Response::CopyBoth(result) => {
                client.set_state(PgWireConnectionState::CopyInProgress(true));
                pgwire::api::copy::send_copy_both_response(client, result).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    /// pgwire's `_on_query`, with the transaction status taken from the session.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        self.session.set_user(login_user(client));
        self.session.set_query_text(&query.query);
        match parser::parse(&query.query) {
            Err(e) => {
                self.send_simple(client, error_response(e.into())).await?;
            }
            // Only comments or semicolons: Postgres answers EmptyQueryResponse.
            Ok(stmts) if stmts.iter().all(|s| matches!(s, Stmt::Empty)) => {
                self.send_simple(client, Response::EmptyQuery).await?;
            }
            // One statement at a time, each answered before the next runs; after an
            // error (also one while rows are sent) the rest is not run, as in Postgres.
            Ok(stmts) => {
                for stmt in &stmts {
                    let response = match self.session.execute(stmt, &[]).await {
                        Ok(o) => to_response(o, &|_| FieldFormat::Text, self.session.time_zone())?,
                        Err(e) => error_response(e),
                    };
                    self.send_notices(client).await?;
                    if !self.send_simple(client, response).await? {
                        break;
                    }
                }
            }
        }
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            let status = ready_status(&self.session);
            client.set_transaction_status(status);
            send_ready_for_query(client, status).await?;
        }
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.session.set_user(login_user(client));
        self.session.set_query_text(query);
        let stmts = match parser::parse(query) {
            Ok(s) => s,
            Err(e) => return Ok(vec![error_response(e.into())]),
        };
        // Only comments or semicolons: Postgres answers EmptyQueryResponse.
        if stmts.iter().all(|s| matches!(s, Stmt::Empty)) {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::with_capacity(stmts.len());
        for stmt in &stmts {
            match self.session.execute(stmt, &[]).await {
                Ok(o) => out.push(to_response(
                    o,
                    &|_| FieldFormat::Text,
                    self.session.time_zone(),
                )?),
                Err(e) => {
                    // Like Postgres: the rest of the query string is not run.
                    out.push(error_response(e));
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.session.set_user(login_user(client));
        let mut stmts = parser::parse(sql).map_err(|e| {
            self.session.note_error();
            ServerError::from(e).into_pgwire()
        })?;
        if stmts.len() > 1 {
            return Err(ServerError::MultipleCommands.into_pgwire());
        }
        let mut stmt = stmts.pop().unwrap_or(Stmt::Empty);
        if matches!(stmt, Stmt::Empty) {
            return Ok(None);
        }
        if let Stmt::Sql(s) = &mut stmt {
            crate::declared_params::apply(s, types);
        }
        let (param_types, schema) = self.session.describe(&stmt).await.map_err(|e| {
            self.session.note_error();
            e.into_pgwire()
        })?;
        Ok(Some(Prepared {
            sql: sql.into(),
            stmt,
            param_types,
            declared: types.to_vec(),
            schema,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .param_types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                crate::declared_params::described(&stmt.declared, i)
                    .unwrap_or_else(|| crate::params::described_type(t.as_ref()))
            })
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &stmt.schema {
            Some(s) => field_infos(s, |i| {
                format.map(|f| f.format_for(i)).unwrap_or(FieldFormat::Text)
            }),
            None => vec![],
        })
    }
}

/// Decodes bound parameter `i` into a value of DataFusion type `target`.
fn decode_param(
    portal: &Portal<Prepared>,
    i: usize,
    pg: &Type,
    target: Option<&DataType>,
    zone: &freshet_planner::pg_text::Zone,
) -> PgWireResult<ScalarValue> {
    let raw = portal
        .parameters
        .get(i)
        .ok_or(PgWireError::ParameterIndexOutOfBound(i))?;
    crate::params::decode(
        raw.as_deref(),
        portal.parameter_format.is_binary(i),
        pg,
        target,
        zone,
    )
    .map_err(|e| {
        ServerError::InvalidText(format!("invalid value for parameter ${}: {e}", i + 1))
            .into_pgwire()
    })
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// A Describe of a portal that is an SQL cursor (psycopg describes the cursor it
    /// just declared) answers with the cursor's columns.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_PORTAL {
            let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
            if client.portal_store().get_portal(name).is_none() {
                if let Some(schema) = self.session.cursor_schema(name) {
                    let fields = field_infos(&schema, |_| FieldFormat::Text);
                    send_describe_response(client, &DescribePortalResponse::new(fields)).await?;
                    return Ok(());
                }
            }
        }
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            // A statement without rows: its parameters, then NoData (pgwire answers an
            // empty RowDescription when there are parameters, which pgjdbc takes for a
            // result it did not expect once it prepares an INSERT for good).
            let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
            if let Some(Entry::Value(stored)) = client.portal_store().get_statement(name) {
                if stored.statement.schema.is_none() {
                    let types: Vec<u32> = (0..stored
                        .parameter_types
                        .len()
                        .max(stored.statement.param_types.len()))
                        .map(|i| {
                            stored
                                .parameter_types
                                .get(i)
                                .cloned()
                                .flatten()
                                .unwrap_or_else(|| {
                                    crate::params::described_type(
                                        stored
                                            .statement
                                            .param_types
                                            .get(i)
                                            .and_then(|t| t.as_ref()),
                                    )
                                })
                                .oid()
                        })
                        .collect();
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(types),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }

    /// pgwire's `_on_execute`, streaming: rows go to the client as the query produces
    /// them (pgwire collects a portal's rows before sending them), `max_rows` at a time
    /// if the client asks for a limit (the portal is then suspended until the next
    /// Execute).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
        let max_rows = usize::try_from(message.max_rows).unwrap_or(0);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                client.set_state(PgWireConnectionState::ReadyForQuery);
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name.to_owned())),
        };
        let state = portal.state();
        let previous = std::mem::replace(&mut *state.lock().await, PortalExecutionState::Finished);
        let response = match previous {
            PortalExecutionState::Suspended(r) => Some(r),
            PortalExecutionState::Finished => None,
            PortalExecutionState::Initial => {
                match ExtendedQueryHandler::do_query(self, client, portal.as_ref(), max_rows)
                    .await?
                {
                    Response::Query(r) => Some(r),
                    other => {
                        self.send_execute_result(client, other).await?;
                        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
                            client.set_state(PgWireConnectionState::ReadyForQuery);
                        }
                        return Ok(());
                    }
                }
            }
        };
        if let Some(mut r) = response {
            let mut sent = 0;
            let suspended = loop {
                if max_rows != 0 && sent == max_rows {
                    break true;
                }
                match crate::respond::next_flushing(client, &mut r.data_rows).await? {
                    Some(row) => {
                        client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                        sent += 1;
                    }
                    None => break false,
                }
            };
            if suspended {
                client
                    .send(PgWireBackendMessage::PortalSuspended(PortalSuspended::new()))
                    .await?;
                *state.lock().await = PortalExecutionState::Suspended(r);
            } else {
                let tag = Tag::new(&r.command_tag).with_rows(sent);
                client
                    .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                    .await?;
            }
        } else {
            // Executing a portal that has run to its end again: nothing more.
            client
                .feed(PgWireBackendMessage::CommandComplete(
                    Tag::new("SELECT").with_rows(0).into(),
                ))
                .await?;
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }

    /// `ReadyForQuery` with the session's transaction status.
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(pgwire::api::DEFAULT_NAME);
        let status = ready_status(&self.session);
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<pgwire::messages::PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Prepared>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<pgwire::messages::PgWireBackendMessage>>::Error>,
    {
        self.session.set_user(login_user(client));
        let prepared = &portal.statement.statement;
        let mut params = Vec::with_capacity(portal.parameter_len());
        let zone = self.session.time_zone();
        for i in 0..portal.parameter_len() {
            let target = prepared.param_types.get(i).and_then(|t| t.as_ref());
            let pg = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or_else(|| target.map(pg_type).unwrap_or(Type::TEXT));
            params.push(
                decode_param(portal, i, &pg, target, &zone).inspect_err(|_| {
                    self.session.note_error();
                })?,
            );
        }
        self.session.set_query_text(&prepared.sql);
        let done = self.session.execute(&prepared.stmt, &params).await;
        self.send_notices(client).await?;
        match done {
            Ok(out) => to_response(
                out,
                &|i| portal.result_column_format.format_for(i),
                self.session.time_zone(),
            ),
            Err(e) => Err(e.into_pgwire()),
        }
    }
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session
            .copy_data(&data.data)
            .map_err(ServerError::into_pgwire)
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let n = self
            .session
            .copy_done()
            .await
            .map_err(ServerError::into_pgwire)?;
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(n).into(),
            ))
            .await?;
        // pgwire sends ReadyForQuery with the status it keeps: the session's.
        client.set_transaction_status(ready_status(&self.session));
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let e = self.session.copy_fail(&fail.message);
        self.session.note_error();
        client.set_transaction_status(ready_status(&self.session));
        e.into_pgwire()
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(Self {
            session: self.session.clone(),
            parser: self.parser.clone(),
            auth: self.auth.clone(),
        })
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(Self {
            session: self.session.clone(),
            parser: self.parser.clone(),
            auth: self.auth.clone(),
        })
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Startup {
            auth: self.auth.clone(),
            session: self.session.clone(),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(CancelRequests(self.session.db().backends.clone()))
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::new(Self {
            session: self.session.clone(),
            parser: self.parser.clone(),
            auth: self.auth.clone(),
        })
    }
}

/// A connection's startup: authentication, with the session's process id in the
/// `BackendKeyData` (see [`crate::backends::BackendKeys`]).
struct Startup {
    auth: Arc<Authenticator>,
    session: Arc<Session>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let backend = self.session.backend();
        if client.session_extensions().get::<Arc<Backend>>().is_none() {
            client.session_extensions().insert(backend.clone());
        }
        self.auth.on_startup(client, message).await?;
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            let app = client
                .metadata()
                .get(pgwire::api::METADATA_APPLICATION_NAME)
                .cloned()
                .unwrap_or_default();
            backend.set_client(login_user(client), &app, Some(client.socket_addr()));
            self.session.apply_startup_parameters(
                client
                    .metadata()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
        Ok(())
    }
}

/// CancelRequests, checked against the sessions' keys.
struct CancelRequests(Arc<Backends>);

#[async_trait]
impl CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: pgwire::messages::cancel::CancelRequest) {
        self.0.cancel_request(request.pid, &request.secret_key);
    }
}

/// Handlers for a connection over the limit: refuse it with 53300 (a CancelRequest is
/// still honoured: it does not count as a connection).
pub struct TooManyConnections(pub Arc<Backends>);

#[async_trait]
impl StartupHandler for TooManyConnections {
    async fn on_startup<C>(
        &self,
        _client: &mut C,
        _message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<pgwire::messages::PgWireBackendMessage> + Unpin + Send,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<pgwire::messages::PgWireBackendMessage>>::Error>,
    {
        Err(PgWireError::UserError(Box::new(ErrorInfo::new(
            "FATAL".into(),
            "53300".into(),
            "sorry, too many clients already".into(),
        ))))
    }
}

impl PgWireServerHandlers for TooManyConnections {
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(TooManyConnections(self.0.clone()))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(CancelRequests(self.0.clone()))
    }
}
