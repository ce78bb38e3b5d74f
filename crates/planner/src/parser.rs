//! Splits a query string into statements.
//!
//! Standard statements are parsed by sqlparser with the Postgres dialect; Freshet adds
//! `FLUSH`. Each statement keeps its source text so that errors can point into it.

use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{ColumnDef, Ident, ObjectName, Statement, Value};
use crate::sqlparser::keywords::Keyword;
use crate::sqlparser::parser::{Parser, ParserError};
use crate::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Word};
use crate::PlannerError;

#[derive(Clone, Debug)]
pub enum Stmt {
    Sql(Box<Statement>),
    /// `CREATE SOURCE …` (a stream read from Kafka, not stored).
    CreateSource(Box<CreateSource>),
    /// `CREATE TABLE … WITH (connector = …) FORMAT … ENCODE …`: a table fed by a topic.
    CreateTableWithConnector(Box<CreateSource>),
    /// `CREATE TABLE name (…, WATERMARK FOR …) APPEND ONLY`: a table written by DML with
    /// Freshet's extensions (no connector; `options` is empty).
    CreateTableExt(Box<CreateSource>),
    /// `CREATE SINK name {FROM relation | AS query} WITH (connector = …)`.
    CreateSink(Box<CreateSink>),
    /// `SHOW SOURCES`
    ShowSources,
    /// `SHOW SINKS`
    ShowSinks,
    /// `DROP SINK [IF EXISTS] name`
    DropSink {
        name: ObjectName,
        if_exists: bool,
    },
    /// `DROP SOURCE [IF EXISTS] name [CASCADE]`
    DropSource {
        name: ObjectName,
        if_exists: bool,
        cascade: bool,
    },
    /// `CREATE {USER | ROLE} name [[WITH] option …]`
    CreateUser(Box<UserStmt>),
    /// `ALTER {USER | ROLE} name [WITH] option …`
    AlterUser(Box<UserStmt>),
    /// `DROP {USER | ROLE} [IF EXISTS] name [, …]`
    DropUser {
        names: Vec<String>,
        if_exists: bool,
    },
    /// `FLUSH`: wait until every write so far is committed and visible.
    Flush,
    /// `MOVE [direction] [FROM | IN] cursor`: a FETCH whose rows are skipped (the
    /// statement is parsed as that `FETCH`).
    Move(Box<Statement>),
    /// `SHOW CREATE {TABLE | MATERIALIZED VIEW | VIEW | SOURCE | SINK} name`.
    ShowCreate {
        kind: crate::catalog::RelationKind,
        name: ObjectName,
    },
    /// `SUBSCRIBE …`: the rows of a relation or query, then every change.
    Subscribe(Box<Subscribe>),
    /// `COPY (SUBSCRIBE …) TO STDOUT …`: the subscription, and the `COPY` statement that
    /// carries its options.
    CopySubscribe(Box<(Subscribe, Statement)>),
    /// `DECLARE name CURSOR [WITH HOLD] FOR SUBSCRIBE …`.
    DeclareSubscribe {
        name: String,
        hold: bool,
        subscribe: Box<Subscribe>,
    },
    /// `ALTER {MATERIALIZED VIEW | SINK} name SET PARALLELISM {= | TO} {n | ADAPTIVE |
    /// DEFAULT}` (RisingWave's): the most threads its shards run on; `None`: the server's
    /// default.
    AlterParallelism {
        kind: crate::catalog::RelationKind,
        name: ObjectName,
        parallelism: Option<usize>,
    },
    /// `ALTER MATERIALIZED VIEW name AS query` (RisingWave's): the view computed by a new
    /// query, under the same name.
    AlterViewAs {
        name: ObjectName,
        query: Box<crate::sqlparser::ast::Query>,
    },
    /// `ALTER {TABLE | MATERIALIZED VIEW | VIEW | INDEX | SOURCE | SINK} [IF EXISTS] name
    /// RENAME TO new_name`; `what` is the object word as written.
    Rename {
        what: &'static str,
        name: ObjectName,
        new_name: ObjectName,
        if_exists: bool,
    },
    /// `CREATE INDEX …` (see [`crate::index_stmt`]).
    CreateIndex(Box<crate::index_stmt::CreateIndex>),
    /// An empty statement (`;` alone, or only comments).
    Empty,
}

/// Texts longer than this are parsed on a thread of their own with a stack sized for them:
/// when sqlparser fails in the middle of a long operator chain, it drops the tree it has
/// built so far recursively, one frame per level.
const LARGE_STATEMENT: usize = 32 * 1024;

/// `CREATE`/`ALTER USER`: the options written (`None`: left as they are).
#[derive(Clone, Default)]
pub struct UserStmt {
    pub name: String,
    /// Written `ROLE` (which, as in Postgres, does not log in unless it says `LOGIN`).
    pub role: bool,
    pub if_not_exists: bool,
    pub superuser: Option<bool>,
    pub login: Option<bool>,
    /// `PASSWORD 'text'` (`Some(Some(..))`) or `PASSWORD NULL` (`Some(None)`).
    pub password: Option<Option<String>>,
    /// `CONNECTION LIMIT n`; -1 is none.
    pub connection_limit: Option<i32>,
}

/// Never prints the password.
impl std::fmt::Debug for UserStmt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStmt")
            .field("name", &self.name)
            .field("superuser", &self.superuser)
            .field("login", &self.login)
            .field(
                "password",
                &self.password.as_ref().map(|p| p.as_ref().map(|_| "***")),
            )
            .finish()
    }
}

/// The options of `CREATE`/`ALTER USER` after the name (Postgres' role options that
/// Freshet keeps; others are refused).
fn parse_user_options(parser: &mut Parser, u: &mut UserStmt) -> Result<(), ParserError> {
    let _ = parser.parse_keyword(Keyword::WITH);
    loop {
        let t = parser.peek_token();
        let Token::Word(w) = &t.token else { break };
        let word = w.value.to_ascii_uppercase();
        match word.as_str() {
            "SUPERUSER" | "NOSUPERUSER" => u.superuser = Some(word == "SUPERUSER"),
            "LOGIN" | "NOLOGIN" => u.login = Some(word == "LOGIN"),
            "PASSWORD" => {
                parser.next_token();
                let v = parser.next_token();
                u.password = Some(match v.token {
                    Token::SingleQuotedString(p) => Some(p),
                    Token::Word(w) if w.keyword == Keyword::NULL => None,
                    _ => return parser.expected("a quoted password or NULL", v),
                });
                continue;
            }
            "ENCRYPTED" => {}
            "CONNECTION" => {
                parser.next_token();
                parser.expect_keyword(Keyword::LIMIT)?;
                let v = parser.next_token();
                let n = match &v.token {
                    Token::Number(n, _) => n.parse::<i64>().ok(),
                    Token::Minus => match parser.next_token().token {
                        Token::Number(n, _) => n.parse::<i64>().ok().map(|n| -n),
                        _ => None,
                    },
                    _ => None,
                };
                match n {
                    Some(n) if n >= -1 && n <= i32::MAX as i64 => {
                        u.connection_limit = Some(n as i32)
                    }
                    _ => return parser.expected("a connection limit (-1 for none)", v),
                }
                continue;
            }
            "INHERIT" | "NOINHERIT" | "CREATEDB" | "NOCREATEDB" | "CREATEROLE" | "NOCREATEROLE" => {
                return Err(ParserError::ParserError(format!(
                    "role option {word} is not supported: Freshet users are superusers or not"
                )))
            }
            _ => break,
        }
        parser.next_token();
    }
    Ok(())
}

