//! Event-time watermarks of one reader.
//!
//! A source's watermark is the minimum over its partitions of (largest event time seen −
//! delay). A partition that has sent nothing for the idle timeout stops holding it back;
//! when every partition is idle, the most advanced one sets it. The watermark never goes
//! back. An event whose time is below the watermark when it is read is late.
//!
//! With one partition the watermark is a function of the event sequence alone, so a
//! replay after a crash (which restores the per-partition maxima and the watermark stored
//! with the offsets) classifies every event exactly as the first run did.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

struct Partition {
    max: Option<i64>,
    last_seen: Instant,
}

pub struct WatermarkTracker {
    /// Index of the event-time column in a decoded row.
    pub column: usize,
    delay: i64,
    idle_timeout: Duration,
    parts: BTreeMap<i32, Partition>,
    wm: Option<i64>,
}

impl WatermarkTracker {
    /// `maxima`: largest event time per partition as stored; `wm`: the stored watermark.
    pub fn new(
        column: usize,
        delay: i64,
        idle_timeout: Duration,
        maxima: &BTreeMap<i32, i64>,
        wm: Option<i64>,
    ) -> WatermarkTracker {
        let now = Instant::now();
        WatermarkTracker {
            column,
            delay,
            idle_timeout,
            parts: maxima
                .iter()
                .map(|(p, m)| {
                    (
                        *p,
                        Partition {
                            max: Some(*m),
                            last_seen: now,
                        },
                    )
                })
                .collect(),
            wm,
        }
    }

    /// Starts tracking a partition (it holds the watermark back until it sends events or
    /// goes idle).
    pub fn add_partition(&mut self, p: i32) {
        self.parts.entry(p).or_insert(Partition {
            max: None,
            last_seen: Instant::now(),
        });
    }

    pub fn watermark(&self) -> Option<i64> {
        self.wm
    }

    /// Largest event time seen per partition, to store with the offsets.
    pub fn maxima(&self) -> Vec<(i32, i64)> {
        self.parts
            .iter()
            .filter_map(|(p, s)| s.max.map(|m| (*p, m)))
            .collect()
    }

    /// Takes an event of partition `p` with event time `ts` (micros; `None` for NULL).
    /// Returns `Err(watermark)` if it is late, and then leaves the state unchanged.
    pub fn observe(&mut self, p: i32, ts: Option<i64>) -> Result<(), i64> {
        self.observe_at(p, ts, Instant::now())
    }

    /// [`WatermarkTracker::observe`] at `now`, read once by the caller for a batch of
    /// events (reading the clock per event showed in profiles).
    pub fn observe_at(&mut self, p: i32, ts: Option<i64>, now: Instant) -> Result<(), i64> {
        if let (Some(ts), Some(wm)) = (ts, self.wm) {
            if ts < wm {
                return Err(wm);
            }
        }
        let part = self.parts.entry(p).or_insert(Partition {
            max: None,
            last_seen: now,
        });
        part.last_seen = now;
        if let Some(ts) = ts {
            if part.max.is_none_or(|m| ts > m) {
                part.max = Some(ts);
                self.recompute_at(now);
            }
        }
        Ok(())
    }

    /// Notes that partition `p` has been read to its end: it counts as active only while
    /// it keeps sending.
    pub fn touch(&mut self, p: i32) {
        if let Some(part) = self.parts.get_mut(&p) {
            part.last_seen = Instant::now();
        }
    }

    /// Re-evaluates idleness; returns whether the watermark advanced.
    pub fn tick(&mut self) -> bool {
        let before = self.wm;
        self.recompute();
        self.wm != before
    }

    fn recompute(&mut self) {
        self.recompute_at(Instant::now())
    }

    fn recompute_at(&mut self, now: Instant) {
        let mut active_min: Option<i64> = None;
        let mut any_active = false;
        let mut blocked = false;
        let mut overall_max: Option<i64> = None;
        for part in self.parts.values() {
            if let Some(m) = part.max {
                overall_max = Some(overall_max.map_or(m, |o| o.max(m)));
            }
            if now.duration_since(part.last_seen) >= self.idle_timeout {
                continue;
            }
            any_active = true;
            match part.max {
                Some(m) => active_min = Some(active_min.map_or(m, |a| a.min(m))),
                None => blocked = true,
            }
        }
        let candidate = if blocked {
            None
        } else if any_active {
            active_min
        } else {
            overall_max
        };
        if let Some(c) = candidate {
            let c = c.saturating_sub(self.delay);
            if self.wm.is_none_or(|w| c > w) {
                self.wm = Some(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_partitions_and_lateness() {
        let mut t = WatermarkTracker::new(0, 10, Duration::from_secs(60), &BTreeMap::new(), None);
        t.add_partition(0);
        t.add_partition(1);
        assert_eq!(t.observe(0, Some(100)), Ok(()));
        assert_eq!(t.watermark(), None, "partition 1 holds it back");
        assert_eq!(t.observe(1, Some(50)), Ok(()));
        assert_eq!(t.watermark(), Some(40));
        assert_eq!(t.observe(1, Some(45)), Ok(()), "out of order, not late");
        assert_eq!(t.observe(0, Some(39)), Err(40), "late");
        assert_eq!(t.observe(1, Some(200)), Ok(()));
        assert_eq!(t.watermark(), Some(90));
        assert_eq!(t.maxima(), vec![(0, 100), (1, 200)]);
    }

    #[test]
    fn idle_partitions_stop_holding_back() {
        let mut t = WatermarkTracker::new(0, 0, Duration::from_millis(50), &BTreeMap::new(), None);
        t.add_partition(0);
        t.add_partition(1);
        t.observe(0, Some(100)).unwrap();
        assert_eq!(t.watermark(), None);
        std::thread::sleep(Duration::from_millis(60));
        t.observe(0, Some(120)).unwrap();
        assert_eq!(t.watermark(), Some(120), "idle partition 1 ignored");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!t.tick(), "all idle: the most advanced partition keeps it");
        assert_eq!(t.watermark(), Some(120));
    }

    #[test]
    fn restored_state_is_monotonic() {
        let maxima = BTreeMap::from([(0, 500)]);
        let mut t = WatermarkTracker::new(0, 100, Duration::from_secs(60), &maxima, Some(450));
        assert_eq!(t.watermark(), Some(450));
        t.observe(0, Some(460)).unwrap();
        assert_eq!(t.watermark(), Some(450), "never goes back");
        assert_eq!(t.observe(0, Some(449)), Err(450));
    }
}
