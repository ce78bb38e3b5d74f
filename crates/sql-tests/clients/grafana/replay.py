"""Replays the SQL Grafana's PostgreSQL data source sends (queries.sql) against FRESHET_DSN.

    FRESHET_DSN="host=127.0.0.1 port=5432 user=freshet dbname=freshet sslmode=disable" python3 replay.py
    python3 replay.py --print      # every statement as Grafana would send it; needs no server

Creates grafana_metrics, then sends each query of queries.sql the way Grafana does:
- protocol "simple": one Query message (pgx PgConn.Exec, which Grafana's backend uses for panel
  queries and for the frontend's picker and version queries); only results whose command tag is
  SELECT count, as in Grafana. psycopg sends a statement without parameters this way, provided it
  never prepares it (prepare_threshold=None).
- protocol "extended": pgx pool.Query in its default cache-statement mode (the schema API,
  schema.go): Parse of a named statement stmtcache_<sha256>, Describe Statement, then Bind with
  text parameters and binary results, Execute, Sync.
Macros are expanded first, as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088 and the
global substitutions of pgx/sql_engine.go @ 6589b0b do, for the time range FROM..TO below and a
1m interval. Each query's result is checked against what the inserted rows make PostgreSQL
return; every failure is printed with the statement sent; the exit status is 1 if any failed.
"""

import hashlib
import math
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

QUERIES = Path(__file__).with_name("queries.sql")
UTC = timezone.utc
FROM = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
TO = datetime(2024, 5, 1, 10, 10, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=1)  # the panel's $__interval

NUMBER_OIDS = {20, 21, 23, 700, 701, 1700}  # Grafana turns these into numbers; a numeric "time" is epoch seconds
STRING_OIDS = {19, 25, 1042, 1043}  # string columns: metric / labels


# ---- macros, as Grafana's backend expands them ---------------------------------------------

def rfc3339nano(t):
    """Go's time.RFC3339Nano of a UTC time: trailing zeros of the fraction dropped."""
    s = t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += ("." + f"{t.microsecond:06d}").rstrip("0")
    return s + "Z"


def go_float(v):
    """fmt %v of a float64 (interval.Seconds())."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e21 else repr(float(v))


def parse_interval(s):
    """gtime.ParseInterval for the forms panels use: 30s, 1m, 5m, 1h, 1d, 1w, 1y."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|M|y)", s)
    if not m:
        raise ValueError(f"error parsing interval {s}")
    n, unit = int(m.group(1)), m.group(2)
    secs = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "M": 30 * 86400, "y": 365 * 86400}[unit]
    return timedelta(seconds=n * secs)


def format_interval(d):
    """gtime.FormatInterval."""
    for unit, size in (("y", timedelta(days=365)), ("d", timedelta(days=1)), ("h", timedelta(hours=1)),
                       ("m", timedelta(minutes=1)), ("s", timedelta(seconds=1)), ("ms", timedelta(milliseconds=1))):
        if d >= size:
            return f"{d // size}{unit}"
    return "1ms"