fn parse_user_name(parser: &mut Parser) -> Result<String, ParserError> {
    let id = parser.parse_identifier()?;
    Ok(if id.quote_style.is_some() {
        id.value
    } else {
        id.value.to_lowercase()
    })
}

/// Parses all statements of `sql`. A statement nested too deeply to plan is refused with
/// `54001` (see [`crate::complexity`]).
pub fn parse(sql: &str) -> Result<Vec<Stmt>, PlannerError> {
    if sql.len() <= LARGE_STATEMENT {
        return parse_statements(sql);
    }
    // A level of a chain is at least two characters (`+1`); its drop frame is well under
    // a hundred bytes.
    let stack = 16 * 1024 * 1024 + sql.len().saturating_mul(64);
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("freshet-parse".into())
            .stack_size(stack)
            .spawn_scoped(s, || parse_statements(sql))
            .map_err(|e| PlannerError::Internal(format!("cannot start the parser thread: {e}")))?
            .join()
            .map_err(|_| PlannerError::Internal("the parser panicked".into()))?
    })
}

mod fetch;
mod subscribe;
use fetch::parse_fetch;
pub use subscribe::{Subscribe, SubscribeTarget};

fn parse_statements(sql: &str) -> Result<Vec<Stmt>, PlannerError> {
    let dialect = FreshetDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| syntax_error(sql, &e.message, Some(e.location)))?;
    let tokens = crate::sql_dialect::struct_words(tokens);
    let tokens = crate::asof::mark(crate::structs::star_fields(drop_trailing_commas(
        rewrite_lookups(tokens),
    )));
    let (tokens, mut corresponding) = crate::corresponding::mark(tokens);
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        if parser.parse_keyword(Keyword::FLUSH) {
            out.push(Stmt::Flush);
        } else if peek_words(&parser, &["RESET", "TIME", "ZONE"]) {
            // Postgres' spelling of `RESET timezone`.
            for _ in 0..3 {
                parser.next_token();
            }
            out.push(Stmt::Sql(Box::new(Statement::Reset(
                crate::sqlparser::ast::ResetStatement {
                    reset: crate::sqlparser::ast::Reset::ConfigurationParameter(
                        crate::sqlparser::ast::ObjectName::from(vec![
                            crate::sqlparser::ast::Ident::new("timezone"),
                        ]),
                    ),
                },
            ))));
        } else if subscribe::starts_subscribe(&parser) {
            let sub = subscribe::parse_subscribe(&mut parser).map_err(|e| parser_error(sql, e))?;
            check_subscribe(&sub)?;
            out.push(Stmt::Subscribe(Box::new(sub)));
        } else if subscribe::starts_copy_subscribe(&parser) {
            let (sub, copy) =
                subscribe::parse_copy_subscribe(&mut parser).map_err(|e| parser_error(sql, e))?;
            check_subscribe(&sub)?;
            out.push(Stmt::CopySubscribe(Box::new((sub, copy))));
        } else if subscribe::starts_declare_subscribe(&parser) {
            let (name, hold, sub) = subscribe::parse_declare_subscribe(&mut parser)
                .map_err(|e| parser_error(sql, e))?;
            check_subscribe(&sub)?;
            out.push(Stmt::DeclareSubscribe {
                name,
                hold,
                subscribe: Box::new(sub),
            });
        } else if peek_words(&parser, &["MOVE"]) || peek_words(&parser, &["FETCH"]) {
            let is_move = peek_words(&parser, &["MOVE"]);
            parser.next_token();
            let fetch = parse_fetch(&mut parser).map_err(|e| parser_error(sql, e))?;
            out.push(if is_move {
                Stmt::Move(Box::new(fetch))
            } else {
                Stmt::Sql(Box::new(fetch))
            });
        } else if let Some(what) = renames(&parser) {
            out.push(parse_rename(&mut parser, what).map_err(|e| parser_error(sql, e))?);
        } else if crate::index_stmt::starts(&parser) {
            use crate::index_stmt::IndexError;
            match crate::index_stmt::parse(&mut parser) {
                Ok(ci) => out.push(Stmt::CreateIndex(Box::new(ci))),
                Err(IndexError::Syntax(e)) => return Err(parser_error(sql, e)),
                Err(IndexError::Unsupported(what)) => return Err(PlannerError::Unsupported(what)),
            }
        } else if parser.parse_keywords(&[Keyword::CREATE, Keyword::SOURCE]) {
            let cs = parse_create_source(&mut parser).map_err(|e| parser_error(sql, e))?;
            out.push(Stmt::CreateSource(Box::new(cs)));
        } else if peek_words(&parser, &["CREATE", "TABLE"]) && has_format_clause(&parser) {
            parser.next_token();
            parser.next_token();
            let cs = parse_create_source(&mut parser).map_err(|e| parser_error(sql, e))?;
            out.push(Stmt::CreateTableWithConnector(Box::new(cs)));
        } else if peek_words(&parser, &["CREATE", "TABLE"]) && has_table_extension(&parser) {
            parser.next_token();
            parser.next_token();
            let cs = parse_create_table_ext(&mut parser).map_err(|e| parser_error(sql, e))?;
            out.push(Stmt::CreateTableExt(Box::new(cs)));
        } else if peek_words(&parser, &["CREATE", "SINK"]) {
            parser.next_token();
            parser.next_token();
            let mut cs = parse_create_sink(&mut parser).map_err(|e| parser_error(sql, e))?;
            if let Err(e) = crate::complexity::check(&cs.query) {
                crate::complexity::dismantle(*cs.query);
                return Err(e);
            }
            crate::corresponding::place(&mut cs.query, &mut corresponding)?;
            crate::literals::normalize(&mut cs.query)?;
            crate::set_ops::check(&cs.query)?;
            out.push(Stmt::CreateSink(Box::new(cs)));
        } else if peek_words(&parser, &["CREATE", "USER"])
            || peek_words(&parser, &["CREATE", "ROLE"])
        {
            let role = peek_words(&parser, &["CREATE", "ROLE"]);
            parser.next_token();
            parser.next_token();
            let mut u = UserStmt {
                role,
                if_not_exists: parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]),
                ..UserStmt::default()
            };
            u.name = parse_user_name(&mut parser).map_err(|e| parser_error(sql, e))?;
            parse_user_options(&mut parser, &mut u).map_err(|e| parser_error(sql, e))?;
            out.push(Stmt::CreateUser(Box::new(u)));
        } else if peek_words(&parser, &["ALTER", "USER"]) || peek_words(&parser, &["ALTER", "ROLE"])
        {
            parser.next_token();
            parser.next_token();
            let mut u = UserStmt {
                name: parse_user_name(&mut parser).map_err(|e| parser_error(sql, e))?,
                ..UserStmt::default()
            };
            parse_user_options(&mut parser, &mut u).map_err(|e| parser_error(sql, e))?;
            out.push(Stmt::AlterUser(Box::new(u)));
        } else if peek_words(&parser, &["DROP", "USER"]) || peek_words(&parser, &["DROP", "ROLE"]) {
            parser.next_token();
            parser.next_token();
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let mut names = vec![parse_user_name(&mut parser).map_err(|e| parser_error(sql, e))?];
            while parser.consume_token(&Token::Comma) {
                names.push(parse_user_name(&mut parser).map_err(|e| parser_error(sql, e))?);
            }
            out.push(Stmt::DropUser { names, if_exists });
        } else if peek_words(&parser, &["SHOW", "CREATE"]) {
            parser.next_token();
            parser.next_token();
            let kind = if parser.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
                Some(crate::catalog::RelationKind::View)
            } else {
                match parser.next_token().token {
                    Token::Word(w) => crate::show_create::kind_of(&w.value),
                    _ => None,
                }
            };
            let Some(kind) = kind else {
                return Err(syntax_error(
                    sql,
                    "SHOW CREATE takes TABLE, MATERIALIZED VIEW, SOURCE or SINK",
                    None,
                ));
            };
            let name = parser
                .parse_object_name(false)
                .map_err(|e| parser_error(sql, e))?;
            out.push(Stmt::ShowCreate { kind, name });
        } else if peek_words(&parser, &["ALTER", "MATERIALIZED", "VIEW"])
            || peek_words(&parser, &["ALTER", "SINK"])
        {
            out.push(parse_alter_parallelism(&mut parser, sql)?);
        } else if alters_table_parallelism(&parser) {
            return Err(PlannerError::Unsupported(
                "ALTER TABLE … SET PARALLELISM: a table's writes are applied in order on one \
                 thread; the views over it have a parallelism of their own (ALTER \
                 MATERIALIZED VIEW … SET PARALLELISM)"
                    .into(),
            ));
        } else if peek_words(&parser, &["SHOW", "SOURCES"]) {
            parser.next_token();
            parser.next_token();
            out.push(Stmt::ShowSources);
        } else if peek_words(&parser, &["SHOW", "JOBS"]) {
            // RisingWave's: the running jobs and their progress.
            parser.next_token();
            parser.next_token();
            let q = "SELECT id, kind, relation, progress, rows_per_second, eta_seconds, started \
                     FROM freshet_catalog.jobs WHERE state = 'running' ORDER BY id";
            let stmt = Parser::new(&FreshetDialect {})
                .try_with_sql(q)
                .and_then(|mut p| p.parse_statement())
                .map_err(|e| parser_error(sql, e))?;
            out.push(Stmt::Sql(Box::new(stmt)));
        } else if peek_words(&parser, &["SHOW", "SINKS"]) {
            parser.next_token();
            parser.next_token();
            out.push(Stmt::ShowSinks);
        } else if peek_words(&parser, &["DROP", "SINK"]) {
            parser.next_token();
            parser.next_token();
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = parser
                .parse_object_name(false)
                .map_err(|e| parser_error(sql, e))?;
            if !parser.parse_keyword(Keyword::CASCADE) {
                let _ = parser.parse_keyword(Keyword::RESTRICT);
            }
            out.push(Stmt::DropSink { name, if_exists });
        } else if parser.parse_keywords(&[Keyword::DROP, Keyword::SOURCE]) {
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = parser
                .parse_object_name(false)
                .map_err(|e| parser_error(sql, e))?;
            let cascade = parser.parse_keyword(Keyword::CASCADE);
            if !cascade {
                let _ = parser.parse_keyword(Keyword::RESTRICT);
            }
            out.push(Stmt::DropSource {
                name,
                if_exists,
                cascade,
            });
        } else {
            let mut stmt = match eowc_suffix(&parser) {
                // The query ends before `EMIT ON WINDOW CLOSE` (which it would otherwise
                // read as a table alias `emit` after `FROM t`).
                Some(n) => {
                    let tokens: Vec<TokenWithSpan> = (0..n).map(|_| parser.next_token()).collect();
                    let mut sub = Parser::new(&dialect).with_tokens_with_locations(tokens);
                    let stmt = sub.parse_statement().map_err(|e| parser_error(sql, e))?;
                    let next = sub.peek_token();
                    if next.token != Token::EOF {
                        return Err(syntax_error(
                            sql,
                            &format!("Expected: end of statement, found: {}", next.token),
                            Some(next.span.start),
                        ));
                    }
                    stmt
                }
                None if creates_table_as_with_names(&parser) => {
                    parse_create_table_as_with_names(&mut parser)
                        .map_err(|e| parser_error(sql, e))?
                }
                None => parser.parse_statement().map_err(|e| parser_error(sql, e))?,
            };
            let view = match &mut stmt {
                Statement::CreateView(cv) => Some(cv),
                Statement::Explain { statement, .. } => match statement.as_mut() {
                    Statement::CreateView(cv) => Some(cv),
                    _ => None,
                },
                _ => None,
            };
            if let Some(cv) = view {
                crate::set_ops::check(&cv.query)?;
                if cv.materialized && peek_words(&parser, &["EMIT", "ON", "WINDOW", "CLOSE"]) {
                    for _ in 0..4 {
                        parser.next_token();
                    }
                    use crate::sqlparser::ast::{CreateTableOptions, Expr, SqlOption};
                    let opt = SqlOption::KeyValue {
                        key: Ident::new("emit_mode"),
                        value: Expr::value(Value::SingleQuotedString("on_window_close".into())),
                    };
                    match &mut cv.options {
                        CreateTableOptions::With(o) => o.push(opt),
                        other => *other = CreateTableOptions::With(vec![opt]),
                    }
                }
            }
            if let Err(e) = crate::complexity::check(&stmt) {
                crate::complexity::dismantle(stmt);
                return Err(e);
            }
            crate::corresponding::place(&mut stmt, &mut corresponding)?;
            crate::literals::normalize(&mut stmt)?;
            out.push(Stmt::Sql(Box::new(stmt)));
        }
        if parser.peek_token().token != Token::EOF && !parser.consume_token(&Token::SemiColon) {
            let t = parser.peek_token();
            return Err(syntax_error(
                sql,
                &format!("syntax error at or near \"{}\"", t.token),
                Some(t.span.start),
            ));
        }
    }
    if !corresponding.is_empty() {
        return Err(PlannerError::Unsupported(
            "CORRESPONDING outside a SELECT statement, view or sink".into(),
        ));
    }
    if out.is_empty() {
        out.push(Stmt::Empty);
    }
    Ok(out)
}

