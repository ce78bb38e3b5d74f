//! `FETCH` and `MOVE` in Postgres's grammar. sqlparser's own parser wants a
//! count after FORWARD/BACKWARD and a FROM/IN before the cursor name; Postgres
//! makes both optional (`FETCH c`, `FETCH NEXT c`, `FETCH FORWARD FROM c`), and
//! psql users type them that way.

use crate::sqlparser::ast::{FetchDirection, FetchPosition, Statement, Value, ValueWithSpan};
use crate::sqlparser::keywords::Keyword;
use crate::sqlparser::parser::{Parser, ParserError};
use crate::sqlparser::tokenizer::Token;

/// Parses what follows the `FETCH` or `MOVE` keyword.
pub(crate) fn parse_fetch(parser: &mut Parser) -> Result<Statement, ParserError> {
    let direction = parse_direction(parser)?;
    let position = if parser.parse_keyword(Keyword::FROM) {
        FetchPosition::From
    } else if parser.parse_keyword(Keyword::IN) {
        FetchPosition::In
    } else {
        FetchPosition::From
    };
    let name = parser.parse_identifier()?;
    Ok(Statement::Fetch {
        name,
        direction,
        position,
        into: None,
    })
}

fn parse_direction(parser: &mut Parser) -> Result<FetchDirection, ParserError> {
    Ok(if parser.parse_keyword(Keyword::NEXT) {
        FetchDirection::Next
    } else if parser.parse_keyword(Keyword::PRIOR) {
        FetchDirection::Prior
    } else if parser.parse_keyword(Keyword::FIRST) {
        FetchDirection::First
    } else if parser.parse_keyword(Keyword::LAST) {
        FetchDirection::Last
    } else if parser.parse_keyword(Keyword::ABSOLUTE) {
        FetchDirection::Absolute {
            limit: signed_count(parser)?,
        }
    } else if parser.parse_keyword(Keyword::RELATIVE) {
        FetchDirection::Relative {
            limit: signed_count(parser)?,
        }
    } else if parser.parse_keyword(Keyword::FORWARD) {
        if parser.parse_keyword(Keyword::ALL) {
            FetchDirection::ForwardAll
        } else {
            FetchDirection::Forward {
                limit: optional_count(parser)?,
            }
        }
    } else if parser.parse_keyword(Keyword::BACKWARD) {
        if parser.parse_keyword(Keyword::ALL) {
            FetchDirection::BackwardAll
        } else {
            FetchDirection::Backward {
                limit: optional_count(parser)?,
            }
        }
    } else if parser.parse_keyword(Keyword::ALL) {
        FetchDirection::All
    } else if starts_count(parser) {
        FetchDirection::Count {
            limit: signed_count(parser)?,
        }
    } else {
        // `FETCH c` / `FETCH FROM c`: one row forward.
        FetchDirection::Next
    })
}

fn starts_count(parser: &Parser) -> bool {
    matches!(
        parser.peek_token().token,
        Token::Number(..) | Token::Minus | Token::Plus
    )
}

fn optional_count(parser: &mut Parser) -> Result<Option<ValueWithSpan>, ParserError> {
    if starts_count(parser) {
        signed_count(parser).map(Some)
    } else {
        Ok(None)
    }
}

/// A count, with the sign Postgres allows (`FETCH -2 FROM c`, `ABSOLUTE -1`).
fn signed_count(parser: &mut Parser) -> Result<ValueWithSpan, ParserError> {
    let negative = if parser.consume_token(&Token::Minus) {
        true
    } else {
        let _ = parser.consume_token(&Token::Plus);
        false
    };
    match parser.next_token().token {
        Token::Number(n, long) => {
            Ok(Value::Number(if negative { format!("-{n}") } else { n }, long).into())
        }
        other => Err(ParserError::ParserError(format!(
            "Expected: a row count, found: {other}"
        ))),
    }
}
