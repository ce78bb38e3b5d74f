//! Built-in sources that need nothing external: `datagen` (RisingWave's options) and
//! `playback` (a video service's plays and homepage impressions).
//!
//! Row `i` of a generator is a pure function of the source's seed and `i`, and `i` is the
//! "offset" of the generator's single partition 0. A view stores the offset it reached with
//! its rows, so after a crash the generator resumes at that row and regenerates exactly the
//! rows that were not committed: the same exactly-once contract as Kafka.
//!
//! Rows come at `rows_per_second`. Event times advance with the row number:
//! `start + i / rate × speedup`, so a source's event time follows the wall clock (or runs
//! `speedup` times faster) and a replay reproduces it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use freshet_engine::chunk::{rows_to_batch, Chunk};

use crate::kafka::{payload_head, LateEvent, ReaderHandle, Sink, SourceBatch, WatermarkSpec};
use crate::watermark::WatermarkTracker;

const BATCH_ROWS: i64 = 16384;

/// `connector = 'datagen'`, `'playback'` or `'nexmark'`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Datagen,
    Playback,
    Nexmark,
}

impl Kind {
    /// The prefix of the kind's `WITH` options.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Datagen => "datagen",
            Kind::Playback => "playback",
            Kind::Nexmark => "nexmark",
        }
    }
}

/// How one datagen column is generated.
#[derive(Clone, Debug)]
enum FieldGen {
    Sequence {
        start: i64,
    },
    Random {
        min: f64,
        max: f64,
        length: usize,
        max_past_ms: i64,
    },
}

#[derive(Clone, Debug)]
enum Stream {
    Plays,
    Impressions,
}

/// A validated generator definition.
#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    kind: Kind,
    rows_per_second: f64,
    speedup: f64,
    seed: u64,
    /// Event time of row 0, in microseconds.
    start_micros: i64,
    /// Datagen: per column; playback: empty.
    fields: Vec<FieldGen>,
    /// Rows after which the generator stops (`datagen.rows.max`, or sequences' ends).
    max_rows: Option<i64>,
    /// Nexmark: the event type and the standard generator (base time fixed).
    nexmark: Option<(nexmark::event::EventType, nexmark::EventGenerator)>,
    /// Nexmark events without their random text (see [`DirectEvents`]).
    direct: Option<DirectEvents>,
    /// No pacing: generate as fast as the engine takes rows (`nexmark.min.event.gap.in.ns = 0`).
    unpaced: bool,
}

fn num(options: &BTreeMap<String, String>, key: &str) -> Result<Option<f64>, String> {
    options
        .get(key)
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| format!("option \"{key}\" must be a number, not \"{v}\""))
        })
        .transpose()
}

