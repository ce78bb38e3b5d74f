-- q11: user sessions: bids per bidder per session (10-second gap).
-- reads: bid
CREATE MATERIALIZED VIEW nexmark_q11 AS
SELECT bidder, count(*) AS bid_count, window_start AS starttime, window_end AS endtime
FROM SESSION(bid, date_time, INTERVAL '10 seconds', bidder)
GROUP BY bidder, window_start, window_end;
