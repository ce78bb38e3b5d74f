//! Parameter types a client declares in Parse. Postgres takes them as the parameters'
//! types; Freshet infers a parameter's type from where it stands, which for a number
//! declared `numeric`, `real` or `double precision` can be too narrow: `SELECT $1 + 1`
//! inferred `bigint` and refused psycopg's `Decimal('1.5')` and `1.5` (`22P02`), and
//! `SELECT $1` answered text. Such a parameter is read as its declared type (a cast
//! around it), and described as it. Other declared types keep the inferred one: a
//! parameter declared `varchar` or an integer type compares with any column, as
//! drivers' string and integer setters expect, and a key lookup stays a key lookup.

use freshet_planner::sqlparser::ast::{
    CastKind, DataType as SqlType, ExactNumberInfo, Expr, LimitClause, Query, Statement, Value,
    VisitMut, VisitorMut,
};
use pgwire::api::Type;

/// The SQL type a parameter declared `t` is read as, if one of the honoured types.
fn honoured(t: &Type) -> Option<SqlType> {
    match *t {
        Type::NUMERIC => Some(SqlType::Numeric(ExactNumberInfo::None)),
        Type::FLOAT8 => Some(SqlType::DoublePrecision),
        Type::FLOAT4 => Some(SqlType::Real),
        _ => None,
    }
}

/// The type to describe parameter `i` as, if its declaration is honoured.
pub fn described(declared: &[Option<Type>], i: usize) -> Option<Type> {
    declared
        .get(i)
        .cloned()
        .flatten()
        .filter(|t| honoured(t).is_some())
}

/// Casts each parameter of `stmt` whose declared type is honoured to that type, unless
/// the statement casts it already.
pub fn apply(stmt: &mut Statement, declared: &[Option<Type>]) {
    if !declared.iter().flatten().any(|t| honoured(t).is_some()) {
        return;
    }
    let _ = stmt.visit(&mut Declare {
        declared,
        cast_next: false,
        counts: std::collections::HashSet::new(),
    });
}

struct Declare<'a> {
    declared: &'a [Option<Type>],
    /// The next placeholder is the operand of a cast the statement writes.
    cast_next: bool,
    /// The expressions of `LIMIT`, `OFFSET` and `FETCH`, which take a count (Postgres
    /// converts the parameter to `bigint` there): left as inferred.
    counts: std::collections::HashSet<*const Expr>,
}

fn placeholder(e: &Expr) -> Option<usize> {
    let Expr::Value(v) = e else {
        return None;
    };
    let Value::Placeholder(p) = &v.value else {
        return None;
    };
    p.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1)
}

impl VisitorMut for Declare<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> std::ops::ControlFlow<()> {
        let mut counts: Vec<&Expr> = Vec::new();
        match &q.limit_clause {
            Some(LimitClause::LimitOffset { limit, offset, .. }) => {
                counts.extend(limit.iter());
                counts.extend(offset.iter().map(|o| &o.value));
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                counts.extend([offset, limit]);
            }
            None => {}
        }
        counts.extend(q.fetch.iter().filter_map(|f| f.quantity.as_ref()));
        for e in counts {
            let _ = freshet_planner::sqlparser::ast::visit_expressions(e, |x| {
                self.counts.insert(x as *const Expr);
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        std::ops::ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
        if let Expr::Cast { expr, .. } = e {
            self.cast_next = placeholder(expr).is_some();
        }
        std::ops::ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
        let Some(i) = placeholder(e) else {
            return std::ops::ControlFlow::Continue(());
        };
        if std::mem::take(&mut self.cast_next) || self.counts.contains(&(e as *const Expr)) {
            return std::ops::ControlFlow::Continue(());
        }
        if let Some(data_type) = described(self.declared, i).as_ref().and_then(honoured) {
            *e = Expr::Cast {
                kind: CastKind::DoubleColon,
                expr: Box::new(e.clone()),
                data_type,
                array: false,
                format: None,
            };
        }
        std::ops::ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(sql: &str, declared: &[Option<Type>]) -> String {
        let mut stmts = freshet_planner::parser::parse(sql).expect("parses");
        let freshet_planner::parser::Stmt::Sql(stmt) = &mut stmts[0] else {
            panic!("{sql}")
        };
        apply(stmt, declared);
        stmt.to_string()
    }

    #[test]
    fn reads_declared_numbers_as_declared() {
        let numeric = [Some(Type::NUMERIC), Some(Type::INT8), Some(Type::FLOAT8)];
        assert_eq!(
            applied("SELECT $1 + 1, $2, $3 * 2", &numeric),
            "SELECT $1::NUMERIC + 1, $2, $3::DOUBLE PRECISION * 2"
        );
        // A cast the statement writes is kept alone; undeclared parameters are inferred.
        assert_eq!(
            applied("SELECT $1::numeric(10, 2), $1, $4", &numeric),
            "SELECT $1::NUMERIC(10,2), $1::NUMERIC, $4"
        );
        assert_eq!(
            applied("SELECT * FROM t WHERE k = $1", &[Some(Type::VARCHAR)]),
            "SELECT * FROM t WHERE k = $1"
        );
        // Counts are left as inferred (`bigint`).
        assert_eq!(
            applied("SELECT x FROM t WHERE x > $1 LIMIT $2 OFFSET $3", &numeric),
            "SELECT x FROM t WHERE x > $1::NUMERIC LIMIT $2 OFFSET $3"
        );
        assert_eq!(described(&numeric, 0), Some(Type::NUMERIC));
        assert_eq!(described(&numeric, 1), None);
        assert_eq!(described(&numeric, 7), None);
    }
}
