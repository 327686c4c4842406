//! [`PostgresStore`] as an [`IdempotencyLedger`]: event routes' keys in the shared database, so
//! de-duplication holds across every replica and survives their restarts.
//!
//! Each call is one statement in a transaction of its own (one round trip); claims and let-gos
//! are committed without a WAL flush of their own (the dispatch's commit flushes them). The claim is an
//! `INSERT … ON CONFLICT DO UPDATE … WHERE expired`, which PostgreSQL runs atomically against
//! concurrent claims of the same key: of two replicas handed one delivery at once, one claims it
//! and the other is told it is in progress.

use std::time::Duration;

use super::rows::to_db;
use super::{Autocommit, PostgresStore, sql};
use crate::events::ledger::{key_digest, millis, random_token};
use crate::events::{Begin, Claim, IN_PROGRESS_LEASE, IdempotencyLedger, LedgerUnavailable};
use crate::taskflow::StoreError;

// The reason goes to the log only, and there is none without the `tracing` feature.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
fn unavailable(error: StoreError) -> LedgerUnavailable {
    trace_warn!(reason = %error, "PostgreSQL idempotency ledger failed");
    LedgerUnavailable
}

impl IdempotencyLedger for PostgresStore {
    async fn begin(
        &self,
        route: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<Begin, LedgerUnavailable> {
        let (digest, token) = (key_digest(key), random_token());
        let now = self.inner.clock.epoch_millis();
        let lapses = to_db(now.saturating_add(millis(IN_PROGRESS_LEASE)));
        let (now, token_value) = (to_db(now), to_db(token));
        let rows = self
            .timed(
                true,
                // A claim is worth keeping only once its dispatch commits, and that synchronous
                // commit flushes the claim before it: no flush of its own.
                self.statement(
                    Autocommit::UnflushedWrite,
                    sql::BEGIN_KEY,
                    &[&route, &&digest[..], &token_value, &lapses, &now],
                ),
            )
            .await
            .map_err(unavailable)?;
        let row = rows.first().ok_or_else(|| {
            unavailable(StoreError::PersistFailed(
                "the idempotency claim answered no row".into(),
            ))
        })?;
        let (claimed, recorded): (bool, Option<bool>) = (row.get(0), row.get(1));
        Ok(match (claimed, recorded) {
            (true, _) => Begin::Begun(Claim::new(token, ttl)),
            (false, Some(true)) => Begin::Duplicate,
            // A claim in the way, or a row let go between the claim and the look (the first
            // delivery failed a moment ago): the sender is asked to come back in a second.
            (false, _) => Begin::InProgress,
        })
    }

    async fn complete(
        &self,
        route: &str,
        key: &str,
        claim: Claim,
    ) -> Result<(), LedgerUnavailable> {
        let digest = key_digest(key);
        let until = to_db(
            self.inner
                .clock
                .epoch_millis()
                .saturating_add(millis(claim.ttl())),
        );
        let token = to_db(claim.token());
        self.timed(
            true,
            self.statement(
                Autocommit::Write,
                sql::COMPLETE_KEY,
                &[&route, &&digest[..], &token, &until],
            ),
        )
        .await
        .map(drop)
        .map_err(unavailable)
    }

    async fn abandon(&self, route: &str, key: &str, claim: Claim) -> Result<(), LedgerUnavailable> {
        let digest = key_digest(key);
        let token = to_db(claim.token());
        self.timed(
            true,
            // Lost to a database crash, the claim it lets go lapses by itself.
            self.statement(
                Autocommit::UnflushedWrite,
                sql::ABANDON_KEY,
                &[&route, &&digest[..], &token],
            ),
        )
        .await
        .map(drop)
        .map_err(unavailable)
    }
}
