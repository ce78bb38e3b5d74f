//! `sum` and `avg` of a `numeric` with NaN and the infinities (dialect level 11).
//!
//! DataFusion's would add a special value (`freshet_engine::numeric_special`) as a huge
//! number. [`SpecialSum`] wraps its `sum` or `avg`: the special inputs of a group are
//! counted apart (as 0 to the wrapped aggregate), and decide the result as Postgres'
//! do: NaN with any NaN or with both infinities, else the infinity there is. The counts
//! travel with the wrapped aggregate's state between partial and final aggregation. The
//! name stays `sum` or `avg`, so a view plans it as its own sum
//! (`freshet_engine::plan::AggCall::specials`), which counts the same way.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Int64Array,
};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature,
};
use freshet_engine::numeric_special::{self as special, Special, SqlStateError};

/// `sum` or `avg` of a `numeric`, with its special inputs counted (see the module).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SpecialSum {
    inner: Arc<AggregateUDF>,
}

impl SpecialSum {
    /// `inner` (DataFusion's `sum` or `avg`) with special inputs counted.
    pub fn wrap(inner: Arc<AggregateUDF>) -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::new_from_impl(SpecialSum { inner }))
    }
}

/// Whether `func` is a [`SpecialSum`].
pub fn is_special_sum(func: &AggregateUDF) -> bool {
    let inner: &dyn Any = func.inner().as_ref();
    inner.is::<SpecialSum>()
}

/// The special inputs of a group: NaN, Infinity, -Infinity.
type Counts = [i64; 3];

/// The special value `counts` make a sum, if any.
fn decided(c: &Counts) -> Option<Special> {
    special::sum_of(*c)
}

/// The special values of `values` (a `numeric`, the first argument) by row, and the
/// values with them as 0; `None` if there are none.
fn split(values: &[ArrayRef]) -> Option<(Vec<Option<Special>>, Vec<ArrayRef>)> {
    let first = values.first()?.as_primitive_opt::<Decimal128Type>()?;
    let (specials, clean) = special::split(first)?;
    let mut out = values.to_vec();
    out[0] = Arc::new(clean);
    Some((specials, out))
}

/// `out` (the wrapped aggregate's results, by group) with the groups `counts` decide set
/// to their special value.
fn patch(out: ArrayRef, counts: &[Counts]) -> Result<ArrayRef> {
    let d = out
        .as_primitive_opt::<Decimal128Type>()
        .ok_or_else(|| DataFusionError::Internal("a numeric sum expected".into()))?;
    // DataFusion's sums wrap around past 2^127 and do not check the precision: a sum
    // beyond 38 digits (or on a special value's number) fails as Postgres' overflows.
    let beyond = (0..d.len()).any(|i| {
        d.is_valid(i)
            && counts.get(i).and_then(decided).is_none()
            && d.value(i).unsigned_abs() >= 10u128.pow(38)
    });
    if beyond {
        return Err(SqlStateError::raise(
            "22003",
            "value overflows numeric format",
            None,
        ));
    }
    if counts.iter().all(|c| decided(c).is_none()) {
        return Ok(out);
    }
    let values: Vec<i128> = (0..d.len())
        .map(|i| match counts.get(i).and_then(decided) {
            Some(s) => s.value(),
            None => d.values()[i],
        })
        .collect();
    let nulls = d.nulls().map(|n| {
        // A group of only special inputs has a value.
        let valid: Vec<bool> = (0..d.len())
            .map(|i| n.is_valid(i) || counts.get(i).and_then(decided).is_some())
            .collect();
        datafusion::arrow::buffer::NullBuffer::from(valid)
    });
    Ok(Arc::new(
        Decimal128Array::new(values.into(), nulls).with_data_type(d.data_type().clone()),
    ))
}

fn count_fields() -> [FieldRef; 3] {
    ["nan", "infinity", "neg_infinity"]
        .map(|n| Arc::new(Field::new(format!("special_{n}"), DataType::Int64, true)))
}

impl AggregateUDFImpl for SpecialSum {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.inner().return_field(arg_fields)
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let mut fields = self.inner.inner().state_fields(args)?;
        fields.extend(count_fields());
        Ok(fields)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SpecialAccumulator {
            inner: self.inner.accumulator(args.clone())?,
            counts: [0; 3],
            ret: args.return_field.data_type().clone(),
        }))
    }
    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }
    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(SpecialGroups {
            inner: self.inner.create_groups_accumulator(args)?,
            counts: Vec::new(),
        }))
    }
}

