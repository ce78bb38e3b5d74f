#!/usr/bin/env python3
"""Server memory while a client reads a large table to the end: it should stay flat.

Starts its own Freshet server (free loopback port, temporary data directory, stopped with
SIGTERM at the end), creates

    CREATE TABLE t (id BIGINT PRIMARY KEY, user_id BIGINT, title VARCHAR,
                    secs DOUBLE PRECISION, at TIMESTAMP)

and loads M rows with `COPY t FROM STDIN` (text format; COPY statements of
--copy-rows-per-statement rows, each written in 10,000-row chunks; the data is generated
while loading, so the load time includes the client's formatting, reported apart). It
checks count(*), sum(id), sum(secs), then samples the server's RSS (VmRSS from
/proc/PID/status) once a second while idle (the baseline), and then reads every row:

  cursor  a psycopg 3 named (server-side) cursor, itersize 10,000, inside a transaction:
          DECLARE … CURSOR FOR SELECT * FROM t, then FETCH FORWARD 10000 until done
  stream  `SELECT * FROM t` through psycopg 3's cursor.stream() (extended protocol, rows
          taken as they come; --stream-size rows per chunk)

sampling the server's RSS once a second during each read. Prints rows read, seconds,
rows/s, the baseline RSS, min/median/max RSS during the read and the samples (MiB).
If the server streams, the RSS during the read does not grow with the rows read.
With --view, the reads go through `CREATE MATERIALIZED VIEW v AS SELECT * FROM t WHERE
secs >= 0` (every row), built after the load (its build time is printed), instead of t.

Run (psycopg 3 lives in the clients' virtualenv; scripts/clients.sh installs it):

    $(scripts/clients.sh venv) bench/pg_tools/cursor_memory.py \\
        --binary target/release/freshet --rows 10000000

The binary defaults to $FRESHET_BIN, else $CARGO_TARGET_DIR/release/freshet (or
target/release/freshet), falling back to .../debug/freshet.
"""

import argparse
import os
import statistics
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as c  # noqa: E402

READS = ("cursor", "stream")


def load(srv, n, per_statement, chunk_rows):
    conn = srv.connect(autocommit=True)
    conn.execute(c.TABLE_DDL.format(name="t"))
    cur = conn.cursor()
    gen = 0.0
    t0 = time.perf_counter()
    last_report = t0
    for lo in range(1, n + 1, per_statement):
        hi = min(lo + per_statement, n + 1)
        with cur.copy("COPY t FROM STDIN") as cp:
            for a in range(lo, hi, chunk_rows):
                g = time.perf_counter()
                data = c.copy_text(a, min(a + chunk_rows, hi)).encode()
                gen += time.perf_counter() - g
                cp.write(data)
        now = time.perf_counter()
        if now - last_report > 30:
            last_report = now
            print(
                f"  loaded {hi - 1:,} rows in {now - t0:.0f} s, "
                f"server RSS {c.fmt_kb(srv.rss_kb())}",
                flush=True,
            )
    secs = time.perf_counter() - t0
    return conn, secs, gen


def idle_samples(srv, seconds):
    with c.RssSampler(srv.pid) as s:
        time.sleep(seconds)
    return s.samples


def read_cursor(srv, itersize, rel):
    conn = srv.connect()  # not autocommit: psycopg opens a transaction
    rows = 0
    id_sum = 0
    with conn.cursor(name="bench_cursor") as cur:
        cur.itersize = itersize
        cur.execute(f"SELECT * FROM {rel}")
        for r in cur:
            rows += 1
            id_sum += r[0]
    conn.commit()
    conn.close()
    return rows, id_sum


def read_stream(srv, size, rel):
    conn = srv.connect(autocommit=True)
    rows = 0
    id_sum = 0
    cur = conn.cursor()
    for r in cur.stream(f"SELECT * FROM {rel}", size=size):
        rows += 1
        id_sum += r[0]
    conn.close()
    return rows, id_sum


