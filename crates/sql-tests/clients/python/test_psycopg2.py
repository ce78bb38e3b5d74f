"""psycopg2 against Freshet, as the many applications and ETL scripts built on it use it.

Run by tests/clients.rs with FRESHET_DSN set. Covers: named (server-side) cursors,
copy_expert / copy_from / copy_to, execute_values, transactions (rollback, errors that
abort, savepoints), conn.cancel() and statement_timeout.
"""

import io
import os
import threading

import psycopg2
import psycopg2.errors
import psycopg2.extras

DSN = os.environ["FRESHET_DSN"]


def connect():
    return psycopg2.connect(DSN)


def setup(c):
    c.autocommit = True
    cur = c.cursor()
    cur.execute("DROP TABLE IF EXISTS pg2_titles CASCADE")
    cur.execute("CREATE TABLE pg2_titles (id INT PRIMARY KEY, name TEXT NOT NULL, rating DOUBLE PRECISION)")
    cur.execute("CREATE MATERIALIZED VIEW pg2_stats AS SELECT count(*) AS n, max(rating) AS best FROM pg2_titles")
    assert c.server_version == 150000, c.server_version
    c.autocommit = False


def copy(c):
    cur = c.cursor()
    data = io.StringIO("".join(f"{i}\tname {i}\t{i % 10}\n" for i in range(1, 5001)))
    cur.copy_from(data, "pg2_titles", columns=("id", "name", "rating"))
    assert cur.rowcount == 5000, cur.rowcount
    c.commit()
    csv = io.StringIO("id,name,rating\n5001,\"quoted, name\",9.5\n5002,plain,\n")
    cur.copy_expert("COPY pg2_titles FROM STDIN WITH (FORMAT csv, HEADER true)", csv)
    c.commit()
    out = io.StringIO()
    cur.copy_expert("COPY (SELECT id, name, rating FROM pg2_titles WHERE id > 5000 ORDER BY id) TO STDOUT WITH CSV", out)
    assert out.getvalue() == '5001,"quoted, name",9.5\n5002,plain,\n', repr(out.getvalue())
    out = io.StringIO()
    cur.copy_to(out, "pg2_stats")
    assert out.getvalue() == "5002\t9.5\n", repr(out.getvalue())
    # A bad line refuses the COPY and aborts the transaction.
    try:
        cur.copy_expert("COPY pg2_titles FROM STDIN", io.StringIO("6000\tok\t1\n6001\n"))
        raise AssertionError("a short line was taken")
    except psycopg2.DataError as e:
        assert "line 2" in str(e), str(e)
    c.rollback()
    cur.execute("SELECT count(*) FROM pg2_titles")
    assert cur.fetchone() == (5002,)
    c.commit()
    print("copy: ok")


def named_cursors(c):
    cur = c.cursor(name="titles")
    cur.itersize = 700
    cur.execute("SELECT id, name FROM pg2_titles ORDER BY id")
    ids = [r[0] for r in cur]
    assert ids == list(range(1, 5003)), (len(ids), ids[:3], ids[-3:])
    cur.close()
    cur = c.cursor(name="pages")
    cur.execute("SELECT id FROM pg2_titles WHERE id <= 100 ORDER BY id")
    assert [r[0] for r in cur.fetchmany(30)] == list(range(1, 31))
    assert cur.fetchone() == (31,)
    assert len(cur.fetchall()) == 69
    cur.close()
    c.commit()
    # WITH HOLD survives the commit.
    cur = c.cursor(name="held", withhold=True)
    cur.execute("SELECT id FROM pg2_titles WHERE id <= 3 ORDER BY id")
    c.commit()
    assert cur.fetchall() == [(1,), (2,), (3,)]
    cur.close()
    print("named cursors: ok")


def transactions(c):
    cur = c.cursor()
    psycopg2.extras.execute_values(
        cur, "INSERT INTO pg2_titles (id, name, rating) VALUES %s",
        [(7000 + i, f"batch {i}", 1.0) for i in range(100)])
    c.rollback()
    cur.execute("SELECT count(*) FROM pg2_titles WHERE id >= 7000")
    assert cur.fetchone() == (0,)
    psycopg2.extras.execute_values(
        cur, "INSERT INTO pg2_titles (id, name, rating) VALUES %s",
        [(7000 + i, f"batch {i}", 1.0) for i in range(100)])
    cur.execute("SAVEPOINT s")
    try:
        cur.execute("INSERT INTO pg2_titles VALUES (7000, 'again', 1.0)")
        raise AssertionError("a duplicate key was taken")
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT s")
    c.commit()
    cur.execute("SELECT n FROM pg2_stats")
    assert cur.fetchone() == (5102,)
    try:
        cur.execute("SELECT no_such_column FROM pg2_titles")
    except psycopg2.errors.UndefinedColumn:
        pass
    try:
        cur.execute("SELECT 1")
        raise AssertionError("ran inside an aborted transaction")
    except psycopg2.errors.InFailedSqlTransaction:
        pass
    c.rollback()
    c.commit()
    print("transactions: ok")


def cancel(c):
    c.autocommit = True
    cur = c.cursor()
    t = threading.Timer(1.0, c.cancel)
    t.start()
    try:
        cur.execute("SELECT count(*) FROM generate_series(1, 10000000000)")
        raise AssertionError("not canceled")
    except psycopg2.errors.QueryCanceled:
        pass
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
    cur.execute("SET statement_timeout TO 300")
    try:
        cur.execute("SELECT count(*) FROM generate_series(1, 10000000000)")
        raise AssertionError("statement_timeout did not stop the query")
    except psycopg2.errors.QueryCanceled as e:
        assert "statement timeout" in str(e)
    print("cancel: ok")


# Not `with connect() as conn`: psycopg2 opens a transaction block for the with block.
conn = connect()
setup(conn)
copy(conn)
named_cursors(conn)
transactions(conn)
cancel(conn)
conn.close()
print("psycopg2: ok")