def expand(sql):
    # Global substitutions (pgx/sql_engine.go Interpolate), in this order.
    sql = sql.replace("$__interval_ms", str(int(INTERVAL / timedelta(milliseconds=1))))
    sql = sql.replace("$__interval", format_interval(INTERVAL))
    sql = sql.replace("$__unixEpochFrom()", str(int(FROM.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(TO.timestamp())))
    original = sql

    def evaluate(name, args):
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339nano(FROM)}' AND '{rfc3339nano(TO)}'"
        if name == "__timeFrom":
            return f"'{rfc3339nano(FROM)}'"
        if name == "__timeTo":
            return f"'{rfc3339nano(TO)}'"
        if name == "__timeGroup":  # a third argument (fill) only configures Grafana-side filling
            secs = go_float(parse_interval(args[1].strip("'")).total_seconds())
            return f"floor(extract(epoch from {args[0]})/{secs})*{secs}"
        if name == "__timeGroupAlias":
            return evaluate("__timeGroup", args) + ' AS "time"'
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(FROM.timestamp())} AND {args[0]} <= {int(TO.timestamp())}"
        if name == "__unixEpochNanoFilter":
            return f"{args[0]} >= {int(FROM.timestamp()) * 10**9} AND {args[0]} <= {int(TO.timestamp()) * 10**9}"
        if name == "__unixEpochNanoFrom":
            return str(int(FROM.timestamp()) * 10**9)
        if name == "__unixEpochNanoTo":
            return str(int(TO.timestamp()) * 10**9)
        if name == "__unixEpochGroup":
            secs = go_float(parse_interval(args[1].strip("'")).total_seconds())
            return f"floor(({args[0]})/{secs})*{secs}"
        if name == "__unixEpochGroupAlias":
            return evaluate("__unixEpochGroup", args) + ' AS "time"'
        raise ValueError(f"unknown macro {name!r}")

    def replace(m):
        name = m.group(1)
        # Before Grafana 5.3 $__timeGroup added the alias; a ',' right after the call means that use.
        if name == "__timeGroup":
            i = original.find(m.group(0))
            if i >= 0 and original[i + len(m.group(0)):i + len(m.group(0)) + 1] == ",":
                name = "__timeGroupAlias"
        return evaluate(name, [a.strip(" ") for a in m.group(2).split(",")])

    return re.sub(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)", replace, sql)


def load_queries():
    queries, cur = [], None
    for line in QUERIES.read_text().splitlines():
        m = re.match(r"-- (name|source|protocol|params|note): ?(.*)$", line)
        if m and m.group(1) == "name":
            cur = {"name": m.group(2).strip(), "params": [], "lines": []}
            queries.append(cur)
        elif cur is None:
            continue
        elif m and not cur["lines"]:
            cur[m.group(1)] = [p.strip() for p in m.group(2).split(",")] if m.group(1) == "params" else m.group(2)
        else:
            cur["lines"].append(line)
    for q in queries:
        q["sql"] = expand("\n".join(q.pop("lines")).strip("\n"))
    return queries


# ---- the data ------------------------------------------------------------------------------

def make_rows():
    """(id, ts, host, value, epoch): every 30 s from 09:59:30 to 10:10:30 for hosts a and b, and
    one NULL value; the ones outside FROM..TO must be filtered out."""
    rows, i = [], 1
    for host, base in (("a", 0.0), ("b", 100.0)):
        for k in range(-1, 22):
            t = FROM + timedelta(seconds=30 * k)
            rows.append((i, t, host, base + k * 0.5, int(t.timestamp())))
            i += 1
    t = FROM + timedelta(minutes=5, seconds=15)
    rows.append((i, t, "a", None, int(t.timestamp())))
    return rows


ROWS = make_rows()
IN_RANGE = [r for r in ROWS if FROM <= r[1] <= TO]


def setup(psycopg, dsn):
    values = ", ".join(
        f"({i}, '{t:%Y-%m-%d %H:%M:%S}', '{t:%Y-%m-%d %H:%M:%S}+00', '{h}', {'NULL' if v is None else repr(v)}, {e})"
        for i, t, h, v, e in ROWS)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS grafana_metrics")
        c.execute("CREATE TABLE grafana_metrics (id INT PRIMARY KEY, ts TIMESTAMP NOT NULL, tstz TIMESTAMPTZ,"
                  " host VARCHAR NOT NULL, value DOUBLE PRECISION, epoch BIGINT)")
        c.execute(f"INSERT INTO grafana_metrics (id, ts, tstz, host, value, epoch) VALUES {values}")


def bucket(t, size):
    e = int(t.timestamp())
    return e - e % int(size.total_seconds())


def grouped(size, agg, by_host=False, nulls=False):
    """(bucket[, host], agg(values)) of the rows in range; NULL values skipped unless nulls."""
    groups = {}
    for _, t, h, v, _ in IN_RANGE:
        groups.setdefault((bucket(t, size), h) if by_host else (bucket(t, size),), []).append(v)
    return sorted(k + (agg([v for v in vs if nulls or v is not None]),) for k, vs in groups.items())


