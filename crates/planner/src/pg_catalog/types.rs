//! The Postgres types Freshet shows: their OIDs, names and how Arrow types map to them.

use datafusion::arrow::datatypes::{DataType, IntervalUnit, TimeUnit};

/// One row of `pg_type`.
#[derive(Clone, Copy, Debug)]
pub struct PgType {
    pub oid: u32,
    pub name: &'static str,
    /// `typlen`: bytes, or -1 for variable length.
    pub len: i16,
    pub byval: bool,
    /// `typcategory`.
    pub category: char,
    /// The array type's OID (0 for array types themselves).
    pub array: u32,
    /// For an array type, its element's OID.
    pub elem: u32,
    /// What `format_type` prints.
    pub sql_name: &'static str,
}

macro_rules! t {
    ($oid:expr, $name:expr, $len:expr, $byval:expr, $cat:expr, $array:expr, $elem:expr, $sql:expr) => {
        PgType {
            oid: $oid,
            name: $name,
            len: $len,
            byval: $byval,
            category: $cat,
            array: $array,
            elem: $elem,
            sql_name: $sql,
        }
    };
}

/// Every type in `pg_type`.
pub const TYPES: &[PgType] = &[
    t!(16, "bool", 1, true, 'B', 1000, 0, "boolean"),
    t!(17, "bytea", -1, false, 'U', 1001, 0, "bytea"),
    t!(18, "char", 1, true, 'Z', 1002, 0, "\"char\""),
    t!(19, "name", 64, false, 'S', 1003, 0, "name"),
    t!(20, "int8", 8, true, 'N', 1016, 0, "bigint"),
    t!(21, "int2", 2, true, 'N', 1005, 0, "smallint"),
    t!(22, "int2vector", -1, false, 'A', 1006, 21, "int2vector"),
    t!(23, "int4", 4, true, 'N', 1007, 0, "integer"),
    t!(24, "regproc", 4, true, 'N', 1008, 0, "regproc"),
    t!(25, "text", -1, false, 'S', 1009, 0, "text"),
    t!(26, "oid", 4, true, 'N', 1028, 0, "oid"),
    t!(30, "oidvector", -1, false, 'A', 1013, 26, "oidvector"),
    t!(114, "json", -1, false, 'U', 199, 0, "json"),
    t!(700, "float4", 4, true, 'N', 1021, 0, "real"),
    t!(701, "float8", 8, true, 'N', 1022, 0, "double precision"),
    t!(1042, "bpchar", -1, false, 'S', 1014, 0, "character"),
    t!(
        1043,
        "varchar",
        -1,
        false,
        'S',
        1015,
        0,
        "character varying"
    ),
    t!(1082, "date", 4, true, 'D', 1182, 0, "date"),
    t!(
        1083,
        "time",
        8,
        true,
        'D',
        1183,
        0,
        "time without time zone"
    ),
    t!(
        1114,
        "timestamp",
        8,
        true,
        'D',
        1115,
        0,
        "timestamp without time zone"
    ),
    t!(
        1184,
        "timestamptz",
        8,
        true,
        'D',
        1185,
        0,
        "timestamp with time zone"
    ),
    t!(1186, "interval", 16, false, 'T', 1187, 0, "interval"),
    t!(1700, "numeric", -1, false, 'N', 1231, 0, "numeric"),
    t!(2205, "regclass", 4, true, 'N', 2210, 0, "regclass"),
    t!(2206, "regtype", 4, true, 'N', 2211, 0, "regtype"),
    t!(2950, "uuid", 16, false, 'U', 2951, 0, "uuid"),
    t!(3802, "jsonb", -1, false, 'U', 3807, 0, "jsonb"),
    // A struct value (RisingWave's `STRUCT<…>`) goes out as an anonymous record.
    t!(2249, "record", -1, false, 'P', 2287, 0, "record"),
    t!(2287, "_record", -1, false, 'A', 0, 2249, "record[]"),
    t!(1000, "_bool", -1, false, 'A', 0, 16, "boolean[]"),
    t!(1001, "_bytea", -1, false, 'A', 0, 17, "bytea[]"),
    t!(1002, "_char", -1, false, 'A', 0, 18, "\"char\"[]"),
    t!(1003, "_name", -1, false, 'A', 0, 19, "name[]"),
    t!(1005, "_int2", -1, false, 'A', 0, 21, "smallint[]"),
    t!(1006, "_int2vector", -1, false, 'A', 0, 22, "int2vector[]"),
    t!(1007, "_int4", -1, false, 'A', 0, 23, "integer[]"),
    t!(1008, "_regproc", -1, false, 'A', 0, 24, "regproc[]"),
    t!(1009, "_text", -1, false, 'A', 0, 25, "text[]"),
    t!(1013, "_oidvector", -1, false, 'A', 0, 30, "oidvector[]"),
    t!(1014, "_bpchar", -1, false, 'A', 0, 1042, "character[]"),
    t!(
        1015,
        "_varchar",
        -1,
        false,
        'A',
        0,
        1043,
        "character varying[]"
    ),
    t!(1016, "_int8", -1, false, 'A', 0, 20, "bigint[]"),
    t!(1021, "_float4", -1, false, 'A', 0, 700, "real[]"),
    t!(
        1022,
        "_float8",
        -1,
        false,
        'A',
        0,
        701,
        "double precision[]"
    ),
    t!(1028, "_oid", -1, false, 'A', 0, 26, "oid[]"),
    t!(
        1115,
        "_timestamp",
        -1,
        false,
        'A',
        0,
        1114,
        "timestamp without time zone[]"
    ),
    t!(1182, "_date", -1, false, 'A', 0, 1082, "date[]"),
    t!(
        1183,
        "_time",
        -1,
        false,
        'A',
        0,
        1083,
        "time without time zone[]"
    ),
    t!(
        1185,
        "_timestamptz",
        -1,
        false,
        'A',
        0,
        1184,
        "timestamp with time zone[]"
    ),
    t!(1187, "_interval", -1, false, 'A', 0, 1186, "interval[]"),
    t!(1231, "_numeric", -1, false, 'A', 0, 1700, "numeric[]"),
    t!(199, "_json", -1, false, 'A', 0, 114, "json[]"),
    t!(2210, "_regclass", -1, false, 'A', 0, 2205, "regclass[]"),
    t!(2211, "_regtype", -1, false, 'A', 0, 2206, "regtype[]"),
    t!(2951, "_uuid", -1, false, 'A', 0, 2950, "uuid[]"),
    t!(3807, "_jsonb", -1, false, 'A', 0, 3802, "jsonb[]"),
];

