-- The SQL Grafana's PostgreSQL data source sends, read by replay.py.
--
-- Each query starts with "-- name: <name>", followed by "-- source:" (the Grafana file and commit it
-- is taken from), "-- protocol:" (simple: one Query message, as pgx's PgConn.Exec sends panel and
-- frontend queries; extended: pgx pool.Query's named statement, Describe Statement, Bind with
-- binary result formats), optional "-- params:" ($1, $2 as text) and "-- note:". The SQL is the
-- rest, up to the next "-- name:", byte for byte as Grafana builds it (its whitespace included).
-- Macros ($__timeFilter and the rest) are left in the text; replay.py expands them exactly as
-- Grafana's backend does before sending (macros.go, and the global $__interval substitution of
-- pgx/sql_engine.go), for the time range 2024-05-01T10:00:00Z .. 2024-05-01T10:10:00Z and a
-- 1m interval. `python3 replay.py --print` shows every statement as sent.
--
-- The table the queries read (replay.py creates it):
--   CREATE TABLE grafana_metrics (id INT PRIMARY KEY, ts TIMESTAMP NOT NULL, tstz TIMESTAMPTZ,
--     host VARCHAR NOT NULL, value DOUBLE PRECISION, epoch BIGINT)

-- name: ping
-- source: jackc/pgx v5 pgconn/pgconn.go PgConn.Ping, called by pkg/tsdb/grafana-postgresql-datasource/pgx/sql_engine.go @ 6589b0badd894fda6b299605883722b97fac3c33 DataSourceHandler.Ping ("Save & test"; pgxpool also pings connections idle > 1s)
-- protocol: simple
-- note: a comment only: the server answers EmptyQueryResponse
-- ping

-- name: version
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts @ eb607c510fe9fe93ca209a4ca48935321fcd363f getVersion(); run by configuration/useAutoDetectFeatures.ts
-- protocol: simple
-- note: the frontend reads field version; >= 906 also runs timescaledb_version
SELECT current_setting('server_version_num')::int/100 as version

-- name: timescaledb_version
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts @ eb607c510fe9fe93ca209a4ca48935321fcd363f getTimescaleDBVersion()
-- protocol: simple
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'

-- name: show_tables
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts @ eb607c510fe9fe93ca209a4ca48935321fcd363f showTables(): table picker and SQL completion (datasource.ts fetchTables reads field table)
-- protocol: simple
SELECT
    CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1

-- name: table_columns
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts @ eb607c510fe9fe93ca209a4ca48935321fcd363f getSchema('grafana_metrics'): column picker (datasource.ts fetchFields reads fields column, type)
-- protocol: simple
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('grafana_metrics'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('grafana_metrics'))[1]
          AND quote_ident(table_name) = (parse_ident('grafana_metrics'))[2]
        ELSE quote_ident(table_name) = 'grafana_metrics'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END

-- name: table_columns_qualified
-- source: public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts @ eb607c510fe9fe93ca209a4ca48935321fcd363f getSchema('public.grafana_metrics'): the parse_ident branch
-- protocol: simple
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('public.grafana_metrics'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('public.grafana_metrics'))[1]
          AND quote_ident(table_name) = (parse_ident('public.grafana_metrics'))[2]
        ELSE quote_ident(table_name) = 'public.grafana_metrics'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END

-- name: schemas
-- source: pkg/tsdb/grafana-postgresql-datasource/schema.go @ 043dd88a47944c35205994c4da317e100dc9b12e querySchemas()
-- protocol: extended
-- note: pgx pool.Query: named statement stmtcache_<sha256>, Describe Statement, binary results for types pgx decodes in binary
SELECT schema_name FROM information_schema.schemata
		 WHERE schema_name NOT LIKE 'pg_%' AND schema_name != 'information_schema'
		 ORDER BY schema_name

-- name: tables
-- source: pkg/tsdb/grafana-postgresql-datasource/schema.go @ 043dd88a47944c35205994c4da317e100dc9b12e queryTables(schema)
-- protocol: extended
-- params: public
SELECT table_name FROM information_schema.tables
		 WHERE table_schema = $1 AND table_type IN ('BASE TABLE', 'VIEW')
		 ORDER BY table_name

