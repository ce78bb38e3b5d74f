-- q3: local item suggestion (join of persons and auctions).
-- (The generator's states are lower-case, as in RisingWave's q3.)
-- reads: auction, person
CREATE MATERIALIZED VIEW nexmark_q3 AS
SELECT P.name, P.city, P.state, A.id
FROM auction AS A JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca');
