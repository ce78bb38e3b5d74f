#!/usr/bin/env python3
"""Latency of `SELECT * FROM v LIMIT 10` and of a point lookup on a large materialized view.

Starts its own Freshet server (free loopback port, temporary data directory, stopped with
SIGTERM at the end), creates

    CREATE TABLE t (id BIGINT PRIMARY KEY, user_id BIGINT, title VARCHAR,
                    secs DOUBLE PRECISION, at TIMESTAMP)

fills it with M rows by server-side `INSERT INTO t SELECT … FROM generate_series(…)`
statements of --insert-rows rows each, then builds

    CREATE MATERIALIZED VIEW v AS SELECT id, user_id, title, secs, at FROM t WHERE secs >= 0

(M rows: every row passes) and checks count(*) of v. Then, over one connection (psycopg 3,
extended protocol), it runs each query --runs times and prints p50/p95/p99/max in ms:

  limit   SELECT * FROM v LIMIT 10
  point   SELECT * FROM v WHERE id = $1   (a random id each time; the view's key)

and the server's RSS before and after. A query over one stored relation reads it from
one RocksDB snapshot on its own thread and stops at the limit, so neither query should
grow with M.

Run (psycopg 3 lives in the clients' virtualenv; scripts/clients.sh installs it):

    $(scripts/clients.sh venv) bench/pg_tools/limit_latency.py \\
        --binary target/release/freshet --rows 10000000
"""

import argparse
import os
import random
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402

QUERIES = {
    "limit": ("SELECT * FROM v LIMIT 10", None),
    "point": ("SELECT * FROM v WHERE id = %s", "id"),
}


def fill(conn, n, per_statement):
    conn.execute(c.TABLE_DDL.format(name="t"))
    t0 = time.perf_counter()
    for lo in range(1, n + 1, per_statement):
        hi = min(lo + per_statement, n + 1) - 1
        conn.execute(
            "INSERT INTO t SELECT value AS id, value % 100000 AS user_id, "
            "'title ' || (value % 1000) AS title, (value % 7200)::double precision AS secs, "
            "CAST(to_timestamp(1704067200 + value) AS TIMESTAMP) AS at "
            f"FROM generate_series({lo}, {hi}) AS g(value)"
        )
    return time.perf_counter() - t0


def percentile(sorted_ms, q):
    i = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[i]


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_server_args(ap)
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows in the view")
    ap.add_argument("--runs", type=int, default=500, help="runs of each query")
    ap.add_argument(
        "--insert-rows", type=int, default=500_000, help="rows per INSERT … SELECT"
    )
    args = ap.parse_args()

    import psycopg

    print(c.machine_line())
    print(c.binary_line(args.binary))
    print(f"psycopg {psycopg.__version__}, rows {args.rows:,}, runs {args.runs}")
    with c.Server(args.binary, args.server_arg, args.keep_data) as srv:
        conn = srv.connect(autocommit=True)
        secs = fill(conn, args.rows, args.insert_rows)
        print(f"table: {args.rows:,} rows in {secs:.1f} s", flush=True)
        t0 = time.perf_counter()
        conn.execute(
            "CREATE MATERIALIZED VIEW v AS SELECT id, user_id, title, secs, at FROM t "
            "WHERE secs >= 0"
        )
        print(f"view: built in {time.perf_counter() - t0:.1f} s", flush=True)
        n = conn.execute("SELECT count(*) FROM v").fetchone()[0]
        if n != args.rows:
            sys.exit(f"v has {n} rows, expected {args.rows}")
        print(f"server RSS before the queries {c.fmt_kb(srv.rss_kb())}")
        rng = random.Random(7)
        print("| query | runs | p50 ms | p95 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|---|")
        for name, (sql, param) in QUERIES.items():
            times = []
            for _ in range(args.runs):
                params = (rng.randint(1, args.rows),) if param else None
                t = time.perf_counter()
                rows = conn.execute(sql, params).fetchall()
                times.append((time.perf_counter() - t) * 1000)
                want = 10 if param is None else 1
                if len(rows) != want:
                    sys.exit(f"{name}: {len(rows)} rows, expected {want}")
            times.sort()
            print(
                f"| `{sql}` | {args.runs} | {percentile(times, 0.5):.2f} | "
                f"{percentile(times, 0.95):.2f} | {percentile(times, 0.99):.2f} | "
                f"{times[-1]:.2f} |",
                flush=True,
            )
        print(f"server RSS after the queries {c.fmt_kb(srv.rss_kb())}")
        conn.close()


if __name__ == "__main__":
    c.ensure_psycopg()
    main()