-- name: columns
-- source: pkg/tsdb/grafana-postgresql-datasource/schema.go @ 043dd88a47944c35205994c4da317e100dc9b12e queryColumns(schema, table)
-- protocol: extended
-- params: public, grafana_metrics
SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale
		 FROM information_schema.columns
		 WHERE table_schema = $1 AND table_name = $2
		 ORDER BY ordinal_position

-- name: column_values
-- source: pkg/tsdb/grafana-postgresql-datasource/schema.go @ 043dd88a47944c35205994c4da317e100dc9b12e ColumnValues(): one part per requested column (here host, id), joined with UNION ALL
-- protocol: extended
SELECT 'host' AS col_name, "host"::text AS val FROM (SELECT DISTINCT "host" FROM "public"."grafana_metrics" WHERE "host" IS NOT NULL ORDER BY "host" LIMIT 100) sub_0 UNION ALL SELECT 'id' AS col_name, "id"::text AS val FROM (SELECT DISTINCT "id" FROM "public"."grafana_metrics" WHERE "id" IS NOT NULL ORDER BY "id" LIMIT 100) sub_1

-- name: ts_avg_1m
-- source: the PostgreSQL data source's time-series shape; macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
-- note: expands to floor(extract(epoch from ts)/60)*60 AS "time" ... WHERE ts BETWEEN '2024-05-01T10:00:00Z' AND '2024-05-01T10:10:00Z'
SELECT
  $__timeGroupAlias(ts, '1m'),
  avg(value) AS "value"
FROM grafana_metrics
WHERE
  $__timeFilter(ts)
GROUP BY 1
ORDER BY 1

-- name: ts_by_host
-- source: long format with a metric column; $__interval from pkg/tsdb/grafana-postgresql-datasource/pgx/sql_engine.go Interpolate(); macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
-- note: host IN ('a','b') is a multi-value dashboard variable as the frontend quotes it
SELECT $__timeGroupAlias(ts, $__interval), host AS metric, avg(value) AS "value"
FROM grafana_metrics
WHERE $__timeFilter(ts) AND host IN ('a','b')
GROUP BY 1, 2
ORDER BY 1, 2

-- name: ts_raw
-- source: raw points with $__time; macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
SELECT $__time(ts), host AS metric, value FROM grafana_metrics WHERE $__timeFilter(ts) ORDER BY 1, 2

-- name: ts_timestamptz_5m
-- source: a timestamptz column; macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
SELECT $__timeGroupAlias(tstz, '5m'), max(value) AS "max" FROM grafana_metrics WHERE $__timeFilter(tstz) GROUP BY 1 ORDER BY 1

-- name: ts_epoch
-- source: $__timeEpoch, $__timeFrom(), $__timeTo(); macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
SELECT $__timeEpoch(ts), value FROM grafana_metrics WHERE ts >= $__timeFrom() AND ts <= $__timeTo() AND host = 'a' ORDER BY 1

-- name: ts_unix_epoch
-- source: a bigint unix-seconds column with $__unixEpochGroupAlias/$__unixEpochFilter; macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
SELECT $__unixEpochGroupAlias(epoch, '1m'), count(*) AS "n" FROM grafana_metrics WHERE $__unixEpochFilter(epoch) GROUP BY 1 ORDER BY 1

-- name: docs_metric_column
-- source: docs/sources/datasources/postgres/query-editor/_index.md @ e728541536bea2602347176cc6501d483506a6fa 'Example with metric column' (GROUP BY the output name time, a quoted column in the macro); macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
SELECT
  $__timeGroupAlias("ts",'5m'),
  min("value"),
  'min' as metric
FROM grafana_metrics
WHERE $__timeFilter("ts")
GROUP BY time
ORDER BY time

-- name: docs_fill_labels
-- source: docs/sources/datasources/postgres/query-editor/_index.md @ e728541536bea2602347176cc6501d483506a6fa 'fill parameter' example (the third macro argument only sets Grafana-side gap filling); macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
SELECT
  $__timeGroupAlias("tstz",'5m',0),
  sum(value) as value,
  host
FROM grafana_metrics
WHERE
  $__timeFilter("tstz")
GROUP BY time, host
ORDER BY time