/// Prefix of a relation name read with `FOR SYSTEM_TIME AS OF PROCTIME()`: a lookup join's
/// table (see [`rewrite_lookups`]).
pub const LOOKUP_PREFIX: &str = "__freshet_lookup__";

/// The relation a lookup name reads (`None` for an ordinary name).
pub fn lookup_target(name: &str) -> Option<&str> {
    name.strip_prefix(LOOKUP_PREFIX)
}

/// `… JOIN titles FOR SYSTEM_TIME AS OF PROCTIME() t …`: the Postgres dialect has no
/// table versioning, so the clause is taken out of the token stream and the table's name
/// marked with [`LOOKUP_PREFIX`]; the stream planner turns a join with such a table into a
/// lookup join, and a batch query reads the table as it is now, which is the same thing.
/// `tokens` without the commas right before a `)`: RisingWave accepts a trailing comma
/// in column definitions and `WITH` options (`CREATE TABLE t (a INT, b INT,)`). `,)`
/// never begins valid SQL otherwise, so taking it out changes no statement's meaning.
fn drop_trailing_commas(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut pending: Option<usize> = None; // the last significant token, if a comma
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) => {}
            Token::RParen => {
                if let Some(at) = pending.take() {
                    out.remove(at);
                }
            }
            Token::Comma => pending = Some(out.len()),
            _ => pending = None,
        }
        out.push(t);
    }
    out
}

