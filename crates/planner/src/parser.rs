//! Splits a query string into statements.
//!
//! Standard statements are parsed by sqlparser with the Postgres dialect; Freshet adds
//! `FLUSH`. Each statement keeps its source text so that errors can point into it.

use crate::sqlparser::ast::Statement;
use crate::sqlparser::dialect::PostgreSqlDialect;
use crate::sqlparser::keywords::Keyword;
use crate::sqlparser::parser::{Parser, ParserError};
use crate::sqlparser::tokenizer::{Location, Token, Tokenizer};
use crate::PlannerError;

#[derive(Clone, Debug)]
pub enum Stmt {
    Sql(Box<Statement>),
    /// `FLUSH`: wait until every write so far is committed and visible.
    Flush,
    /// An empty statement (`;` alone, or only comments).
    Empty,
}

/// Parses all statements of `sql`.
pub fn parse(sql: &str) -> Result<Vec<Stmt>, PlannerError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| syntax_error(sql, &e.message, Some(e.location)))?;
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        if parser.parse_keyword(Keyword::FLUSH) {
            out.push(Stmt::Flush);
        } else {
            let stmt = parser.parse_statement().map_err(|e| parser_error(sql, e))?;
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
    if out.is_empty() {
        out.push(Stmt::Empty);
    }
    Ok(out)
}

fn parser_error(sql: &str, e: ParserError) -> PlannerError {
    let msg = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "statement is too deeply nested".to_string(),
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
    fn syntax_errors_have_positions() {
        match parse("SELEC 1") {
            Err(PlannerError::Syntax { position, message }) => {
                assert_eq!(position, Some(1), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