def mib(kb):
    return kb / 1024


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_server_args(ap)
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows to load and read")
    ap.add_argument(
        "--reads",
        default=",".join(READS),
        help=f"comma-separated, of {', '.join(READS)} (default both)",
    )
    ap.add_argument("--itersize", type=int, default=10_000, help="named cursor itersize")
    ap.add_argument(
        "--stream-size", type=int, default=10_000, help="rows per chunk for cursor.stream()"
    )
    ap.add_argument(
        "--copy-rows-per-statement",
        type=int,
        default=500_000,
        help="rows per COPY statement while loading",
    )
    ap.add_argument(
        "--idle-seconds", type=float, default=5, help="length of the idle RSS baseline"
    )
    ap.add_argument(
        "--load-only", action="store_true", help="load, check and stop (to time a load)"
    )
    ap.add_argument(
        "--view",
        action="store_true",
        help="read a materialized view over the table (built after the load) instead",
    )
    args = ap.parse_args()
    reads = [r.strip() for r in args.reads.split(",") if r.strip()]
    for r in reads:
        if r not in READS:
            ap.error(f"unknown read {r!r}")

    import psycopg

    print(c.machine_line())
    print(c.binary_line(args.binary))
    print(f"psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}), rows {args.rows:,}")
    failed = False
    results = []
    with c.Server(args.binary, args.server_arg, args.keep_data) as srv:
        print(f"server pid {srv.pid} on port {srv.port}, data dir {srv.data_dir}")
        print(f"server RSS at start {c.fmt_kb(srv.rss_kb())}", flush=True)
        srv_cpu0 = srv.cpu_secs()
        conn, load_secs, gen_secs = load(
            srv, args.rows, args.copy_rows_per_statement, 10_000
        )
        print(
            f"load: {args.rows:,} rows in {load_secs:.1f} s "
            f"({args.rows / load_secs:,.0f} rows/s; of which {gen_secs:.1f} s client-side "
            f"formatting; server CPU {srv.cpu_secs() - srv_cpu0:.1f} s), "
            f"{-(-args.rows // args.copy_rows_per_statement)} COPY statements; "
            f"server RSS after load {c.fmt_kb(srv.rss_kb())}",
            flush=True,
        )
        t = time.perf_counter()
        ok, desc = c.check_table(conn, "t", args.rows)
        print(
            f"check ({time.perf_counter() - t:.1f} s): {'ok' if ok else 'FAILED'}: {desc}",
            flush=True,
        )
        if args.view and not args.load_only:
            t = time.perf_counter()
            conn.execute("CREATE MATERIALIZED VIEW v AS SELECT * FROM t WHERE secs >= 0")
            print(
                f"view v built over {args.rows:,} rows in {time.perf_counter() - t:.1f} s; "
                f"server RSS {c.fmt_kb(srv.rss_kb())}",
                flush=True,
            )
        conn.close()
        failed |= not ok
        if args.load_only:
            sys.exit(1 if failed else 0)
        rel = "v" if args.view else "t"
        want_sum = args.rows * (args.rows + 1) // 2
        for r in reads:
            base = idle_samples(srv, args.idle_seconds)
            base_med = statistics.median(base)
            print(
                f"{r}: idle baseline {len(base)} samples, median {mib(base_med):.0f} MiB",
                flush=True,
            )
            srv_cpu0, cli_cpu0 = srv.cpu_secs(), time.process_time()
            with c.RssSampler(srv.pid) as s:
                t0 = time.perf_counter()
                if r == "cursor":
                    rows, id_sum = read_cursor(srv, args.itersize, rel)
                else:
                    rows, id_sum = read_stream(srv, args.stream_size, rel)
                secs = time.perf_counter() - t0
            srv_cpu = srv.cpu_secs() - srv_cpu0
            cli_cpu = time.process_time() - cli_cpu0
            ok = rows == args.rows and id_sum == want_sum
            failed |= not ok
            during = s.samples
            results.append((r, rows, secs, base_med, during, ok, srv_cpu, cli_cpu))
            print(
                f"{r}: read {rows:,} rows in {secs:.1f} s (server CPU {srv_cpu:.1f} s, "
                f"client CPU {cli_cpu:.1f} s), sum(id) "
                f"{'ok' if id_sum == want_sum else f'WRONG {id_sum}'}; "
                f"RSS samples (MiB): {' '.join(f'{mib(v):.0f}' for v in during)}",
                flush=True,
            )
        after = srv.rss_kb()
    print()
    print(
        "| read | rows read | seconds | rows/s | RSS idle baseline | RSS min | "
        "RSS median | RSS max | max − baseline | samples | server CPU s | client CPU s | check |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r, rows, secs, base, during, ok, srv_cpu, cli_cpu in results:
        lo, med, hi = min(during), statistics.median(during), max(during)
        print(
            f"| {r} | {rows:,} | {secs:.1f} | {rows / secs:,.0f} | {mib(base):.0f} MiB "
            f"| {mib(lo):.0f} MiB | {mib(med):.0f} MiB | {mib(hi):.0f} MiB "
            f"| {mib(hi - base):+.0f} MiB | {len(during)} | {srv_cpu:.1f} | {cli_cpu:.1f} "
            f"| {'ok' if ok else 'FAILED'} |"
        )
    print(f"\nserver RSS at the end {c.fmt_kb(after)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    c.ensure_psycopg()
    main()