/// Marks the relation name `out` ends with as a lookup join's table: its first part gets
/// [`LOOKUP_PREFIX`] (`t` → `__freshet_lookup__t`, `s.t` → `__freshet_lookup__s.t`, so the
/// catalog's name follows the prefix either way); `public.t` becomes a marked `t`.
fn mark_lookup(out: &mut Vec<TokenWithSpan>) {
    let significant: Vec<usize> = (0..out.len())
        .rev()
        .filter(|&k| !matches!(out[k].token, Token::Whitespace(_)))
        .take(3)
        .collect();
    let mut first = match significant.first() {
        Some(&k) if matches!(out[k].token, Token::Word(_)) => k,
        _ => return,
    };
    if let [_, dot, schema] = significant[..] {
        if out[dot].token == Token::Period {
            if let Token::Word(w) = &out[schema].token {
                let name = crate::naming::ident_name(&w.to_ident(out[schema].span));
                if name == "public" {
                    out.drain(schema..=dot);
                    first -= dot + 1 - schema;
                } else {
                    first = schema;
                }
            }
        }
    }
    if let Token::Word(w) = &mut out[first].token {
        w.value = format!("{LOOKUP_PREFIX}{}", w.value);
        w.keyword = Keyword::NoKeyword;
    }
}

/// A stored query as its author wrote it: each relation name marked with
/// [`LOOKUP_PREFIX`] back to `name FOR SYSTEM_TIME AS OF PROCTIME()` (for `SHOW CREATE`
/// and the catalogs). The query reads the same either way.
pub fn show_lookups(sql: &str) -> String {
    if !sql.contains(LOOKUP_PREFIX) {
        return crate::corresponding::show(&crate::structs::show_star_fields(sql));
    }
    // Without unescaping, so that quotes inside literals and names print as stored.
    let Ok(tokens) = Tokenizer::new(&FreshetDialect {}, sql)
        .with_unescape(false)
        .tokenize()
    else {
        return sql.to_string();
    };
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < tokens.len() {
        let marked = match &tokens[i] {
            Token::Word(w) => w.value.strip_prefix(LOOKUP_PREFIX).map(|rest| Word {
                value: rest.to_string(),
                ..w.clone()
            }),
            _ => None,
        };
        let Some(first) = marked else {
            out.push_str(&tokens[i].to_string());
            i += 1;
            continue;
        };
        out.push_str(&first.to_string());
        i += 1;
        // The rest of a qualified name (`.t`).
        if matches!(tokens.get(i), Some(Token::Period))
            && matches!(tokens.get(i + 1), Some(Token::Word(_)))
        {
            out.push('.');
            out.push_str(&tokens[i + 1].to_string());
            i += 2;
        }
        out.push_str(" FOR SYSTEM_TIME AS OF PROCTIME()");
    }
    crate::corresponding::show(&crate::structs::show_star_fields(&out))
}