def avg(vs):
    return sum(vs) / len(vs)


def pg_float(v):
    """float8 as PostgreSQL prints it (shortest form; integral values without '.0')."""
    return str(int(v)) if float(v).is_integer() else repr(v)


# ---- running a query -----------------------------------------------------------------------

class Result:
    def __init__(self, names, oids, rows):
        self.names, self.oids, self.rows = names, oids, rows


def run_simple(psycopg, dsn, sql):
    """One Query message; the SELECT results (Grafana drops the others). A comment-only query
    returns None (EmptyQueryResponse)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
        if sql.lstrip().startswith("--") and "\n" not in sql:
            res = c.pgconn.exec_(sql.encode())
            status = psycopg.pq.ExecStatus(res.status)
            if status != psycopg.pq.ExecStatus.EMPTY_QUERY:
                raise AssertionError(f"expected EmptyQueryResponse, got {status.name}: {res.error_message.decode()}")
            return None
        cur = c.cursor()
        cur.execute(sql)
        out = []
        while True:
            if (cur.statusmessage or "").startswith("SELECT"):
                out.append(Result([d.name for d in cur.description], [d.type_code for d in cur.description], cur.fetchall()))
            if not cur.nextset():
                break
        if len(out) != 1:
            raise AssertionError(f"expected one SELECT result, got {len(out)}")
        return out[0]


def run_extended(psycopg, dsn, sql, params):
    """pgx's cache-statement mode: named Parse, Describe Statement, Bind (text params, binary
    results), Execute; the rows decoded by the described types."""
    pq = psycopg.pq
    with psycopg.connect(dsn, autocommit=True) as c:
        pg = c.pgconn
        name = ("stmtcache_" + hashlib.sha256(sql.encode()).hexdigest()[:48]).encode()

        def ok(res, want):
            if res.status != want:
                state = res.error_field(pq.DiagnosticField.SQLSTATE)
                raise AssertionError(f"[{state.decode() if state else pq.ExecStatus(res.status).name}] "
                                     f"{res.error_message.decode().strip()}")
            return res

        ok(pg.prepare(name, sql.encode()), pq.ExecStatus.COMMAND_OK)
        d = ok(pg.describe_prepared(name), pq.ExecStatus.COMMAND_OK)
        if d.nparams != len(params):
            raise AssertionError(f"ParameterDescription has {d.nparams} parameters, the query {len(params)}")
        described = [(d.fname(i).decode(), d.ftype(i)) for i in range(d.nfields)]
        r = ok(pg.exec_prepared(name, [p.encode() for p in params], param_formats=[0] * len(params),
                                result_format=pq.Format.BINARY), pq.ExecStatus.TUPLES_OK)
        got = [(r.fname(i).decode(), r.ftype(i)) for i in range(r.nfields)]
        if got != described:
            raise AssertionError(f"Describe Statement said {described}, the rows came as {got}")
        tx = psycopg.adapt.Transformer(c)
        tx.set_pgresult(r, format=pq.Format.BINARY)
        rows = tx.load_rows(0, r.ntuples, tuple)
        return Result([n for n, _ in got], [o for _, o in got], rows)


# ---- what each query must return -----------------------------------------------------------

def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def diff(want, got):
    """The first difference of two lists, short."""
    if not isinstance(want, list) or not isinstance(got, list):
        return f"expected {want!r}, got {got!r}"
    for i, (w, g) in enumerate(zip(want, got)):
        if w != g:
            return f"row {i}: expected {w!r}, got {g!r} ({len(want)} rows expected, {len(got)} returned)"
    return f"expected {len(want)} rows, got {len(got)}: first extra {(want[len(got):] or got[len(want):])[0]!r}"


def same(want, got, what="rows"):
    if want != got:
        raise AssertionError(f"{what}: " + diff(want, got))


def close_rows(want, got):
    """Rows equal, floats to 1e-9."""
    ok = len(want) == len(got) and all(
        len(w) == len(g) and all(
            (isinstance(a, float) or isinstance(b, float)) and a is not None and b is not None
            and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9) or a == b
            for a, b in zip(w, g))
        for w, g in zip(want, got))
    if not ok:
        raise AssertionError("rows: " + diff(want, got))


def numeric_time(res, col=0):
    expect(res.names[col] == "time", f"the first column must be named time, got {res.names}")
    expect(res.oids[col] in NUMBER_OIDS, f'"time" has type OID {res.oids[col]}, not a number Grafana reads as epoch seconds')


TABLE_COLUMNS = [("id", "integer"), ("ts", "timestamp without time zone"), ("tstz", "timestamp with time zone"),
                 ("host", "character varying"), ("value", "double precision"), ("epoch", "bigint")]


def check_version(r, conn_version):
    same(["version"], r.names, "columns")
    expect(len(r.rows) == 1, f"one row, got {r.rows}")
    v = int(r.rows[0][0])
    expect(v >= 906, f"version {v} < 906")
    same(conn_version // 100, v, "server_version_num/100")


def ts_rows(r, size, agg, by_host=False):
    numeric_time(r)
    close_rows(grouped(size, agg, by_host), [(float(row[0]),) + tuple(row[1:]) for row in r.rows])


def naive(t):
    return t.astimezone(UTC).replace(tzinfo=None)


CHECKS = {
    "version": None,  # needs the connection's version: see main()
    "timescaledb_version": lambda r: (same(["extversion"], r.names, "columns"), same([], r.rows)),
    "show_tables": lambda r: (same(["table"], r.names, "columns"),
                              expect(("grafana_metrics",) in r.rows, f"grafana_metrics not listed: {r.rows}"),
                              expect(not any(t.startswith(("pg_catalog.", "information_schema.")) for (t,) in r.rows),
                                     f"system tables listed: {r.rows}")),
    "table_columns": lambda r: (same(["column", "type"], r.names, "columns"), same(sorted(TABLE_COLUMNS), sorted(r.rows))),
    "table_columns_qualified": lambda r: (same(["column", "type"], r.names, "columns"), same(sorted(TABLE_COLUMNS), sorted(r.rows))),
    "schemas": lambda r: (expect(("public",) in r.rows, f"public not listed: {r.rows}"),
                          expect(not any(s.startswith("pg_") or s == "information_schema" for (s,) in r.rows), f"{r.rows}")),
    "tables": lambda r: expect(("grafana_metrics",) in r.rows, f"grafana_metrics not listed: {r.rows}"),
    "columns": lambda r: same([("id", "integer", "int4", 32, 0), ("ts", "timestamp without time zone", "timestamp", None, None),
                               ("tstz", "timestamp with time zone", "timestamptz", None, None),
                               ("host", "character varying", "varchar", None, None),
                               ("value", "double precision", "float8", 53, None), ("epoch", "bigint", "int8", 64, 0)],
                              [tuple(x) for x in r.rows]),
    "column_values": lambda r: (same(["col_name", "val"], r.names, "columns"),
                                same(sorted([("host", "a"), ("host", "b")] + [("id", str(i)) for i in range(1, len(ROWS) + 1)]),
                                     sorted(r.rows))),
    "ts_avg_1m": lambda r: (same(["time", "value"], r.names, "columns"), ts_rows(r, timedelta(minutes=1), avg)),
    "ts_by_host": lambda r: (same(["time", "metric", "value"], r.names, "columns"),
                             expect(r.oids[1] in STRING_OIDS, f"metric has type OID {r.oids[1]}, not a string"),
                             ts_rows(r, INTERVAL, avg, by_host=True)),
    "ts_raw": lambda r: (same(["time", "metric", "value"], r.names, "columns"),
                         same(1114, r.oids[0], "type of time (timestamp)"),
                         same(sorted((naive(t), h, v) for _, t, h, v, _ in IN_RANGE), r.rows)),
    "ts_timestamptz_5m": lambda r: (same(["time", "max"], r.names, "columns"), ts_rows(r, timedelta(minutes=5), max)),
    "ts_epoch": lambda r: (numeric_time(r), close_rows(
        [(float(e), v) for _, _, h, v, e in sorted(IN_RANGE, key=lambda x: x[1]) if h == "a"],
        [(float(t), v) for t, v in r.rows])),
    "ts_unix_epoch": lambda r: (same(["time", "n"], r.names, "columns"), numeric_time(r),
                                close_rows(grouped(timedelta(minutes=1), len, nulls=True), [(float(t), n) for t, n in r.rows])),
    "docs_metric_column": lambda r: (same(["time", "min", "metric"], r.names, "columns"), numeric_time(r),
                                     close_rows([k + ("min",) for k in grouped(timedelta(minutes=5), min)],
                                                [(float(t), m, s) for t, m, s in r.rows])),
    "docs_fill_labels": lambda r: (same(["time", "value", "host"], r.names, "columns"), numeric_time(r),
                                   close_rows([(t, s, h) for t, h, s in grouped(timedelta(minutes=5), sum, by_host=True)],
                                              sorted((float(t), s, h) for t, s, h in r.rows))),
    "docs_annotations_epoch": lambda r: (same(["time", "text", "tags"], r.names, "columns"),
                                         same(sorted((e, h, h if v is None else f"{h}, {pg_float(v)}") for _, _, h, v, e in IN_RANGE),
                                              sorted(r.rows))),
    "multi_statement": lambda r: (same(["time", "value"], r.names, "columns"),
                                  same(sorted((naive(t), v) for _, t, h, v, _ in IN_RANGE if h == "b"), r.rows)),
    "variable_values": lambda r: same([("a",), ("b",)], r.rows),
    "legacy_find_metric_table": lambda r: (same(["table_name", "time_column", "value_column"], r.names, "columns"),
                                           expect(len(r.rows) == 1 and None not in r.rows[0], f"{r.rows}"),
                                           expect(r.rows[0][0] != "grafana_metrics" or r.rows[0][1:] == ("ts", "value"), f"{r.rows}")),
    "legacy_tables": lambda r: expect(("grafana_metrics",) in r.rows, f"grafana_metrics not listed: {r.rows}"),
    "legacy_time_columns": lambda r: same([("epoch",), ("id",), ("ts",), ("tstz",), ("value",)], r.rows),
    "legacy_metric_columns_qualified": lambda r: same([("host",)], r.rows),
    "legacy_values": lambda r: same([("'a'",), ("'b'",)], r.rows),
    "legacy_datatype": lambda r: same([("float8",)], r.rows),
    "legacy_aggregates": lambda r: expect({"avg", "max", "min", "sum"} <= {p for (p,) in r.rows}, f"aggregates: {r.rows}"),
}


def main():
    queries = load_queries()
    if "--print" in sys.argv:
        for q in queries:
            print(f"-- {q['name']} ({q['protocol']}{', params ' + repr(q['params']) if q['params'] else ''})\n{q['sql']};\n")
        return
    import psycopg
    import psycopg.adapt  # noqa: F401  (Transformer)

    dsn = os.environ["FRESHET_DSN"]
    setup(psycopg, dsn)
    with psycopg.connect(dsn) as c:
        conn_version = c.info.server_version
    failures = []
    for q in queries:
        name = q["name"]
        try:
            if q["protocol"] == "extended":
                r = run_extended(psycopg, dsn, q["sql"], q["params"])
            else:
                r = run_simple(psycopg, dsn, q["sql"])
            if name == "version":
                check_version(r, conn_version)
            elif name != "ping":
                CHECKS[name](r)
            print(f"ok   {name}")
        except Exception as e:  # noqa: BLE001 - report every query
            msg = f"{type(e).__name__}: {e}".strip()
            failures.append(name)
            print(f"FAIL {name}: {msg}\n     sent ({q['protocol']}): " + q["sql"].replace("\n", "\n     "))
    if failures:
        print(f"\ngrafana: {len(failures)} of {len(queries)} queries failed: {', '.join(failures)}")
        sys.exit(1)
    print("grafana: ok")


if __name__ == "__main__":
    main()
