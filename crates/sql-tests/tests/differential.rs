//! Differential test of incrementally maintained materialized views.
//!
//! Freshet keeps every materialized view up to date by applying the *changes* of its
//! inputs (inserts and deletes) to operator state, never by recomputing it. This test
//! checks that incremental result against a from-scratch recompute: it runs random
//! `INSERT`/`UPDATE`/`DELETE` statements against two tables that carry a set of views
//! (aggregates, filters, projections, bags with duplicate rows, `DISTINCT`, `HAVING`, a
//! join, aggregates over the join, views over views, a global aggregate), and after
//! **every** statement it compares, as multisets of rows rendered as text:
//!
//! - each base table (`SELECT * FROM t`) with a model of its rows kept by this test, which
//!   also predicts each statement's outcome: the number of rows it affects, or SQLSTATE
//!   `23505` (unique violation) for an `INSERT` that repeats an id, after which nothing
//!   may have changed (the statement is atomic);
//! - each view (`SELECT * FROM v`) with its defining query run as a plain `SELECT` over
//!   the base tables (for a view over views, the same query with the inner views inlined
//!   as subqueries).
//!
//! DML is read-your-writes (a statement returns once its effect is committed to every
//! dependent view), so the comparison needs no waiting. Every [`RESTART_EVERY`] steps the
//! server is stopped gracefully and started again, and once per run it is killed with
//! `kill -9`; the checks right after each restart show that tables and views survived.
//!
//! Two tests:
//! - [`random_dml_keeps_views_equal_to_queries`]: views created on empty tables, then
//!   [`DEFAULT_STEPS`] random statements, for each of two seeds (a fresh server each);
//! - [`views_backfill_existing_rows_then_follow_changes`]: the tables get random data
//!   first, the views are created one by one in between further statements (each must
//!   backfill the rows already there), then random statements continue.
//!
//! Seeds are random (from the clock) and printed at the start of every run; every failure
//! message names the seed, the step, the last statements, the server log tail and the
//! command that replays the run:
//!
//! ```text
//! FRESHET_DIFF_SEED=<seed> FRESHET_DIFF_STEPS=<steps> \
//!     cargo test -p freshet-sql-tests --test differential -- <test name>
//! ```
//!
//! `FRESHET_DIFF_SEED` runs that single seed; `FRESHET_DIFF_STEPS` sets the number of
//! random statements per run (for both tests; a long soak is just a large number).

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use freshet_sql_tests::pgclient;
use freshet_sql_tests::TestServer;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Environment variable holding a single seed to run instead of random ones.
const SEED_VAR: &str = "FRESHET_DIFF_SEED";
/// Environment variable overriding the number of random statements per run.
const STEPS_VAR: &str = "FRESHET_DIFF_STEPS";
/// Random statements per seed in the main test. Every step checks ~140 queries (each view
/// and its reference, each index lookup), about 0.7 s in a debug build on 2 cores, so this
/// keeps the test near 15 minutes; a soak sets `FRESHET_DIFF_STEPS` higher.
const DEFAULT_STEPS: usize = 600;
/// Random statements (before, between and after view creation) in the backfill test.
const DEFAULT_BACKFILL_STEPS: usize = 400;
/// A graceful restart every this many steps in the main test.
const RESTART_EVERY: usize = 300;
/// Statements kept for failure messages.
const HISTORY_LEN: usize = 20;
/// Rows listed per side in a mismatch message.
const MAX_ROWS_SHOWN: usize = 40;
/// Server log lines included in a failure message.
const LOG_TAIL_LINES: usize = 30;
/// A statement that takes longer than this is reported as hung.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to keep trying to connect after a (re)start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Start of every failure message produced by [`Harness::fail`]; such panics already
/// carry the seed and are passed through unchanged by [`run_with_seed`].
const FAIL_PREFIX: &str = "differential test failure";
/// SQLSTATE of a unique (primary key) violation.
const UNIQUE_VIOLATION: &str = "23505";

/// Group keys are drawn from `0..KEY_DOMAIN` (and sometimes NULL), so groups are small,
/// and they appear and disappear as rows come and go.
const KEY_DOMAIN: i64 = 8;
/// String values; with a quote (escaping), an empty string (not NULL) and non-ASCII text.
const STRINGS: &[&str] = &["apple", "Banana", "o'brien", "", "ñandú"];

// ---------------------------------------------------------------------------------------
// Schema and views
// ---------------------------------------------------------------------------------------

/// What a column holds, which decides its SQL type and how values are generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColKind {
    /// `BIGINT PRIMARY KEY`, always column 0, chosen from `0..id_domain`.
    Id,
    /// `BIGINT` group/join key in `0..KEY_DOMAIN`, 3% NULL.
    Key,
    /// `BIGINT` value in `-50..=50`, 10% NULL.
    Num,
    /// `VARCHAR` from [`STRINGS`], 10% NULL.
    Str,
}

/// A base table of the test.
struct TableSpec {
    name: &'static str,
    /// Column 0 is the `Id` column.
    columns: &'static [(&'static str, ColKind)],
    /// Ids are drawn from `0..id_domain`, small enough that updates and deletes by id
    /// mostly hit existing rows.
    id_domain: i64,
}

const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "a",
        columns: &[
            ("id", ColKind::Id),
            ("k", ColKind::Key),
            ("v", ColKind::Num),
            ("s", ColKind::Str),
        ],
        id_domain: 60,
    },
    TableSpec {
        name: "b",
        columns: &[
            ("id", ColKind::Id),
            ("k", ColKind::Key),
            ("w", ColKind::Num),
        ],
        id_domain: 40,
    },
];

impl TableSpec {
    fn create_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|&(name, kind)| match kind {
                ColKind::Id => format!("{name} BIGINT PRIMARY KEY"),
                ColKind::Key | ColKind::Num => format!("{name} BIGINT"),
                ColKind::Str => format!("{name} VARCHAR"),
            })
            .collect();
        format!("CREATE TABLE {} ({})", self.name, columns.join(", "))
    }

    /// Index of the first column of the given kind.
    fn column(&self, kind: ColKind) -> Option<usize> {
        self.columns.iter().position(|&(_, k)| k == kind)
    }

    fn col_name(&self, index: usize) -> &'static str {
        self.columns[index].0
    }
}

/// A materialized view of the test.
struct ViewSpec {
    name: &'static str,
    /// The query the view is created with (`CREATE MATERIALIZED VIEW name AS query`).
    query: &'static str,
    /// For a view defined over other views: the same query over the base tables only,
    /// with the inner views inlined as subqueries. `None`: `query` reads base tables.
    over_tables: Option<&'static str>,
}

impl ViewSpec {
    /// The query whose plain `SELECT` result the view must equal.
    fn reference(&self) -> &'static str {
        self.over_tables.unwrap_or(self.query)
    }
}

