//! `string_agg` returns `text`, as in Postgres. DataFusion's returns a `LargeUtf8`, the
//! type Freshet stores `jsonb` in, so its result would be typed `jsonb`: `string_agg(t,
//! ',') || '!'` would read the list as a JSON document and fail. From dialect level 5 on
//! (`crate::dialect`), each call is cast to `text` when the statement is bound (views
//! created before keep the type they were created with).

use std::ops::ControlFlow;

use crate::naming::ident_name;
use crate::sqlparser::ast::{CastKind, DataType, Expr, VisitMut};

/// Casts each `string_agg(…)` of `node` to `text`.
pub fn normalize<T: VisitMut>(node: &mut T) {
    let _ = crate::sqlparser::ast::visit_expressions_mut(node, |e| {
        let is_string_agg = matches!(e, Expr::Function(f)
            if f.name.0.last().and_then(|p| p.as_ident()).map(ident_name).as_deref()
                == Some("string_agg"));
        if is_string_agg {
            *e = Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(e.clone()),
                data_type: DataType::Text,
                array: false,
                format: None,
            };
        }
        ControlFlow::<()>::Continue(())
    });
}