pub fn by_oid(oid: u32) -> Option<&'static PgType> {
    TYPES.iter().find(|t| t.oid == oid)
}

/// `array_in`, the input function of every array type (`pg_type.typinput`), as in
/// Postgres; pgjdbc tells array types by it.
pub const ARRAY_IN: u32 = 750;

/// The OID of input function `name`, where Freshet's `pg_type` names one.
pub fn input_function_oid(name: &str) -> Option<u32> {
    (name == "array_in").then_some(ARRAY_IN)
}

impl PgType {
    /// `typinput`: `array_in` for arrays (other input functions are not listed).
    pub fn input_function(&self) -> u32 {
        if self.elem != 0 {
            ARRAY_IN
        } else {
            0
        }
    }
}

pub fn by_name(name: &str) -> Option<&'static PgType> {
    let name = name.trim().trim_start_matches("pg_catalog.");
    TYPES
        .iter()
        .find(|t| t.name == name || t.sql_name == name)
        .or(match name {
            "int" | "integer" => by_oid(23),
            "smallint" => by_oid(21),
            "bigint" => by_oid(20),
            "boolean" => by_oid(16),
            "real" => by_oid(700),
            "double precision" | "float" => by_oid(701),
            "decimal" => by_oid(1700),
            "character varying" => by_oid(1043),
            "timestamp" => by_oid(1114),
            "timestamptz" => by_oid(1184),
            _ => None,
        })
}

/// The OID of the Postgres type an Arrow type is shown as.
pub fn oid_of(dt: &DataType) -> u32 {
    match dt {
        DataType::Boolean => 16,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => 21,
        DataType::Int32 | DataType::UInt16 => 23,
        DataType::Int64 => 20,
        DataType::UInt32 => 26,
        DataType::UInt64 => 1700,
        DataType::Float16 | DataType::Float32 => 700,
        DataType::Float64 => 701,
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => 1700,
        DataType::Utf8 | DataType::Utf8View => 1043,
        DataType::LargeUtf8 => 3802,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => 17,
        DataType::Date32 | DataType::Date64 => 1082,
        DataType::Time32(_) | DataType::Time64(_) => 1083,
        DataType::Timestamp(_, None) => 1114,
        DataType::Timestamp(_, Some(_)) => 1184,
        DataType::Interval(_) | DataType::Duration(_) => 1186,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            by_oid(oid_of(f.data_type())).map_or(1009, |t| t.array)
        }
        DataType::Struct(_) => 2249,
        _ => 25,
    }
}

/// `atttypmod` of an Arrow type: numeric precision and scale as Postgres packs them.
pub fn typmod_of(dt: &DataType) -> i32 {
    match dt {
        DataType::Decimal128(p, s) => ((*p as i32) << 16 | (*s as i32 & 0xffff)) + 4,
        _ => -1,
    }
}

/// What `format_type(oid, typmod)` prints.
pub fn format_type(oid: u32, typmod: Option<i32>) -> Option<String> {
    let t = by_oid(oid)?;
    Some(match (oid, typmod) {
        (1700, Some(m)) if m >= 4 => {
            let m = m - 4;
            format!("numeric({},{})", m >> 16, m & 0xffff)
        }
        (1043, Some(m)) if m >= 4 => format!("character varying({})", m - 4),
        (1042, Some(m)) if m >= 4 => format!("character({})", m - 4),
        _ => t.sql_name.to_string(),
    })
}

/// The Arrow type of a stored column of type `oid`, for casts such as `::regclass`.
pub fn arrow_of(oid: u32) -> Option<DataType> {
    Some(match oid {
        16 => DataType::Boolean,
        20 => DataType::Int64,
        21 => DataType::Int16,
        23 => DataType::Int32,
        26 | 24 | 2205 | 2206 => DataType::UInt32,
        700 => DataType::Float32,
        701 => DataType::Float64,
        1082 => DataType::Date32,
        1114 => DataType::Timestamp(TimeUnit::Microsecond, None),
        1186 => DataType::Interval(IntervalUnit::MonthDayNano),
        17 => DataType::Binary,
        3802 | 114 => DataType::LargeUtf8,
        25 | 19 | 18 | 1043 | 1042 => DataType::Utf8,
        _ => return None,
    })
}
