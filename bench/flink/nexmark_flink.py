"""Flink SQL (PyFlink) side of the Nexmark comparison: the same query shapes over Flink's
in-process datagen connector shaped like Nexmark bids, with the RocksDB state backend, 1 s
checkpoints, parallelism 2 and a blackhole sink. Prints one Markdown table row per query.

    python bench/flink/nexmark_flink.py --events 2000000 [--queries q0,q1,q2,q5,q7] [--steady]

With --steady each query runs twice, over N and over 3N events, and the row gives the
steady-state rate 2N / (t(3N) - t(N)): job start-up, which both runs pay, cancels out.

Setup: `python -m venv ~/.cache/flink-venv && ~/.cache/flink-venv/bin/pip install apache-flink`
(Java 17). `scripts/bench_nexmark.sh` runs this next to Freshet's `nexmark_bench`.
"""

import argparse
import os
import tempfile
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

# Bids like Nexmark's: hot auctions and bidders are approximated by small id ranges.
BID_SOURCE = """
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
  date_time TIMESTAMP(3), extra STRING,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '{events}', 'rows-per-second' = '1000000000',
  'fields.auction.min' = '1000', 'fields.auction.max' = '11000',
  'fields.bidder.min' = '1000', 'fields.bidder.max' = '101000',
  'fields.price.min' = '100', 'fields.price.max' = '100000000',
  'fields.channel.length' = '8', 'fields.url.length' = '40', 'fields.extra.length' = '20',
  'fields.date_time.max-past' = '0'
)
"""

QUERIES = {
    "q0": ("CREATE TABLE sink (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3)) "
           "WITH ('connector' = 'blackhole')",
           "INSERT INTO sink SELECT auction, bidder, price, date_time FROM bid"),
    "q1": ("CREATE TABLE sink (auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), date_time TIMESTAMP(3)) "
           "WITH ('connector' = 'blackhole')",
           "INSERT INTO sink SELECT auction, bidder, 0.908 * price, date_time FROM bid"),
    "q2": ("CREATE TABLE sink (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole')",
           "INSERT INTO sink SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0"),
    "q5": ("CREATE TABLE sink (auction BIGINT, num BIGINT) WITH ('connector' = 'blackhole')",
           """INSERT INTO sink
SELECT AuctionBids.auction, AuctionBids.num FROM (
  SELECT auction, count(*) AS num, window_start AS starttime
  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
  GROUP BY auction, window_start, window_end
) AS AuctionBids
JOIN (
  SELECT max(CountBids.num) AS maxn, CountBids.starttime_c FROM (
    SELECT count(*) AS num, window_start AS starttime_c
    FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
    GROUP BY auction, window_start, window_end
  ) AS CountBids GROUP BY CountBids.starttime_c
) AS MaxBids
ON AuctionBids.starttime = MaxBids.starttime_c AND AuctionBids.num >= MaxBids.maxn"""),
    "q7": ("CREATE TABLE sink (auction BIGINT, price BIGINT, bidder BIGINT, date_time TIMESTAMP(3)) "
           "WITH ('connector' = 'blackhole')",
           """INSERT INTO sink
SELECT B.auction, B.price, B.bidder, B.date_time FROM bid B JOIN (
  SELECT max(price) AS maxprice, window_end AS date_time
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end
) B1 ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time"""),
}


def run(query: str, events: int) -> float:
    settings = EnvironmentSettings.in_streaming_mode()
    env = TableEnvironment.create(settings)
    conf = env.get_config()
    ckpt = tempfile.mkdtemp(prefix="flink-ckpt-")
    conf.set("parallelism.default", "2")
    conf.set("state.backend.type", "rocksdb")
    conf.set("execution.checkpointing.interval", "1 s")
    conf.set("execution.checkpointing.dir", "file://" + ckpt)
    conf.set("state.checkpoints.dir", "file://" + ckpt)
    env.execute_sql(BID_SOURCE.format(events=events))
    sink, insert = QUERIES[query]
    env.execute_sql(sink)
    started = time.time()
    env.execute_sql(insert).wait()
    return time.time() - started


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--queries", default="q0,q1,q2,q5,q7")
    p.add_argument("--steady", action="store_true")
    a = p.parse_args()
    if a.steady:
        print("| query | N | t(N) s | t(3N) s | steady events/s |")
        print("|---|---|---|---|---|")
    else:
        print("| query | events | seconds | events/s |")
        print("|---|---|---|---|")
    for q in a.queries.split(","):
        secs = run(q, a.events)
        if a.steady:
            more = run(q, 3 * a.events)
            rate = 2 * a.events / max(more - secs, 1e-9)
            print(f"| {q} | {a.events} | {secs:.1f} | {more:.1f} | {rate:.0f} |", flush=True)
        else:
            print(f"| {q} | {a.events} | {secs:.1f} | {a.events / secs:.0f} |", flush=True)


if __name__ == "__main__":
    main()
