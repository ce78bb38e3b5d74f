"""SQLAlchemy 2 and pandas against Freshet, as an analyst's notebook uses them.

Run by tests/clients.rs with FRESHET_DSN set (host=… port=… user=freshet dbname=freshet).
Each check asserts what a user sees; the first failure ends the script with a traceback.
"""

import os
import sys

import pandas as pd
import sqlalchemy as sa

DSN = os.environ["FRESHET_DSN"]
params = dict(kv.split("=", 1) for kv in DSN.split())


def url(driver):
    return f"postgresql+{driver}://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"


def check(driver):
    engine = sa.create_engine(url(driver))
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT 1")).scalar() == 1
        version = c.execute(sa.text("SELECT version()")).scalar()
        assert version.startswith("PostgreSQL 15"), version
        assert engine.dialect.server_version_info[:2] == (15, 0), engine.dialect.server_version_info

    with engine.begin() as c:
        c.execute(sa.text(f"DROP TABLE IF EXISTS plays_{driver} CASCADE"))
        c.execute(sa.text(
            f"CREATE TABLE plays_{driver} (play_id BIGINT PRIMARY KEY, title VARCHAR NOT NULL, "
            "seconds DOUBLE PRECISION, ts TIMESTAMP)"))
        c.execute(sa.text(
            f"CREATE MATERIALIZED VIEW per_title_{driver} AS SELECT title, count(*) AS plays "
            f"FROM plays_{driver} GROUP BY title"))

    insp = sa.inspect(engine)
    assert "public" in insp.get_schema_names()
    tables = insp.get_table_names()
    assert f"plays_{driver}" in tables, tables
    assert f"per_title_{driver}" in insp.get_materialized_view_names()
    assert insp.has_table(f"plays_{driver}")
    assert not insp.has_table("no_such_table")
    cols = {c["name"]: c for c in insp.get_columns(f"plays_{driver}")}
    assert list(cols) == ["play_id", "title", "seconds", "ts"], list(cols)
    assert isinstance(cols["play_id"]["type"], sa.BigInteger), cols["play_id"]["type"]
    assert isinstance(cols["title"]["type"], sa.String)
    assert not cols["title"]["nullable"] and cols["seconds"]["nullable"]
    assert isinstance(cols["ts"]["type"], sa.DateTime)
    pk = insp.get_pk_constraint(f"plays_{driver}")
    assert pk["constrained_columns"] == ["play_id"], pk
    assert insp.get_foreign_keys(f"plays_{driver}") == []
    idx = insp.get_indexes(f"plays_{driver}")
    assert idx == [], idx  # the primary key's index is not listed, as in Postgres
    mv_cols = [c["name"] for c in insp.get_columns(f"per_title_{driver}")]
    assert mv_cols == ["title", "plays"], mv_cols

    # Reflect and write through the Table object.
    md = sa.MetaData()
    plays = sa.Table(f"plays_{driver}", md, autoload_with=engine)
    with engine.begin() as c:
        c.execute(plays.insert(), [
            {"play_id": i, "title": "Dark Water" if i % 3 else "Sunny Side",
             "seconds": i * 1.5, "ts": None}
            for i in range(1, 11)
        ])

    # pandas: read a query, a table and a view; write a new table.
    df = pd.read_sql(f"SELECT title, plays FROM per_title_{driver} ORDER BY title", engine)
    assert df.to_dict("records") == [
        {"title": "Dark Water", "plays": 7},
        {"title": "Sunny Side", "plays": 3},
    ], df
    t = pd.read_sql_table(f"plays_{driver}", engine)
    assert len(t) == 10 and list(t.columns) == ["play_id", "title", "seconds", "ts"], t
    out = pd.DataFrame({"k": [1, 2, 3], "v": ["a", "b", "c"]})
    out.to_sql(f"frame_{driver}", engine, index=False, if_exists="replace")
    back = pd.read_sql(f"SELECT k, v FROM frame_{driver} ORDER BY k", engine)
    assert back.to_dict("list") == {"k": [1, 2, 3], "v": ["a", "b", "c"]}, back
    out.to_sql(f"frame_{driver}", engine, index=False, if_exists="append", method="multi")
    assert pd.read_sql(f"SELECT count(*) AS n FROM frame_{driver}", engine)["n"][0] == 6
    engine.dispose()
    print(f"sqlalchemy+{driver}: ok")


for driver in sys.argv[1:] or ["psycopg", "psycopg2"]:
    check(driver)