impl GeneratorConfig {
    /// Checks the `WITH` options of a generator source over `columns`. `<prefix>.start.millis`
    /// (the event time of row 0) is required: the server fixes it at `CREATE SOURCE`.
    pub fn parse(
        kind: Kind,
        columns: &[(String, DataType)],
        options: &[(String, String)],
    ) -> Result<GeneratorConfig, String> {
        let opts: BTreeMap<String, String> = options.iter().cloned().collect();
        let prefix = kind.prefix();
        let mut known: Vec<String> = vec![
            "connector".into(),
            format!("{prefix}.rows.per.second"),
            format!("{prefix}.start.millis"),
            format!("{prefix}.seed"),
            format!("{prefix}.speedup"),
            format!("{prefix}.rows.max"),
            format!("{prefix}.split.num"),
            "watermark_idle_timeout".into(),
        ];
        let mut unpaced = false;
        let rows_per_second = if kind == Kind::Nexmark {
            // RisingWave's default gap: 100 µs (10,000 events/s); 0 means no pacing.
            known.push("nexmark.min.event.gap.in.ns".into());
            let gap = num(&opts, "nexmark.min.event.gap.in.ns")?.unwrap_or(100_000.0);
            if gap < 0.0 {
                return Err("nexmark.min.event.gap.in.ns must not be negative".into());
            }
            unpaced = gap == 0.0;
            if unpaced {
                1e9
            } else {
                1e9 / gap
            }
        } else {
            num(&opts, &format!("{prefix}.rows.per.second"))?.unwrap_or(match kind {
                Kind::Datagen => 10.0,
                _ => 1000.0,
            })
        };
        if rows_per_second <= 0.0 {
            return Err("rows per second must be positive".into());
        }
        let speedup = num(&opts, &format!("{prefix}.speedup"))?.unwrap_or(1.0);
        if speedup <= 0.0 {
            return Err("speedup must be positive".into());
        }
        let seed = num(&opts, &format!("{prefix}.seed"))?.unwrap_or(42.0) as u64;
        let start_micros = match num(&opts, &format!("{prefix}.start.millis"))? {
            Some(ms) => (ms as i64).saturating_mul(1000),
            None => return Err(format!("missing option \"{prefix}.start.millis\"")),
        };
        let mut max_rows = num(&opts, &format!("{prefix}.rows.max"))?.map(|v| v as i64);
        let mut fields = Vec::new();
        let mut stream = Stream::Plays;
        let mut nexmark_gen = None;
        let mut direct = None;
        match kind {
            Kind::Nexmark => {
                use nexmark::event::EventType;
                known.push("nexmark.table.type".into());
                known.push("nexmark.event.num".into());
                let ty = match opts
                    .get("nexmark.table.type")
                    .map(|s| s.to_lowercase())
                    .as_deref()
                {
                    Some("person") => EventType::Person,
                    Some("auction") => EventType::Auction,
                    Some("bid") => EventType::Bid,
                    _ => {
                        return Err("nexmark.table.type must be 'Person', 'Auction' or 'Bid'".into())
                    }
                };
                if let Some(n) = num(&opts, "nexmark.event.num")? {
                    max_rows = Some(n as i64);
                }
                let available = nexmark_fields(ty);
                for (name, _) in columns {
                    if !available.contains(&name.as_str()) {
                        return Err(format!(
                            "nexmark {} has no field \"{name}\" (available: {})",
                            format!("{ty:?}").to_lowercase(),
                            available.join(", ")
                        ));
                    }
                }
                let config = nexmark::config::NexmarkConfig {
                    base_time: (start_micros / 1000).max(0) as u64,
                    ..Default::default()
                };
                direct = DirectEvents::new(&config, ty);
                nexmark_gen = Some((
                    ty,
                    nexmark::EventGenerator::new(config).with_type_filter(ty),
                ));
            }
            Kind::Datagen => {
                for (name, dt) in columns {
                    let key = |k: &str| format!("fields.{name}.{k}");
                    for k in ["kind", "start", "end", "min", "max", "length", "max_past"] {
                        known.push(key(k));
                    }
                    let kind = opts
                        .get(&key("kind"))
                        .map(|s| s.to_lowercase())
                        .unwrap_or_else(|| "random".into());
                    let f = match kind.as_str() {
                        "sequence" => {
                            if !matches!(dt, DataType::Int16 | DataType::Int32 | DataType::Int64)
                                && !matches!(dt, DataType::Float32 | DataType::Float64)
                            {
                                return Err(format!(
                                    "column \"{name}\": kind 'sequence' needs a numeric column"
                                ));
                            }
                            let start = num(&opts, &key("start"))?.unwrap_or(0.0) as i64;
                            let end = num(&opts, &key("end"))?.map(|e| e as i64);
                            if let Some(end) = end {
                                let n = (end - start + 1).max(0);
                                max_rows = Some(max_rows.map_or(n, |m| m.min(n)));
                            }
                            FieldGen::Sequence { start }
                        }
                        "random" => FieldGen::Random {
                            min: num(&opts, &key("min"))?.unwrap_or(0.0),
                            max: num(&opts, &key("max"))?.unwrap_or(i16::MAX as f64),
                            length: num(&opts, &key("length"))?.unwrap_or(10.0) as usize,
                            max_past_ms: num(&opts, &key("max_past"))?.unwrap_or(0.0) as i64,
                        },
                        other => {
                            return Err(format!(
                                "column \"{name}\": unknown kind '{other}' (sequence or random)"
                            ))
                        }
                    };
                    fields.push(f);
                }
            }
            Kind::Playback => {
                known.push("playback.stream".into());
                stream = match opts
                    .get("playback.stream")
                    .map(|s| s.to_lowercase())
                    .as_deref()
                {
                    None | Some("plays") => Stream::Plays,
                    Some("impressions") => Stream::Impressions,
                    Some(other) => {
                        return Err(format!(
                            "unknown playback.stream '{other}' (plays or impressions)"
                        ))
                    }
                };
                let available = playback_fields(&stream);
                for (name, _) in columns {
                    if !available.contains(&name.as_str()) {
                        return Err(format!(
                            "playback stream has no field \"{name}\" (available: {})",
                            available.join(", ")
                        ));
                    }
                }
            }
        }
        for k in opts.keys() {
            if !known.contains(k) {
                return Err(format!("unknown option \"{k}\" for a {prefix} source"));
            }
        }
        // Impressions and plays of one seed are different streams.
        let seed = match stream {
            Stream::Plays => seed,
            Stream::Impressions => seed ^ 0x1A5E_5510,
        };
        Ok(GeneratorConfig {
            kind,
            rows_per_second,
            speedup,
            seed,
            start_micros,
            fields,
            max_rows,
            nexmark: nexmark_gen,
            direct,
            unpaced,
        })
    }

    /// The number of rows the generator produces, if it stops (`datagen.rows.max`,
    /// `nexmark.event.num`, sequences' ends).
    pub fn max_rows(&self) -> Option<i64> {
        self.max_rows
    }

    /// Rows `from..to`: one pass of the Nexmark generator, or row by row. Row `i` is the
    /// same whoever asks (the source, or a tool writing the same events to Kafka).
    pub fn rows(
        &self,
        from: i64,
        to: i64,
        columns: &[(String, DataType)],
    ) -> Result<Vec<Vec<ScalarValue>>, String> {
        let Some((_, gen)) = &self.nexmark else {
            return (from..to).map(|i| self.row(i, columns)).collect();
        };
        let tz = Some(Arc::<str>::from("+00:00"));
        gen.clone()
            .with_offset(from.max(0) as u64)
            .take((to - from).max(0) as usize)
            .map(|event| {
                columns
                    .iter()
                    .map(|(name, dt)| {
                        let v = match nexmark_value(&event, name)? {
                            NexmarkValue::Int(x) => ScalarValue::Int64(Some(x as i64)),
                            NexmarkValue::Text(t) => ScalarValue::Utf8(Some(t.to_string())),
                            NexmarkValue::Time(ms) => ScalarValue::TimestampMicrosecond(
                                Some(ms as i64 * 1000),
                                tz.clone(),
                            ),
                        };
                        cast(v, dt, name)
                    })
                    .collect()
            })
            .collect()
    }

