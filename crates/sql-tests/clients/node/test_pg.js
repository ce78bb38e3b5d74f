// node-postgres (pg) and pg-cursor against Freshet, as a Node service uses them.
// Run by tests/clients.rs with PGHOST/PGPORT/PGUSER/PGDATABASE set. Any failed assertion
// ends the script with a non-zero status.
'use strict';

const assert = require('assert/strict');
const { Client, Pool } = require('pg');
const Cursor = require('pg-cursor');

function read(cursor, n) {
  return new Promise((resolve, reject) => {
    cursor.read(n, (err, rows) => (err ? reject(err) : resolve(rows)));
  });
}

async function main() {
  const client = new Client();
  await client.connect();

  // Types as Postgres gives them: int4 and float8 are JS numbers, int8 and numeric
  // strings, booleans, dates, arrays.
  let r = await client.query('SELECT 1 AS one, 2.5::float8 AS f, true AS b, \'x\' AS s');
  assert.deepEqual(r.rows, [{ one: 1, f: 2.5, b: true, s: 'x' }]);
  r = await client.query('SELECT count(*) AS n, 0.908 AS price');
  assert.deepEqual(r.rows, [{ n: '1', price: '0.908' }]);
  r = await client.query("SELECT TIMESTAMP '2026-12-04 10:11:12' AS t");
  assert.ok(r.rows[0].t instanceof Date);

  await client.query('DROP TABLE IF EXISTS node_events CASCADE');
  await client.query(
    'CREATE TABLE node_events (id INT PRIMARY KEY, kind TEXT NOT NULL, ts TIMESTAMP)');
  await client.query(
    'CREATE MATERIALIZED VIEW node_kinds AS SELECT kind, count(*) AS n FROM node_events GROUP BY kind');

  // Parameterized statements (unnamed and named), with values typed by the server.
  for (let i = 1; i <= 20; i++) {
    await client.query({
      name: 'ins',
      text: 'INSERT INTO node_events VALUES ($1, $2, $3)',
      values: [i, i % 2 ? 'play' : 'pause', new Date(Date.UTC(2026, 11, 4, 0, 0, i))],
    });
  }
  r = await client.query('SELECT kind, n FROM node_kinds ORDER BY kind');
  assert.deepEqual(r.rows, [{ kind: 'pause', n: '10' }, { kind: 'play', n: '10' }]);
  r = await client.query('SELECT id FROM node_events WHERE id = ANY($1) ORDER BY id', [[3, 5, 7]]);
  assert.deepEqual(r.rows.map((x) => x.id), [3, 5, 7]);
  r = await client.query('SELECT id FROM node_events WHERE kind = $1 AND id > $2 ORDER BY id', ['play', 15]);
  assert.deepEqual(r.rows.map((x) => x.id), [17, 19]);

  // Several statements in one simple query: one result each.
  r = await client.query('SELECT 1 AS a; SELECT 2 AS b');
  assert.equal(r.length, 2);
  assert.deepEqual(r[1].rows, [{ b: 2 }]);

  // Errors: the SQLSTATE, and the connection goes on.
  await assert.rejects(client.query('SELECT * FROM nope'), (e) => e.code === '42P01');
  await assert.rejects(
    client.query('INSERT INTO node_events VALUES (1, $1, NULL)', ['dup']),
    (e) => e.code === '23505');
  r = await client.query('SELECT 42 AS answer');
  assert.equal(r.rows[0].answer, 42);

  // Transactions.
  await client.query('BEGIN');
  await client.query('INSERT INTO node_events VALUES (100, $1, NULL)', ['stop']);
  await client.query('ROLLBACK');
  r = await client.query('SELECT count(*)::int AS n FROM node_events WHERE id = 100');
  assert.equal(r.rows[0].n, 0);

  // pg-cursor: a named portal read in pieces with Execute(max rows) and Flush, outside
  // any transaction block.
  const cursor = client.query(new Cursor('SELECT x FROM generate_series(1, 25000) AS t(x)'));
  let total = 0;
  let expected = 1;
  for (;;) {
    const rows = await read(cursor, 1000);
    if (rows.length === 0) break;
    assert.ok(rows.length <= 1000);
    for (const row of rows) {
      assert.equal(Number(row.x), expected++);
    }
    total += rows.length;
  }
  assert.equal(total, 25000);
  await new Promise((resolve, reject) => cursor.close((e) => (e ? reject(e) : resolve())));
  // A cursor closed before its end.
  const early = client.query(new Cursor('SELECT id FROM node_events ORDER BY id'));
  assert.deepEqual((await read(early, 3)).map((x) => x.id), [1, 2, 3]);
  await new Promise((resolve, reject) => early.close((e) => (e ? reject(e) : resolve())));
  r = await client.query('SELECT 7 AS seven');
  assert.equal(r.rows[0].seven, 7);
  await client.end();

  // A pool with statement_timeout in the startup packet.
  const pool = new Pool({ max: 3, statement_timeout: 300, application_name: 'node-test' });
  await assert.rejects(
    pool.query('SELECT count(*) FROM generate_series(1, 10000000000)'),
    (e) => e.code === '57014');
  const results = await Promise.all(
    [1, 2, 3, 4, 5, 6].map((i) => pool.query('SELECT $1::int AS i', [i])));
  assert.deepEqual(results.map((x) => x.rows[0].i), [1, 2, 3, 4, 5, 6]);
  r = await pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'node-test'");
  assert.ok(r.rows[0].n >= 1);
  await pool.end();
  console.log('node-postgres: ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