/// The views, in creation order (a view comes after the views it reads).
const VIEWS: &[ViewSpec] = &[
    // Grouped aggregates: count/sum ignore deletes' history, min/max need their state,
    // count(DISTINCT) needs per-value counts; NULL keys form their own group.
    ViewSpec {
        name: "a_by_k",
        query: "SELECT k, count(*) AS c, count(v) AS cv, sum(v) AS sv, min(v) AS mn, \
                max(v) AS mx, count(DISTINCT s) AS ds, min(s) AS mins, max(s) AS maxs \
                FROM a GROUP BY k",
        over_tables: None,
    },
    ViewSpec {
        name: "b_by_k",
        query: "SELECT k, count(*) AS c, count(w) AS cw, sum(w) AS sw, min(w) AS mn, \
                max(w) AS mx FROM b GROUP BY k",
        over_tables: None,
    },
    // Filter and projection.
    ViewSpec {
        name: "a_positive",
        query: "SELECT id, v * 2 AS v2, s FROM a WHERE v > 0",
        over_tables: None,
    },
    // Scalar expressions, NULL handling in them.
    ViewSpec {
        name: "a_exprs",
        query: "SELECT id, k % 3 AS k3, \
                CASE WHEN v IS NULL THEN 'none' WHEN v < 0 THEN 'neg' ELSE 'pos' END \
                AS polarity, coalesce(s, '?') AS s2 FROM a",
        over_tables: None,
    },
    // A bag: identical rows occur several times, and deleting one must keep the others.
    ViewSpec {
        name: "a_bag",
        query: "SELECT k, s FROM a WHERE k < 4",
        over_tables: None,
    },
    ViewSpec {
        name: "a_distinct",
        query: "SELECT DISTINCT k, s FROM a",
        over_tables: None,
    },
    // Two grouping columns (one of them a string), and a filter on the aggregate.
    ViewSpec {
        name: "a_k_s_having",
        query: "SELECT k, s, count(*) AS n, sum(v) AS sv FROM a GROUP BY k, s \
                HAVING count(*) > 1",
        over_tables: None,
    },
    // A global aggregate: exactly one row, also when `a` is empty.
    ViewSpec {
        name: "a_totals",
        query: "SELECT count(*) AS n, count(v) AS cv, sum(v) AS sv, min(v) AS mn, \
                max(v) AS mx FROM a",
        over_tables: None,
    },
    // Inner equi-join (NULL keys match nothing) and an aggregate over it.
    ViewSpec {
        name: "ab_join",
        query: "SELECT a.id, b.id AS bid, a.v, b.w FROM a JOIN b ON a.k = b.k",
        over_tables: None,
    },
    ViewSpec {
        name: "ab_join_by_k",
        query: "SELECT a.k, count(*) AS n, sum(a.v) AS sv, sum(b.w) AS sw, \
                min(b.w) AS mnw, max(a.v) AS mxv FROM a JOIN b ON a.k = b.k GROUP BY a.k",
        over_tables: None,
    },
    // Views over views: a filter over an aggregate, a re-aggregation, a join of two
    // aggregates, an aggregate over a projection.
    ViewSpec {
        name: "a_big_groups",
        query: "SELECT k, c, sv FROM a_by_k WHERE c > 2",
        over_tables: Some(
            "SELECT k, c, sv FROM (SELECT k, count(*) AS c, sum(v) AS sv FROM a GROUP BY k) \
             AS g WHERE c > 2",
        ),
    },
    ViewSpec {
        name: "a_group_sizes",
        query: "SELECT c, count(*) AS n_groups, sum(sv) AS total FROM a_by_k GROUP BY c",
        over_tables: Some(
            "SELECT c, count(*) AS n_groups, sum(sv) AS total FROM \
             (SELECT k, count(*) AS c, sum(v) AS sv FROM a GROUP BY k) AS g GROUP BY c",
        ),
    },
    ViewSpec {
        name: "ab_by_k_views",
        query: "SELECT x.k, x.c AS ac, y.c AS bc, y.sw FROM a_by_k AS x \
                JOIN b_by_k AS y ON x.k = y.k",
        over_tables: Some(
            "SELECT x.k, x.c AS ac, y.c AS bc, y.sw \
             FROM (SELECT k, count(*) AS c FROM a GROUP BY k) AS x \
             JOIN (SELECT k, count(*) AS c, sum(w) AS sw FROM b GROUP BY k) AS y \
             ON x.k = y.k",
        ),
    },
    // Top-N: row_number with a unique tie-break, rank with ties, ORDER BY … LIMIT.
    ViewSpec {
        name: "a_top2",
        query: "SELECT id, k, v, rn FROM (SELECT id, k, v, row_number() OVER \
                (PARTITION BY k ORDER BY v DESC NULLS LAST, id) AS rn FROM a) t WHERE rn <= 2",
        over_tables: None,
    },
    ViewSpec {
        name: "a_rank",
        query: "SELECT k, v, r FROM (SELECT k, v, rank() OVER (PARTITION BY k ORDER BY v) AS r \
                FROM a) t WHERE r <= 2",
        over_tables: None,
    },
    ViewSpec {
        name: "a_first_page",
        query: "SELECT id, v FROM a ORDER BY v DESC NULLS LAST, id LIMIT 3 OFFSET 1",
        over_tables: None,
    },
    // Outer, semi and anti joins (with a residual ON condition), UNION ALL.
    ViewSpec {
        name: "ab_left",
        query: "SELECT a.id, b.id AS bid, b.w FROM a LEFT JOIN b ON a.k = b.k AND b.w > a.v",
        over_tables: None,
    },
    ViewSpec {
        name: "ab_full",
        query: "SELECT a.id, b.id AS bid FROM a FULL JOIN b ON a.k = b.k",
        over_tables: None,
    },
    ViewSpec {
        name: "a_semi",
        query: "SELECT id, k FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.k = a.k AND b.w > 0)",
        over_tables: None,
    },
    ViewSpec {
        name: "a_anti",
        query: "SELECT id, k FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.k = a.k)",
        over_tables: None,
    },
    ViewSpec {
        name: "ab_union",
        query: "SELECT k, v AS x FROM a UNION ALL SELECT k, w FROM b",
        over_tables: None,
    },
    // Aggregates that keep ordered values.
    ViewSpec {
        name: "a_aggs2",
        query: "SELECT k, bool_or(v > 0) AS anypos, bool_and(v > 0) AS allpos, \
                string_agg(s, ',' ORDER BY s) AS ss, first_value(v ORDER BY id) AS fv, \
                last_value(v ORDER BY id) AS lv, \
                percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS med, \
                approx_count_distinct(s) AS acd FROM a GROUP BY k",
        over_tables: None,
    },
    // Discrete percentiles (exact and sketched) and JSON aggregates.
    ViewSpec {
        name: "a_pct",
        query: "SELECT k, percentile_disc(0.3) WITHIN GROUP (ORDER BY v) AS p30, \
                percentile_disc(0.75) WITHIN GROUP (ORDER BY v DESC) AS p75d, \
                approx_percentile(0.5, 0.05) WITHIN GROUP (ORDER BY v) AS ap, \
                jsonb_agg(v ORDER BY id) AS jv FROM a GROUP BY k",
        over_tables: None,
    },
    // Ordered aggregates by several keys, and FILTER on those that take NULLs.
    ViewSpec {
        name: "a_ordered",
        query: "SELECT k, first_value(v ORDER BY s DESC, id) FILTER (WHERE v > 0) AS f, \
                last_value(s ORDER BY v, id DESC) AS l, \
                array_agg(id ORDER BY v DESC, id) FILTER (WHERE s IS NOT NULL) AS ids, \
                string_agg(s, ',' ORDER BY v, s DESC, id) AS ss FROM a GROUP BY k",
        over_tables: None,
    },
    // Scalar subqueries correlated by inequality (rewritten into left joins).
    ViewSpec {
        name: "a_below",
        query: "SELECT a.id, (SELECT count(*) FROM b WHERE b.w < a.v) AS n, \
                (SELECT max(b.w) FROM b WHERE b.k = a.k AND b.w <= a.v) AS m FROM a",
        over_tables: None,
    },
    // ASOF joins (rewritten into joins through each left key and time's match).
    ViewSpec {
        name: "ab_asof",
        query: "SELECT a.id, b.id AS bid, b.w FROM a ASOF LEFT JOIN b \
                ON a.k = b.k AND a.v >= b.w",
        over_tables: None,
    },
    ViewSpec {
        name: "ab_asof_after",
        query: "SELECT b.k, count(*) AS n, min(a.id) AS first_id FROM a ASOF JOIN b \
                ON b.k = a.k AND b.w > a.v AND b.id > 3 GROUP BY b.k",
        over_tables: None,
    },
    // Correlated scalar subqueries that are not aggregates (a lookup by key, the top row
    // of a key), rewritten into aggregates; UNION CORRESPONDING. (An inequality
    // correlation matches each change against the whole other side: too slow for a
    // long soak; `views/single_row_subqueries.slt` covers it.)
    ViewSpec {
        name: "a_latest_b",
        query: "SELECT a.id, (SELECT b.w FROM b WHERE b.id = a.id) AS bw, \
                (SELECT b.w FROM b WHERE b.k = a.k ORDER BY b.w DESC LIMIT 1) AS w \
                FROM a",
        over_tables: None,
    },
    ViewSpec {
        name: "a_top_b",
        query: "SELECT a.id, x.w, x.bid FROM a, LATERAL (SELECT b.w, b.id AS bid FROM b \
                WHERE b.k = a.k ORDER BY b.w DESC, b.id LIMIT 2) x",
        over_tables: None,
    },
    ViewSpec {
        name: "ab_corresponding",
        query: "SELECT * FROM a UNION CORRESPONDING BY (k, id) SELECT * FROM b",
        over_tables: None,
    },
    // generate_series over a row's columns (a row per value, none for a NULL bound);
    // a numeric average cast to an integer (rounded half away from zero); string_agg as
    // text.
    ViewSpec {
        name: "a_series",
        query: "SELECT a.id, h FROM a, generate_series(a.k, a.k + 2) AS h WHERE a.v > 0",
        over_tables: None,
    },
    ViewSpec {
        name: "a_rounded",
        query: "SELECT k, avg(v)::int AS av, string_agg(s, ',' ORDER BY s, id) || '.' AS ss \
                FROM a GROUP BY k",
        over_tables: None,
    },
    // Bit aggregates: per-bit counts, exact under deletes.
    ViewSpec {
        name: "a_bits",
        query: "SELECT k, bit_and(v) AS ba, bit_or(v) AS bo, bit_xor(v) AS bx, \
                bit_or(id) FILTER (WHERE v > 0) AS bf FROM a GROUP BY k",
        over_tables: None,
    },
    // Constant rows joined with a table's (a mapping written inline).
    ViewSpec {
        name: "a_mapped",
        query: "SELECT a.id, m.label FROM a JOIN (VALUES (0, 'zero'), (1, 'one'), (2, 'two')) \
                AS m(k, label) ON a.k = m.k",
        over_tables: None,
    },
    ViewSpec {
        name: "a_mapped_left",
        query: "SELECT a.id, coalesce(m.label, '?') AS label, m.k FROM a LEFT JOIN \
                (VALUES (1, 'one'), (3, 'three')) AS m(k, label) ON a.k = m.k",
        over_tables: None,
    },
    // Grouping sets: one aggregate per set under a UNION ALL.
    ViewSpec {
        name: "a_rollup",
        query: "SELECT k, s, count(*) AS c, sum(v) AS sv FROM a GROUP BY ROLLUP (k, s)",
        over_tables: None,
    },
    ViewSpec {
        name: "a_sets",
        query: "SELECT k, s, grouping(k, s) AS g, max(v) AS mx, count(v) AS cv FROM a \
                GROUP BY GROUPING SETS ((k), (s), ())",
        over_tables: None,
    },
    // DISTINCT ON: first_value per column, ordered by a unique key.
    ViewSpec {
        name: "a_first_per_k",
        query: "SELECT DISTINCT ON (k) k, id, v, s FROM a ORDER BY k, id DESC",
        over_tables: None,
    },
    // array_agg: ordered by a unique key, so the arrays equal the batch ones.
    ViewSpec {
        name: "a_arrays",
        query: "SELECT k, array_agg(v ORDER BY id) AS vs, array_agg(s ORDER BY id DESC) AS ss \
                FROM a GROUP BY k",
        over_tables: None,
    },
    // Window functions (an over-window node per PARTITION BY/ORDER BY). ROWS frames and
    // row_number() order by the unique id, so ties cannot make the answer depend on the
    // order rows are read in; RANGE frames and rank() treat ties as peers.
    ViewSpec {
        name: "a_running",
        query: "SELECT id, k, v, sum(v) OVER w AS run, lag(v) OVER w AS prev, \
                lead(s, 2) OVER w AS next2, row_number() OVER w AS rn \
                FROM a WINDOW w AS (PARTITION BY k ORDER BY id)",
        over_tables: None,
    },
    ViewSpec {
        name: "a_ranked_v",
        query: "SELECT id, k, rank() OVER w AS r, dense_rank() OVER w AS dr, \
                count(*) OVER w AS c, percent_rank() OVER w AS pr, \
                max(s) OVER (PARTITION BY k ORDER BY v DESC \
                RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS ms \
                FROM a WINDOW w AS (PARTITION BY k ORDER BY v DESC)",
        over_tables: None,
    },
    ViewSpec {
        name: "a_moving",
        query:
            "SELECT id, min(v) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) AS mn, \
                first_value(v) OVER (ORDER BY id) AS fv, \
                last_value(v) OVER (ORDER BY id ROWS BETWEEN CURRENT ROW AND 3 FOLLOWING) AS lv, \
                ntile(3) OVER (ORDER BY id) AS nt, count(v) OVER () AS total FROM a",
        over_tables: None,
    },
    ViewSpec {
        name: "a_k_cumulative",
        query: "SELECT k, c, sum(c) OVER (ORDER BY k) AS cum, \
                c - lag(c, 1, 0) OVER (ORDER BY k) AS delta \
                FROM (SELECT k, count(*) AS c FROM a GROUP BY k) AS g",
        over_tables: None,
    },
    // Joins without an equality (every change probes the whole other side) and the
    // dynamic filter (a join with a subquery's single row).
    ViewSpec {
        name: "ab_near",
        query: "SELECT a.id AS aid, b.id AS bid, a.v - b.w AS d FROM a JOIN b \
                ON a.v BETWEEN b.w - 3 AND b.w + 3",
        over_tables: None,
    },
    ViewSpec {
        name: "ab_left_below",
        query: "SELECT a.id AS aid, b.id AS bid FROM a LEFT JOIN b ON a.v < b.w AND b.k > 5",
        over_tables: None,
    },
    ViewSpec {
        name: "ab_cross_counts",
        query: "SELECT a.k, count(*) AS n, sum(b.w) AS sw FROM a CROSS JOIN b \
                WHERE b.k = 0 GROUP BY a.k",
        over_tables: None,
    },
    ViewSpec {
        name: "a_above_b_avg",
        query: "SELECT id, v, v - (SELECT max(w) FROM b) AS below_max FROM a \
                WHERE v > (SELECT avg(w) FROM b)",
        over_tables: None,
    },
    // Set operations: semi and anti joins on NULL-safe keys, then DISTINCT.
    ViewSpec {
        name: "ab_common",
        query: "SELECT k, v FROM a INTERSECT SELECT k, w FROM b",
        over_tables: None,
    },
    ViewSpec {
        name: "ab_only_a",
        query: "SELECT k FROM a EXCEPT SELECT k FROM b",
        over_tables: None,
    },
    ViewSpec {
        name: "a_polarity",
        query: "SELECT polarity, count(*) AS n, sum(k3) AS sk3 FROM a_exprs GROUP BY polarity",
        over_tables: Some(
            "SELECT polarity, count(*) AS n, sum(k3) AS sk3 FROM \
             (SELECT k % 3 AS k3, \
              CASE WHEN v IS NULL THEN 'none' WHEN v < 0 THEN 'neg' ELSE 'pos' END \
              AS polarity FROM a) AS e GROUP BY polarity",
        ),
    },
];

