-- The three Nexmark streams from the built-in generator (RisingWave's column names).
-- The bench tool substitutes {person}, {auction} and {bid}: events of each type. The base
-- time is fixed so that every run (and `--source kafka`'s topics) has the same events.
CREATE SOURCE person (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR,
  city VARCHAR, state VARCHAR, date_time TIMESTAMP, extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
WITH (connector = 'nexmark', nexmark.table.type = 'Person', nexmark.event.num = '{person}',
  nexmark.min.event.gap.in.ns = '0', nexmark.start.millis = '1700000000000');
CREATE SOURCE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT,
  reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT,
  extra VARCHAR, WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
WITH (connector = 'nexmark', nexmark.table.type = 'Auction', nexmark.event.num = '{auction}',
  nexmark.min.event.gap.in.ns = '0', nexmark.start.millis = '1700000000000');
CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP, extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
WITH (connector = 'nexmark', nexmark.table.type = 'Bid', nexmark.event.num = '{bid}',
  nexmark.min.event.gap.in.ns = '0', nexmark.start.millis = '1700000000000');
