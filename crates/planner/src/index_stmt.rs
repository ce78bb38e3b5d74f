//! `CREATE INDEX`, as RisingWave writes it (a subset of Postgres'):
//!
//! ```text
//! CREATE INDEX [IF NOT EXISTS] [name] ON relation [USING btree] (column [ASC | DESC] [NULLS …], …)
//!     [INCLUDE (column, …)] [DISTRIBUTED BY (column, …)]
//! ```
//!
//! Indexes on expressions, partial indexes (`WHERE`), unique indexes and other access
//! methods are refused by name.

use crate::naming::ident_name;
use crate::sqlparser::ast::{Expr, ObjectName};
use crate::sqlparser::keywords::Keyword;
use crate::sqlparser::parser::{Parser, ParserError};
use crate::sqlparser::tokenizer::Token;

#[derive(Clone, Debug, PartialEq)]
pub struct CreateIndex {
    /// `None`: Postgres' generated name (`<relation>_<column>…_idx`).
    pub name: Option<ObjectName>,
    pub if_not_exists: bool,
    pub on: ObjectName,
    pub columns: Vec<String>,
    /// `None`: every other column of the relation.
    pub include: Option<Vec<String>>,
    pub distributed_by: Vec<String>,
}

/// Why a `CREATE INDEX` was not taken.
#[derive(Debug)]
pub enum IndexError {
    Syntax(ParserError),
    /// A form Freshet does not have (`0A000`), named.
    Unsupported(String),
}

impl From<ParserError> for IndexError {
    fn from(e: ParserError) -> Self {
        IndexError::Syntax(e)
    }
}

/// The statement starts `CREATE [UNIQUE] INDEX`.
pub fn starts(parser: &Parser) -> bool {
    let word = |i: usize, w: &str| match &parser.peek_nth_token(i).token {
        Token::Word(x) => x.value.eq_ignore_ascii_case(w),
        _ => false,
    };
    word(0, "CREATE") && (word(1, "INDEX") || (word(1, "UNIQUE") && word(2, "INDEX")))
}

/// Parses the statement [`starts`] recognised.
pub fn parse(parser: &mut Parser) -> Result<CreateIndex, IndexError> {
    parser.expect_keyword(Keyword::CREATE)?;
    if parser.parse_keyword(Keyword::UNIQUE) {
        return Err(IndexError::Unsupported(
            "unique indexes: an index here serves lookups; a table's PRIMARY KEY keeps its \
             rows unique"
                .into(),
        ));
    }
    parser.expect_keyword(Keyword::INDEX)?;
    if parser.parse_keyword(Keyword::CONCURRENTLY) {
        // Every index is built while the relation goes on taking writes.
    }
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = if parser.parse_keyword(Keyword::ON) {
        None
    } else {
        let n = parser.parse_object_name(false)?;
        parser.expect_keyword(Keyword::ON)?;
        Some(n)
    };
    let _ = parser.parse_keyword(Keyword::ONLY);
    let on = parser.parse_object_name(false)?;
    if parser.parse_keyword(Keyword::USING) {
        let method = parser.parse_identifier()?.value;
        if !method.eq_ignore_ascii_case("btree") {
            return Err(IndexError::Unsupported(format!(
                "index access method \"{method}\": indexes here are ordered (btree)"
            )));
        }
    }
    parser.expect_token(&Token::LParen)?;
    let mut columns = Vec::new();
    loop {
        let e = parser.parse_expr()?;
        let Some(c) = column_name(&e) else {
            return Err(IndexError::Unsupported(format!(
                "indexes on expressions ({e}): index a column of a materialized view that \
                 computes it"
            )));
        };
        if parser.parse_keyword(Keyword::COLLATE) {
            return Err(IndexError::Unsupported("COLLATE in an index".into()));
        }
        if !parser.parse_keyword(Keyword::ASC) {
            let _ = parser.parse_keyword(Keyword::DESC);
        }
        if parser.parse_keyword(Keyword::NULLS) && !parser.parse_keyword(Keyword::FIRST) {
            parser.expect_keyword(Keyword::LAST)?;
        }
        columns.push(c);
        if parser.consume_token(&Token::RParen) {
            break;
        }
        parser.expect_token(&Token::Comma)?;
    }
    let mut include = None;
    let mut distributed_by = Vec::new();
    loop {
        if parser.parse_keyword(Keyword::INCLUDE) {
            include = Some(column_list(parser)?);
        } else if is_word(parser, "DISTRIBUTED") {
            parser.next_token();
            parser.expect_keyword(Keyword::BY)?;
            distributed_by = column_list(parser)?;
        } else if parser.parse_keyword(Keyword::WITH) {
            return Err(IndexError::Unsupported(
                "index storage parameters (WITH)".into(),
            ));
        } else if parser.parse_keyword(Keyword::WHERE) {
            return Err(IndexError::Unsupported(
                "partial indexes (WHERE): index a materialized view that filters".into(),
            ));
        } else {
            break;
        }
    }
    Ok(CreateIndex {
        name,
        if_not_exists,
        on,
        columns,
        include,
        distributed_by,
    })
}

fn column_list(parser: &mut Parser) -> Result<Vec<String>, IndexError> {
    parser.expect_token(&Token::LParen)?;
    let mut out = Vec::new();
    loop {
        out.push(ident_name(&parser.parse_identifier()?));
        if parser.consume_token(&Token::RParen) {
            return Ok(out);
        }
        parser.expect_token(&Token::Comma)?;
    }
}

fn is_word(parser: &Parser, w: &str) -> bool {
    matches!(&parser.peek_token().token, Token::Word(x) if x.value.eq_ignore_ascii_case(w))
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident_name(i)),
        Expr::Nested(inner) => column_name(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_dialect::FreshetDialect;

    fn parse_sql(sql: &str) -> Result<CreateIndex, IndexError> {
        let mut p = Parser::new(&FreshetDialect {})
            .try_with_sql(sql)
            .expect("tokens");
        assert!(starts(&p));
        parse(&mut p)
    }

    #[test]
    fn parses_risingwave_forms() {
        let i = parse_sql(
            "CREATE INDEX IF NOT EXISTS idx ON mv (\"Col\" DESC, b) INCLUDE (c) DISTRIBUTED BY (b)",
        )
        .expect("parses");
        assert!(i.if_not_exists);
        assert_eq!(i.name.expect("name").to_string(), "idx");
        assert_eq!(i.columns, vec!["Col".to_string(), "b".into()]);
        assert_eq!(i.include, Some(vec!["c".to_string()]));
        assert_eq!(i.distributed_by, vec!["b".to_string()]);
        let i = parse_sql("CREATE INDEX ON t USING btree (A)").expect("parses");
        assert_eq!((i.name, i.columns), (None, vec!["a".to_string()]));
    }

    #[test]
    fn refuses_what_it_does_not_have() {
        for sql in [
            "CREATE UNIQUE INDEX i ON t (a)",
            "CREATE INDEX i ON t (lower(a))",
            "CREATE INDEX i ON t USING hash (a)",
            "CREATE INDEX i ON t (a) WHERE a > 0",
        ] {
            assert!(
                matches!(parse_sql(sql), Err(IndexError::Unsupported(_))),
                "{sql}"
            );
        }
        assert!(matches!(
            parse_sql("CREATE INDEX i ON t a"),
            Err(IndexError::Syntax(_))
        ));
    }
}