/// One group's [`SpecialSum`].
#[derive(Debug)]
struct SpecialAccumulator {
    inner: Box<dyn Accumulator>,
    counts: Counts,
    ret: DataType,
}

impl Accumulator for SpecialAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match split(values) {
            None => self.inner.update_batch(values),
            Some((specials, clean)) => {
                for s in specials.into_iter().flatten() {
                    self.counts[s as usize] += 1;
                }
                self.inner.update_batch(&clean)
            }
        }
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        match (decided(&self.counts), &self.ret) {
            (Some(s), DataType::Decimal128(p, scale)) => {
                Ok(ScalarValue::Decimal128(Some(s.value()), *p, *scale))
            }
            _ => {
                let v = self.inner.evaluate()?;
                if let ScalarValue::Decimal128(Some(x), ..) = v {
                    if x.unsigned_abs() >= 10u128.pow(38) {
                        return Err(SqlStateError::raise(
                            "22003",
                            "value overflows numeric format",
                            None,
                        ));
                    }
                }
                Ok(v)
            }
        }
    }
    fn size(&self) -> usize {
        self.inner.size() + std::mem::size_of::<Counts>()
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut state = self.inner.state()?;
        state.extend(self.counts.map(|c| ScalarValue::Int64(Some(c))));
        Ok(state)
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let k = states.len().saturating_sub(3);
        for (slot, counts) in states[k..].iter().enumerate() {
            let counts = counts.as_primitive::<Int64Type>();
            self.counts[slot] += counts.iter().flatten().sum::<i64>();
        }
        self.inner.merge_batch(&states[..k])
    }
}

/// [`SpecialSum`] over many groups.
struct SpecialGroups {
    inner: Box<dyn GroupsAccumulator>,
    counts: Vec<Counts>,
}

impl std::fmt::Debug for SpecialGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecialGroups").finish_non_exhaustive()
    }
}

impl SpecialGroups {
    fn grow(&mut self, groups: usize) {
        if self.counts.len() < groups {
            self.counts.resize(groups, [0; 3]);
        }
    }
}

impl GroupsAccumulator for SpecialGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let Some((specials, clean)) = split(values) else {
            return self
                .inner
                .update_batch(values, group_indices, opt_filter, total_num_groups);
        };
        for (row, s) in specials.iter().enumerate() {
            let passes = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if let (Some(s), true) = (s, passes) {
                self.counts[group_indices[row]][*s as usize] += 1;
            }
        }
        self.inner
            .update_batch(&clean, group_indices, opt_filter, total_num_groups)
    }
    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let counts = emit_to.take_needed(&mut self.counts);
        patch(self.inner.evaluate(emit_to)?, &counts)
    }
    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let counts = emit_to.take_needed(&mut self.counts);
        let mut state = self.inner.state(emit_to)?;
        for slot in 0..3 {
            let column: Int64Array = counts.iter().map(|c| Some(c[slot])).collect();
            state.push(Arc::new(column));
        }
        Ok(state)
    }
    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let k = values.len().saturating_sub(3);
        for (slot, column) in values[k..].iter().enumerate() {
            let column = column.as_primitive::<Int64Type>();
            for (row, group) in group_indices.iter().enumerate() {
                if column.is_valid(row) {
                    self.counts[*group][slot] += column.value(row);
                }
            }
        }
        self.inner
            .merge_batch(&values[..k], group_indices, total_num_groups)
    }
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let (specials, clean) = match split(values) {
            Some((s, c)) => (s, c),
            None => (
                vec![None; values.first().map_or(0, |v| v.len())],
                values.to_vec(),
            ),
        };
        let mut state = self.inner.convert_to_state(&clean, opt_filter)?;
        for slot in 0..3 {
            let column: Int64Array = specials
                .iter()
                .enumerate()
                .map(|(row, s)| {
                    let passes = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
                    Some(i64::from(passes && s.is_some_and(|s| s as usize == slot)))
                })
                .collect();
            state.push(Arc::new(column));
        }
        Ok(state)
    }
    fn size(&self) -> usize {
        self.inner.size() + self.counts.capacity() * std::mem::size_of::<Counts>()
    }
}
