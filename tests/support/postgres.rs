//! A PostgreSQL schema per test, from `TOWER_WEBHOOKS_POSTGRES_URL`.
//!
//! Unset: the test prints one line saying it was skipped and why, and returns. Set but
//! unreachable: the test fails. Each test gets a fresh schema (its tables, its notification
//! channel), dropped when the guard goes, so tests run in parallel on one database.

use std::sync::atomic::{AtomicU32, Ordering};

pub const ENV: &str = "TOWER_WEBHOOKS_POSTGRES_URL";

/// The database URL, or `None` after printing why the test is skipped.
pub fn url_or_skip(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("skipped {test}: {ENV} is not set (a PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/test)");
            None
        }
    }
}

/// A schema that exists for one test.
pub struct TestSchema {
    pub name: String,
    base: String,
}

impl TestSchema {
    /// Creates a fresh schema on `base`; panics if the database cannot be reached.
    pub async fn create(base: &str, test: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tw_{}_{}_{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(30)
                .collect::<String>()
                .to_ascii_lowercase(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let client = connect(base).await;
        static CLEANED: std::sync::Once = std::sync::Once::new();
        let mut first = false;
        CLEANED.call_once(|| first = true);
        if first {
            remove_stale(&client).await;
        }
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"))
            .await
            .expect("creating the test schema");
        Self {
            name,
            base: base.to_owned(),
        }
    }

    /// The base URL with this schema as the `search_path`.
    pub fn url(&self) -> String {
        with_search_path(&self.base, &self.name)
    }

    /// A plain connection to the database (any schema), for checks a test makes behind the
    /// store's back.
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&self.url()).await
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Not joined: the test's runtime may still own connections that hold locks on the schema,
        // and blocking its thread here would keep them from ever closing. A schema this misses is
        // removed by the next run (see `remove_stale`).
        let (base, name) = (self.base.clone(), self.name.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&base, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!(
                            "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                        ))
                        .await;
                }
            });
        });
    }
}

/// Drops the test schemas of test processes that are no longer running (the pid is in the name).
async fn remove_stale(client: &tokio_postgres::Client) {
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tw\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name.rsplit('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = client
                    .batch_execute(&format!(
                        "SET lock_timeout = '1s'; DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                    ))
                    .await;
            }
        }
    }
}

pub fn with_search_path(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-csearch_path%3D{schema}")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{ENV} is set but PostgreSQL cannot be reached: {e}"));
    tokio::spawn(connection);
    client
}