fn rewrite_lookups(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is_word = |t: &TokenWithSpan, w: &str| matches!(&t.token, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    let pattern: [&dyn Fn(&TokenWithSpan) -> bool; 7] = [
        &|t| is_word(t, "FOR"),
        &|t| is_word(t, "SYSTEM_TIME"),
        &|t| is_word(t, "AS"),
        &|t| is_word(t, "OF"),
        &|t| is_word(t, "PROCTIME"),
        &|t| t.token == Token::LParen,
        &|t| t.token == Token::RParen,
    ];
    let significant = |t: &TokenWithSpan| !matches!(t.token, Token::Whitespace(_));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        // Match the pattern over significant tokens from a FOR at i.
        let mut j = i;
        let mut matched = is_word(&tokens[i], "FOR");
        for p in &pattern {
            while j < tokens.len() && !significant(&tokens[j]) {
                j += 1;
            }
            if matched && j < tokens.len() && p(&tokens[j]) {
                j += 1;
            } else {
                matched = false;
                break;
            }
        }
        if matched {
            mark_lookup(&mut out);
            i = j;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// `CREATE SOURCE`'s parts, as written.
#[derive(Clone, Debug)]
pub struct CreateSource {
    pub name: ObjectName,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    /// Table constraints (`PRIMARY KEY (…)`), for tables fed by a connector.
    pub constraints: Vec<crate::sqlparser::ast::TableConstraint>,
    /// `INCLUDE partition|offset|timestamp|key [AS name]`.
    pub includes: Vec<(String, Option<Ident>)>,
    /// `WITH (…)`, keys lower-cased and dotted (`properties.bootstrap.server`).
    pub options: Vec<(String, String)>,
    /// `FORMAT …` (`plain`, `upsert`).
    pub format: String,
    /// `ENCODE …` (`json`, `csv`).
    pub encode: String,
    /// `ENCODE … (…)` options.
    pub encode_options: Vec<(String, String)>,
    /// `WATERMARK FOR column AS expression`.
    pub watermark: Option<(Ident, crate::sqlparser::ast::Expr)>,
    /// `… WITH TTL` after the watermark: a table's rows expire once it passes them.
    pub watermark_ttl: bool,
    /// `APPEND ONLY` (tables): rows are only ever inserted.
    pub append_only: bool,
    /// `ON CONFLICT …` (tables).
    pub on_conflict: Option<crate::catalog::OnConflictMode>,
    /// `ON CONFLICT … WITH VERSION COLUMN (v, …)`.
    pub version_columns: Vec<Ident>,
}

/// Where `EMIT ON WINDOW CLOSE` begins, if the statement ahead ends with it (outside
/// parentheses).
fn eowc_suffix(parser: &Parser) -> Option<usize> {
    let word = |n: usize, w: &str| matches!(&parser.peek_nth_token(n).token, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    // Only a materialized view can end so (each peek walks from the statement's start:
    // the scan is kept to those statements, not every INSERT).
    let creates_view =
        |at: usize| word(at, "CREATE") && (1..4).any(|k| word(at + k, "MATERIALIZED"));
    if !(creates_view(0) || (word(0, "EXPLAIN") && (1..4).any(creates_view))) {
        return None;
    }
    let mut depth = 0i32;
    for i in 0.. {
        match &parser.peek_nth_token(i).token {
            Token::EOF | Token::SemiColon => return None,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth == 0
                && word(i, "EMIT")
                && word(i + 1, "ON")
                && word(i + 2, "WINDOW")
                && word(i + 3, "CLOSE")
                && matches!(
                    parser.peek_nth_token(i + 4).token,
                    Token::EOF | Token::SemiColon
                ) =>
            {
                return Some(i)
            }
            _ => {}
        }
    }
    None
}

/// `CREATE SINK`'s parts, as written.
#[derive(Clone, Debug)]
pub struct CreateSink {
    pub name: ObjectName,
    pub if_not_exists: bool,
    /// `AS query`; `FROM relation` becomes `SELECT * FROM relation`.
    pub query: Box<crate::sqlparser::ast::Query>,
    /// `EMIT ON WINDOW CLOSE` (after the query).
    pub emit_on_window_close: bool,
    /// `WITH (…)` and `ENCODE … (…)` options, keys lower-cased and dotted.
    pub options: Vec<(String, String)>,
    /// `FORMAT … ENCODE …`, if written.
    pub format: Option<(String, String)>,
    /// `INTO table [(columns)]`: RisingWave's sink into a table (no `WITH` needed).
    pub into: Option<(ObjectName, Vec<Ident>)>,
}

/// `[IF NOT EXISTS] name {FROM relation | AS query} [EMIT ON WINDOW CLOSE] WITH (…)
/// [FORMAT … ENCODE …]`, after `CREATE SINK` (RisingWave's syntax).
fn parse_create_sink(parser: &mut Parser) -> Result<CreateSink, ParserError> {
    let dialect = FreshetDialect {};
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let into = if parser.parse_keyword(Keyword::INTO) {
        let table = parser.parse_object_name(false)?;
        let columns = if parser.consume_token(&Token::LParen) {
            let cols = parser.parse_comma_separated(|p| p.parse_identifier())?;
            parser.expect_token(&Token::RParen)?;
            cols
        } else {
            Vec::new()
        };
        Some((table, columns))
    } else {
        None
    };
    let query = if parser.parse_keyword(Keyword::FROM) {
        let from = parser.parse_object_name(false)?;
        Parser::new(&dialect)
            .try_with_sql(&format!("SELECT * FROM {from}"))?
            .parse_query()?
    } else {
        parser.expect_keyword(Keyword::AS)?;
        // The query ends at the options' `WITH (` outside parentheses (a query's own
        // WITH is followed by a name), or at `EMIT ON WINDOW CLOSE` just before it.
        let mut depth = 0i32;
        let mut end = None;
        for i in 0.. {
            match &parser.peek_nth_token(i).token {
                // A sink into a table may end with its query.
                t if *t == Token::EOF || (*t == Token::SemiColon && depth == 0) => {
                    if into.is_some() && end.is_none() {
                        end = Some(i);
                    }
                    break;
                }
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::Word(w)
                    if depth == 0
                        && w.keyword == Keyword::WITH
                        && parser.peek_nth_token(i + 1).token == Token::LParen =>
                {
                    end = Some(i);
                }
                _ => {}
            }
        }
        let Some(mut end) = end else {
            return Err(ParserError::ParserError(
                "a sink needs WITH (connector = …) after its query".into(),
            ));
        };
        let word = |n: usize, w: &str| matches!(&parser.peek_nth_token(n).token, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
        if end >= 4
            && word(end - 4, "EMIT")
            && word(end - 3, "ON")
            && word(end - 2, "WINDOW")
            && word(end - 1, "CLOSE")
        {
            end -= 4;
        }
        let tokens: Vec<TokenWithSpan> = (0..end).map(|_| parser.next_token()).collect();
        let mut sub = Parser::new(&dialect).with_tokens_with_locations(tokens);
        let query = sub.parse_query()?;
        let next = sub.peek_token();
        if next.token != Token::EOF {
            return Err(ParserError::ParserError(format!(
                "Expected: end of the sink's query, found: {}{}",
                next.token, next.span.start
            )));
        }
        query
    };
    let emit_on_window_close = peek_words(parser, &["EMIT", "ON", "WINDOW", "CLOSE"]);
    if emit_on_window_close {
        for _ in 0..4 {
            parser.next_token();
        }
    }
    let with = parser.parse_keyword(Keyword::WITH);
    if !with && into.is_none() {
        return Err(ParserError::ParserError(format!(
            "Expected: WITH (connector = …), found: {}",
            parser.peek_token().token
        )));
    }
    let mut options = if with {
        parse_options(parser)?
    } else {
        Vec::new()
    };
    let format = if peek_words(parser, &["FORMAT"]) {
        parser.next_token();
        let format = parse_word(parser)?;
        expect_word(parser, "ENCODE")?;
        let encode = parse_word(parser)?;
        if parser.peek_token().token == Token::LParen {
            // RisingWave's newer place for `force_append_only` and the like.
            options.extend(parse_options(parser)?);
        }
        Some((format, encode))
    } else {
        None
    };
    Ok(CreateSink {
        name,
        if_not_exists,
        query,
        emit_on_window_close,
        options,
        format,
        into,
    })
}

/// Whether the `CREATE TABLE` ahead uses Freshet's table extensions: a `WATERMARK FOR`
/// clause in its column list, or `APPEND ONLY` or `ON CONFLICT …` after it.
fn has_table_extension(parser: &Parser) -> bool {
    let mut depth = 0i32;
    for i in 0.. {
        let word = |n: usize, w: &str| matches!(&parser.peek_nth_token(n).token, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
        match &parser.peek_nth_token(i).token {
            Token::EOF => return false,
            Token::SemiColon if depth == 0 => return false,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(_) if depth == 1 && word(i, "WATERMARK") && word(i + 1, "FOR") => {
                return true
            }
            Token::Word(_) if depth == 0 && word(i, "APPEND") && word(i + 1, "ONLY") => {
                return true
            }
            Token::Word(_) if depth == 0 && word(i, "ON") && word(i + 1, "CONFLICT") => {
                return true
            }
            _ => {}
        }
    }
    false
}

/// `[IF NOT EXISTS] name (columns …) [APPEND ONLY] [ON CONFLICT …]`, after `CREATE TABLE`.
fn parse_create_table_ext(parser: &mut Parser) -> Result<CreateSource, ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let (columns, constraints, (watermark, watermark_ttl)) = parse_columns(parser)?;
    let append_only = parse_append_only(parser)?;
    let (on_conflict, version_columns) = match parse_on_conflict(parser)? {
        Some(mode) => (Some(mode), parse_version_columns(parser)?),
        None => (None, Vec::new()),
    };
    Ok(CreateSource {
        name,
        if_not_exists,
        columns,
        constraints,
        includes: Vec::new(),
        options: Vec::new(),
        format: String::new(),
        encode: String::new(),
        encode_options: Vec::new(),
        watermark,
        watermark_ttl,
        append_only,
        on_conflict,
        version_columns,
    })
}

/// RisingWave's `WITH VERSION COLUMN (col [, …])` after `ON CONFLICT …`.
fn parse_version_columns(parser: &mut Parser) -> Result<Vec<Ident>, ParserError> {
    if !peek_words(parser, &["WITH", "VERSION", "COLUMN"]) {
        return Ok(Vec::new());
    }
    for _ in 0..3 {
        parser.next_token();
    }
    parser.expect_token(&Token::LParen)?;
    let cols = parser.parse_comma_separated(|p| p.parse_identifier())?;
    parser.expect_token(&Token::RParen)?;
    Ok(cols)
}

/// RisingWave's `ON CONFLICT {OVERWRITE | IGNORE | DO NOTHING | DO UPDATE FULL | DO UPDATE
/// IF NOT NULL}` of a table.
fn parse_on_conflict(
    parser: &mut Parser,
) -> Result<Option<crate::catalog::OnConflictMode>, ParserError> {
    use crate::catalog::OnConflictMode;
    if !peek_words(parser, &["ON", "CONFLICT"]) {
        return Ok(None);
    }
    parser.next_token();
    parser.next_token();
    let forms: [(&[&str], OnConflictMode); 5] = [
        (&["OVERWRITE"], OnConflictMode::Overwrite),
        (&["IGNORE"], OnConflictMode::Ignore),
        (&["DO", "NOTHING"], OnConflictMode::Ignore),
        (&["DO", "UPDATE", "FULL"], OnConflictMode::Overwrite),
        (
            &["DO", "UPDATE", "IF", "NOT", "NULL"],
            OnConflictMode::UpdateNonNull,
        ),
    ];
    for (words, mode) in forms {
        if peek_words(parser, words) {
            for _ in words {
                parser.next_token();
            }
            return Ok(Some(mode));
        }
    }
    Err(ParserError::ParserError(format!(
        "Expected: OVERWRITE, IGNORE, DO NOTHING, DO UPDATE FULL or DO UPDATE IF NOT NULL \
         after ON CONFLICT, found: {}",
        parser.peek_token().token
    )))
}

fn parse_append_only(parser: &mut Parser) -> Result<bool, ParserError> {
    if peek_words(parser, &["APPEND"]) {
        parser.next_token();
        expect_word(parser, "ONLY")?;
        return Ok(true);
    }
    Ok(false)
}

/// Whether the statement ahead has a `FORMAT` clause outside parentheses (a table fed by
/// a connector, as opposed to a plain `CREATE TABLE`).
fn has_format_clause(parser: &Parser) -> bool {
    let mut depth = 0i32;
    for i in 0.. {
        match &parser.peek_nth_token(i).token {
            Token::EOF | Token::SemiColon if depth == 0 => return false,
            Token::EOF => return false,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.value.eq_ignore_ascii_case("FORMAT") => return true,
            _ => {}
        }
    }
    false
}

/// A subscription's query is held to the limits of any statement.
fn check_subscribe(sub: &Subscribe) -> Result<(), PlannerError> {
    match &sub.target {
        SubscribeTarget::Query(q) => crate::complexity::check(q),
        SubscribeTarget::Relation(_) => Ok(()),
    }
}

/// Whether the statement ahead is `ALTER TABLE name SET PARALLELISM …` (RisingWave's, for
/// a table's streaming job).
fn alters_table_parallelism(parser: &Parser) -> bool {
    if !peek_words(parser, &["ALTER", "TABLE"]) {
        return false;
    }
    // The name: identifiers separated by dots.
    let mut i = 2;
    while matches!(parser.peek_nth_token(i).token, Token::Word(_)) {
        i += 1;
        if parser.peek_nth_token(i).token != Token::Period {
            break;
        }
        i += 1;
    }
    let word = |n: usize, w: &str| matches!(&parser.peek_nth_token(n).token, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    word(i, "SET") && word(i + 1, "PARALLELISM")
}

/// `ALTER {MATERIALIZED VIEW | SINK} name SET PARALLELISM {= | TO} value` (see
/// [`Stmt::AlterParallelism`]); other `ALTER`s of views and sinks are refused (`0A000`).
/// The object word of an `ALTER … RENAME TO …` statement ahead, if it is one.
fn renames(parser: &Parser) -> Option<&'static str> {
    const WHATS: [(&[&str], &str); 6] = [
        (&["TABLE"], "TABLE"),
        (&["MATERIALIZED", "VIEW"], "MATERIALIZED VIEW"),
        (&["VIEW"], "VIEW"),
        (&["INDEX"], "INDEX"),
        (&["SOURCE"], "SOURCE"),
        (&["SINK"], "SINK"),
    ];
    if !peek_words(parser, &["ALTER"]) {
        return None;
    }
    let word = |i: usize| match &parser.peek_nth_token(i).token {
        Token::Word(w) => Some(w.value.to_ascii_uppercase()),
        _ => None,
    };
    let (words, what) = WHATS.iter().find(|(ws, _)| {
        ws.iter()
            .enumerate()
            .all(|(i, w)| word(i + 1).as_deref() == Some(*w))
    })?;
    // RENAME TO before the statement ends (not RENAME COLUMN, …).
    let mut i = words.len() + 1;
    loop {
        match &parser.peek_nth_token(i).token {
            Token::EOF | Token::SemiColon => return None,
            Token::Word(w) if w.value.eq_ignore_ascii_case("RENAME") => {
                return (word(i + 1).as_deref() == Some("TO")).then_some(*what);
            }
            _ => i += 1,
        }
    }
}

fn parse_rename(parser: &mut Parser, what: &'static str) -> Result<Stmt, ParserError> {
    parser.next_token();
    for _ in what.split(' ') {
        parser.next_token();
    }
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    expect_word(parser, "RENAME")?;
    expect_word(parser, "TO")?;
    let new_name = parser.parse_object_name(false)?;
    Ok(Stmt::Rename {
        what,
        name,
        new_name,
        if_exists,
    })
}

fn parse_alter_parallelism(parser: &mut Parser, sql: &str) -> Result<Stmt, PlannerError> {
    let (kind, name) = alter_target(parser).map_err(|e| parser_error(sql, e))?;
    if kind == crate::catalog::RelationKind::View && parser.parse_keyword(Keyword::AS) {
        let query = parser.parse_query().map_err(|e| parser_error(sql, e))?;
        return Ok(Stmt::AlterViewAs { name, query });
    }
    if !peek_words(parser, &["SET", "PARALLELISM"]) {
        let what = match kind {
            crate::catalog::RelationKind::Sink => "SINK",
            _ => "MATERIALIZED VIEW",
        };
        return Err(PlannerError::Unsupported(format!(
            "ALTER {what} {}: only ALTER {what} … SET PARALLELISM is supported",
            parser.peek_token().token
        )));
    }
    parse_parallelism(parser, kind, name).map_err(|e| parser_error(sql, e))
}

/// `ALTER {MATERIALIZED VIEW | SINK} name`.
fn alter_target(
    parser: &mut Parser,
) -> Result<(crate::catalog::RelationKind, ObjectName), ParserError> {
    parser.expect_keyword(Keyword::ALTER)?;
    let kind = if parser.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
        crate::catalog::RelationKind::View
    } else {
        expect_word(parser, "SINK")?;
        crate::catalog::RelationKind::Sink
    };
    Ok((kind, parser.parse_object_name(false)?))
}

/// `SET PARALLELISM {= | TO} {n | ADAPTIVE | AUTO | DEFAULT}` of `kind` `name`.
fn parse_parallelism(
    parser: &mut Parser,
    kind: crate::catalog::RelationKind,
    name: ObjectName,
) -> Result<Stmt, ParserError> {
    parser.expect_keyword(Keyword::SET)?;
    expect_word(parser, "PARALLELISM")?;
    if !parser.consume_token(&Token::Eq) {
        parser.expect_keyword(Keyword::TO)?;
    }
    let t = parser.next_token();
    let parallelism = match &t.token {
        Token::Number(n, _) => match n.parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => return parser.expected("a parallelism", t),
        },
        Token::Word(w)
            if w.value.eq_ignore_ascii_case("adaptive")
                || w.value.eq_ignore_ascii_case("auto")
                || w.keyword == Keyword::DEFAULT =>
        {
            None
        }
        _ => return parser.expected("a number, ADAPTIVE or DEFAULT", t),
    };
    Ok(Stmt::AlterParallelism {
        kind,
        name,
        parallelism,
    })
}

/// Whether the statement is `CREATE TABLE [IF NOT EXISTS] name (c, …) AS …`: column
/// names without types, which sqlparser reads only with types.
fn creates_table_as_with_names(parser: &Parser) -> bool {
    if !peek_words(parser, &["CREATE", "TABLE"]) {
        return false;
    }
    let token = |i: usize| parser.peek_nth_token(i).token;
    let word = |i: usize| matches!(token(i), Token::Word(_));
    let mut i = if peek_words(parser, &["CREATE", "TABLE", "IF", "NOT", "EXISTS"]) {
        5
    } else {
        2
    };
    if !word(i) {
        return false;
    }
    i += 1;
    while token(i) == Token::Period && word(i + 1) {
        i += 2;
    }
    if token(i) != Token::LParen {
        return false;
    }
    i += 1;
    loop {
        if !word(i) {
            return false;
        }
        i += 1;
        match token(i) {
            Token::Comma => i += 1,
            Token::RParen => break,
            _ => return false,
        }
    }
    matches!(token(i + 1), Token::Word(w) if w.keyword == Keyword::AS)
}

/// Parses what [`creates_table_as_with_names`] recognized, into the `CREATE TABLE … AS`
/// sqlparser gives, with the names as columns of no type.
fn parse_create_table_as_with_names(parser: &mut Parser) -> Result<Statement, ParserError> {
    parser.expect_keywords(&[Keyword::CREATE, Keyword::TABLE])?;
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    parser.expect_token(&Token::LParen)?;
    let names = parser.parse_comma_separated(|p| p.parse_identifier())?;
    parser.expect_token(&Token::RParen)?;
    parser.expect_keyword(Keyword::AS)?;
    let query = parser.parse_query()?;
    let head = format!(
        "CREATE TABLE {}{name} AS SELECT 1",
        if if_not_exists { "IF NOT EXISTS " } else { "" }
    );
    let Statement::CreateTable(mut ct) = Parser::new(&FreshetDialect {})
        .try_with_sql(&head)?
        .parse_statement()?
    else {
        return Err(ParserError::ParserError(
            "CREATE TABLE … AS expected".into(),
        ));
    };
    ct.query = Some(query);
    ct.columns = names
        .into_iter()
        .map(|name| ColumnDef {
            name,
            data_type: crate::sqlparser::ast::DataType::Unspecified,
            options: Vec::new(),
        })
        .collect();
    Ok(Statement::CreateTable(ct))
}

fn peek_words(parser: &Parser, words: &[&str]) -> bool {
    words
        .iter()
        .enumerate()
        .all(|(i, w)| match &parser.peek_nth_token(i).token {
            Token::Word(word) => word.value.eq_ignore_ascii_case(w),
            _ => false,
        })
}

fn expect_word(parser: &mut Parser, word: &str) -> Result<(), ParserError> {
    match parser.next_token().token {
        Token::Word(w) if w.value.eq_ignore_ascii_case(word) => Ok(()),
        other => Err(ParserError::ParserError(format!(
            "Expected: {word}, found: {other}"
        ))),
    }
}

fn parse_word(parser: &mut Parser) -> Result<String, ParserError> {
    Ok(parser.parse_identifier()?.value.to_lowercase())
}

/// `( key = 'value', a.b.c = 1, … )`
fn parse_options(parser: &mut Parser) -> Result<Vec<(String, String)>, ParserError> {
    let mut out = Vec::new();
    parser.expect_token(&Token::LParen)?;
    if parser.consume_token(&Token::RParen) {
        return Ok(out);
    }
    loop {
        let mut key = parse_word(parser)?;
        while parser.consume_token(&Token::Period) {
            key.push('.');
            key.push_str(&parse_word(parser)?);
        }
        parser.expect_token(&Token::Eq)?;
        let value = match parser.parse_value()?.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s,
            Value::Number(n, _) => n.to_string(),
            Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        };
        out.push((key, value));
        if parser.consume_token(&Token::RParen) {
            return Ok(out);
        }
        parser.expect_token(&Token::Comma)?;
    }
}

fn parse_create_source(parser: &mut Parser) -> Result<CreateSource, ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let (columns, constraints, (watermark, watermark_ttl)) = parse_columns(parser)?;
    let append_only = parse_append_only(parser)?;
    let mut includes = Vec::new();
    while parser.parse_keyword(Keyword::INCLUDE) {
        let what = parse_word(parser)?;
        let alias = if parser.parse_keyword(Keyword::AS) {
            Some(parser.parse_identifier()?)
        } else {
            None
        };
        includes.push((what, alias));
    }
    if !parser.parse_keyword(Keyword::WITH) {
        return Err(ParserError::ParserError(format!(
            "Expected: WITH (connector = …), found: {}",
            parser.peek_token().token
        )));
    }
    let options = parse_options(parser)?;
    // Generators (datagen, playback) need no FORMAT … ENCODE …
    let (format, encode, encode_options) = if peek_words(parser, &["FORMAT"]) {
        expect_word(parser, "FORMAT")?;
        let format = parse_word(parser)?;
        expect_word(parser, "ENCODE")?;
        let encode = parse_word(parser)?;
        let encode_options = if parser.peek_token().token == Token::LParen {
            parse_options(parser)?
        } else {
            Vec::new()
        };
        (format, encode, encode_options)
    } else {
        ("plain".to_string(), "json".to_string(), Vec::new())
    };
    Ok(CreateSource {
        name,
        if_not_exists,
        columns,
        constraints,
        includes,
        options,
        format,
        encode,
        encode_options,
        watermark,
        watermark_ttl,
        append_only,
        on_conflict: None,
        version_columns: Vec::new(),
    })
}

type Columns = (
    Vec<ColumnDef>,
    Vec<crate::sqlparser::ast::TableConstraint>,
    (Option<(Ident, crate::sqlparser::ast::Expr)>, bool),
);

/// `( column, …, [constraint, …], [WATERMARK FOR column AS expression [WITH TTL]] )`
fn parse_columns(parser: &mut Parser) -> Result<Columns, ParserError> {
    let mut columns = Vec::new();
    let mut constraints = Vec::new();
    let mut watermark = None;
    let mut ttl = false;
    if !parser.consume_token(&Token::LParen) || parser.consume_token(&Token::RParen) {
        return Ok((columns, constraints, (watermark, ttl)));
    }
    loop {
        if peek_words(parser, &["WATERMARK", "FOR"]) {
            parser.next_token();
            parser.next_token();
            let col = parser.parse_identifier()?;
            parser.expect_keyword(Keyword::AS)?;
            let e = parser.parse_expr()?;
            if peek_words(parser, &["WITH", "TTL"]) {
                parser.next_token();
                parser.next_token();
                ttl = true;
            }
            if watermark.replace((col, e)).is_some() {
                return Err(ParserError::ParserError(
                    "only one WATERMARK clause is allowed".into(),
                ));
            }
        } else if let Some(c) = parser.parse_optional_table_constraint()? {
            constraints.push(c);
        } else {
            columns.push(parser.parse_column_def()?);
        }
        if parser.consume_token(&Token::RParen) {
            return Ok((columns, constraints, (watermark, ttl)));
        }
        parser.expect_token(&Token::Comma)?;
    }
}

/// Whether a `CREATE MATERIALIZED VIEW` asks for `EMIT ON WINDOW CLOSE` (written after the
/// query; kept as the view option `emit_mode = 'on_window_close'`).
pub fn emit_on_window_close(cv: &crate::sqlparser::ast::CreateView) -> bool {
    use crate::sqlparser::ast::{CreateTableOptions, SqlOption};
    let opts = match &cv.options {
        CreateTableOptions::With(o) | CreateTableOptions::Options(o) => o,
        _ => return false,
    };
    opts.iter().any(|o| match o {
        SqlOption::KeyValue { key, value } => {
            key.value.eq_ignore_ascii_case("emit_mode")
                && value
                    .to_string()
                    .trim_matches('\'')
                    .eq_ignore_ascii_case("on_window_close")
        }
        _ => false,
    })
}

fn parser_error(sql: &str, e: ParserError) -> PlannerError {
    let msg = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return PlannerError::TooComplex(
                "statement too complex: parentheses or subqueries nest too deeply".into(),
            )
        }
    };
    // sqlparser appends " at Line: L, Column: C"; turn it into a position.
    if let Some(idx) = msg.rfind(" at Line: ") {
        let (text, loc) = msg.split_at(idx);
        let nums: Vec<u64> = loc
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|s| s.parse().ok())
            .collect();
        if let [line, column] = nums[..] {
            return syntax_error(sql, text, Some(Location { line, column }));
        }
    }
    syntax_error(sql, &msg, None)
}