-- name: docs_annotations_epoch
-- source: docs/sources/datasources/postgres/query-editor/_index.md @ e728541536bea2602347176cc6501d483506a6fa annotation query with epoch values; macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
SELECT
  epoch as time,
  host as text,
  concat_ws(', ', host::text, value::text) as tags
FROM
  public.grafana_metrics
WHERE
  $__unixEpochFilter(epoch)

-- name: multi_statement
-- source: a panel's text with two statements: pgx PgConn.Exec sends it as one simple Query and Grafana keeps only the SELECT results; macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
SET TIME ZONE 'UTC'; SELECT $__time(ts), value FROM grafana_metrics WHERE $__timeFilter(ts) AND host = 'b' ORDER BY 1

-- name: variable_values
-- source: a dashboard variable's query (VariableQueryEditor.tsx sends rawSql as written)
-- protocol: simple
SELECT DISTINCT host FROM grafana_metrics ORDER BY 1

-- name: legacy_find_metric_table
-- source: public/app/plugins/datasource/postgres/meta_query.ts @ c026e6f320c839383c5c7d25015071b477970c32 (Grafana 7/8 visual editor) findMetricTable()
-- protocol: simple

SELECT
	quote_ident(table_name) as table_name,
	( SELECT
	    quote_ident(column_name) as column_name
	  FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
    ORDER BY ordinal_position LIMIT 1
  ) AS time_column,
  ( SELECT
      quote_ident(column_name) AS column_name
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
    ORDER BY ordinal_position LIMIT 1
  ) AS value_column
FROM information_schema.tables t
WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
  ) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
  )
LIMIT 1
;

-- name: legacy_tables
-- source: public/app/plugins/datasource/postgres/meta_query.ts @ c026e6f320c839383c5c7d25015071b477970c32 (Grafana 7/8 visual editor) buildTableQuery()
-- protocol: simple
SELECT quote_ident(table_name) FROM information_schema.tables WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) ORDER BY table_name

-- name: legacy_time_columns
-- source: public/app/plugins/datasource/postgres/meta_query.ts @ c026e6f320c839383c5c7d25015071b477970c32 (Grafana 7/8 visual editor) buildColumnQuery('time') for table grafana_metrics
-- protocol: simple
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'grafana_metrics' AND data_type IN ('timestamp without time zone','timestamp with time zone','bigint','integer','double precision','real') ORDER BY column_name

-- name: legacy_metric_columns_qualified
-- source: public/app/plugins/datasource/postgres/meta_query.ts @ c026e6f320c839383c5c7d25015071b477970c32 (Grafana 7/8 visual editor) buildColumnQuery('metric') for table public.grafana_metrics
-- protocol: simple
SELECT quote_ident(column_name) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'grafana_metrics' AND data_type IN ('text','character','character varying') ORDER BY column_name

-- name: legacy_values
-- source: public/app/plugins/datasource/postgres/meta_query.ts @ c026e6f320c839383c5c7d25015071b477970c32 (Grafana 7/8 visual editor) buildValueQuery('host'); macros expanded as pkg/tsdb/grafana-postgresql-datasource/macros.go @ 0577088076c3920f31aa0ca03cf8ac62e08f4d5b
-- protocol: simple
SELECT DISTINCT quote_literal(host) FROM grafana_metrics WHERE $__timeFilter(ts) AND host IS NOT NULL ORDER BY 1 LIMIT 100

-- name: legacy_datatype
-- source: public/app/plugins/datasource/postgres/meta_query.ts @ c026e6f320c839383c5c7d25015071b477970c32 (Grafana 7/8 visual editor) buildDatatypeQuery('value')
-- protocol: simple
SELECT udt_name FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'grafana_metrics' AND column_name = 'value'

-- name: legacy_aggregates
-- source: public/app/plugins/datasource/postgres/meta_query.ts @ c026e6f320c839383c5c7d25015071b477970c32 (Grafana 7/8 visual editor) buildAggregateQuery()
-- protocol: simple
SELECT DISTINCT proname FROM pg_aggregate INNER JOIN pg_proc ON pg_aggregate.aggfnoid = pg_proc.oid INNER JOIN pg_type ON pg_type.oid=pg_proc.prorettype WHERE pronargs=1 AND typname IN ('float8') AND aggkind='n' ORDER BY 1
