//! [`Secret`]: a secret value that never shows itself.

use std::fmt;
use std::sync::Arc;

/// A secret value (a shared webhook secret, a token).
///
/// `Debug` and `Display` print `[redacted]`, never the value; the value is reachable only through
/// [`expose`](Secret::expose), so every place that reads it is easy to find. Cloning shares the value.
/// Values are trimmed when built, as the contract asks of every resolved secret: as JavaScript's
/// `String.prototype.trim` does, so a byte-order mark (U+FEFF) goes and U+0085 stays.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// A secret holding `value`, trimmed as JavaScript trims. `None` when nothing is left after trimming: an empty secret
    /// would authenticate nobody, and the contract treats it as unresolved.
    pub fn new(value: impl AsRef<str>) -> Option<Self> {
        let trimmed = js_trim(value.as_ref());
        (!trimmed.is_empty()).then(|| Self(Arc::from(trimmed)))
    }

    /// A fresh random secret: 64 hex digits, 244 random bits from the operating system's generator
    /// (through two UUID v4s), for a demo or a first setup.
    #[cfg(feature = "taskflow")]
    #[cfg_attr(docsrs, doc(cfg(feature = "taskflow")))]
    pub fn generate() -> Self {
        let value = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self(Arc::from(value))
    }

    /// The secret value. Call only where the value is really needed (hashing, comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Whether JavaScript's `String.prototype.trim` removes `c`: ECMAScript's WhiteSpace (tab, VT, FF,
/// space, U+00A0, U+FEFF and every Space_Separator) or LineTerminator (LF, CR, U+2028, U+2029).
///
/// Unicode's White_Space, which `str::trim` uses, differs twice: it holds U+0085 (NEXT LINE), which
/// JavaScript keeps, and lacks U+FEFF (the byte-order mark), which JavaScript removes.
pub(crate) fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | ' ' | '\u{a0}' | '\u{feff}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\n'
                | '\r'
                | '\u{2028}'
                | '\u{2029}'
    )
}

/// `s` trimmed as JavaScript's `trim` trims it: what the contract means by "trimmed" (SPEC §1, §1.2),
/// since the original is JavaScript.
pub(crate) fn js_trim(s: &str) -> &str {
    s.trim_matches(is_js_whitespace)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let secret = Secret::new("  hunter2-s3cr3t \n").unwrap();
        assert_eq!(secret.expose(), "hunter2-s3cr3t");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
        assert_eq!(
            format!("{:?}", Some(vec![secret.clone()])),
            "Some([Secret([redacted])])"
        );
        assert!(!format!("{secret:#?}").contains("hunter2"));
    }

    #[test]
    #[cfg(feature = "taskflow")]
    fn generated_secrets_are_long_and_distinct() {
        let (a, b) = (Secret::generate(), Secret::generate());
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn trimmed_as_javascript_trims() {
        let saved_with_bom = Secret::new("\u{feff}s3cret\r\n").unwrap();
        assert_eq!(saved_with_bom.expose(), "s3cret");
        assert_eq!(
            Secret::new("\u{85}s3cret").unwrap().expose(),
            "\u{85}s3cret"
        );
        assert!(Secret::new("\u{feff}").is_none());
    }

    #[test]
    fn empty_after_trim_is_no_secret() {
        assert!(Secret::new("").is_none());
        assert!(Secret::new(" \t\n").is_none());
    }
}
