//! Sources: the Kafka reader ([`kafka`]) and the payload decoders ([`decode`]: JSON, CSV).
//! Readers hand decoded changelog chunks, with the offsets they reach and the messages
//! that failed to decode, to a sink — the engine — which commits all of it atomically.

pub mod decode;
#[cfg(test)]
mod decode_fuzz;
pub mod generator;
pub mod kafka;
pub mod kafka_reader;
pub mod kafka_sink;
pub mod sink_encode;
pub mod watermark;
