-- q16: channel statistics per day, with distinct bidders and auctions.
-- reads: bid
CREATE MATERIALIZED VIEW nexmark_q16 AS
SELECT channel, to_char(date_time, '%Y-%m-%d') AS day, max(to_char(date_time, '%H:%M')) AS minute,
  count(*) AS total_bids, count(DISTINCT bidder) AS total_bidders,
  count(DISTINCT auction) AS total_auctions
FROM bid
GROUP BY channel, to_char(date_time, '%Y-%m-%d');
