//! SQL type names with Postgres' meaning where DataFusion's differs: `float` and
//! `float(p)` for `p` above 24 are `double precision` (DataFusion made every `float` a
//! `real`, so `sum(x)::float / count(*)` lost all but 7 digits). From dialect level 6 on
//! (`crate::dialect`): a view from before keeps its types. (A table's column types are
//! Postgres' already: `crate::catalog::SqlType`.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::{DataType as SqlDataType, ExactNumberInfo};

/// The type planner (see the module); `level` is the context's dialect level.
#[derive(Debug)]
pub struct PgTypes {
    pub level: Arc<AtomicU32>,
}

impl TypePlanner for PgTypes {
    fn plan_type_field(&self, t: &SqlDataType) -> Result<Option<FieldRef>> {
        if self.level.load(Ordering::SeqCst) < 6 {
            return Ok(None);
        }
        let double = match t {
            SqlDataType::Float(ExactNumberInfo::None) => true,
            SqlDataType::Float(ExactNumberInfo::Precision(p))
            | SqlDataType::Float(ExactNumberInfo::PrecisionAndScale(p, _)) => *p > 24,
            _ => false,
        };
        Ok(double.then(|| {
            Arc::new(datafusion::arrow::datatypes::Field::new(
                "",
                DataType::Float64,
                true,
            ))
        }))
    }
}
