//! The SQL dialect Freshet parses: Postgres', plus RisingWave's `STRUCT<name type, …>`
//! column type (and BigQuery-style `STRUCT(…)` constructors, which come with it in
//! sqlparser).
//!
//! Every `Dialect` method Postgres' dialect overrides is forwarded to it, and
//! [`FreshetDialect::dialect`] answers as Postgres' dialect, so sqlparser's
//! `dialect_of!(… is PostgreSqlDialect)` checks still hold.

use std::any::TypeId;

use crate::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use crate::sqlparser::keywords::Keyword;
use crate::sqlparser::parser::{Parser, ParserError};

/// A `struct` word that starts no struct type or constructor (a column named `struct`)
/// made a plain word: taking struct types makes sqlparser read `STRUCT` as the start of
/// a constructor anywhere. So is a field name after `(…).`.
pub fn struct_words(
    mut tokens: Vec<crate::sqlparser::tokenizer::TokenWithSpan>,
) -> Vec<crate::sqlparser::tokenizer::TokenWithSpan> {
    use crate::sqlparser::tokenizer::Token;
    for i in 0..tokens.len() {
        // A field after `(…).` is a name even when it spells a keyword (`(s).user`).
        if i >= 2 && tokens[i - 1].token == Token::Period && tokens[i - 2].token == Token::RParen {
            if let Token::Word(w) = &mut tokens[i].token {
                w.keyword = Keyword::NoKeyword;
                continue;
            }
        }
        let is_struct = matches!(&tokens[i].token,
            Token::Word(w) if w.keyword == Keyword::STRUCT && w.quote_style.is_none());
        if !is_struct {
            continue;
        }
        let next = tokens[i + 1..]
            .iter()
            .find(|t| !matches!(t.token, Token::Whitespace(_)))
            .map(|t| &t.token);
        if !matches!(next, Some(Token::Lt | Token::LParen)) {
            if let Token::Word(w) = &mut tokens[i].token {
                w.keyword = Keyword::NoKeyword;
            }
        }
    }
    tokens
}

/// Postgres' dialect with `STRUCT` types.
#[derive(Debug, Default, Clone, Copy)]
pub struct FreshetDialect {}