    /// Rows `from..to` as a batch of `schema` (whose columns are `columns`): the same rows
    /// as [`GeneratorConfig::rows`]. Nexmark events go straight into Arrow builders, one
    /// per column, without a scalar value per field.
    pub fn batch(
        &self,
        from: i64,
        to: i64,
        columns: &[(String, DataType)],
        schema: &SchemaRef,
    ) -> Result<RecordBatch, String> {
        let Some((_, gen)) = &self.nexmark else {
            let rows = self.rows(from, to, columns)?;
            return rows_to_batch(schema.clone(), &rows).map_err(|e| e.to_string());
        };
        let n = (to - from).max(0) as usize;
        let mut builders: Option<Vec<NexmarkColumn>> = None;
        // Each column's field in `DirectEvents::values`, if every column is one of them.
        let fast = match &self.direct {
            Some(d) if n > 0 => columns
                .iter()
                .map(|(name, _)| d.fields().iter().position(|f| f == name))
                .collect::<Option<Vec<usize>>>()
                .map(|fields| (d, fields)),
            _ => None,
        };
        if let Some((direct, fields)) = &fast {
            let mut cols: Vec<NexmarkColumn> = fields
                .iter()
                .map(|&f| match direct.values(0, &mut String::new())[f] {
                    NexmarkValue::Int(_) => NexmarkColumn::Int(Int64Builder::with_capacity(n)),
                    NexmarkValue::Text(_) => {
                        NexmarkColumn::Text(StringBuilder::with_capacity(n, n * 12))
                    }
                    NexmarkValue::Time(_) => {
                        NexmarkColumn::Time(TimestampMicrosecondBuilder::with_capacity(n))
                    }
                })
                .collect();
            let mut text = String::new();
            for offset in from.max(0) as u64..from.max(0) as u64 + n as u64 {
                let values = direct.values(offset, &mut text);
                for (((name, _), col), &f) in columns.iter().zip(cols.iter_mut()).zip(fields) {
                    col.push(values[f], name)?;
                }
            }
            builders = Some(cols);
        }
        let slow = if fast.is_some() { 0 } else { n };
        for event in gen.clone().with_offset(from.max(0) as u64).take(slow) {
            let cols = match &mut builders {
                Some(c) => c,
                None => {
                    // The first event decides each column's builder.
                    let mut c = Vec::with_capacity(columns.len());
                    for (name, _) in columns {
                        c.push(match nexmark_value(&event, name)? {
                            NexmarkValue::Int(_) => {
                                NexmarkColumn::Int(Int64Builder::with_capacity(n))
                            }
                            NexmarkValue::Text(_) => {
                                NexmarkColumn::Text(StringBuilder::with_capacity(n, n * 16))
                            }
                            NexmarkValue::Time(_) => {
                                NexmarkColumn::Time(TimestampMicrosecondBuilder::with_capacity(n))
                            }
                        });
                    }
                    builders.insert(c)
                }
            };
            for ((name, _), col) in columns.iter().zip(cols.iter_mut()) {
                col.push(nexmark_value(&event, name)?, name)?;
            }
        }
        let Some(builders) = builders else {
            return Ok(RecordBatch::new_empty(schema.clone()));
        };
        let arrays = builders
            .into_iter()
            .zip(columns)
            .map(|(b, (name, dt))| {
                let a = b.finish();
                if a.data_type() == dt {
                    Ok(a)
                } else {
                    datafusion::arrow::compute::cast(&a, dt)
                        .map_err(|e| format!("column \"{name}\": cannot generate a {dt}: {e}"))
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())
    }
}

/// Nexmark events computed directly when a query reads only fields that need no random
/// text (a bid's numbers; a person's id, name, city, state and time; an auction's numbers
/// and times), which is most of the generator's work. They follow the standard Nexmark
/// generator: an event's random draws come from a generator seeded with its event id, in
/// the order the standard draws them; the text a query does not read (an auction's item
/// name and description, a person's e-mail address) is drawn and dropped, so no later
/// value changes, and what comes after the last field read (each event's `extra`) is not
/// drawn at all. The tests check every field against the `nexmark` crate's own events.
#[derive(Clone, Debug)]
struct DirectEvents {
    config: nexmark::config::NexmarkConfig,
    ty: nexmark::event::EventType,
    /// Events per epoch of persons, auctions and bids (50 in the standard mix).
    denominator: usize,
    /// Microseconds between events (one constant rate).
    delay: f32,
}

impl DirectEvents {
    /// The standard generator's groups of hot auctions, sellers and bidders.
    const HOT_GROUP: usize = 100;

    /// `None` for a configuration this does not cover (a varying event rate, or events
    /// out of order), which then goes through the `nexmark` crate.
    fn new(c: &nexmark::config::NexmarkConfig, ty: nexmark::event::EventType) -> Option<Self> {
        if c.first_rate != c.next_rate
            || c.out_of_order_group_size != 1
            || c.num_event_generators != 1
            || c.bid_proportion == 0
            || c.person_proportion == 0
            || c.auction_proportion == 0
        {
            return None;
        }
        Some(DirectEvents {
            config: c.clone(),
            ty,
            denominator: c.person_proportion + c.auction_proportion + c.bid_proportion,
            delay: c.us_per_unit as f32 / c.first_rate as f32,
        })
    }

    /// The fields computed directly, in [`DirectEvents::values`]' order.
    fn fields(&self) -> &'static [&'static str] {
        use nexmark::event::EventType;
        match self.ty {
            EventType::Bid => &["auction", "bidder", "price", "date_time"],
            EventType::Person => &["id", "name", "city", "state", "date_time"],
            EventType::Auction => &[
                "id",
                "initial_bid",
                "reserve",
                "date_time",
                "expires",
                "seller",
                "category",
            ],
        }
    }

    /// The event number of event `offset` of this type: persons open each epoch, then
    /// come the auctions, then the bids.
    fn number(&self, offset: u64) -> usize {
        use nexmark::event::EventType;
        let c = &self.config;
        let o = offset as usize;
        let (per_epoch, before) = match self.ty {
            EventType::Person => (c.person_proportion, 0),
            EventType::Auction => (c.auction_proportion, c.person_proportion),
            EventType::Bid => (c.bid_proportion, c.person_proportion + c.auction_proportion),
        };
        c.first_event_number + o / per_epoch * self.denominator + before + o % per_epoch
    }

    /// The time (ms) of event number `number`.
    fn time(&self, number: usize) -> u64 {
        self.config.base_time + ((number as f32 * self.delay) / 1000.0).round() as u64
    }

    /// The fields of event `offset` of this type, in [`DirectEvents::fields`]' order (a
    /// person's name is written to `name`).
    fn values<'a>(&'a self, offset: u64, name: &'a mut String) -> [NexmarkValue<'a>; 7] {
        use nexmark::event::EventType;
        use rand::rngs::SmallRng;
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        use NexmarkValue::{Int, Text, Time};
        let c = &self.config;
        let number = self.number(offset);
        let id = c.first_event_id + number;
        let time = self.time(number);
        let rng = &mut SmallRng::seed_from_u64(id as u64);
        let price =
            |rng: &mut SmallRng| (10.0_f32.powf(rng.gen::<f32>() * 6.0) * 100.0).round() as usize;
        // Random lower-case text of `len` letters, drawn and dropped.
        let skip_text = |rng: &mut SmallRng, len: usize| {
            for _ in 0..len {
                rng.gen_range(b'a'..=b'z');
            }
        };
        let pick = |list: &'a [String], rng: &mut SmallRng| -> &'a str {
            list.choose(rng).map_or("", String::as_str)
        };
        match self.ty {
            EventType::Bid => {
                let auction = if rng.gen_range(0..c.hot_auction_ratio) > 0 {
                    self.last_auction(id) / Self::HOT_GROUP * Self::HOT_GROUP
                } else {
                    // One of the auctions in flight, or a few not created yet.
                    let last = self.last_auction(id);
                    let first = last.saturating_sub(c.in_flight_auctions);
                    first + rng.gen_range(0..last - first + 1 + c.auction_id_lead)
                };
                let bidder = if rng.gen_range(0..c.hot_bidder_ratio) > 0 {
                    // The second person of its group: hot bidders are not hot sellers.
                    self.last_person(id) / Self::HOT_GROUP * Self::HOT_GROUP + 1
                } else {
                    self.some_person(id, rng)
                };
                let price = price(rng);
                [
                    Int(auction + c.first_auction_id),
                    Int(bidder + c.first_person_id),
                    Int(price),
                    Time(time),
                    Int(0),
                    Int(0),
                    Int(0),
                ]
            }
            EventType::Person => {
                let (first, last) = (pick(&c.first_names, rng), pick(&c.last_names, rng));
                // The e-mail address (7 and 5 letters) and the credit card number.
                skip_text(rng, 12);
                for _ in 0..4 {
                    rng.gen_range(0..10000);
                }
                let city = pick(&c.us_cities, rng);
                let state = pick(&c.us_states, rng);
                name.clear();
                name.push_str(first);
                name.push(' ');
                name.push_str(last);
                [
                    Int(self.last_person(id) + c.first_person_id),
                    Text(name),
                    Text(city),
                    Text(state),
                    Time(time),
                    Int(0),
                    Int(0),
                ]
            }
            EventType::Auction => {
                // The item's name and description.
                skip_text(rng, 20 + 100);
                let initial_bid = price(rng);
                let reserve = initial_bid + price(rng);
                // How long it runs: up to twice the time until as many auctions later.
                let later = c.in_flight_auctions * self.denominator / c.auction_proportion;
                let horizon = self.time(number + later) - time;
                let expires = time + 1 + rng.gen_range(0..(horizon * 2).max(1));
                let seller = if rng.gen_range(0..c.hot_seller_ratio) > 0 {
                    // The first person of its group.
                    self.last_person(id) / Self::HOT_GROUP * Self::HOT_GROUP
                } else {
                    self.some_person(id, rng)
                };
                let category = c.first_category_id + rng.gen_range(0..c.num_categories);
                [
                    Int(self.last_auction(id) + c.first_auction_id),
                    Int(initial_bid),
                    Int(reserve),
                    Time(time),
                    Time(expires),
                    Int(seller + c.first_person_id),
                    Int(category),
                ]
            }
        }
    }

