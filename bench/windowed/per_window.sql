-- per_window: an aggregate grouped by window alone (every bid of a batch in one group),
-- the case two-phase aggregation is for (docs/benchmarks.md, session 20). Run with
-- `nexmark_bench --dir bench/windowed --queries per_window`.
-- reads: bid
CREATE MATERIALIZED VIEW per_window AS
SELECT window_start, count(*) AS bids, sum(price) AS volume, max(price) AS top
FROM TUMBLE(bid, date_time, INTERVAL '10 seconds') GROUP BY window_start;
