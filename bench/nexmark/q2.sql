-- q2: selection.
-- reads: bid
CREATE MATERIALIZED VIEW nexmark_q2 AS SELECT auction, price FROM bid WHERE auction % 123 = 0;
