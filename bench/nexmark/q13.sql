-- q13: bounded side input join: each bid enriched from a 10,000-row reference table, looked
-- up at processing time (Nexmark reads the side input from a file; here it is a table).
-- reads: bid
CREATE TABLE side_input (key BIGINT PRIMARY KEY, value VARCHAR);
INSERT INTO side_input SELECT value AS key, 'side-' || CAST(value AS VARCHAR) AS value
FROM generate_series(0, 9999) AS g(value);
CREATE MATERIALIZED VIEW nexmark_q13 AS
SELECT B.auction, B.bidder, B.price, B.date_time, S.value
FROM bid B
JOIN side_input FOR SYSTEM_TIME AS OF PROCTIME() AS S ON B.auction % 10000 = S.key;
