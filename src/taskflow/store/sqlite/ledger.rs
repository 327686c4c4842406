//! [`SqliteStore`] as an [`IdempotencyLedger`]: event routes' keys in the store's file, so a
//! restart forgets no delivery it dispatched.
//!
//! Each call is one write on the store's writer thread (sharing its group commit), so the check
//! and the claim are one transaction, also between processes on one file. Claims and let-gos are
//! committed without an `fsync` of their own (the dispatch's commit flushes them).

use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use super::{Flush, SqliteStore, Write, failed, millis};
use crate::events::ledger::{key_digest, millis as duration_millis, random_token};
use crate::events::{Begin, Claim, IN_PROGRESS_LEASE, IdempotencyLedger, LedgerUnavailable};
use crate::taskflow::StoreError;

// The reason goes to the log only, and there is none without the `tracing` feature.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
fn unavailable(error: StoreError) -> LedgerUnavailable {
    trace_warn!(reason = %error, "SQLite idempotency ledger failed");
    LedgerUnavailable
}

fn token_value(token: u64) -> i64 {
    i64::try_from(token).unwrap_or(i64::MAX)
}

impl Write<'_> {
    /// Claims the key unless it is recorded or claimed and not expired; otherwise says which.
    fn begin_key(
        &mut self,
        route: &str,
        digest: &[u8; 32],
        token: u64,
    ) -> Result<bool, StoreError> {
        let lapses = millis(self.now.saturating_add(duration_millis(IN_PROGRESS_LEASE)));
        self.tx
            .prepare_cached(
                "INSERT INTO idempotency_keys (route_id, key_hash, claim_token, expires_at) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (route_id, key_hash) DO UPDATE \
                 SET claim_token = excluded.claim_token, expires_at = excluded.expires_at \
                 WHERE idempotency_keys.expires_at <= ?5",
            )
            .and_then(|mut s| {
                s.execute(params![
                    route,
                    &digest[..],
                    token_value(token),
                    lapses,
                    millis(self.now)
                ])
            })
            .map(|changed| changed == 1)
            .map_err(failed)
    }

    /// Whether the unexpired row that kept the key from being claimed is a record (not a claim).
    fn key_recorded(&self, route: &str, digest: &[u8; 32]) -> Result<bool, StoreError> {
        let token: Option<Option<i64>> = self
            .tx
            .prepare_cached(
                "SELECT claim_token FROM idempotency_keys WHERE route_id = ?1 AND key_hash = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![route, &digest[..]], |row| row.get(0))
                    .optional()
            })
            .map_err(failed)?;
        Ok(matches!(token, Some(None)))
    }

    /// Records the key for `ttl` if `token` still holds it, or if nobody does (the claim lapsed and
    /// was swept): a dispatched key must not be dispatched again.
    fn complete_key(
        &mut self,
        route: &str,
        digest: &[u8; 32],
        token: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let until = millis(self.now.saturating_add(duration_millis(ttl)));
        self.tx
            .prepare_cached(
                "INSERT INTO idempotency_keys (route_id, key_hash, claim_token, expires_at) \
                 VALUES (?1, ?2, NULL, ?4) \
                 ON CONFLICT (route_id, key_hash) DO UPDATE \
                 SET claim_token = NULL, expires_at = excluded.expires_at \
                 WHERE idempotency_keys.claim_token = ?3",
            )
            .and_then(|mut s| s.execute(params![route, &digest[..], token_value(token), until]))
            .map(drop)
            .map_err(failed)
    }

    /// Lets the key go if `token` still holds it.
    fn abandon_key(
        &mut self,
        route: &str,
        digest: &[u8; 32],
        token: u64,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "DELETE FROM idempotency_keys \
                 WHERE route_id = ?1 AND key_hash = ?2 AND claim_token = ?3",
            )
            .and_then(|mut s| s.execute(params![route, &digest[..], token_value(token)]))
            .map(drop)
            .map_err(failed)
    }
}

impl IdempotencyLedger for SqliteStore {
    async fn begin(
        &self,
        route: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<Begin, LedgerUnavailable> {
        let (route, digest, token) = (route.to_owned(), key_digest(key), random_token());
        // A claim is worth keeping only once its dispatch commits, and that commit flushes the
        // claim with it: no flush of its own (one `fsync` fewer per delivery).
        self.write_flushed(Flush::WithTheNext, move |w| {
            if w.begin_key(&route, &digest, token)? {
                Ok(Begin::Begun(Claim::new(token, ttl)))
            } else if w.key_recorded(&route, &digest)? {
                Ok(Begin::Duplicate)
            } else {
                Ok(Begin::InProgress)
            }
        })
        .await
        .map_err(unavailable)
    }

    async fn complete(
        &self,
        route: &str,
        key: &str,
        claim: Claim,
    ) -> Result<(), LedgerUnavailable> {
        let (route, digest) = (route.to_owned(), key_digest(key));
        self.write(move |w| w.complete_key(&route, &digest, claim.token(), claim.ttl()))
            .await
            .map_err(unavailable)
    }

    async fn abandon(&self, route: &str, key: &str, claim: Claim) -> Result<(), LedgerUnavailable> {
        let (route, digest) = (route.to_owned(), key_digest(key));
        // Lost to a crash, the claim it lets go lapses by itself.
        self.write_flushed(Flush::WithTheNext, move |w| {
            w.abandon_key(&route, &digest, claim.token())
        })
        .await
        .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's `synchronous` setting, read inside a write as every change would see it.
    async fn synchronous(store: &SqliteStore) -> i64 {
        store
            .write(|w| {
                w.tx.pragma_query_value(None, "synchronous", |row| row.get(0))
                    .map_err(failed)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_claim_is_committed_unflushed_and_every_other_change_flushed() {
        let dir = std::env::temp_dir().join(format!("tw-ledger-flush-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(dir.join("flush.db"), Default::default()).unwrap();
        const FULL: i64 = 2;
        assert_eq!(synchronous(&store).await, FULL);
        let claim = store
            .write_flushed(Flush::WithTheNext, |w| {
                w.tx.pragma_query_value(None, "synchronous", |row| row.get::<_, i64>(0))
                    .map_err(failed)
            })
            .await
            .unwrap();
        assert_eq!(claim, 1, "NORMAL inside the claim's batch");
        let begun = store.begin("route", "key", Duration::from_secs(60)).await;
        assert!(matches!(begun, Ok(Begin::Begun(_))), "{begun:?}");
        assert_eq!(synchronous(&store).await, FULL, "restored after the batch");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
