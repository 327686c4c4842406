//! [`ConfigError`]: why a configuration could not be loaded.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::MAX_NESTING_DEPTH;

/// A configuration that cannot be loaded.
///
/// `Display` gives the message an operator should see. No variant ever carries a secret value: IO
/// errors name the file but not its content, syntax errors give a position and what was expected but
/// not the offending source line, and validation errors name the key path, never the value.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The text is not valid JSON5.
    Syntax {
        /// The file, when loading from one.
        file: Option<PathBuf>,
        /// One-based line of the error, when known.
        line: Option<usize>,
        /// One-based column of the error, when known.
        column: Option<usize>,
        /// What the parser expected or rejected (never a quote of the source).
        message: String,
    },
    /// Arrays and objects nest deeper than
    /// [`MAX_NESTING_DEPTH`](crate::config::MAX_NESTING_DEPTH) (128) levels.
    ///
    /// Found by a scan before parsing, which would otherwise recurse once per level and could
    /// overflow the stack.
    TooDeep {
        /// The file, when loading from one.
        file: Option<PathBuf>,
        /// One-based line of the first bracket too many.
        line: usize,
        /// One-based column (in characters) of the first bracket too many.
        column: usize,
    },
    /// A value is missing, of the wrong type, out of range, or an unknown key is present.
    ///
    /// Displays as `<path>: <message>`, e.g. `webhooks.routes.zap.foo: unknown key`.
    Invalid {
        /// The dotted key path (array elements as `[index]`).
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// Two enabled routes normalise to the same path \[compat\].
    DuplicatePath {
        /// The route that came later in the file.
        route_id: String,
        /// The route that first claimed the path.
        first_route_id: String,
        /// The normalised path both claim.
        path: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn from_json5(error: json5::Error, file: Option<PathBuf>) -> Self {
        let json5::Error::Message { msg, location } = error;
        Self::Syntax {
            file,
            line: location.as_ref().map(|l| l.line),
            column: location.as_ref().map(|l| l.column),
            message: syntax_summary(&msg),
        }
    }
}

/// The part of a json5/pest message that does not quote the source.
///
/// pest renders the offending line with a caret under it; that line may hold a plain-text secret, so
/// only the trailing `= expected ...` note is kept. Messages from value conversion (no caret block)
/// are short and generic and are kept whole.
fn syntax_summary(msg: &str) -> String {
    if !msg.contains(" --> ") && !msg.contains("\n") {
        return msg.trim().to_owned();
    }
    msg.lines()
        .rev()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("= "))
        .map(str::to_owned)
        .unwrap_or_else(|| "syntax error".to_owned())
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            Self::Syntax {
                file,
                line,
                column,
                message,
            } => {
                if let Some(file) = file {
                    write!(f, "{}: ", file.display())?;
                }
                f.write_str("invalid JSON5")?;
                match (line, column) {
                    (Some(line), Some(column)) => write!(f, " at line {line}, column {column}")?,
                    (Some(line), None) => write!(f, " at line {line}")?,
                    _ => {}
                }
                write!(f, ": {message}")
            }
            Self::TooDeep { file, line, column } => {
                if let Some(file) = file {
                    write!(f, "{}: ", file.display())?;
                }
                write!(
                    f,
                    "too deeply nested: more than {MAX_NESTING_DEPTH} levels of arrays and objects \
                     (at line {line}, column {column})"
                )
            }
            Self::Invalid { path, message } if path.is_empty() => f.write_str(message),
            Self::Invalid { path, message } => write!(f, "{path}: {message}"),
            Self::DuplicatePath {
                route_id,
                first_route_id,
                path,
            } => write!(
                f,
                "webhooks.routes.{route_id}.path conflicts with routes.{first_route_id}.path ({path})."
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
