//! Sending rows and COPY data as they are produced.
//!
//! pgwire's senders `feed` every message and flush once at the end, which suits a
//! result computed at once but not one that trickles in: a `SUBSCRIBE`'s changes, or the
//! first rows of a long scan, would sit in the connection's buffer until 8 KiB gathered
//! or the statement ended. These send the same messages, flushing whenever the producer
//! has nothing ready.

use std::fmt::Debug;

use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use pgwire::api::results::{CopyResponse, QueryResponse, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyDone, CopyOutResponse};
use pgwire::messages::data::RowDescription;
use pgwire::messages::PgWireBackendMessage;

/// The next item of `s`; what was sent so far is flushed first if it is not ready.
pub async fn next_flushing<C, S>(client: &mut C, s: &mut S) -> PgWireResult<Option<S::Item>>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    S: Stream + Unpin,
{
    if let Some(item) = s.next().now_or_never() {
        return Ok(item);
    }
    client.flush().await?;
    Ok(s.next().await)
}

/// A query's rows (after its RowDescription, if `describe`), then CommandComplete. An
/// error from the rows is returned after the rows before it were sent.
pub async fn send_rows<C>(
    client: &mut C,
    mut results: QueryResponse,
    describe: bool,
) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if describe {
        let fields = results.row_schema();
        let desc = RowDescription::new(fields.iter().map(Into::into).collect());
        client
            .feed(PgWireBackendMessage::RowDescription(desc))
            .await?;
    }
    let mut rows = 0;
    while let Some(row) = next_flushing(client, results.data_rows()).await? {
        client.feed(PgWireBackendMessage::DataRow(row?)).await?;
        rows += 1;
    }
    let tag = Tag::new(results.command_tag()).with_rows(rows);
    client
        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
        .await?;
    Ok(())
}

/// CopyOutResponse, the data, CopyDone and `COPY n`. An error from the data is returned
/// (the caller sends it as an ErrorResponse, which ends a COPY as Postgres does).
pub async fn send_copy_out<C>(client: &mut C, mut resp: CopyResponse) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let formats = resp.column_formats();
    let format = resp.format;
    let columns = i16::try_from(resp.columns).unwrap_or(i16::MAX);
    let data_stream = resp.data_stream();
    client
        .feed(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            format, columns, formats,
        )))
        .await?;
    let mut rows = 0;
    while let Some(data) = next_flushing(client, data_stream).await? {
        client.feed(PgWireBackendMessage::CopyData(data?)).await?;
        rows += 1;
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    let tag = Tag::new("COPY").with_rows(rows);
    client
        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
        .await?;
    Ok(())
}
