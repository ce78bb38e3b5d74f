//! `SUBSCRIBE` in Materialize's shape, and the two ways drivers without a streaming
//! result API use it:
//!
//! ```sql
//! SUBSCRIBE [TO] relation [WITH (SNAPSHOT [=] true | false)]
//! SUBSCRIBE [TO] (query) [WITH (…)]
//! COPY (SUBSCRIBE …) TO STDOUT [WITH (FORMAT csv, …)]
//! DECLARE name CURSOR [WITH HOLD] FOR SUBSCRIBE …
//! ```

use crate::sql_dialect::FreshetDialect;
use crate::sqlparser::ast::{ObjectName, Query, Statement, Value};
use crate::sqlparser::keywords::Keyword;
use crate::sqlparser::parser::{Parser, ParserError};
use crate::sqlparser::tokenizer::{Token, TokenWithSpan};

/// What a `SUBSCRIBE` follows.
#[derive(Clone, Debug)]
pub enum SubscribeTarget {
    Relation(ObjectName),
    Query(Box<Query>),
}

#[derive(Clone, Debug)]
pub struct Subscribe {
    pub target: SubscribeTarget,
    /// Start with the rows as they are (`true`, the default), or only with what changes.
    pub snapshot: bool,
}

fn is_word(t: &Token, w: &str) -> bool {
    matches!(t, Token::Word(word) if word.value.eq_ignore_ascii_case(w))
}

/// Whether the statement ahead is `SUBSCRIBE …`.
pub(crate) fn starts_subscribe(parser: &Parser) -> bool {
    is_word(&parser.peek_token().token, "SUBSCRIBE")
}

/// Whether the statement ahead is `COPY (SUBSCRIBE …) …`.
pub(crate) fn starts_copy_subscribe(parser: &Parser) -> bool {
    is_word(&parser.peek_nth_token(0).token, "COPY")
        && parser.peek_nth_token(1).token == Token::LParen
        && is_word(&parser.peek_nth_token(2).token, "SUBSCRIBE")
}

/// Whether the statement ahead is `DECLARE … CURSOR … FOR SUBSCRIBE …`.
pub(crate) fn starts_declare_subscribe(parser: &Parser) -> bool {
    if !is_word(&parser.peek_token().token, "DECLARE") {
        return false;
    }
    let mut i = 1;
    loop {
        match &parser.peek_nth_token(i).token {
            Token::EOF | Token::SemiColon | Token::LParen => return false,
            t if is_word(t, "FOR") => {
                return is_word(&parser.peek_nth_token(i + 1).token, "SUBSCRIBE")
            }
            _ => i += 1,
        }
        if i > 16 {
            return false;
        }
    }
}