    /// One of the active people at event `id`, or a few not created yet (base 0).
    fn some_person(&self, id: usize, rng: &mut rand::rngs::SmallRng) -> usize {
        use rand::Rng;
        let c = &self.config;
        let people = self.last_person(id) + 1;
        let active = people.min(c.active_people);
        people - active + rng.gen_range(0..active + c.person_id_lead)
    }

    /// The last person id created by event `id` (persons open each epoch).
    fn last_person(&self, id: usize) -> usize {
        let c = &self.config;
        let epoch = id / self.denominator;
        let offset = (id % self.denominator).min(c.person_proportion - 1);
        epoch * c.person_proportion + offset
    }

    /// The last auction id created by event `id` (auctions follow the persons).
    fn last_auction(&self, id: usize) -> usize {
        let c = &self.config;
        let mut epoch = id / self.denominator;
        let mut offset = id % self.denominator;
        if offset < c.person_proportion {
            // Before this epoch's auctions: the previous epoch's last one.
            epoch = epoch.saturating_sub(1);
            offset = c.auction_proportion - 1;
        } else if c.person_proportion + c.auction_proportion <= offset {
            offset = c.auction_proportion - 1;
        } else {
            offset -= c.person_proportion;
        }
        epoch * c.auction_proportion + offset
    }
}

/// One field of a Nexmark event, before it is appended to its column.
#[derive(Clone, Copy)]
enum NexmarkValue<'a> {
    Int(usize),
    Text(&'a str),
    /// Milliseconds since the epoch.
    Time(u64),
}

/// Appends Nexmark field values to a column: the builder of the value's own type.
enum NexmarkColumn {
    Int(Int64Builder),
    Text(StringBuilder),
    Time(TimestampMicrosecondBuilder),
}

impl NexmarkColumn {
    fn push(&mut self, v: NexmarkValue<'_>, name: &str) -> Result<(), String> {
        match (self, v) {
            (NexmarkColumn::Int(b), NexmarkValue::Int(x)) => b.append_value(x as i64),
            (NexmarkColumn::Text(b), NexmarkValue::Text(t)) => b.append_value(t),
            (NexmarkColumn::Time(b), NexmarkValue::Time(ms)) => b.append_value(ms as i64 * 1000),
            _ => return Err(format!("nexmark field \"{name}\" changed type")),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            NexmarkColumn::Int(mut b) => Arc::new(b.finish()),
            NexmarkColumn::Text(mut b) => Arc::new(b.finish()),
            NexmarkColumn::Time(mut b) => Arc::new(b.finish().with_timezone("+00:00")),
        }
    }
}