fn syntax_error(sql: &str, msg: &str, loc: Option<Location>) -> PlannerError {
    let position = loc.and_then(|l| position_of(sql, l.line, l.column));
    let message = match msg.strip_prefix("Expected: ") {
        Some(rest) => {
            // "Expected: X, found: Y" → Postgres' wording, keeping the detail.
            match rest.split_once(", found: ") {
                Some((_, found)) => format!("syntax error at or near \"{found}\""),
                None => format!("syntax error: expected {rest}"),
            }
        }
        None => format!("syntax error: {msg}"),
    };
    PlannerError::Syntax { message, position }
}

/// 1-based character offset of a 1-based line/column.
fn position_of(sql: &str, line: u64, column: u64) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let mut offset = 0;
    for (i, l) in sql.split('\n').enumerate() {
        if i as u64 + 1 == line {
            return Some(offset + column as usize);
        }
        offset += l.chars().count() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_flush() {
        let s = parse("select 1; FLUSH; ; insert into t values (1)").unwrap();
        assert_eq!(s.len(), 3);
        assert!(matches!(s[1], Stmt::Flush));
    }

    #[test]
    fn lookup_marks_the_first_part_of_a_qualified_name() {
        let read = |sql: &str| match parse(sql).unwrap().remove(0) {
            Stmt::Sql(s) => crate::context::referenced_tables(&s),
            other => panic!("{other:?}"),
        };
        let on = " ON e.k = t.k";
        for (table, expected) in [
            ("t", "t"),
            ("public.t", "t"),
            ("s.t", "s.t"),
            ("\"My S\".\"T\"", "My S.T"),
        ] {
            let sql =
                format!("SELECT * FROM e JOIN {table} FOR SYSTEM_TIME AS OF PROCTIME() AS t{on}");
            let names = read(&sql);
            assert_eq!(names[1], format!("{LOOKUP_PREFIX}{expected}"), "{sql}");
            assert_eq!(lookup_target(&names[1]), Some(expected));
        }
    }

    #[test]
    fn lookups_show_as_written() {
        for (stored, shown) in [
            (
                "SELECT * FROM e JOIN __freshet_lookup__t AS t ON e.k = t.k",
                "SELECT * FROM e JOIN t FOR SYSTEM_TIME AS OF PROCTIME() AS t ON e.k = t.k",
            ),
            (
                "SELECT * FROM e JOIN __freshet_lookup__t AS t ON t.s <> 'it''s' AND \"a\"\"b\" = 1",
                "SELECT * FROM e JOIN t FOR SYSTEM_TIME AS OF PROCTIME() AS t ON t.s <> 'it''s' AND \"a\"\"b\" = 1",
            ),
            (
                "SELECT * FROM e JOIN \"__freshet_lookup__My S\".\"T\" t ON true",
                "SELECT * FROM e JOIN \"My S\".\"T\" FOR SYSTEM_TIME AS OF PROCTIME() t ON true",
            ),
        ] {
            assert_eq!(show_lookups(stored), shown);
            // And it reads the same relation again.
            let again = match parse(shown).unwrap().remove(0) {
                Stmt::Sql(s) => s.to_string(),
                other => panic!("{other:?}"),
            };
            let stored_again = match parse(stored).unwrap().remove(0) {
                Stmt::Sql(s) => s.to_string(),
                other => panic!("{other:?}"),
            };
            assert_eq!(again, stored_again);
        }
    }

    #[test]
    fn create_source() {
        let s = parse(
            "CREATE SOURCE plays (user_id BIGINT, country VARCHAR) INCLUDE partition AS p INCLUDE offset \
             WITH (connector = 'kafka', topic = 'plays', properties.bootstrap.server = '127.0.0.1:9092') \
             FORMAT PLAIN ENCODE CSV (delimiter = ';', without_header = 'true'); SHOW SOURCES",
        )
        .unwrap();
        let Stmt::CreateSource(cs) = &s[0] else {
            panic!("{s:?}")
        };
        assert_eq!(cs.columns.len(), 2);
        assert_eq!(cs.includes.len(), 2);
        assert_eq!(
            cs.options[2],
            (
                "properties.bootstrap.server".into(),
                "127.0.0.1:9092".into()
            )
        );
        assert_eq!((cs.format.as_str(), cs.encode.as_str()), ("plain", "csv"));
        assert_eq!(cs.encode_options.len(), 2);
        assert!(matches!(s[1], Stmt::ShowSources));
    }

    #[test]
    fn create_sink() {
        let s = parse(
            "CREATE SINK IF NOT EXISTS s1 FROM v WITH (connector = 'blackhole'); \
             CREATE SINK s2 AS WITH x AS (SELECT a FROM t) SELECT a, count(*) FROM x GROUP BY a \
               EMIT ON WINDOW CLOSE WITH (connector = 'blackhole', type = 'append-only') \
               FORMAT PLAIN ENCODE JSON (force_append_only = 'true'); \
             CREATE SINK s3 AS SELECT * FROM t WHERE a IN (SELECT b FROM u) WITH (connector = 'blackhole'); \
             SHOW SINKS; DROP SINK IF EXISTS s1",
        )
        .unwrap();
        let Stmt::CreateSink(a) = &s[0] else {
            panic!("{s:?}")
        };
        assert!(a.if_not_exists);
        assert_eq!(a.query.to_string(), "SELECT * FROM v");
        let Stmt::CreateSink(b) = &s[1] else {
            panic!("{s:?}")
        };
        assert!(b.emit_on_window_close);
        assert!(b.query.to_string().starts_with("WITH x AS"), "{}", b.query);
        assert_eq!(b.options.len(), 3, "ENCODE's options join WITH's");
        assert_eq!(b.format, Some(("plain".into(), "json".into())));
        let Stmt::CreateSink(c) = &s[2] else {
            panic!("{s:?}")
        };
        assert!(
            c.query.to_string().ends_with("(SELECT b FROM u)"),
            "{}",
            c.query
        );
        assert!(matches!(s[3], Stmt::ShowSinks));
        assert!(matches!(
            &s[4],
            Stmt::DropSink {
                if_exists: true,
                ..
            }
        ));
        // No options, or a query that does not parse.
        assert!(parse("CREATE SINK s AS SELECT 1").is_err());
        assert!(parse("CREATE SINK s AS SELEC 1 WITH (connector = 'blackhole')").is_err());
    }

    #[test]
    fn syntax_errors_have_positions() {
        match parse("SELEC 1") {
            Err(PlannerError::Syntax { position, message }) => {
                assert_eq!(position, Some(1), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
