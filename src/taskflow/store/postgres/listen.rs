//! The change feed's connection: `LISTEN` on the store's channel, with a reconnect loop that tells
//! subscribers they may have missed something.
//!
//! `NOTIFY` is sent in the same transaction as the change it announces, so PostgreSQL delivers it
//! only once the change is committed, to every replica listening, in commit order. Payloads carry
//! ids only: caller data never travels through the notification queue (8 kB per payload, shared
//! by the whole database), and a subscriber re-reads what it needs.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};

use super::connection::{Target, describe};
use crate::taskflow::store::{Change, ChangeSender};

/// The channel name for the store in `schema`: one per schema, so stores sharing a database
/// (tests, or two deployments) do not hear each other. Channel names are identifiers, at most 63
/// bytes; a long schema name is replaced by its digest.
pub(super) fn channel_name(schema: &str) -> String {
    const PREFIX: &str = "tower_webhooks:";
    if PREFIX.len() + schema.len() <= 63 {
        return format!("{PREFIX}{schema}");
    }
    let digest = Sha256::digest(schema.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{hex}")
}

/// Quotes an identifier for `LISTEN`, which takes no parameters.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connects, listens, forwards, and on any failure reconnects with a capped backoff, announcing
/// the gap. Runs until the store aborts it (when the store is dropped).
pub(super) async fn run(
    target: Arc<Target>,
    channel: String,
    origin: String,
    events: ChangeSender,
    ping_every: Duration,
    mut listening: Option<oneshot::Sender<Result<(), String>>>,
) {
    let mut backoff = Duration::from_millis(50);
    // The first connection follows the store's own start-up: nothing was missed before it.
    let mut first = true;
    loop {
        let reason = listen_once(
            &target,
            &channel,
            &origin,
            &events,
            first,
            &mut backoff,
            ping_every,
            &mut listening,
        )
        .await;
        if let Some(listening) = listening.take() {
            // The store waits for its feed before it answers: report why it has none.
            let _ = listening.send(Err(reason));
            return;
        }
        tracing::warn!(
            target: "tower_webhooks::store",
            backend = "postgres",
            "change feed connection lost, reconnecting: {reason}"
        );
        first = false;
        // `lagged` is sent once the new connection listens: a subscriber told earlier would
        // re-read, then miss what changes before the feed is back.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life; returns why it ended.
#[allow(clippy::too_many_arguments)]
async fn listen_once(
    target: &Target,
    channel: &str,
    origin: &str,
    events: &ChangeSender,
    first: bool,
    backoff: &mut Duration,
    ping_every: Duration,
    listening: &mut Option<oneshot::Sender<Result<(), String>>>,
) -> String {
    match listen(
        target, channel, origin, events, first, backoff, ping_every, listening,
    )
    .await
    {
        Ok(never) => match never {},
        Err(reason) => reason,
    }
}

#[allow(clippy::too_many_arguments)]
async fn listen(
    target: &Target,
    channel: &str,
    origin: &str,
    events: &ChangeSender,
    first: bool,
    backoff: &mut Duration,
    ping_every: Duration,
    listening: &mut Option<oneshot::Sender<Result<(), String>>>,
) -> Result<std::convert::Infallible, String> {
    let mut config = target.config.clone();
    // Operators tell the feed's connection from the pool's in pg_stat_activity.
    config.application_name("tower-webhooks-changes");
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| target.redact(describe(&e)))?;
    let (heard, mut inbox) = mpsc::unbounded_channel();
    // The connection must be polled for the client to make progress; polling its messages does
    // both, and the notifications come out of it.
    let driver = tokio::spawn(async move {
        while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(note)) => {
                    if heard.send(note.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let _abort = AbortOnDrop(driver);
    client
        .batch_execute(&format!("LISTEN {}", quote_identifier(channel)))
        .await
        .map_err(|e| target.redact(describe(&e)))?;
    *backoff = Duration::from_millis(50);
    if let Some(listening) = listening.take() {
        let _ = listening.send(Ok(()));
    }
    if !first {
        events.lagged();
    }
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    loop {
        tokio::select! {
            payload = inbox.recv() => match payload {
                Some(payload) => match payload.split_once(' ') {
                    // This store's own change: its subscribers heard it after the commit.
                    Some((from, _)) if from == origin => {}
                    Some((_, text)) => match Change::decode(text) {
                        Some(change) => events.send(change),
                        None => ignored(),
                    },
                    None => ignored(),
                },
                None => return Err("the server closed the connection".into()),
            },
            _ = ping.tick() => {
                // A silent network path is found by a query that does not come back.
                match tokio::time::timeout(ping_every, client.simple_query("")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(target.redact(describe(&e))),
                    Err(_) => return Err("no answer to a keepalive query".into()),
                }
            }
        }
    }
}

/// Someone else's `NOTIFY` on the channel, not a change: nothing to pass on.
fn ignored() {
    tracing::debug!(
        target: "tower_webhooks::store",
        backend = "postgres",
        "ignored a notification that is not a change"
    );
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_an_identifier_and_differ_per_schema() {
        assert_eq!(channel_name("tw_a"), "tower_webhooks:tw_a");
        let long = "s".repeat(80);
        let named = channel_name(&long);
        assert!(named.len() <= 63, "{named}");
        assert_ne!(named, channel_name(&"t".repeat(80)));
    }

    #[test]
    fn quoted_identifiers_double_their_quotes() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
