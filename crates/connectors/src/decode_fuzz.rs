//! Fuzzing the decoders: random bytes, and valid JSON objects and CSV lines mutated byte
//! by byte, through every column type. A decoder may refuse a message (it becomes a dead
//! letter) but must never panic. `FRESHET_FUZZ_ITERS` (default 20,000 per format) and
//! `FRESHET_FUZZ_SEED` set the run; the seed is printed.

use std::panic::{catch_unwind, AssertUnwindSafe};

use datafusion::arrow::datatypes::{DataType, IntervalUnit, TimeUnit};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::decode::{parse_text, Decoder, Format};

fn columns() -> Vec<(String, DataType)> {
    let ts = |tz: bool| DataType::Timestamp(TimeUnit::Microsecond, tz.then(|| "+00:00".into()));
    [
        DataType::Boolean,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Float32,
        DataType::Float64,
        DataType::Decimal128(10, 2),
        DataType::Decimal128(38, 10),
        DataType::Utf8,
        DataType::Date32,
        ts(false),
        ts(true),
        DataType::Interval(IntervalUnit::MonthDayNano),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, t)| (format!("c{i}"), t))
    .collect()
}

/// Values that sit on the edges of the types.
const ATOMS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "32767",
    "32768",
    "-32769",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1e308",
    "1e309",
    "-1e400",
    "1.5e-400",
    "0.000000000000000000000000000001",
    "99999999999999999999999999999999999999.5",
    "12345678901234567890123456789012345678901234567890",
    "NaN",
    "inf",
    "-Infinity",
    "true",
    "false",
    "null",
    "\"\"",
    "\"2026-11-28\"",
    "\"2026-02-30\"",
    "\"0000-01-01\"",
    "\"+275760-09-13\"",
    "\"2026-11-28T12:00:00Z\"",
    "\"2026-11-28 12:00:00+25:00\"",
    "\"262143-12-31T23:59:59Z\"",
    "\"1 day 2 hours\"",
    "\"P1Y2M3DT4H5M6.7S\"",
    "\"-178000000 years\"",
    "\"PT9223372036854775807S\"",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "[]",
    "{}",
    "[1,[2,[3]]]",
    "{\"a\":{\"b\":1}}",
    "\"é\"",
    "\"\\\"\"",
];

/// A valid JSON value for `dt` most of the time, an edge value otherwise.
fn value(rng: &mut SmallRng, dt: &DataType) -> &'static str {
    if rng.gen_bool(0.1) {
        return ATOMS[rng.gen_range(0..ATOMS.len())];
    }
    match dt {
        DataType::Boolean => "true",
        DataType::Int16 | DataType::Int32 | DataType::Int64 => "42",
        DataType::Float32 | DataType::Float64 => "1.5",
        DataType::Decimal128(_, _) => "12.34",
        DataType::Utf8 => "\"text\"",
        DataType::Date32 => "\"2026-11-28\"",
        DataType::Timestamp(_, _) => "\"2026-11-28T12:00:00Z\"",
        _ => "\"1 day 02:00:00\"",
    }
}

fn json_message(rng: &mut SmallRng, cols: &[(String, DataType)]) -> Vec<u8> {
    let mut s = String::from("{");
    for (i, (name, _)) in cols.iter().enumerate() {
        if rng.gen_bool(0.2) {
            continue;
        }
        if i > 0 {
            s.push(',');
        }
        let v = value(rng, &cols[i].1);
        s.push_str(&format!("\"{name}\":{v}"));
    }
    s.push('}');
    s.into_bytes()
}

fn csv_message(rng: &mut SmallRng, cols: &[(String, DataType)]) -> Vec<u8> {
    let extra = if rng.gen_bool(0.1) {
        rng.gen_range(1..3)
    } else {
        0
    };
    let fields: Vec<String> = (0..cols.len() + extra)
        .map(|i| {
            let a = match cols.get(i) {
                Some((_, dt)) => value(rng, dt),
                None => ATOMS[rng.gen_range(0..ATOMS.len())],
            }
            .trim_matches('"');
            match rng.gen_range(0..10) {
                0 => format!("\"{}\"", a.replace('"', "\"\"")),
                1 => String::new(),
                _ => a.to_string(),
            }
        })
        .collect();
    fields.join(",").into_bytes()
}

fn mutate(rng: &mut SmallRng, mut m: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.gen_range(0..4) {
        if m.is_empty() {
            break;
        }
        let at = rng.gen_range(0..m.len());
        match rng.gen_range(0..5) {
            0 => m[at] = rng.gen(),
            1 => m.truncate(at),
            2 => {
                const NASTY: &[u8] = b"{[\"\\,:\n\x00\xff9e-";
                m.insert(at, NASTY[rng.gen_range(0..NASTY.len())])
            }
            3 => {
                m.remove(at);
            }
            _ => {
                let tail = m[at..].to_vec();
                m.extend_from_slice(&tail);
            }
        }
    }
    m
}

/// Makes a well-formed message for the columns.
type MakeMessage = fn(&mut SmallRng, &[(String, DataType)]) -> Vec<u8>;

fn run(format: Format, make: MakeMessage) {
    let iters: usize = std::env::var("FRESHET_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("FRESHET_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(19);
    println!("decoder fuzz: {format:?}, {iters} messages, FRESHET_FUZZ_SEED={seed}");
    let cols = columns();
    let decoder = Decoder::new(cols.clone(), format);
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..iters {
        let msg = match i % 3 {
            0 => (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
            1 => make(&mut rng, &cols),
            _ => {
                let m = make(&mut rng, &cols);
                mutate(&mut rng, m)
            }
        };
        match catch_unwind(AssertUnwindSafe(|| decoder.decode(&msg))) {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!(
                "the decoder panicked on message {i} (seed {seed}): {:?}",
                String::from_utf8_lossy(&msg)
            ),
        }
    }
    println!("decoder fuzz: {ok} decoded, {refused} refused, 0 panics");
    assert!(ok > 0 && refused > 0, "the generator covers too little");
}

#[test]
fn json_decoder_never_panics() {
    run(Format::Json, json_message);
}

#[test]
fn csv_decoder_never_panics() {
    run(
        Format::Csv {
            delimiter: b',',
            header: false,
        },
        csv_message,
    );
}

#[test]
fn text_values_never_panic() {
    for (_, dt) in columns() {
        for a in ATOMS {
            let _ = parse_text(a.trim_matches('"'), &dt);
            let _ = parse_text(a, &dt);
        }
    }
}
