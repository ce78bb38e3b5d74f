-- q19: the ten highest bids of each auction.
-- reads: bid
CREATE MATERIALIZED VIEW nexmark_q19 AS
SELECT * FROM (
  SELECT *, row_number() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number
  FROM bid
) t
WHERE rank_number <= 10;
