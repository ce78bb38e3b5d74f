"""psycopg 3 against Freshet, as a service uses it.

Run by tests/clients.rs with FRESHET_DSN set. Covers: server-side cursors, COPY in and
out, transactions (rollback, errors that abort, savepoints), statements auto-prepared
after an error (psycopg sends DEALLOCATE ALL after a rollback), cancel (conn.cancel()
and pg_cancel_backend), statement_timeout, pg_terminate_backend and pg_stat_activity, NOTICEs,
the session's time zone (reported, and read in parameters), interval parameters, and
Decimal and float parameters read as the numeric types psycopg declares them.
The first failing assertion ends the script with a traceback.
"""

import os
import threading
import time

import psycopg
from psycopg import errors, sql

DSN = os.environ["FRESHET_DSN"]
LONG_QUERY = "SELECT count(*) FROM generate_series(1, 10000000000)"


def connect(**kw):
    return psycopg.connect(DSN, **kw)


def setup():
    with connect(autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS pg3_plays CASCADE")
        c.execute("CREATE TABLE pg3_plays (id BIGINT PRIMARY KEY, title TEXT NOT NULL, secs DOUBLE PRECISION)")
        c.execute("CREATE MATERIALIZED VIEW pg3_per_title AS SELECT title, count(*) AS n, sum(secs) AS secs FROM pg3_plays GROUP BY title")


def copy_in_and_out():
    with connect() as c:
        with c.cursor() as cur:
            with cur.copy("COPY pg3_plays (id, title, secs) FROM STDIN") as copy:
                for i in range(1, 20001):
                    copy.write_row((i, f"title {i % 7}", i / 2))
        c.commit()
        n = c.execute("SELECT count(*) FROM pg3_plays").fetchone()[0]
        assert n == 20000, n
        # COPY out of a view, as CSV with a header.
        with c.cursor() as cur:
            out = bytearray()
            with cur.copy("COPY (SELECT title, n FROM pg3_per_title ORDER BY title) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
                for block in copy:
                    out += block
        lines = out.decode().splitlines()
        assert lines[0] == "title,n", lines[:2]
        assert len(lines) == 8 and lines[1].startswith("title 0,"), lines
        # Rows out, typed.
        with c.cursor() as cur:
            with cur.copy("COPY pg3_plays (id, title) TO STDOUT") as copy:
                copy.set_types(["int8", "text"])
                rows = list(copy.rows())
        assert len(rows) == 20000 and rows[0] == (1, "title 1"), rows[:2]
        c.commit()
        # A bad row refuses the whole COPY, with its line.
        try:
            with c.cursor() as cur:
                with cur.copy("COPY pg3_plays FROM STDIN") as copy:
                    copy.write(b"30001\tx\t1\n30002\ty\tnot-a-number\n")
            raise AssertionError("a bad COPY row was taken")
        except errors.DataError as e:
            assert "line 2" in str(e) or (e.diag.context or "").find("line 2") >= 0, (str(e), e.diag.context)
        c.rollback()
        n = c.execute("SELECT count(*) FROM pg3_plays WHERE id > 30000").fetchone()[0]
        assert n == 0, n
    print("copy: ok")


def server_side_cursor():
    with connect() as c:
        with c.cursor(name="plays_cursor") as cur:
            cur.itersize = 1000
            cur.execute("SELECT id, title FROM pg3_plays ORDER BY id")
            seen = 0
            last = 0
            for row in cur:
                assert row[0] == last + 1, (row, last)
                last = row[0]
                seen += 1
            assert seen == 20000, seen
        # fetchmany / scroll on a scrollable named cursor.
        with c.cursor(name="scroller", scrollable=True) as cur:
            cur.execute("SELECT id FROM pg3_plays WHERE id <= 10 ORDER BY id")
            assert [r[0] for r in cur.fetchmany(3)] == [1, 2, 3]
            cur.scroll(-2)
            assert cur.fetchone()[0] == 2
            cur.scroll(5, mode="absolute")
            assert cur.fetchone()[0] == 6
        c.commit()
        # WITH HOLD outlives the transaction.
        with c.cursor(name="held", withhold=True) as cur:
            cur.execute("SELECT id FROM pg3_plays WHERE id <= 5 ORDER BY id")
            c.commit()
            assert [r[0] for r in cur.fetchall()] == [1, 2, 3, 4, 5]
    print("server-side cursors: ok")


def transactions():
    with connect() as c:
        c.execute("INSERT INTO pg3_plays VALUES (40001, 'tx', 1.0)")
        # Visible inside, not outside.
        assert c.execute("SELECT count(*) FROM pg3_plays WHERE id = 40001").fetchone()[0] == 1
        with connect(autocommit=True) as other:
            assert other.execute("SELECT count(*) FROM pg3_plays WHERE id = 40001").fetchone()[0] == 0
        c.rollback()
        assert c.execute("SELECT count(*) FROM pg3_plays WHERE id = 40001").fetchone()[0] == 0
        c.rollback()
        # An error aborts the transaction until rollback.
        try:
            c.execute("SELECT 1/0")
            raise AssertionError("1/0 succeeded")
        except errors.DivisionByZero:
            pass
        try:
            c.execute("SELECT 1")
            raise AssertionError("a statement ran in an aborted transaction")
        except errors.InFailedSqlTransaction:
            pass
        c.rollback()
        # Savepoints (psycopg's nested transaction blocks).
        with c.transaction():
            c.execute("INSERT INTO pg3_plays VALUES (40002, 'kept', 1.0)")
            try:
                with c.transaction():
                    c.execute("INSERT INTO pg3_plays VALUES (40003, 'dropped', 1.0)")
                    c.execute("INSERT INTO pg3_plays VALUES (40002, 'duplicate', 1.0)")
            except errors.UniqueViolation:
                pass
        ids = [r[0] for r in c.execute("SELECT id FROM pg3_plays WHERE id > 40000 ORDER BY id")]
        assert ids == [40002], ids
        c.commit()
        n = c.execute("SELECT n FROM pg3_per_title WHERE title = 'kept'").fetchone()
        assert n == (1,), n
        c.commit()
    print("transactions: ok")


def auto_prepare_after_errors():
    # psycopg prepares a statement on its 5th execution (prepare_threshold); after a
    # rollback it sends DEALLOCATE ALL: the application's next queries must still work.
    with connect(prepare_threshold=2) as c:
        for i in range(10):
            assert c.execute("SELECT id FROM pg3_plays WHERE id = %s", (i + 1,)).fetchone() == (i + 1,)
        try:
            c.execute("SELECT * FROM no_such_table")
        except errors.UndefinedTable:
            pass
        c.rollback()
        for i in range(10):
            assert c.execute("SELECT id FROM pg3_plays WHERE id = %s", (i + 1,)).fetchone() == (i + 1,)
        c.commit()
    print("auto-prepare after errors: ok")


def expect_canceled(c, started):
    t0 = time.monotonic()
    try:
        c.execute(LONG_QUERY)
        raise AssertionError("the long query was not canceled")
    except errors.QueryCanceled:
        pass
    started.append(time.monotonic() - t0)


def cancel():
    # conn.cancel() from another thread: a CancelRequest on its own connection.
    with connect(autocommit=True) as c:
        timer = threading.Timer(1.0, c.cancel)
        timer.start()
        took = []
        expect_canceled(c, took)
        assert took[0] < 30, took
        # The connection goes on.
        assert c.execute("SELECT 1").fetchone() == (1,)
    # pg_cancel_backend from another session, found in pg_stat_activity.
    with connect(autocommit=True) as c, connect(autocommit=True) as admin:
        pid = c.info.backend_pid
        assert c.execute("SELECT pg_backend_pid()").fetchone() == (pid,)

        def cancel_it():
            time.sleep(1.0)
            row = admin.execute(
                "SELECT pid, state, query FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            assert row is not None and row[1] == "active" and "generate_series" in row[2], row
            assert admin.execute("SELECT pg_cancel_backend(%s)", (pid,)).fetchone() == (True,)

        t = threading.Thread(target=cancel_it)
        t.start()
        took = []
        expect_canceled(c, took)
        t.join()
        assert c.execute("SELECT 2").fetchone() == (2,)
        assert admin.execute("SELECT pg_cancel_backend(999999)").fetchone() == (False,)
    # statement_timeout.
    with connect(autocommit=True) as c:
        c.execute("SET statement_timeout = '500ms'")
        try:
            c.execute(LONG_QUERY)
            raise AssertionError("statement_timeout did not stop the query")
        except errors.QueryCanceled as e:
            assert "statement timeout" in str(e), str(e)
    print("cancel: ok")


def terminate():
    victim = connect(autocommit=True)
    pid = victim.info.backend_pid
    with connect(autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        time.sleep(0.5)
        try:
            victim.execute("SELECT 1")
            raise AssertionError("a terminated session still answers")
        except psycopg.OperationalError:
            pass
        assert victim.closed or victim.broken
        gone = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        assert gone == (0,), gone
    print("terminate: ok")


def streaming_a_big_result():
    # A result bigger than any buffer, read through the extended protocol and a
    # client-side cursor (psycopg reads it whole) and a server-side one (in pieces).
    with connect() as c:
        n = c.execute("SELECT count(*) FROM generate_series(1, 300000)").fetchone()[0]
        assert n == 300000
        rows = c.execute("SELECT id, title FROM pg3_plays").fetchall()
        assert len(rows) == 20001, len(rows)
        with c.cursor(name="big") as cur:
            cur.itersize = 5000
            cur.execute("SELECT x FROM generate_series(1, 200000) AS t(x)")
            assert sum(1 for _ in cur) == 200000
        c.commit()
    print("big results: ok")


def notices():
    # NOTICEs reach the driver's handler through the extended protocol, before the
    # statement's result; none once client_min_messages is warning.
    with connect(autocommit=True) as c:
        got = []
        c.add_notice_handler(lambda d: got.append((d.severity_nonlocalized, d.sqlstate, d.message_primary)))
        c.execute("CREATE TABLE IF NOT EXISTS pg3_plays (id BIGINT PRIMARY KEY)")
        c.execute("DROP MATERIALIZED VIEW IF EXISTS pg3_missing")
        c.execute("SET client_min_messages = warning")
        c.execute("DROP TABLE IF EXISTS pg3_missing")
        assert got == [
            ("NOTICE", "42P07", 'relation "pg3_plays" already exists, skipping'),
            ("NOTICE", "00000", 'materialized view "pg3_missing" does not exist, skipping'),
        ], got
    print("notices: ok")


def time_zones():
    # The zone asked for at startup (options or PGTZ) and set later is reported
    # (ParameterStatus), so psycopg shows timestamptz values in it; parameters and
    # literals without an offset are read in it, as Postgres reads them.
    import datetime
    with connect(autocommit=True, options="-c TimeZone=Asia/Kolkata") as c:
        assert c.info.parameter_status("TimeZone") == "Asia/Kolkata"
        got = c.execute("SELECT '2024-03-10 12:00'::timestamptz").fetchone()[0]
        assert (got.hour, got.utcoffset()) == (12, datetime.timedelta(hours=5, minutes=30)), got
        c.execute("SET TIME ZONE 'America/New_York'")
        assert c.info.parameter_status("TimeZone") == "America/New_York"
        naive = datetime.datetime(2024, 3, 10, 12, 0)
        got = c.execute("SELECT %s::timestamptz::text, %s::date", (naive, datetime.datetime(2024, 3, 11, 2, 0, tzinfo=datetime.timezone.utc))).fetchone()
        assert got == ("2024-03-10 12:00:00-04", datetime.date(2024, 3, 10)), got
        span = c.execute("SELECT %s::interval", (datetime.timedelta(days=1, hours=2),)).fetchone()[0]
        assert span == datetime.timedelta(days=1, hours=2), span
        # SET LOCAL lasts until the transaction ends; the client is told both ways.
        with c.transaction():
            c.execute("SET LOCAL TIME ZONE 'Europe/Paris'")
            assert c.info.parameter_status("TimeZone") == "Europe/Paris"
        assert c.info.parameter_status("TimeZone") == "America/New_York"
        # Outside a transaction it sets nothing, with Postgres' warning.
        warnings = []
        c.add_notice_handler(lambda d: warnings.append((d.severity_nonlocalized, d.sqlstate, d.message_primary)))
        c.execute("SET LOCAL TIME ZONE 'Europe/Paris'")
        assert warnings == [("WARNING", "25P01", "SET LOCAL can only be used in transaction blocks")], warnings
        assert c.execute("SHOW TIME ZONE").fetchone()[0] == "America/New_York"
        # RESET goes back to the zone the connection asked for.
        c.execute("RESET TIME ZONE")
        assert c.info.parameter_status("TimeZone") == "Asia/Kolkata"
        assert c.execute("SHOW TIME ZONE").fetchone()[0] == "Asia/Kolkata"
    print("time zones: ok")


def declared_numbers():
    # psycopg declares a Decimal `numeric` and a float `double precision`: they are read
    # as such where the statement alone would infer an integer or text.
    from decimal import Decimal
    with connect(autocommit=True) as c:
        row = c.execute("SELECT %s + 1, pg_typeof(%s), %s * 2, pg_typeof(%s)",
                        [Decimal("1.5"), Decimal("1"), 0.25, 0.5]).fetchone()
        assert row == (Decimal("2.5"), "numeric", 0.5, "double precision"), row
        assert isinstance(row[0], Decimal) and isinstance(row[2], float), row
        c.execute("INSERT INTO pg3_plays VALUES (%s, %s, %s)", [900, "priced", 0.75])
        assert c.execute("SELECT id FROM pg3_plays WHERE secs > %s AND secs < %s",
                         [Decimal("0.5"), 1.0]).fetchall() == [(900,)]
        # A count stays a count (LIMIT and OFFSET are not read as numeric).
        assert c.execute("SELECT id FROM pg3_plays WHERE secs > %s LIMIT %s OFFSET %s",
                         [Decimal("0.5"), 2, 0]).fetchall() == [(900,)]
        # Prepared (psycopg's fifth execution), the statement describes them as declared.
        for _ in range(6):
            assert c.execute("SELECT %s - 1", [Decimal("0.5")]).fetchone()[0] == Decimal("-0.5")
        c.execute("DELETE FROM pg3_plays WHERE id = 900")
    print("declared numbers: ok")


setup()
declared_numbers()
notices()
time_zones()
copy_in_and_out()
server_side_cursor()
transactions()
auto_prepare_after_errors()
cancel()
terminate()
streaming_a_big_result()
print("psycopg: ok")