/// An index of the test (`CREATE INDEX`), and lookups that read it, each beside the same
/// lookup written so that no index can serve it (the column inside an expression): both
/// must return the same rows after every step.
struct IndexSpec {
    name: &'static str,
    create: &'static str,
    /// The relation it indexes must exist first.
    after_view: Option<&'static str>,
    lookups: &'static [(&'static str, &'static str)],
}

const INDEXES: &[IndexSpec] = &[
    IndexSpec {
        name: "a_s",
        create: "CREATE INDEX a_s ON a (s)",
        after_view: None,
        lookups: &[
            (
                "SELECT id, k, s FROM a WHERE s > 'B' AND s <= 'o''brien'",
                "SELECT id, k, s FROM a WHERE s || '' > 'B' AND s || '' <= 'o''brien'",
            ),
            (
                "SELECT * FROM a WHERE s = 'apple'",
                "SELECT * FROM a WHERE s || '' = 'apple'",
            ),
            (
                "SELECT id FROM a WHERE s = ''",
                "SELECT id FROM a WHERE s || '' = ''",
            ),
        ],
    },
    IndexSpec {
        name: "a_k_v",
        create: "CREATE INDEX a_k_v ON a (k, v) INCLUDE (id)",
        after_view: None,
        lookups: &[
            (
                "SELECT id FROM a WHERE k = 2 AND v BETWEEN -10 AND 10",
                "SELECT id FROM a WHERE k + 0 = 2 AND v + 0 BETWEEN -10 AND 10",
            ),
            (
                "SELECT id, v FROM a WHERE k = 3",
                "SELECT id, v FROM a WHERE k + 0 = 3",
            ),
        ],
    },
    IndexSpec {
        name: "a_by_k_mx",
        create: "CREATE INDEX a_by_k_mx ON a_by_k (mx)",
        after_view: Some("a_by_k"),
        lookups: &[
            (
                "SELECT k, c, mx FROM a_by_k WHERE mx >= 20",
                "SELECT k, c, mx FROM a_by_k WHERE mx + 0 >= 20",
            ),
            (
                "SELECT * FROM a_by_k WHERE mx BETWEEN 30 AND 40",
                "SELECT * FROM a_by_k WHERE mx + 0 BETWEEN 30 AND 40",
            ),
        ],
    },
];