/// Field `name` of a Nexmark event (RisingWave's column names).
fn nexmark_value<'a>(
    event: &'a nexmark::event::Event,
    name: &str,
) -> Result<NexmarkValue<'a>, String> {
    use nexmark::event::Event;
    use NexmarkValue::{Int, Text, Time};
    Ok(match (event, name) {
        (Event::Person(p), "id") => Int(p.id),
        (Event::Person(p), "name") => Text(&p.name),
        (Event::Person(p), "email_address") => Text(&p.email_address),
        (Event::Person(p), "credit_card") => Text(&p.credit_card),
        (Event::Person(p), "city") => Text(&p.city),
        (Event::Person(p), "state") => Text(&p.state),
        (Event::Person(p), "date_time") => Time(p.date_time),
        (Event::Person(p), "extra") => Text(&p.extra),
        (Event::Auction(a), "id") => Int(a.id),
        (Event::Auction(a), "item_name") => Text(&a.item_name),
        (Event::Auction(a), "description") => Text(&a.description),
        (Event::Auction(a), "initial_bid") => Int(a.initial_bid),
        (Event::Auction(a), "reserve") => Int(a.reserve),
        (Event::Auction(a), "date_time") => Time(a.date_time),
        (Event::Auction(a), "expires") => Time(a.expires),
        (Event::Auction(a), "seller") => Int(a.seller),
        (Event::Auction(a), "category") => Int(a.category),
        (Event::Auction(a), "extra") => Text(&a.extra),
        (Event::Bid(b), "auction") => Int(b.auction),
        (Event::Bid(b), "bidder") => Int(b.bidder),
        (Event::Bid(b), "price") => Int(b.price),
        (Event::Bid(b), "channel") => Text(&b.channel),
        (Event::Bid(b), "url") => Text(&b.url),
        (Event::Bid(b), "date_time") => Time(b.date_time),
        (Event::Bid(b), "extra") => Text(&b.extra),
        (_, other) => return Err(format!("no nexmark field \"{other}\"")),
    })
}

/// The fields of each Nexmark event type (RisingWave's column names).
fn nexmark_fields(ty: nexmark::event::EventType) -> Vec<&'static str> {
    use nexmark::event::EventType;
    match ty {
        EventType::Person => vec![
            "id",
            "name",
            "email_address",
            "credit_card",
            "city",
            "state",
            "date_time",
            "extra",
        ],
        EventType::Auction => vec![
            "id",
            "item_name",
            "description",
            "initial_bid",
            "reserve",
            "date_time",
            "expires",
            "seller",
            "category",
            "extra",
        ],
        EventType::Bid => vec![
            "auction",
            "bidder",
            "price",
            "channel",
            "url",
            "date_time",
            "extra",
        ],
    }
}

/// SplitMix64: a fast, well-mixed hash of (seed, row, field).
fn mix(seed: u64, row: i64, field: u64) -> u64 {
    let mut z = seed
        .wrapping_add((row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(field.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1).
fn unit(seed: u64, row: i64, field: u64) -> f64 {
    (mix(seed, row, field) >> 11) as f64 / (1u64 << 53) as f64
}

fn pick<'a>(choices: &[(&'a str, f64)], u: f64) -> &'a str {
    let mut acc = 0.0;
    for (c, w) in choices {
        acc += w;
        if u < acc {
            return c;
        }
    }
    choices.last().map(|(c, _)| *c).unwrap_or("")
}

const COUNTRIES: [(&str, f64); 10] = [
    ("US", 0.36),
    ("BR", 0.12),
    ("IN", 0.1),
    ("GB", 0.08),
    ("DE", 0.07),
    ("MX", 0.07),
    ("FR", 0.06),
    ("JP", 0.05),
    ("KR", 0.05),
    ("CA", 0.04),
];
const DEVICES: [(&str, f64); 4] = [
    ("tv", 0.5),
    ("mobile", 0.3),
    ("web", 0.15),
    ("tablet", 0.05),
];
const ROWS: [(&str, f64); 6] = [
    ("trending_now", 0.25),
    ("because_you_watched", 0.2),
    ("top_10", 0.2),
    ("continue_watching", 0.15),
    ("new_releases", 0.12),
    ("my_list", 0.08),
];
const TITLES: i64 = 2000;
const USERS: i64 = 100_000;

fn playback_fields(stream: &Stream) -> Vec<&'static str> {
    match stream {
        Stream::Plays => vec![
            "user_id",
            "title_id",
            "country",
            "device",
            "duration_sec",
            "event_time",
        ],
        Stream::Impressions => vec![
            "user_id",
            "title_id",
            "row_name",
            "position",
            "country",
            "device",
            "event_time",
        ],
    }
}

impl GeneratorConfig {
    /// The event time row `i` would have if nothing were out of order.
    fn base_time(&self, i: i64) -> i64 {
        self.start_micros + (i as f64 / self.rows_per_second * self.speedup * 1e6) as i64
    }

