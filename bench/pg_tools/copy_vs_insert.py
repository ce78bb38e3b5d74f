#!/usr/bin/env python3
"""Bulk-load throughput through the Postgres wire protocol: COPY FROM STDIN vs multi-row INSERT.

Starts its own Freshet server (free loopback port, temporary data directory, stopped with
SIGTERM at the end), creates

    CREATE TABLE bulk_<method> (id BIGINT PRIMARY KEY, user_id BIGINT, title VARCHAR,
                                secs DOUBLE PRECISION, at TIMESTAMP)

for each method, and loads the same N rows into each (a fresh table per method):

  copy       one `COPY bulk_copy FROM STDIN` (text format) through psycopg 3's
             cursor.copy(), the data written in chunks of --copy-chunk-rows rows
             (--copy-rows-per-statement splits it into several COPY statements)
  insert     `INSERT INTO bulk_insert VALUES (…),(…),…` with --insert-rows rows (1,000)
             per statement, autocommit (each statement its own transaction)
  insert_tx  the same INSERTs inside one transaction: BEGIN … COMMIT

The data (COPY text, INSERT statements) is generated before the clock starts; each time
runs from the first byte sent to the completion of the last statement (COMMIT for
insert_tx). Afterwards `SELECT count(*), sum(id), sum(secs)` must match the rows sent.
Prints the machine, the binary (debug or release) and a table: method, rows, seconds, rows/s.

Run (psycopg 3 lives in the clients' virtualenv; scripts/clients.sh installs it):

    $(scripts/clients.sh venv) bench/pg_tools/copy_vs_insert.py \\
        --binary target/release/freshet --rows 1000000

The binary defaults to $FRESHET_BIN, else $CARGO_TARGET_DIR/release/freshet (or
target/release/freshet), falling back to .../debug/freshet.
"""

import argparse
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402

METHODS = ("copy", "insert", "insert_tx")


def run_copy(conn, table, n, chunk_rows, per_statement):
    per_statement = per_statement or n
    # Generate everything first so the clock measures only the load.
    statements = []
    for lo in range(1, n + 1, per_statement):
        hi = min(lo + per_statement, n + 1)
        statements.append(
            [
                c.copy_text(a, min(a + chunk_rows, hi)).encode()
                for a in range(lo, hi, chunk_rows)
            ]
        )
    cur = conn.cursor()
    t0 = time.perf_counter()
    for chunks in statements:
        with cur.copy(f"COPY {table} FROM STDIN") as cp:
            for chunk in chunks:
                cp.write(chunk)
    return time.perf_counter() - t0, len(statements)


def run_insert(conn, table, n, per_statement, one_transaction):
    stmts = [
        f"INSERT INTO {table} VALUES "
        + c.values_sql(lo, min(lo + per_statement, n + 1))
        for lo in range(1, n + 1, per_statement)
    ]
    cur = conn.cursor()
    lat = []
    t0 = time.perf_counter()
    if one_transaction:
        cur.execute("BEGIN")
    for s in stmts:
        t = time.perf_counter()
        cur.execute(s)
        lat.append(time.perf_counter() - t)
    commit = 0.0
    if one_transaction:
        t = time.perf_counter()
        cur.execute("COMMIT")
        commit = time.perf_counter() - t
    return time.perf_counter() - t0, len(stmts), lat, commit


def latency_note(lat):
    """Mean INSERT latency over the first and the last tenth of the statements: shows
    whether a statement gets slower as the table (or the transaction) grows."""
    k = max(1, len(lat) // 10)
    first = sum(lat[:k]) / k * 1000
    last = sum(lat[-k:]) / k * 1000
    return f"INSERT latency first {k}: {first:.0f} ms avg, last {k}: {last:.0f} ms avg"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_server_args(ap)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows per method")
    ap.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, of {', '.join(METHODS)} (default all)",
    )
    ap.add_argument("--insert-rows", type=int, default=1000, help="rows per INSERT")
    ap.add_argument(
        "--copy-chunk-rows", type=int, default=10_000, help="rows per COPY write()"
    )
    ap.add_argument(
        "--copy-rows-per-statement",
        type=int,
        default=0,
        help="split the COPY into statements of this many rows (0: one COPY)",
    )
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}")

    import psycopg

    print(c.machine_line())
    print(c.binary_line(args.binary))
    print(f"psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}), rows {args.rows:,}")
    results = []
    failed = False
    with c.Server(args.binary, args.server_arg, args.keep_data) as srv:
        print(f"server pid {srv.pid} on port {srv.port}, data dir {srv.data_dir}")
        for m in methods:
            table = f"bulk_{m}"
            conn = srv.connect(autocommit=True)
            conn.execute(c.TABLE_DDL.format(name=table))
            srv_cpu0, cli_cpu0 = srv.cpu_secs(), time.process_time()
            if m == "copy":
                secs, stmts = run_copy(
                    conn, table, args.rows, args.copy_chunk_rows, args.copy_rows_per_statement
                )
                note = f"{stmts} COPY statement(s), {args.copy_chunk_rows:,}-row writes"
            else:
                secs, stmts, lat, commit = run_insert(
                    conn, table, args.rows, args.insert_rows, m == "insert_tx"
                )
                note = f"{stmts} INSERTs of {args.insert_rows:,} rows" + (
                    ", one transaction" if m == "insert_tx" else ", autocommit"
                )
                print(
                    f"  {m}: {latency_note(lat)}"
                    + (f"; COMMIT {commit:.2f} s" if m == "insert_tx" else ""),
                    flush=True,
                )
            srv_cpu = srv.cpu_secs() - srv_cpu0
            cli_cpu = time.process_time() - cli_cpu0  # includes generating the data
            ok, desc = c.check_table(conn, table, args.rows)
            failed |= not ok
            rss = srv.rss_kb()
            conn.close()
            results.append((m, args.rows, secs, args.rows / secs, ok, srv_cpu, rss, note))
            print(
                f"  {m}: {secs:.2f} s; server CPU {srv_cpu:.1f} s; client CPU "
                f"{cli_cpu:.1f} s (with generating the data, before the clock); "
                f"check {'ok' if ok else 'FAILED'}: {desc}; server RSS after {c.fmt_kb(rss)}",
                flush=True,
            )
    print()
    print(
        "| method | rows | seconds | rows/s | check | server CPU s | server RSS after | how |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---|")
    for m, n, secs, rate, ok, srv_cpu, rss, note in results:
        print(
            f"| {m} | {n:,} | {secs:.2f} | {rate:,.0f} | {'ok' if ok else 'FAILED'} "
            f"| {srv_cpu:.1f} | {c.fmt_kb(rss)} | {note} |"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    c.ensure_psycopg()
    main()
