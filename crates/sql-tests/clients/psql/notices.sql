-- NOTICEs as Postgres sends them: IF NOT EXISTS of an existing name, IF EXISTS of a
-- missing one; none with client_min_messages = warning. PostgreSQL 15 prints the same,
-- but for CREATE VIEW IF NOT EXISTS (RisingWave's form; a syntax error there).
CREATE TABLE notice_t (a int);
CREATE TABLE IF NOT EXISTS notice_t (a int);
CREATE INDEX IF NOT EXISTS notice_t ON notice_t (a);
CREATE VIEW notice_v AS SELECT a FROM notice_t;
CREATE VIEW IF NOT EXISTS notice_v AS SELECT a FROM notice_t;
DROP VIEW notice_v;
DROP TABLE IF EXISTS notice_missing;
DROP VIEW IF EXISTS notice_missing;
DROP MATERIALIZED VIEW IF EXISTS notice_missing;
DROP INDEX IF EXISTS notice_missing;
DROP TABLE IF EXISTS notice_missing, notice_t;
CREATE SCHEMA IF NOT EXISTS public;
DROP SCHEMA IF EXISTS notice_missing;
DROP TABLE IF EXISTS notice_missing.t;
DROP ROLE IF EXISTS notice_missing;
ALTER TABLE IF EXISTS notice_missing RENAME TO notice_other;
SET client_min_messages = warning;
DROP TABLE IF EXISTS notice_missing;
RESET client_min_messages;
DROP TABLE IF EXISTS notice_missing;