    /// Row `i` as `(name, value)` pairs.
    fn row(&self, i: i64, columns: &[(String, DataType)]) -> Result<Vec<ScalarValue>, String> {
        let seed = self.seed;
        let tz = Some(Arc::<str>::from("+00:00"));
        let mut out = Vec::with_capacity(columns.len());
        match self.kind {
            Kind::Datagen => {
                for (c, ((name, dt), f)) in columns.iter().zip(&self.fields).enumerate() {
                    let c = c as u64;
                    let v = match (f, dt) {
                        (FieldGen::Sequence { start, .. }, _) => {
                            ScalarValue::Int64(Some(start + i))
                        }
                        (FieldGen::Random { max_past_ms, .. }, DataType::Timestamp(_, _)) => {
                            let past = (unit(seed, i, c) * *max_past_ms as f64 * 1000.0) as i64;
                            ScalarValue::TimestampMicrosecond(
                                Some(self.base_time(i) - past),
                                tz.clone(),
                            )
                        }
                        (FieldGen::Random { length, .. }, DataType::Utf8) => {
                            let s: String = (0..*length)
                                .map(|k| {
                                    let x = mix(seed, i, c * 1000 + k as u64) % 26;
                                    (b'a' + x as u8) as char
                                })
                                .collect();
                            ScalarValue::Utf8(Some(s))
                        }
                        (FieldGen::Random { .. }, DataType::Boolean) => {
                            ScalarValue::Boolean(Some(mix(seed, i, c) & 1 == 1))
                        }
                        (
                            FieldGen::Random { min, max, .. },
                            DataType::Float32 | DataType::Float64,
                        ) => ScalarValue::Float64(Some(min + unit(seed, i, c) * (max - min))),
                        (FieldGen::Random { min, max, .. }, _) => {
                            let span = (max - min).max(0.0) as i64 + 1;
                            ScalarValue::Int64(Some(
                                *min as i64 + (mix(seed, i, c) % span as u64) as i64,
                            ))
                        }
                    };
                    out.push(cast(v, dt, name)?);
                }
            }
            Kind::Nexmark => {
                let mut rows = self.rows(i, i + 1, columns)?;
                return rows
                    .pop()
                    .ok_or_else(|| "the nexmark generator ended".to_string());
            }
            Kind::Playback => {
                let t = self.base_time(i);
                // Disorder: most events are in order, some a little behind, a few far
                // behind (late for any reasonable watermark delay).
                let d = unit(seed, i, 1);
                let delay_us: i64 = if d < 0.80 {
                    0
                } else if d < 0.98 {
                    (unit(seed, i, 2) * 3_000_000.0) as i64
                } else {
                    30_000_000 + (unit(seed, i, 2) * 90_000_000.0) as i64
                };
                let event_time = t - delay_us;
                // Skewed popularity that drifts: rank r gets weight ~ 1/r, and which title
                // holds each rank rotates every 10 minutes of event time.
                let rank = ((TITLES as f64).powf(unit(seed, i, 3)) as i64).clamp(1, TITLES);
                let era = event_time.div_euclid(600_000_000);
                // 7919 is prime to TITLES: ranks map to scattered, distinct titles in each era.
                let title =
                    ((rank - 1) * 7919 + era.rem_euclid(TITLES) * 131).rem_euclid(TITLES) + 1;
                let user = (mix(seed, i, 4) % USERS as u64) as i64 + 1;
                for (name, dt) in columns {
                    let v = match name.as_str() {
                        "user_id" => ScalarValue::Int64(Some(user)),
                        "title_id" => ScalarValue::Int64(Some(title)),
                        "country" => ScalarValue::Utf8(Some(
                            pick(&COUNTRIES, unit(seed, user, 5)).to_string(),
                        )),
                        "device" => {
                            ScalarValue::Utf8(Some(pick(&DEVICES, unit(seed, i, 6)).to_string()))
                        }
                        "duration_sec" => ScalarValue::Int64(Some(
                            60 + (unit(seed, i, 7).powi(2) * 7200.0) as i64,
                        )),
                        "row_name" => {
                            ScalarValue::Utf8(Some(pick(&ROWS, unit(seed, i, 8)).to_string()))
                        }
                        "position" => ScalarValue::Int64(Some((mix(seed, i, 9) % 40) as i64 + 1)),
                        "event_time" => {
                            ScalarValue::TimestampMicrosecond(Some(event_time), tz.clone())
                        }
                        other => return Err(format!("no playback field \"{other}\"")),
                    };
                    out.push(cast(v, dt, name)?);
                }
            }
        }
        Ok(out)
    }
}

fn cast(v: ScalarValue, dt: &DataType, name: &str) -> Result<ScalarValue, String> {
    if &v.data_type() == dt {
        return Ok(v);
    }
    v.cast_to(dt)
        .map_err(|e| format!("column \"{name}\": cannot generate a {dt}: {e}"))
}

/// Everything a generator reader needs.
pub struct GeneratorSpec {
    pub source_name: String,
    pub config: GeneratorConfig,
    /// Payload columns (the schema's columns, in order).
    pub columns: Vec<(String, DataType)>,
    pub schema: SchemaRef,
    /// The next row to generate, as last committed.
    pub start: i64,
    pub watermark: Option<WatermarkSpec>,
    /// The columns to generate (sorted), if not all; the others are NULL (Nexmark only:
    /// its fields are generated by name, so a subset holds the same values).
    pub used: Option<Vec<usize>>,
}

/// Starts a generator thread feeding `sink`.
pub fn spawn(spec: GeneratorSpec, mut sink: Sink) -> Result<ReaderHandle, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let (catch_tx, catch_rx) = mpsc::channel::<mpsc::Sender<()>>();
    let stop2 = stop.clone();
    let name = format!("freshet-gen-{}", spec.source_name);
    ReaderHandle::spawn(name, stop, catch_tx, move || {
        run(&spec, &mut sink, &stop2, catch_rx)
    })
}

