-- psql's meta-commands over Freshet's objects (run with psql -X -f; compared with
-- describe.out). Tab completion: the exact queries psql 15 sends for a relation after
-- FROM and a column after WHERE.
CREATE TABLE orders (id BIGINT PRIMARY KEY, customer VARCHAR NOT NULL, amount NUMERIC(10,2), ts TIMESTAMPTZ);
CREATE TABLE notes (body TEXT);
CREATE MATERIALIZED VIEW order_totals AS SELECT customer, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer;
CREATE SOURCE plays (user_id BIGINT, title VARCHAR) WITH (connector = 'datagen', datagen.rows.per.second = '1') FORMAT PLAIN ENCODE JSON;
CREATE USER analyst PASSWORD 'secret-pw';
\d
\dt
\dm
\dv
\di
\dE
\dn
\du
\l
\df
\d orders
\d+ orders
\d order_totals
\d orders_pkey
\d plays
\d nosuch
\dt ord*
SELECT c.relname, NULL::pg_catalog.text FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'S', 'v', 'm', 'f', 'p') AND (c.relname) LIKE 'ord%' AND pg_catalog.pg_table_is_visible(c.oid) AND c.relnamespace <> (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pg_catalog')
UNION ALL
SELECT NULL::pg_catalog.text, n.nspname FROM pg_catalog.pg_namespace n WHERE n.nspname LIKE 'ord%' AND n.nspname NOT LIKE E'pg\\_%'
LIMIT 1000;
SELECT a.attname, NULL::pg_catalog.text FROM pg_catalog.pg_attribute a, pg_catalog.pg_class c WHERE c.oid = a.attrelid and a.attnum > 0 and not a.attisdropped AND (a.attname) LIKE 'cu%' AND c.relname = 'orders' AND pg_catalog.pg_table_is_visible(c.oid)
LIMIT 1000;
SELECT version() LIKE 'PostgreSQL 15.0 (Freshet %' AS version_ok, current_database(), current_schema(), current_user, current_setting('server_version_num');
SELECT 'orders'::regclass::oid = (SELECT oid FROM pg_class WHERE relname = 'orders') AS regclass_ok, 'orders'::regclass AS name;
