-- COPY FROM STDIN and TO STDOUT through psql's \copy and COPY (compared with copy.out).
CREATE TABLE films (id INT PRIMARY KEY, title VARCHAR, ts TIMESTAMPTZ, amount NUMERIC(10,2));
CREATE MATERIALIZED VIEW film_count AS SELECT count(*) AS c, sum(amount) AS total FROM films;
\copy films FROM 'psql/data/films.tsv'
\copy films FROM 'psql/data/films.csv' WITH (FORMAT csv, HEADER)
SELECT * FROM films ORDER BY id;
SELECT * FROM film_count;
\copy films TO STDOUT
\copy (SELECT id, title FROM films WHERE id > 2 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)
COPY film_count TO STDOUT WITH (FORMAT csv);
-- Columns left out are NULL.
\copy films (id, title) FROM STDIN
7	only two
\.
SELECT * FROM films WHERE id = 7;
-- A bad value: the whole COPY is refused, with the line; nothing of it is written.
\copy films FROM STDIN
5	ok	\N	1
6	bad	notatimestamp	2
\.
\copy films FROM STDIN WITH (FORMAT csv)
8,x,,1
9,"unterminated
\.
-- A duplicate key: refused as a whole.
\copy films (id) FROM STDIN
10
1
\.
SELECT count(*) FROM films;
-- Files on the server are not Freshet's business.
COPY films FROM '/etc/passwd';