fn run(
    spec: &GeneratorSpec,
    sink: &mut Sink,
    stop: &AtomicBool,
    catch_rx: mpsc::Receiver<mpsc::Sender<()>>,
) -> Result<(), String> {
    let cfg = &spec.config;
    let mut tracker: Option<WatermarkTracker> = spec.watermark.as_ref().map(|w| {
        let mut t = w.tracker();
        t.add_partition(0);
        t
    });
    // The generated columns and their schema, when not all.
    let subset = spec.used.as_ref().map(|used| {
        let columns: Vec<(String, DataType)> = used
            .iter()
            .filter_map(|&i| spec.columns.get(i).cloned())
            .collect();
        let fields: Vec<datafusion::arrow::datatypes::Field> = used
            .iter()
            .filter_map(|&i| spec.schema.fields().get(i).map(|f| f.as_ref().clone()))
            .collect();
        (columns, freshet_engine::chunk::arc_schema(fields))
    });
    let started = Instant::now();
    let mut next = spec.start;
    let mut waiting: Vec<(i64, mpsc::Sender<()>)> = Vec::new();
    let end = cfg.max_rows.unwrap_or(i64::MAX);
    while !stop.load(Ordering::SeqCst) {
        let due = if cfg.unpaced {
            end
        } else {
            spec.start + (started.elapsed().as_secs_f64() * cfg.rows_per_second) as i64
        };
        let due = due.min(end);
        while let Ok(w) = catch_rx.try_recv() {
            waiting.push((due, w));
        }
        if next >= due {
            waiting.retain(|(target, tx)| {
                if next >= *target {
                    let _ = tx.send(());
                    false
                } else {
                    true
                }
            });
            let wait = if next >= end {
                Duration::from_millis(50)
            } else {
                Duration::from_secs_f64((1.0 / cfg.rows_per_second).clamp(0.001, 0.05))
            };
            std::thread::sleep(wait);
            continue;
        }
        let upto = due.min(next + BATCH_ROWS);
        let mut batch = match (&spec.used, &subset) {
            (Some(used), Some((columns, schema))) => {
                let part = cfg.batch(next, upto, columns, schema)?;
                let n = part.num_rows();
                let mut parts = part.columns().iter();
                let arrays = spec
                    .schema
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| match used.binary_search(&i) {
                        Ok(_) => parts.next().cloned().ok_or("generated too few columns"),
                        Err(_) => Ok(datafusion::arrow::array::new_null_array(f.data_type(), n)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                RecordBatch::try_new(spec.schema.clone(), arrays).map_err(|e| e.to_string())?
            }
            _ => cfg.batch(next, upto, &spec.columns, &spec.schema)?,
        };
        let mut late = Vec::new();
        if let Some(t) = &mut tracker {
            // Event times in microseconds, then each row observed in order.
            let times = datafusion::arrow::compute::cast(
                batch.column(t.column),
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )
            .map_err(|e| e.to_string())?;
            let times = times
                .as_any()
                .downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()
                .ok_or("event time column is not a timestamp")?;
            let mut keep = Vec::with_capacity(batch.num_rows());
            let now = Instant::now();
            for r in 0..batch.num_rows() {
                let ts = times.is_valid(r).then(|| times.value(r));
                match t.observe_at(0, ts, now) {
                    Ok(()) => keep.push(true),
                    Err(wm) => {
                        keep.push(false);
                        let text = batch
                            .columns()
                            .iter()
                            .map(|c| {
                                ScalarValue::try_from_array(c, r)
                                    .map(|v| v.to_string())
                                    .map_err(|e| e.to_string())
                            })
                            .collect::<Result<Vec<_>, String>>()?;
                        late.push(LateEvent {
                            partition: 0,
                            offset: next + r as i64,
                            event_time: ts.unwrap_or_default(),
                            watermark: wm,
                            payload: payload_head(format!("({})", text.join(", ")).as_bytes()),
                        });
                    }
                }
            }
            if !late.is_empty() {
                batch = datafusion::arrow::compute::filter_record_batch(
                    &batch,
                    &BooleanArray::from(keep),
                )
                .map_err(|e| e.to_string())?;
            }
        }
        next = upto;
        let n = batch.num_rows();
        let chunk = Chunk::new(batch, vec![1; n]);
        sink(SourceBatch {
            chunk,
            positions: Vec::new(),
            deletes: Vec::new(),
            offsets: vec![(0, next)],
            errors: Vec::new(),
            watermark: tracker.as_ref().and_then(WatermarkTracker::watermark),
            maxima: tracker
                .as_ref()
                .map(WatermarkTracker::maxima)
                .unwrap_or_default(),
            late,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<(String, DataType)> {
        vec![
            ("title_id".into(), DataType::Int64),
            ("country".into(), DataType::Utf8),
            (
                "event_time".into(),
                DataType::Timestamp(
                    datafusion::arrow::datatypes::TimeUnit::Microsecond,
                    Some("+00:00".into()),
                ),
            ),
        ]
    }

    #[test]
    fn playback_is_deterministic_and_skewed() {
        let opts = vec![
            (
                "playback.start.millis".to_string(),
                "1700000000000".to_string(),
            ),
            ("playback.rows.per.second".to_string(), "100".to_string()),
        ];
        let cfg = GeneratorConfig::parse(Kind::Playback, &cols(), &opts).unwrap();
        let a: Vec<_> = (0..1000).map(|i| cfg.row(i, &cols()).unwrap()).collect();
        let b: Vec<_> = (0..1000).map(|i| cfg.row(i, &cols()).unwrap()).collect();
        assert_eq!(a, b);
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for r in &a {
            if let ScalarValue::Int64(Some(t)) = r[0] {
                *counts.entry(t).or_default() += 1;
            }
        }
        let top = counts.values().max().copied().unwrap_or(0);
        assert!(
            top >= 50,
            "the most popular title should stand out, got {top}"
        );
        let out_of_order = a
            .windows(2)
            .filter(|w| {
                freshet_engine::chunk::timestamp_micros(&w[1][2])
                    < freshet_engine::chunk::timestamp_micros(&w[0][2])
            })
            .count();
        assert!(out_of_order > 10, "some events are out of order");
    }

    #[test]
    fn datagen_options_are_checked() {
        let c = vec![("id".to_string(), DataType::Int64)];
        let ok = vec![
            ("datagen.start.millis".to_string(), "0".to_string()),
            ("fields.id.kind".to_string(), "sequence".to_string()),
            ("fields.id.start".to_string(), "5".to_string()),
            ("fields.id.end".to_string(), "9".to_string()),
        ];
        let cfg = GeneratorConfig::parse(Kind::Datagen, &c, &ok).unwrap();
        assert_eq!(cfg.max_rows, Some(5));
        assert_eq!(cfg.row(2, &c).unwrap(), vec![ScalarValue::Int64(Some(7))]);
        let mut bad = ok.clone();
        bad.push(("fields.id.colour".to_string(), "red".to_string()));
        assert!(GeneratorConfig::parse(Kind::Datagen, &c, &bad).is_err());
    }

    #[test]
    fn nexmark_rows_are_a_pure_function_of_the_offset() {
        let ts = DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some("+00:00".into()),
        );
        let c = vec![
            ("auction".to_string(), DataType::Int64),
            ("price".to_string(), DataType::Int64),
            ("date_time".to_string(), ts),
        ];
        let opts = vec![
            ("nexmark.table.type".to_string(), "Bid".to_string()),
            (
                "nexmark.start.millis".to_string(),
                "1700000000000".to_string(),
            ),
            ("nexmark.event.num".to_string(), "500".to_string()),
        ];
        let cfg = GeneratorConfig::parse(Kind::Nexmark, &c, &opts).unwrap();
        // The columnar batch holds the same rows, for declared types that differ from
        // the generator's own (INT, TIMESTAMP without time zone) too.
        for cols in [
            c.clone(),
            vec![
                ("price".to_string(), DataType::Int32),
                ("url".to_string(), DataType::Utf8),
                (
                    "date_time".to_string(),
                    DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
                ),
            ],
        ] {
            let schema = freshet_engine::chunk::arc_schema(
                cols.iter()
                    .map(|(n, t)| datafusion::arrow::datatypes::Field::new(n, t.clone(), true))
                    .collect(),
            );
            let columnar = cfg.batch(100, 200, &cols, &schema).unwrap();
            let by_rows = freshet_engine::chunk::rows_to_batch(
                schema.clone(),
                &cfg.rows(100, 200, &cols).unwrap(),
            )
            .unwrap();
            assert_eq!(columnar, by_rows);
        }
        // Bids read without their strings are computed without the `nexmark` crate
        // (`BidNumbers`): every number must equal the crate's, at the start, across
        // epochs and far into the stream (where times are rounded in f32).
        let numbers: Vec<(String, DataType)> = vec![
            ("date_time".to_string(), c[2].1.clone()),
            ("bidder".to_string(), DataType::Int64),
            ("price".to_string(), DataType::Int64),
            ("auction".to_string(), DataType::Int64),
        ];
        let unbounded = GeneratorConfig::parse(Kind::Nexmark, &numbers, &opts[..2]).unwrap();
        assert!(unbounded.direct.is_some());
        let schema = freshet_engine::chunk::arc_schema(
            numbers
                .iter()
                .map(|(n, t)| datafusion::arrow::datatypes::Field::new(n, t.clone(), true))
                .collect(),
        );
        for from in [
            0,
            45,
            12_345,
            1_000_003,
            50_000_000,
            400_000_000,
            3_000_000_000,
        ] {
            let fast = unbounded
                .batch(from, from + 2_000, &numbers, &schema)
                .unwrap();
            let standard = freshet_engine::chunk::rows_to_batch(
                schema.clone(),
                &unbounded.rows(from, from + 2_000, &numbers).unwrap(),
            )
            .unwrap();
            assert_eq!(fast, standard, "bids from {from}");
        }
        // The same for persons and auctions read without their random text.
        let int = DataType::Int64;
        let text = DataType::Utf8;
        for (ty, cols) in [
            (
                "Person",
                vec![
                    ("state", text.clone()),
                    ("date_time", c[2].1.clone()),
                    ("id", int.clone()),
                    ("name", text.clone()),
                    ("city", text.clone()),
                ],
            ),
            (
                "Auction",
                vec![
                    ("seller", int.clone()),
                    ("expires", c[2].1.clone()),
                    ("category", int.clone()),
                    ("id", int.clone()),
                    ("reserve", int.clone()),
                    ("date_time", c[2].1.clone()),
                    ("initial_bid", int.clone()),
                ],
            ),
        ] {
            let cols: Vec<(String, DataType)> =
                cols.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
            let opts = vec![
                ("nexmark.table.type".to_string(), ty.to_string()),
                opts[1].clone(),
            ];
            let gen = GeneratorConfig::parse(Kind::Nexmark, &cols, &opts).unwrap();
            assert!(gen.direct.is_some());
            let schema = freshet_engine::chunk::arc_schema(
                cols.iter()
                    .map(|(n, t)| datafusion::arrow::datatypes::Field::new(n, t.clone(), true))
                    .collect(),
            );
            for from in [0, 7, 12_345, 1_000_003, 50_000_000, 400_000_000] {
                let fast = gen.batch(from, from + 500, &cols, &schema).unwrap();
                let standard = freshet_engine::chunk::rows_to_batch(
                    schema.clone(),
                    &gen.rows(from, from + 500, &cols).unwrap(),
                )
                .unwrap();
                assert_eq!(fast, standard, "{ty} from {from}");
            }
        }
        let batch = cfg.rows(100, 200, &c).unwrap();
        for (k, row) in batch.iter().enumerate() {
            assert_eq!(row, &cfg.row(100 + k as i64, &c).unwrap());
        }
        // Hot auctions: a few auctions get a large share of the bids.
        let all = cfg.rows(0, 500, &c).unwrap();
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for r in &all {
            *per.entry(r[0].to_string()).or_default() += 1;
        }
        let top = per.values().max().copied().unwrap_or(0);
        assert!(top * 10 > all.len(), "no hot auction: {per:?}");
        let bad = vec![
            ("nexmark.table.type".to_string(), "Nope".to_string()),
            ("nexmark.start.millis".to_string(), "0".to_string()),
        ];
        assert!(GeneratorConfig::parse(Kind::Nexmark, &c, &bad).is_err());
    }
}