/// Parses `SUBSCRIBE …`, the keyword included.
pub(crate) fn parse_subscribe(parser: &mut Parser) -> Result<Subscribe, ParserError> {
    expect_word(parser, "SUBSCRIBE")?;
    let _ = parser.parse_keyword(Keyword::TO);
    let target = if parser.consume_token(&Token::LParen) {
        let q = parser.parse_query()?;
        parser.expect_token(&Token::RParen)?;
        SubscribeTarget::Query(q)
    } else {
        SubscribeTarget::Relation(parser.parse_object_name(false)?)
    };
    let mut snapshot = true;
    if parser.parse_keyword(Keyword::WITH) {
        parser.expect_token(&Token::LParen)?;
        loop {
            let option = parser.parse_identifier()?;
            let _ = parser.consume_token(&Token::Eq);
            match option.value.to_ascii_lowercase().as_str() {
                "snapshot" => snapshot = parse_bool(parser)?,
                other => {
                    return Err(ParserError::ParserError(format!(
                        "unrecognized SUBSCRIBE option \"{other}\" (SNAPSHOT is supported)"
                    )))
                }
            }
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        parser.expect_token(&Token::RParen)?;
    }
    Ok(Subscribe { target, snapshot })
}

fn parse_bool(parser: &mut Parser) -> Result<bool, ParserError> {
    let t = parser.next_token();
    match &t.token {
        Token::Word(w) if w.keyword == Keyword::TRUE || w.value.eq_ignore_ascii_case("on") => {
            Ok(true)
        }
        Token::Word(w) if w.keyword == Keyword::FALSE || w.value.eq_ignore_ascii_case("off") => {
            Ok(false)
        }
        Token::SingleQuotedString(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Token::SingleQuotedString(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ParserError::ParserError(format!(
            "Expected: true or false, found: {other}"
        ))),
    }
}

fn expect_word(parser: &mut Parser, word: &str) -> Result<(), ParserError> {
    let t = parser.next_token();
    if is_word(&t.token, word) {
        Ok(())
    } else {
        Err(ParserError::ParserError(format!(
            "Expected: {word}, found: {}",
            t.token
        )))
    }
}

/// Parses `COPY (SUBSCRIBE …) TO STDOUT [options]`: the subscription, and the `COPY`
/// statement of its options (as `COPY (SELECT 1) TO STDOUT [options]`).
pub(crate) fn parse_copy_subscribe(
    parser: &mut Parser,
) -> Result<(Subscribe, Statement), ParserError> {
    expect_word(parser, "COPY")?;
    parser.expect_token(&Token::LParen)?;
    let sub = parse_subscribe(parser)?;
    parser.expect_token(&Token::RParen)?;
    let mut tokens: Vec<TokenWithSpan> = ["COPY", "(", "SELECT", "1", ")"]
        .iter()
        .map(|t| {
            TokenWithSpan::wrap(match *t {
                "(" => Token::LParen,
                ")" => Token::RParen,
                "1" => Token::Number("1".into(), false),
                w => Token::make_keyword(w),
            })
        })
        .collect();
    loop {
        let t = parser.peek_token();
        if matches!(t.token, Token::EOF | Token::SemiColon) {
            break;
        }
        tokens.push(parser.next_token());
    }
    let copy = Parser::new(&FreshetDialect {})
        .with_tokens_with_locations(tokens)
        .parse_statement()?;
    Ok((sub, copy))
}

/// Parses `DECLARE name [NO SCROLL] CURSOR [WITH[OUT] HOLD] FOR SUBSCRIBE …`: the name,
/// whether it is held, and the subscription.
pub(crate) fn parse_declare_subscribe(
    parser: &mut Parser,
) -> Result<(String, bool, Subscribe), ParserError> {
    expect_word(parser, "DECLARE")?;
    let name = parser.parse_identifier()?.value;
    if parser.parse_keyword(Keyword::SCROLL) {
        return Err(ParserError::ParserError(
            "a cursor over SUBSCRIBE only goes forward: DECLARE it without SCROLL".into(),
        ));
    }
    let _ = parser.parse_keywords(&[Keyword::NO, Keyword::SCROLL]);
    let _ = parser.parse_keyword(Keyword::BINARY);
    let _ = parser.parse_keyword(Keyword::INSENSITIVE);
    parser.expect_keyword(Keyword::CURSOR)?;
    let hold = if parser.parse_keywords(&[Keyword::WITH, Keyword::HOLD]) {
        true
    } else {
        let _ = parser.parse_keywords(&[Keyword::WITHOUT, Keyword::HOLD]);
        false
    };
    parser.expect_keyword(Keyword::FOR)?;
    let sub = parse_subscribe(parser)?;
    Ok((name, hold, sub))
}

/// `SUBSCRIBE` written back as text (for logs and `pg_stat_activity`).
impl std::fmt::Display for Subscribe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            SubscribeTarget::Relation(n) => write!(f, "SUBSCRIBE TO {n}")?,
            SubscribeTarget::Query(q) => write!(f, "SUBSCRIBE TO ({q})")?,
        }
        if !self.snapshot {
            write!(f, " WITH (SNAPSHOT = {})", Value::Boolean(false))?;
        }
        Ok(())
    }
}