// ---------------------------------------------------------------------------------------
// Values, predicates, statements and the model
// ---------------------------------------------------------------------------------------

/// A cell value of a base table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Null,
    Int(i64),
    Str(String),
}

impl Value {
    /// As a SQL literal.
    fn sql(&self) -> String {
        match self {
            Value::Null => "NULL".to_string(),
            Value::Int(i) => i.to_string(),
            Value::Str(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }

    /// As the server renders it in text format (`None` for NULL).
    fn text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Int(i) => Some(i.to_string()),
            Value::Str(s) => Some(s.clone()),
        }
    }
}

/// A row as returned over the wire in text format, or rendered from the model.
type Row = Vec<Option<String>>;

/// The rows of one table in the model, by id.
type TableRows = BTreeMap<i64, Vec<Value>>;

/// What the base tables must hold, indexed like [`TABLES`].
#[derive(Clone, Debug)]
struct Model {
    tables: Vec<TableRows>,
}

impl Model {
    fn new() -> Model {
        Model {
            tables: TABLES.iter().map(|_| BTreeMap::new()).collect(),
        }
    }
}

fn row_id(row: &[Value]) -> i64 {
    match &row[0] {
        Value::Int(id) => *id,
        other => panic!("column 0 must be a non-NULL id, found {other:?}"),
    }
}

/// A `WHERE` condition. Only forms whose truth is "every part true" (`AND`) or "some part
/// true" (`OR`) are used, so that SQL's three-valued logic reduces to `bool`: a comparison
/// with NULL is never true.
#[derive(Clone, Debug)]
enum Pred {
    /// `col = value` (value never NULL).
    Eq(usize, Value),
    Lt(usize, i64),
    Gt(usize, i64),
    IsNull(usize),
    In(usize, Vec<i64>),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
}

impl Pred {
    fn matches(&self, row: &[Value]) -> bool {
        match self {
            Pred::Eq(c, v) => *v != Value::Null && row[*c] == *v,
            Pred::Lt(c, x) => matches!(&row[*c], Value::Int(i) if i < x),
            Pred::Gt(c, x) => matches!(&row[*c], Value::Int(i) if i > x),
            Pred::IsNull(c) => row[*c] == Value::Null,
            Pred::In(c, ids) => matches!(&row[*c], Value::Int(i) if ids.contains(i)),
            Pred::And(l, r) => l.matches(row) && r.matches(row),
            Pred::Or(l, r) => l.matches(row) || r.matches(row),
        }
    }

    fn sql(&self, spec: &TableSpec) -> String {
        match self {
            Pred::Eq(c, v) => format!("{} = {}", spec.col_name(*c), v.sql()),
            Pred::Lt(c, x) => format!("{} < {x}", spec.col_name(*c)),
            Pred::Gt(c, x) => format!("{} > {x}", spec.col_name(*c)),
            Pred::IsNull(c) => format!("{} IS NULL", spec.col_name(*c)),
            Pred::In(c, ids) => {
                let list: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
                format!("{} IN ({})", spec.col_name(*c), list.join(", "))
            }
            Pred::And(l, r) => format!("({} AND {})", l.sql(spec), r.sql(spec)),
            Pred::Or(l, r) => format!("({} OR {})", l.sql(spec), r.sql(spec)),
        }
    }
}

fn filter_matches(filter: &Option<Pred>, row: &[Value]) -> bool {
    match filter {
        Some(pred) => pred.matches(row),
        None => true,
    }
}

fn where_clause(filter: &Option<Pred>, spec: &TableSpec) -> String {
    match filter {
        Some(pred) => format!(" WHERE {}", pred.sql(spec)),
        None => String::new(),
    }
}

/// One assignment of an `UPDATE`'s `SET` list (each column at most once per statement).
#[derive(Clone, Debug)]
enum Assign {
    /// `col = literal`
    Set(usize, Value),
    /// `col = col + delta` (NULL stays NULL)
    Add(usize, i64),
}

