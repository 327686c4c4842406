//! Versioned schema migrations for the database backends, applied when a store is opened.
//!
//! Each backend lists its migrations as a `&'static [Migration]`, versions `1..=N` in order, and
//! runs them with its own driver in one transaction that first takes the database's write lock
//! (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory transaction lock), so two processes
//! starting at once apply each migration once:
//!
//! 1. create the [`SCHEMA_VERSION_TABLE`] if it is missing;
//! 2. read the version ([`CURRENT_VERSION`]): `0` for a new database;
//! 3. [`pending`] says which migrations to run, or refuses a database written by a newer build
//!    ([`StoreError::SchemaTooNew`], naming both versions);
//! 4. run each one's SQL and record it (version, name, time applied), then commit.
//!
//! A migration is never edited once released: a change to the schema is a new migration.

use super::StoreError;

/// One step of a backend's schema.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    /// `1` for the first, then one more for each.
    pub(crate) version: u32,
    /// What it does, recorded beside the version for an operator reading the table.
    pub(crate) name: &'static str,
    /// The statements, run as one batch.
    pub(crate) sql: &'static str,
}

/// The table every backend records its schema version in (portable SQL).
pub(crate) const SCHEMA_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// The database's schema version: `0` when nothing was applied yet.
pub(crate) const CURRENT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_version";

/// The migrations still to run on a database at version `current`, or
/// [`StoreError::SchemaTooNew`] for a database this build does not know.
pub(crate) fn pending(
    migrations: &'static [Migration],
    current: u32,
) -> Result<&'static [Migration], StoreError> {
    debug_assert!(
        migrations
            .iter()
            .enumerate()
            .all(|(i, m)| usize::try_from(m.version).ok() == Some(i + 1)),
        "migrations are numbered 1..=N in order"
    );
    let supported = latest(migrations);
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    let done = usize::try_from(current).unwrap_or(usize::MAX);
    Ok(&migrations[done.min(migrations.len())..])
}

/// The newest version `migrations` reach.
pub(crate) fn latest(migrations: &[Migration]) -> u32 {
    migrations.last().map_or(0, |m| m.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    static STEPS: [Migration; 3] = [
        Migration {
            version: 1,
            name: "one",
            sql: "",
        },
        Migration {
            version: 2,
            name: "two",
            sql: "",
        },
        Migration {
            version: 3,
            name: "three",
            sql: "",
        },
    ];

    #[test]
    fn a_database_runs_what_it_lacks_and_a_newer_one_is_refused() {
        assert_eq!(pending(&STEPS, 0).unwrap().len(), 3);
        assert_eq!(pending(&STEPS, 2).unwrap()[0].name, "three");
        assert!(pending(&STEPS, 3).unwrap().is_empty());
        let error = pending(&STEPS, 4).unwrap_err();
        assert_eq!(
            error,
            StoreError::SchemaTooNew {
                found: 4,
                supported: 3
            }
        );
        let text = error.to_string();
        assert!(
            text.contains("version 4") && text.contains("version 3"),
            "{text}"
        );
    }
}