impl Dialect for FreshetDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<PostgreSqlDialect>()
    }

    fn supports_struct_literal(&self) -> bool {
        true
    }

    /// `a IS [NOT] DISTINCT FROM b`: sqlparser reads all that follows as `b`, so that
    /// `a IS NOT DISTINCT FROM b AND c` became `a IS NOT DISTINCT FROM (b AND c)`. In
    /// Postgres `IS` binds tighter than `NOT`, `AND` and `OR` (and looser than
    /// comparisons): `b` is what binds tighter than `IS`.
    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &crate::sqlparser::ast::Expr,
        _precedence: u8,
    ) -> Option<Result<crate::sqlparser::ast::Expr, ParserError>> {
        use crate::sqlparser::ast::Expr;
        let not = if parser.parse_keywords(&[Keyword::IS, Keyword::DISTINCT, Keyword::FROM]) {
            false
        } else if parser.parse_keywords(&[
            Keyword::IS,
            Keyword::NOT,
            Keyword::DISTINCT,
            Keyword::FROM,
        ]) {
            true
        } else {
            return None;
        };
        let right = match parser.parse_subexpr(self.prec_value(Precedence::Is)) {
            Ok(r) => Box::new(r),
            Err(e) => return Some(Err(e)),
        };
        let left = Box::new(expr.clone());
        Some(Ok(if not {
            Expr::IsNotDistinctFrom(left, right)
        } else {
            Expr::IsDistinctFrom(left, right)
        }))
    }

    /// Postgres' prefix operators `~`, `@`, `|/` and `||/` take as their operand all that
    /// binds tighter than Postgres' other operators (`%prec Op` in its grammar): `~ 1 + 1`
    /// is `~ (1 + 1)`, `2 * ~ 1 + 3` is `2 * ~ (1 + 3)`. sqlparser read an operand that
    /// binds tighter than `+`, so `~ 1 + 1` was `(~ 1) + 1`.
    fn parse_prefix(
        &self,
        parser: &mut Parser,
    ) -> Option<Result<crate::sqlparser::ast::Expr, ParserError>> {
        use crate::sqlparser::ast::{Expr, UnaryOperator};
        use crate::sqlparser::tokenizer::Token;
        let op = match parser.peek_token_ref().token {
            Token::Tilde => UnaryOperator::BitwiseNot,
            Token::AtSign => UnaryOperator::PGAbs,
            Token::PGSquareRoot => UnaryOperator::PGSquareRoot,
            Token::PGCubeRoot => UnaryOperator::PGCubeRoot,
            _ => return None,
        };
        parser.next_token();
        let operand = parser.parse_subexpr(self.prec_value(Precedence::PgOther));
        Some(operand.map(|expr| Expr::UnaryOp {
            op,
            expr: Box::new(expr),
        }))
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        PostgreSqlDialect {}.identifier_quote_style(identifier)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        PostgreSqlDialect {}.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        PostgreSqlDialect {}.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        PostgreSqlDialect {}.is_identifier_part(ch)
    }

    fn supports_unicode_string_literal(&self) -> bool {
        PostgreSqlDialect {}.supports_unicode_string_literal()
    }

    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        PostgreSqlDialect {}.is_reserved_for_identifier(kw)
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        PostgreSqlDialect {}.is_custom_operator_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        PostgreSqlDialect {}.get_next_precedence(parser)
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        PostgreSqlDialect {}.supports_filter_during_aggregation()
    }

    fn supports_group_by_expr(&self) -> bool {
        PostgreSqlDialect {}.supports_group_by_expr()
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        PostgreSqlDialect {}.prec_value(prec)
    }

    fn allow_extract_custom(&self) -> bool {
        PostgreSqlDialect {}.allow_extract_custom()
    }

    fn allow_extract_single_quotes(&self) -> bool {
        PostgreSqlDialect {}.allow_extract_single_quotes()
    }

    fn supports_create_index_with_clause(&self) -> bool {
        PostgreSqlDialect {}.supports_create_index_with_clause()
    }

    fn supports_explain_with_utility_options(&self) -> bool {
        PostgreSqlDialect {}.supports_explain_with_utility_options()
    }

    fn supports_listen_notify(&self) -> bool {
        PostgreSqlDialect {}.supports_listen_notify()
    }

    fn supports_factorial_operator(&self) -> bool {
        PostgreSqlDialect {}.supports_factorial_operator()
    }

    fn supports_bitwise_shift_operators(&self) -> bool {
        PostgreSqlDialect {}.supports_bitwise_shift_operators()
    }

    fn supports_comment_on(&self) -> bool {
        PostgreSqlDialect {}.supports_comment_on()
    }

    fn supports_load_extension(&self) -> bool {
        PostgreSqlDialect {}.supports_load_extension()
    }

    fn supports_named_fn_args_with_colon_operator(&self) -> bool {
        PostgreSqlDialect {}.supports_named_fn_args_with_colon_operator()
    }

    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        PostgreSqlDialect {}.supports_named_fn_args_with_expr_name()
    }

    fn supports_empty_projections(&self) -> bool {
        PostgreSqlDialect {}.supports_empty_projections()
    }

    fn supports_nested_comments(&self) -> bool {
        PostgreSqlDialect {}.supports_nested_comments()
    }

    fn supports_string_escape_constant(&self) -> bool {
        PostgreSqlDialect {}.supports_string_escape_constant()
    }

    fn supports_numeric_literal_underscores(&self) -> bool {
        PostgreSqlDialect {}.supports_numeric_literal_underscores()
    }

    fn supports_array_typedef_with_brackets(&self) -> bool {
        PostgreSqlDialect {}.supports_array_typedef_with_brackets()
    }

    fn supports_geometric_types(&self) -> bool {
        PostgreSqlDialect {}.supports_geometric_types()
    }

    fn supports_set_names(&self) -> bool {
        PostgreSqlDialect {}.supports_set_names()
    }

    fn supports_alter_column_type_using(&self) -> bool {
        PostgreSqlDialect {}.supports_alter_column_type_using()
    }

    fn supports_notnull_operator(&self) -> bool {
        PostgreSqlDialect {}.supports_notnull_operator()
    }

    fn supports_interval_options(&self) -> bool {
        PostgreSqlDialect {}.supports_interval_options()
    }

    fn supports_insert_table_alias(&self) -> bool {
        PostgreSqlDialect {}.supports_insert_table_alias()
    }

    fn supports_create_table_like_parenthesized(&self) -> bool {
        PostgreSqlDialect {}.supports_create_table_like_parenthesized()
    }

    fn supports_select_wildcard_with_alias(&self) -> bool {
        PostgreSqlDialect {}.supports_select_wildcard_with_alias()
    }

    fn supports_comma_separated_trim(&self) -> bool {
        PostgreSqlDialect {}.supports_comma_separated_trim()
    }

    fn supports_xml_expressions(&self) -> bool {
        PostgreSqlDialect {}.supports_xml_expressions()
    }

    fn supports_comment_optimizer_hint(&self) -> bool {
        PostgreSqlDialect {}.supports_comment_optimizer_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> String {
        Parser::parse_sql(&FreshetDialect {}, sql).expect("parses")[0].to_string()
    }

    /// The first select item's tree, every operation in parentheses.
    fn grouped(sql: &str) -> String {
        use crate::sqlparser::ast::{Expr, SelectItem, SetExpr, Statement};
        fn show(e: &Expr) -> String {
            match e {
                Expr::UnaryOp { op, expr } => format!("({op}{})", show(expr)),
                Expr::BinaryOp { left, op, right } => {
                    format!("({} {op} {})", show(left), show(right))
                }
                Expr::IsNull(e) => format!("({} IS NULL)", show(e)),
                Expr::Nested(e) => show(e),
                e => e.to_string(),
            }
        }
        let stmt = Parser::parse_sql(&FreshetDialect {}, sql).expect("parses");
        let Statement::Query(q) = &stmt[0] else {
            panic!("{sql}")
        };
        let SetExpr::Select(s) = q.body.as_ref() else {
            panic!("{sql}")
        };
        let SelectItem::UnnamedExpr(e) = &s.projection[0] else {
            panic!("{sql}")
        };
        show(e)
    }

    #[test]
    fn prefix_operators_bind_as_in_postgres() {
        for (sql, tree) in [
            ("SELECT ~ 1 + 1", "(~(1 + 1))"),
            ("SELECT ~ 1 + 1 = -3", "((~(1 + 1)) = (-3))"),
            ("SELECT 2 * ~ 1 + 3", "(2 * (~(1 + 3)))"),
            ("SELECT |/ 16 + 9", "(|/(16 + 9))"),
            ("SELECT @ -5 + 1", "(@((-5) + 1))"),
            ("SELECT ~ 1 || 'a'", "((~1) || 'a')"),
            ("SELECT ~ a IS NULL", "((~a) IS NULL)"),
        ] {
            assert_eq!(grouped(sql), tree, "{sql}");
        }
    }

    #[test]
    fn is_distinct_from_binds_as_in_postgres() {
        // AND, OR and NOT bind looser than IS; comparisons and arithmetic tighter.
        let tree = |sql: &str| {
            let stmt = &Parser::parse_sql(&FreshetDialect {}, sql).expect("parses")[0];
            format!("{stmt:?}")
        };
        let and = tree("SELECT a IS NOT DISTINCT FROM b AND c");
        assert!(and.contains("BinaryOp { left: IsNotDistinctFrom("), "{and}");
        assert!(and.contains("op: And, right: Identifier"), "{and}");
        let or = tree("SELECT x IS DISTINCT FROM y + 1 OR z");
        assert!(or.contains("BinaryOp { left: IsDistinctFrom("), "{or}");
        assert!(or.contains("op: Or, right: Identifier"), "{or}");
        // The right side takes what binds tighter: `y + 1`.
        assert!(or.contains("op: Plus"), "{or}");
        assert_eq!(
            parsed("SELECT x IS DISTINCT FROM y + 1 OR z"),
            "SELECT x IS DISTINCT FROM y + 1 OR z"
        );
        // Still an expression of its own in a join condition.
        assert_eq!(
            parsed("SELECT * FROM t JOIN u ON t.a IS NOT DISTINCT FROM u.a AND t.b = u.b"),
            "SELECT * FROM t JOIN u ON t.a IS NOT DISTINCT FROM u.a AND t.b = u.b"
        );
    }
}
