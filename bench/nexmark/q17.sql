-- q17: auction statistics per day.
-- reads: bid
CREATE MATERIALIZED VIEW nexmark_q17 AS
SELECT auction, to_char(date_time, '%Y-%m-%d') AS day, count(*) AS total_bids,
  min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price,
  sum(price) AS sum_price
FROM bid
GROUP BY auction, to_char(date_time, '%Y-%m-%d');
