//! [`StoreUrl`]: which backend a `store` setting names, printed without its password.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// A parsed `store` setting (SPEC §7): `memory`, `sqlite:<path>` or `postgres://…`.
///
/// `Display` and `Debug` are safe for logs, errors and `--check-config`: a PostgreSQL URL's
/// password and its query string (which may carry `password=`) are replaced by `***`; the full
/// URL is kept in a [`Secret`] and reaches only the driver.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `memory`: the in-memory store (the default).
    Memory,
    /// `sqlite:<path>`: a SQLite file.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`: a PostgreSQL database.
    Postgres(Secret),
}

impl StoreUrl {
    /// Parses a setting. A relative SQLite path is taken relative to `base` (the config file's
    /// directory) when given. The error names what is wrong and never repeats the text, which may
    /// hold a password.
    pub fn parse(text: &str, base: Option<&Path>) -> Result<Self, String> {
        let text = text.trim();
        if text == "memory" {
            return Ok(Self::Memory);
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            // `sqlite://path` is how some tools write it: accept the slashes as part of neither.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    "sqlite: needs a file path, like sqlite:/var/lib/tower-webhooks/flows.db"
                        .into(),
                );
            }
            let path = Path::new(path);
            let path = match base {
                Some(base) if path.is_relative() => base.join(path),
                _ => path.to_path_buf(),
            };
            return Ok(Self::Sqlite(path));
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let secret = Secret::new(text).ok_or("the postgres URL is empty")?;
            return Ok(Self::Postgres(secret));
        }
        let scheme = text.split_once(':').map_or("", |(scheme, _)| scheme);
        let shown: String = scheme
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .take(32)
            .collect();
        Err(if shown.is_empty() {
            "must be memory, sqlite:<path> or postgres://…".into()
        } else {
            format!("unknown store scheme {shown:?}: must be memory, sqlite:<path> or postgres://…")
        })
    }

    /// The backend's kind: `memory`, `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact_url(url.expose())),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// `scheme://user:password@host/db?query` → `scheme://user:***@host/db?***`. A URL whose user
/// information cannot be told apart for sure (an `@` after the host, which a well-formed URL
/// percent-encodes) shows as `scheme://***`: better to hide the host than to show a password.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, remainder) = rest.split_at(end);
    if remainder.contains('@') {
        return format!("{scheme}://***");
    }
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_owned(),
    };
    let remainder = match remainder.find(['?', '#']) {
        Some(at) => format!("{}?***", &remainder[..at]),
        None => remainder.to_owned(),
    };
    format!("{scheme}://{authority}{remainder}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_parses_and_relative_sqlite_paths_follow_the_config_file() {
        assert_eq!(StoreUrl::parse(" memory ", None), Ok(StoreUrl::Memory));
        assert_eq!(
            StoreUrl::parse("sqlite:flows.db", Some(Path::new("/etc/hooks"))),
            Ok(StoreUrl::Sqlite("/etc/hooks/flows.db".into()))
        );
        assert_eq!(
            StoreUrl::parse("sqlite:/var/flows.db", Some(Path::new("/etc/hooks"))),
            Ok(StoreUrl::Sqlite("/var/flows.db".into()))
        );
        assert_eq!(
            StoreUrl::parse("sqlite:flows.db", None),
            Ok(StoreUrl::Sqlite("flows.db".into()))
        );
        let url = StoreUrl::parse("postgres://hooks:pw@db:5432/hooks", None).unwrap();
        assert_eq!(url.kind(), "postgres");
        let StoreUrl::Postgres(secret) = &url else {
            panic!("not postgres")
        };
        assert_eq!(secret.expose(), "postgres://hooks:pw@db:5432/hooks");
        assert!(StoreUrl::parse("POSTGRESQL://db/x", None).is_ok());
    }

    #[test]
    fn bad_settings_are_named_without_repeating_them() {
        for (text, expected) in [
            ("sqlite:", "sqlite: needs a file path"),
            ("redis://:hunter2@host", "unknown store scheme \"redis\""),
            ("mysql://u:hunter2@h/d", "unknown store scheme \"mysql\""),
            ("hunter2", "must be memory, sqlite:<path> or postgres://"),
            ("", "must be memory"),
        ] {
            let error = StoreUrl::parse(text, None).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn a_password_never_reaches_display_or_debug() {
        for (url, shown) in [
            (
                "postgres://hooks:hunter2@db.internal:5432/hooks",
                "postgres://hooks:***@db.internal:5432/hooks",
            ),
            (
                "postgres://hooks:hunter2@db/hooks?sslmode=require&password=hunter2",
                "postgres://hooks:***@db/hooks?***",
            ),
            ("postgres://hooks:hunt/er2@db/hooks", "postgres://***"),
            ("postgres://hooks:hunt?er2@db/hooks", "postgres://***"),
            ("postgres://hooks:hunt#er2@db/hooks", "postgres://***"),
            ("postgres://db/hooks?password=hunt@er2", "postgres://***"),
            (
                "postgres://hooks:hunt@er2@db/hooks",
                "postgres://hooks:***@db/hooks",
            ),
            ("postgres://hooks@db/hooks", "postgres://hooks@db/hooks"),
            ("postgresql://db", "postgresql://db"),
            (
                "postgres://u:hunter2@/hooks?host=/run/postgresql",
                "postgres://u:***@/hooks?***",
            ),
        ] {
            let parsed = StoreUrl::parse(url, None).unwrap();
            assert_eq!(parsed.to_string(), shown);
            assert_eq!(format!("{parsed:?}"), format!("StoreUrl({shown})"));
            let printed = format!("{parsed} {parsed:?}");
            assert!(
                !printed.contains("hunt") && !printed.contains("er2"),
                "{printed}"
            );
        }
    }
}