impl Assign {
    fn sql(&self, spec: &TableSpec) -> String {
        match self {
            Assign::Set(c, v) => format!("{} = {}", spec.col_name(*c), v.sql()),
            Assign::Add(c, d) => {
                let name = spec.col_name(*c);
                if *d >= 0 {
                    format!("{name} = {name} + {d}")
                } else {
                    format!("{name} = {name} - {}", d.abs())
                }
            }
        }
    }

    /// Applies the assignment to `new`, reading the pre-update row `old` (SQL evaluates
    /// every right-hand side against the old row).
    fn apply(&self, old: &[Value], new: &mut [Value]) {
        match self {
            Assign::Set(c, v) => new[*c] = v.clone(),
            Assign::Add(c, d) => {
                new[*c] = match &old[*c] {
                    Value::Int(x) => Value::Int(x + d),
                    other => other.clone(),
                }
            }
        }
    }
}

/// One random DML statement.
#[derive(Clone, Debug)]
enum Op {
    Insert {
        table: usize,
        rows: Vec<Vec<Value>>,
    },
    Update {
        table: usize,
        set: Vec<Assign>,
        filter: Option<Pred>,
    },
    Delete {
        table: usize,
        filter: Option<Pred>,
    },
}

impl Op {
    fn sql(&self) -> String {
        match self {
            Op::Insert { table, rows } => {
                let spec = &TABLES[*table];
                let columns: Vec<&str> = spec.columns.iter().map(|&(name, _)| name).collect();
                let values: Vec<String> = rows
                    .iter()
                    .map(|row| {
                        let cells: Vec<String> = row.iter().map(Value::sql).collect();
                        format!("({})", cells.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    spec.name,
                    columns.join(", "),
                    values.join(", ")
                )
            }
            Op::Update { table, set, filter } => {
                let spec = &TABLES[*table];
                let set: Vec<String> = set.iter().map(|a| a.sql(spec)).collect();
                format!(
                    "UPDATE {} SET {}{}",
                    spec.name,
                    set.join(", "),
                    where_clause(filter, spec)
                )
            }
            Op::Delete { table, filter } => {
                let spec = &TABLES[*table];
                format!("DELETE FROM {}{}", spec.name, where_clause(filter, spec))
            }
        }
    }

    /// Applies the statement to the model and returns the number of rows it affects, or
    /// the SQLSTATE it must fail with, in which case the model is left untouched (a
    /// failed statement changes nothing).
    fn apply(&self, model: &mut Model) -> Result<u64, &'static str> {
        match self {
            Op::Insert { table, rows } => {
                let t = &mut model.tables[*table];
                let mut seen = BTreeSet::new();
                for row in rows {
                    let id = row_id(row);
                    // An id already stored, or twice in this statement.
                    if t.contains_key(&id) || !seen.insert(id) {
                        return Err(UNIQUE_VIOLATION);
                    }
                }
                for row in rows {
                    t.insert(row_id(row), row.clone());
                }
                Ok(rows.len() as u64)
            }
            Op::Update { table, set, filter } => {
                let mut affected = 0;
                for row in model.tables[*table].values_mut() {
                    if filter_matches(filter, row) {
                        let old = row.clone();
                        for assign in set {
                            assign.apply(&old, row);
                        }
                        affected += 1;
                    }
                }
                Ok(affected)
            }
            Op::Delete { table, filter } => {
                let t = &mut model.tables[*table];
                let before = t.len();
                t.retain(|_, row| !filter_matches(filter, row));
                Ok((before - t.len()) as u64)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random generation
// ---------------------------------------------------------------------------------------

fn choose_str(rng: &mut StdRng) -> String {
    STRINGS
        .choose(rng)
        .expect("STRINGS is not empty")
        .to_string()
}

fn gen_value(rng: &mut StdRng, kind: ColKind) -> Value {
    match kind {
        ColKind::Id => unreachable!("ids are chosen by the caller, not generated"),
        ColKind::Key => {
            if rng.gen_bool(0.03) {
                Value::Null
            } else {
                Value::Int(rng.gen_range(0..KEY_DOMAIN))
            }
        }
        ColKind::Num => {
            if rng.gen_bool(0.1) {
                Value::Null
            } else {
                Value::Int(rng.gen_range(-50..=50))
            }
        }
        ColKind::Str => {
            if rng.gen_bool(0.1) {
                Value::Null
            } else {
                Value::Str(choose_str(rng))
            }
        }
    }
}

fn gen_row(rng: &mut StdRng, spec: &TableSpec, id: i64) -> Vec<Value> {
    spec.columns
        .iter()
        .map(|&(_, kind)| match kind {
            ColKind::Id => Value::Int(id),
            other => gen_value(rng, other),
        })
        .collect()
}

/// The ids not in the table, in random order.
fn free_ids(rng: &mut StdRng, spec: &TableSpec, rows: &TableRows) -> Vec<i64> {
    let mut free: Vec<i64> = (0..spec.id_domain)
        .filter(|id| !rows.contains_key(id))
        .collect();
    free.shuffle(rng);
    free
}

/// An id to update or delete: mostly an existing one, sometimes any id of the domain
/// (which may affect no row).
fn target_id(rng: &mut StdRng, spec: &TableSpec, rows: &TableRows) -> i64 {
    if !rows.is_empty() && rng.gen_bool(0.85) {
        let index = rng.gen_range(0..rows.len());
        *rows
            .keys()
            .nth(index)
            .expect("index is below the table's length")
    } else {
        rng.gen_range(0..spec.id_domain)
    }
}

/// `id = x` or `id IN (x, y, ...)`.
fn id_pred(rng: &mut StdRng, spec: &TableSpec, rows: &TableRows) -> Pred {
    if rng.gen_bool(0.8) {
        Pred::Eq(0, Value::Int(target_id(rng, spec, rows)))
    } else {
        let n = rng.gen_range(2..=4);
        Pred::In(0, (0..n).map(|_| target_id(rng, spec, rows)).collect())
    }
}

fn key_eq(rng: &mut StdRng, key: usize) -> Pred {
    Pred::Eq(key, Value::Int(rng.gen_range(0..KEY_DOMAIN)))
}

/// A predicate over non-id columns, typically hitting several rows (a whole group for
/// `k = x`, so that groups disappear).
fn gen_pred(rng: &mut StdRng, spec: &TableSpec) -> Pred {
    let key = spec
        .column(ColKind::Key)
        .expect("every table has a key column");
    let num = spec
        .column(ColKind::Num)
        .expect("every table has a numeric column");
    match rng.gen_range(0..10) {
        0..=3 => key_eq(rng, key),
        4 => Pred::Lt(num, rng.gen_range(-50..=0)),
        5 => Pred::Gt(num, rng.gen_range(0..=50)),
        6 => match spec.column(ColKind::Str) {
            Some(s) => Pred::Eq(s, Value::Str(choose_str(rng))),
            None => Pred::Gt(num, rng.gen_range(20..=50)),
        },
        7 => Pred::IsNull(rng.gen_range(1..spec.columns.len())),
        8 => Pred::And(
            Box::new(key_eq(rng, key)),
            Box::new(Pred::Gt(num, rng.gen_range(-50..=50))),
        ),
        _ => Pred::Or(Box::new(key_eq(rng, key)), Box::new(key_eq(rng, key))),
    }
}

/// A non-empty `SET` list over distinct non-id columns.
fn gen_assignments(rng: &mut StdRng, spec: &TableSpec) -> Vec<Assign> {
    let mut columns: Vec<usize> = (1..spec.columns.len()).collect();
    columns.shuffle(rng);
    let n = rng.gen_range(1..=columns.len());
    columns.truncate(n);
    columns
        .into_iter()
        .map(|c| {
            let kind = spec.columns[c].1;
            if kind == ColKind::Num && rng.gen_bool(0.3) {
                Assign::Add(c, rng.gen_range(-5..=5))
            } else {
                Assign::Set(c, gen_value(rng, kind))
            }
        })
        .collect()
}

/// An `INSERT` that must fail with a unique violation: an existing id among fresh ones,
/// or (when the table is empty, and sometimes otherwise) one fresh id given twice.
fn gen_duplicate_insert(rng: &mut StdRng, table: usize, rows: &TableRows) -> Op {
    let spec = &TABLES[table];
    let mut free = free_ids(rng, spec, rows);
    let existing: Vec<i64> = rows.keys().copied().collect();
    let mut ids = Vec::new();
    if !existing.is_empty() && (free.is_empty() || rng.gen_bool(0.8)) {
        ids.push(*existing.choose(rng).expect("table is not empty"));
        let extra = rng.gen_range(0..=2usize).min(free.len());
        ids.extend(free.drain(..extra));
    } else {
        // The table is empty (so every id is free) or some id is free.
        let id = free[0];
        ids.push(id);
        ids.push(id);
    }
    ids.shuffle(rng);
    Op::Insert {
        table,
        rows: ids.into_iter().map(|id| gen_row(rng, spec, id)).collect(),
    }
}

/// A random statement. Inserts add 1.75 rows on average and deletes remove by id, by
/// predicate and (rarely) everything, so tables hover around a few dozen rows: groups
/// stay small and keep appearing and disappearing.
fn gen_op(rng: &mut StdRng, model: &Model) -> Op {
    let table = if rng.gen_bool(0.6) { 0 } else { 1 };
    let spec = &TABLES[table];
    let rows = &model.tables[table];
    match rng.gen_range(0..1000) {
        0..=349 => {
            let n = if rng.gen_bool(0.7) {
                1
            } else {
                rng.gen_range(2..=5)
            };
            let mut ids = free_ids(rng, spec, rows);
            ids.truncate(n);
            if ids.is_empty() {
                // Every id is taken: update a row instead.
                return Op::Update {
                    table,
                    set: gen_assignments(rng, spec),
                    filter: Some(id_pred(rng, spec, rows)),
                };
            }
            Op::Insert {
                table,
                rows: ids.into_iter().map(|id| gen_row(rng, spec, id)).collect(),
            }
        }
        350..=389 => gen_duplicate_insert(rng, table, rows),
        390..=639 => Op::Update {
            table,
            set: gen_assignments(rng, spec),
            filter: Some(id_pred(rng, spec, rows)),
        },
        640..=714 => Op::Update {
            table,
            set: gen_assignments(rng, spec),
            filter: Some(gen_pred(rng, spec)),
        },
        715..=719 => Op::Update {
            table,
            set: gen_assignments(rng, spec),
            filter: None,
        },
        720..=919 => Op::Delete {
            table,
            filter: Some(id_pred(rng, spec, rows)),
        },
        920..=994 => Op::Delete {
            table,
            filter: Some(gen_pred(rng, spec)),
        },
        _ => Op::Delete {
            table,
            filter: None,
        },
    }
}

// ---------------------------------------------------------------------------------------
// The harness: one server, one session, the model, and the checks
// ---------------------------------------------------------------------------------------

/// One run of one seed against its own server.
struct Harness {
    /// Name of the test function (used in the replay command).
    test: &'static str,
    seed: u64,
    /// Random statements in this run (for the replay command).
    steps: usize,
    /// Number of random statements executed so far.
    step: usize,
    rng: StdRng,
    model: Model,
    /// Views created so far, in creation order.
    views: Vec<&'static ViewSpec>,
    /// Indexes created so far.
    indexes: Vec<&'static IndexSpec>,
    /// The shards each view's state is split into (`streaming_max_parallelism`).
    max_parallelism: usize,
    /// The last [`HISTORY_LEN`] statements and events, with their outcomes.
    history: VecDeque<String>,
    /// `None` only while the server restarts. Declared before `rt` so that it is dropped
    /// first.
    client: Option<Client>,
    rt: tokio::runtime::Runtime,
    server: TestServer,
}

impl Harness {
    fn start(test: &'static str, seed: u64, steps: usize) -> Harness {
        // The views' keyed operators run on 1 to 4 threads, their state split into that
        // many shards or up to 2 more (`streaming_max_parallelism`), chosen by the seed;
        // random steps change a view's parallelism while it runs.
        let threads = 1 + splitmix64(seed ^ 0x5eed) % 4;
        let max_parallelism = threads as usize + (splitmix64(seed ^ 0xa11e) % 3) as usize;
        let shards = threads.to_string();
        eprintln!(
            "{test}: seed={seed}: views run on {shards} thread(s), as {max_parallelism} shard(s)"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("build the tokio runtime");
        let mut harness = Harness {
            test,
            seed,
            steps,
            step: 0,
            rng: StdRng::seed_from_u64(seed),
            model: Model::new(),
            views: Vec::new(),
            indexes: Vec::new(),
            max_parallelism,
            history: VecDeque::new(),
            client: None,
            rt,
            server: TestServer::start_with_args(&["--streaming-parallelism", &shards]),
        };
        harness.connect();
        harness
    }

    /// Opens the session, retrying while the server finishes starting up.
    fn connect(&mut self) {
        let conn_str = self.server.conn_str();
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            let attempt = self
                .rt
                .block_on(async { pgclient::connect(&conn_str).await });
            match attempt {
                Ok(client) => {
                    self.client = Some(client);
                    return;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => self.fail(&format!("cannot connect to `{conn_str}`: {e}")),
            }
        }
    }

    /// Runs one statement over the simple query protocol (every value comes back as
    /// text), failing the test if it hangs.
    fn run(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        let Some(client) = self.client.as_ref() else {
            self.fail(&format!("no session to run `{sql}`"));
        };
        let result = self.rt.block_on(async {
            tokio::time::timeout(STATEMENT_TIMEOUT, client.simple_query(sql)).await
        });
        match result {
            Ok(result) => result,
            Err(_elapsed) => self.fail(&format!(
                "`{sql}` did not finish within {:?}",
                STATEMENT_TIMEOUT
            )),
        }
    }

    /// Runs a query and returns its rows, failing the test on an error.
    fn query_rows(&self, sql: &str) -> Vec<Row> {
        match self.run(sql) {
            Ok(messages) => rows_of(&messages),
            Err(e) => self.fail(&format!("`{sql}` failed: {}", describe_error(&e))),
        }
    }

    /// Runs a statement that must succeed (DDL), recording it in the history.
    fn execute(&mut self, sql: &str) {
        let result = self.run(sql);
        match result {
            Ok(_) => self.record(format!("{sql}  -- ok")),
            Err(e) => {
                let error = describe_error(&e);
                self.record(format!("{sql}  -- error {error}"));
                self.fail(&format!("`{sql}` failed: {error}"));
            }
        }
    }

    fn record(&mut self, entry: String) {
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history
            .push_back(format!("[step {}] {entry}", self.step));
    }

    fn create_tables(&mut self) {
        for spec in TABLES {
            self.execute(&spec.create_sql());
        }
    }

    fn create_view(&mut self, view: &'static ViewSpec) {
        self.execute(&format!(
            "SET streaming_max_parallelism = {}",
            self.max_parallelism
        ));
        self.execute(&format!(
            "CREATE MATERIALIZED VIEW {} AS {}",
            view.name, view.query
        ));
        self.views.push(view);
    }

    /// Creates `index`, and checks that its first lookup reads it.
    fn create_index(&mut self, index: &'static IndexSpec) {
        self.execute(index.create);
        self.indexes.push(index);
        let explain = self.query_rows(&format!("EXPLAIN {}", index.lookups[0].0));
        let shown = format!("IndexScanExec: index={}", index.name);
        if !explain
            .iter()
            .flatten()
            .any(|cell| cell.as_deref().is_some_and(|c| c.contains(&shown)))
        {
            self.fail(&format!(
                "`{}` does not read index {}: {explain:?}",
                index.lookups[0].0, index.name
            ));
        }
    }

    /// Creates the indexes whose relations exist.
    fn create_indexes(&mut self) {
        for index in INDEXES {
            let ready = index
                .after_view
                .is_none_or(|v| self.views.iter().any(|x| x.name == v));
            if ready && !self.indexes.iter().any(|i| i.name == index.name) {
                self.create_index(index);
            }
        }
    }

    /// One random statement, then the full check.
    fn random_step(&mut self) {
        self.step += 1;
        if !self.views.is_empty() && self.rng.gen_bool(0.02) {
            // Another parallelism for a view: its shards, and so its state, stay.
            let view = self.views[self.rng.gen_range(0..self.views.len())].name;
            let n = self.rng.gen_range(1..=self.max_parallelism);
            self.execute(&format!(
                "ALTER MATERIALIZED VIEW {view} SET PARALLELISM = {n}"
            ));
        }
        let op = gen_op(&mut self.rng, &self.model);
        self.apply_op(&op);
        self.check_all();
        if self.step.is_multiple_of(500) {
            eprintln!(
                "{} seed={}: step {}/{}",
                self.test, self.seed, self.step, self.steps
            );
        }
    }

    /// Runs the statement and checks its outcome against the model's prediction.
    fn apply_op(&mut self, op: &Op) {
        let sql = op.sql();
        let mut next_model = self.model.clone();
        let expected = op.apply(&mut next_model);
        let result = self.run(&sql);
        let outcome = match &result {
            Ok(messages) => match affected_of(messages) {
                Some(n) => format!("ok, {n} rows"),
                None => "ok, no command tag".to_string(),
            },
            Err(e) => format!("error {}", describe_error(e)),
        };
        self.record(format!("{sql}  -- {outcome}"));
        match (expected, result) {
            (Ok(expected_rows), Ok(messages)) => {
                let reported = affected_of(&messages);
                if reported != Some(expected_rows) {
                    self.fail(&format!(
                        "`{sql}` reported {reported:?} rows affected; the model expects \
                         {expected_rows}"
                    ));
                }
                self.model = next_model;
            }
            (Ok(_), Err(e)) => self.fail(&format!(
                "`{sql}` failed unexpectedly: {}",
                describe_error(&e)
            )),
            (Err(code), Ok(_)) => self.fail(&format!(
                "`{sql}` succeeded, but must fail with SQLSTATE {code} (it inserts an id \
                 that exists already or repeats one)"
            )),
            (Err(code), Err(e)) => {
                if sqlstate(&e) != Some(code) {
                    self.fail(&format!(
                        "`{sql}` must fail with SQLSTATE {code}, but failed with {}",
                        describe_error(&e)
                    ));
                }
                // The model is unchanged; the check that follows shows that the failed
                // statement left the tables and views unchanged too.
            }
        }
    }

    /// Every table equals the model; every view equals its reference query.
    fn check_all(&self) {
        for (index, spec) in TABLES.iter().enumerate() {
            let sql = format!("SELECT * FROM {}", spec.name);
            let actual = self.query_rows(&sql);
            let expected: Vec<Row> = self.model.tables[index]
                .values()
                .map(|row| row.iter().map(Value::text).collect())
                .collect();
            self.assert_same_rows(
                &format!(
                    "table `{}` ({sql}) differs from the test's model of it",
                    spec.name
                ),
                ("table", actual),
                ("model", expected),
            );
        }
        for view in &self.views {
            let view_sql = format!("SELECT * FROM {}", view.name);
            let actual = self.query_rows(&view_sql);
            let reference = self.query_rows(view.reference());
            self.assert_same_rows(
                &format!(
                    "view `{}` differs from its query run directly\n  \
                     view:       {view_sql}\n  defined as: {}\n  reference:  {}",
                    view.name,
                    view.query,
                    view.reference()
                ),
                ("view", actual),
                ("reference", reference),
            );
        }
        for index in &self.indexes {
            for (through, around) in index.lookups {
                self.assert_same_rows(
                    &format!(
                        "a lookup through index `{}` differs from the same lookup without it\n  \
                         through: {through}\n  around:  {around}",
                        index.name
                    ),
                    ("index", self.query_rows(through)),
                    ("relation", self.query_rows(around)),
                );
            }
        }
        // The count of operator state entries every commit keeps equals a scan of it.
        let counts = self.query_rows(
            "SELECT v.view_name, s.state_rows, v.state_rows FROM freshet_catalog.view_state v \
               JOIN freshet_catalog.view_state_scan s ON v.view_name = s.view_name \
              WHERE coalesce(v.state_rows, 0) <> s.state_rows",
        );
        if !counts.is_empty() {
            self.fail(&format!(
                "a view's state entry count differs from its state (view, scanned, counted): {counts:?}"
            ));
        }
    }

    /// Compares two row sets as multisets; on a difference, fails with the rows found on
    /// one side only.
    fn assert_same_rows(&self, subject: &str, left: (&str, Vec<Row>), right: (&str, Vec<Row>)) {
        let (left_name, mut left_rows) = left;
        let (right_name, mut right_rows) = right;
        left_rows.sort();
        right_rows.sort();
        if left_rows == right_rows {
            return;
        }
        let mut counts: BTreeMap<&Row, i64> = BTreeMap::new();
        for row in &left_rows {
            *counts.entry(row).or_insert(0) += 1;
        }
        for row in &right_rows {
            *counts.entry(row).or_insert(0) -= 1;
        }
        let mut only_left = Vec::new();
        let mut only_right = Vec::new();
        for (row, n) in &counts {
            if *n > 0 {
                only_left.push((*row, *n));
            } else if *n < 0 {
                only_right.push((*row, -*n));
            }
        }
        let mut what = String::new();
        let _ = writeln!(what, "{subject}");
        let _ = writeln!(
            what,
            "{left_name} has {} rows, {right_name} has {} rows",
            left_rows.len(),
            right_rows.len()
        );
        let _ = writeln!(what, "rows only in the {left_name} ({}):", only_left.len());
        what.push_str(&format_rows(&only_left));
        let _ = writeln!(
            what,
            "rows only in the {right_name} ({}):",
            only_right.len()
        );
        what.push_str(&format_rows(&only_right));
        self.fail(&what);
    }

    /// Restarts the server (gracefully, or with `kill -9`), reconnects and checks that
    /// tables and views survived.
    fn restart(&mut self, kill9: bool) {
        let event = if kill9 {
            "-- kill -9, then start again"
        } else {
            "-- graceful restart (SIGTERM, then start again)"
        };
        self.record(event.to_string());
        eprintln!(
            "{} seed={}: step {}: {event}",
            self.test, self.seed, self.step
        );
        // Close the session first so that a graceful shutdown need not wait for it.
        self.client = None;
        let server = &mut self.server;
        let restarted = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if kill9 {
                server.kill9_restart();
            } else {
                server.restart();
            }
        }));
        if let Err(payload) = restarted {
            self.fail(&format!("restart failed: {}", panic_text(&*payload)));
        }
        self.connect();
        self.check_all();
    }

    /// Fails the test with everything needed to understand and replay the failure.
    fn fail(&self, what: &str) -> ! {
        let mut msg = String::new();
        let _ = writeln!(
            msg,
            "{FAIL_PREFIX} in `{}`: seed={} at step {} of {}",
            self.test, self.seed, self.step, self.steps
        );
        let _ = writeln!(
            msg,
            "replay: {}",
            replay_command(self.test, self.seed, self.steps)
        );
        let _ = writeln!(msg, "{}", what.trim_end());
        let _ = writeln!(
            msg,
            "--- last {} statements, oldest first ---",
            self.history.len()
        );
        for entry in &self.history {
            let _ = writeln!(msg, "  {entry}");
        }
        let _ = writeln!(msg, "--- server log, last {LOG_TAIL_LINES} lines ---");
        let _ = writeln!(msg, "{}", tail(&self.server.log(), LOG_TAIL_LINES));
        panic!("{msg}");
    }
}

/// The data rows of a simple-query response, each value as text (`None` for NULL).
fn rows_of(messages: &[SimpleQueryMessage]) -> Vec<Row> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The row count of the last command tag (`INSERT 0 3`, `UPDATE 2`, `DELETE 0`).
fn affected_of(messages: &[SimpleQueryMessage]) -> Option<u64> {
    messages.iter().rev().find_map(|message| match message {
        SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    })
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|db| db.code().code())
}

fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

fn format_row(row: &Row) -> String {
    let cells: Vec<String> = row
        .iter()
        .map(|cell| match cell {
            None => "NULL".to_string(),
            Some(text) => format!("{text:?}"),
        })
        .collect();
    format!("({})", cells.join(", "))
}

fn format_rows(rows: &[(&Row, i64)]) -> String {
    let mut out = String::new();
    for (row, n) in rows.iter().take(MAX_ROWS_SHOWN) {
        let times = if *n > 1 {
            format!("  x{n}")
        } else {
            String::new()
        };
        let _ = writeln!(out, "  {}{times}", format_row(row));
    }
    if rows.len() > MAX_ROWS_SHOWN {
        let _ = writeln!(out, "  ... and {} more", rows.len() - MAX_ROWS_SHOWN);
    }
    out
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "(panic payload is not a string)".to_string()
    }
}

// ---------------------------------------------------------------------------------------
// Seeds and runs
// ---------------------------------------------------------------------------------------

fn replay_command(test: &str, seed: u64, steps: usize) -> String {
    format!(
        "{SEED_VAR}={seed} {STEPS_VAR}={steps} \
         cargo test -p freshet-sql-tests --test differential -- {test}"
    )
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let raw = std::env::var(name).ok()?;
    Some(
        raw.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={raw:?} is not a valid number")),
    )
}

/// The steps per run: `FRESHET_DIFF_STEPS`, or the test's default.
fn steps_from_env(default: usize) -> usize {
    env_number(STEPS_VAR).unwrap_or(default)
}

/// The seeds to run: the one in `FRESHET_DIFF_SEED`, or `count` seeds from the clock.
fn seeds_from_env(count: usize, salt: u64) -> Vec<u64> {
    if let Some(seed) = env_number::<u64>(SEED_VAR) {
        return vec![seed];
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (0..count as u64)
        .map(|i| splitmix64(nanos ^ salt.wrapping_add(i)))
        .collect()
}

/// Scrambles clock readings into well-spread seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs one seed, printing it first; a panic that does not come from
/// [`Harness::fail`] (which names the seed itself) is re-raised with the seed added.
fn run_with_seed(test: &'static str, seed: u64, steps: usize, run: fn(&'static str, u64, usize)) {
    eprintln!(
        "{test}: seed={seed} steps={steps} (replay: {})",
        replay_command(test, seed, steps)
    );
    let started = Instant::now();
    if let Err(payload) = std::panic::catch_unwind(|| run(test, seed, steps)) {
        let text = panic_text(&*payload);
        if text.starts_with(FAIL_PREFIX) {
            std::panic::resume_unwind(payload);
        }
        panic!(
            "{test} failed with seed={seed}: {text}\nreplay: {}",
            replay_command(test, seed, steps)
        );
    }
    eprintln!(
        "{test}: seed={seed}: {steps} steps passed in {:.1?}",
        started.elapsed()
    );
}

/// Views on empty tables, then random statements with a graceful restart every
/// [`RESTART_EVERY`] steps and one `kill -9` somewhere in the middle third.
fn random_dml_run(test: &'static str, seed: u64, steps: usize) {
    let mut h = Harness::start(test, seed, steps);
    h.create_tables();
    for view in VIEWS {
        h.create_view(view);
    }
    h.create_indexes();
    h.check_all();
    let kill9_at = h.rng.gen_range(steps / 3..=2 * steps / 3).max(1);
    while h.step < steps {
        h.random_step();
        if h.step == kill9_at {
            h.restart(true);
        } else if h.step.is_multiple_of(RESTART_EVERY) {
            h.restart(false);
        }
    }
}

/// Random data first, then the views one by one in between further statements (each
/// backfills what is there), a graceful restart once all exist, random statements with
/// one `kill -9` half-way through the rest.
fn backfill_run(test: &'static str, seed: u64, steps: usize) {
    let mut h = Harness::start(test, seed, steps);
    h.create_tables();
    h.check_all();
    while h.step < steps / 3 {
        h.random_step();
    }
    for view in VIEWS {
        h.create_view(view);
        h.create_indexes();
        h.check_all();
        let gap = h.rng.gen_range(0..=4);
        for _ in 0..gap {
            h.random_step();
        }
    }
    h.restart(false);
    let kill9_at = h.step + steps.saturating_sub(h.step).div_ceil(2);
    while h.step < steps {
        h.random_step();
        if h.step == kill9_at {
            h.restart(true);
        }
    }
}

/// Random DML on tables that carry views from the start: every view equals its query
/// after every statement and across restarts. Two random seeds by default.
#[test]
fn random_dml_keeps_views_equal_to_queries() {
    const TEST: &str = "random_dml_keeps_views_equal_to_queries";
    let steps = steps_from_env(DEFAULT_STEPS);
    let seeds = seeds_from_env(2, 0x0D1F_F000);
    eprintln!("{TEST}: seeds {seeds:?}, {steps} steps each");
    for seed in seeds {
        run_with_seed(TEST, seed, steps, random_dml_run);
    }
}

/// Views created over tables that already hold data must backfill it, then follow
/// further changes like views created on empty tables.
#[test]
fn views_backfill_existing_rows_then_follow_changes() {
    const TEST: &str = "views_backfill_existing_rows_then_follow_changes";
    let steps = steps_from_env(DEFAULT_BACKFILL_STEPS);
    let seeds = seeds_from_env(1, 0xBAC4_F111);
    eprintln!("{TEST}: seeds {seeds:?}, {steps} steps each");
    for seed in seeds {
        run_with_seed(TEST, seed, steps, backfill_run);
    }
}
