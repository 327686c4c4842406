//! A PostgreSQL schema per test, from `TOWER_WEBHOOKS_POSTGRES_URL`.
//!
//! Unset: the test prints one line saying it was skipped and why, and returns. Set but
//! unreachable: the test fails. Each test gets a fresh schema (its tables, its notification
//! channel), dropped when the guard goes, so tests run in parallel on one database.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

pub const ENV: &str = "TOWER_WEBHOOKS_POSTGRES_URL";

/// The database URL, or `None` after printing why the test is skipped.
pub fn url_or_skip(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!(
                "skipped {test}: {ENV} is not set (a PostgreSQL URL, e.g. \
                 postgres://postgres@127.0.0.1:5432/test)"
            );
            // The marker `.ci/run` looks for (the same place and name as main's
            // `tests/support/backends.rs`): CI fails when a backend test skipped.
            let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backend-skips");
            let _ = std::fs::create_dir_all(&dir);
            let marker = format!("{}--{test}", ENV.to_ascii_lowercase());
            let _ = std::fs::write(dir.join(marker), format!("{test} skipped: {ENV} unset\n"));
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
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
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
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
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

/// A TCP proxy between the store and PostgreSQL that a test can cut and restore: a database
/// outage on demand, without stopping the database other tests share.
pub struct TcpProxy {
    pub addr: std::net::SocketAddr,
    state: std::sync::Arc<ProxyState>,
    accept: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    down: std::sync::atomic::AtomicBool,
    // Cut the connection that sends the next `COMMIT`, after forwarding it.
    cut_at_commit: std::sync::atomic::AtomicBool,
    generation: tokio::sync::watch::Sender<u64>,
}

impl TcpProxy {
    /// A proxy on 127.0.0.1 (a free port) to the host and port of `base`.
    pub async fn start(base: &str) -> Self {
        let config: tokio_postgres::Config = base.parse().unwrap();
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            #[allow(unreachable_patterns)]
            _ => panic!("the outage tests need a TCP URL"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = std::sync::Arc::new(ProxyState {
            down: Default::default(),
            cut_at_commit: Default::default(),
            generation: tokio::sync::watch::Sender::new(0),
        });
        let shared = std::sync::Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let shared = std::sync::Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut cut = shared.generation.subscribe();
                    tokio::select! {
                        _ = pipe(client, server, &shared) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// `base` with the proxy's address in place of the database's.
    pub fn url(&self, base: &str, schema: &str) -> String {
        let config: tokio_postgres::Config = base.parse().unwrap();
        let user = config.get_user().unwrap_or("postgres");
        let db = config.get_dbname().unwrap_or(user);
        with_search_path(
            &format!("postgres://{user}@{}/{db}?connect_timeout=2", self.addr),
            schema,
        )
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// The next `COMMIT` a client sends reaches the database, and then its connection is cut
    /// before the answer comes back: a commit whose outcome the client cannot know.
    pub fn cut_after_next_commit(&self) {
        self.state.cut_at_commit.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.generation.send_modify(|g| *g += 1);
    }
}

async fn pipe(client: tokio::net::TcpStream, server: tokio::net::TcpStream, state: &ProxyState) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let commit = chunk.windows(6).any(|w| w == b"COMMIT");
            if server_write.write_all(chunk).await.is_err() {
                return;
            }
            if commit && state.cut_at_commit.swap(false, Ordering::SeqCst) {
                // The database has the bytes; the client never gets the answer.
                return;
            }
        }
    };
    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}
