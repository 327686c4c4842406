//! A bound on how deeply a JSON5 text nests, checked before the parser sees the text.
//!
//! The json5 parser and its deserializer recurse once per level of arrays and objects, so a file of
//! a thousand `[` overflows a thread's stack: the process aborts, where a bad file must be an error
//! (at startup) or leave the old routes in place (on reload). This scan is a loop with a counter.
//!
//! It knows just enough of JSON5's lexical grammar not to count brackets inside strings (double or
//! single quoted, with backslash escapes and line continuations) or comments (`//`, `/* */`). Where
//! the text is not valid JSON5, the scan only has to count no fewer levels than the parser reaches
//! before it gives up: the parser reads no further than its first error, so an unterminated string
//! or comment hides only text that is never parsed.

/// How deeply arrays and objects may nest in a configuration; the outermost value is level 1.
///
/// A deeper text is a [`ConfigError::TooDeep`](super::ConfigError::TooDeep).
pub const MAX_NESTING_DEPTH: usize = 128;

/// Where a text first nests deeper than allowed: one-based line, and column in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooDeepAt {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

enum Lexer {
    Code,
    String { quote: char },
    LineComment,
    BlockComment,
}

/// Fails at the first `[` or `{` (outside strings and comments) that opens level `limit + 1`.
pub(crate) fn check_nesting(text: &str, limit: usize) -> Result<(), TooDeepAt> {
    let mut depth = 0usize;
    let mut state = Lexer::Code;
    let (mut line, mut column) = (1, 0);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            (line, column) = (line + 1, 0);
        } else {
            column += 1;
        }
        match state {
            Lexer::Code => match c {
                '"' | '\'' => state = Lexer::String { quote: c },
                '/' if chars.next_if_eq(&'/').is_some() => state = Lexer::LineComment,
                '/' if chars.next_if_eq(&'*').is_some() => state = Lexer::BlockComment,
                '[' | '{' => {
                    depth += 1;
                    if depth > limit {
                        return Err(TooDeepAt { line, column });
                    }
                }
                // An unbalanced closer is the parser's error to report; it never recurses on one.
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
            Lexer::String { quote } => match c {
                // Whatever follows a backslash is part of the string: an escaped quote, or a line
                // continuation, whose CR LF is one line terminator.
                '\\' => match chars.next() {
                    Some('\n') => (line, column) = (line + 1, 0),
                    Some('\r') => {
                        if chars.next_if_eq(&'\n').is_some() {
                            (line, column) = (line + 1, 0);
                        }
                    }
                    _ => column += 1,
                },
                // A raw line break inside a string is a syntax error: the parser stops there, so
                // staying in the string (and counting nothing) can hide nothing it would parse.
                _ if c == quote => state = Lexer::Code,
                _ => {}
            },
            Lexer::LineComment => {
                if matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}') {
                    state = Lexer::Code;
                }
            }
            Lexer::BlockComment => {
                if c == '*' && chars.next_if_eq(&'/').is_some() {
                    column += 1;
                    state = Lexer::Code;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, limit: usize) -> bool {
        check_nesting(text, limit).is_ok()
    }

    #[test]
    fn counts_arrays_and_objects_and_allows_exactly_the_limit() {
        assert!(depth_ok("[{}]", 2));
        assert!(!depth_ok("[{}]", 1));
        assert!(depth_ok("[[], [], {a: []}]", 3));
        assert_eq!(
            check_nesting("{a: [\n  [[1]]]}", 3),
            Err(TooDeepAt { line: 2, column: 4 })
        );
        // Closing brackets bring the depth back down.
        assert!(depth_ok(&"[]".repeat(1_000), 1));
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert!(depth_ok(r#"["[[[{{{"]"#, 1));
        assert!(depth_ok(r#"['[[[{{{']"#, 1));
        // A quote of the other kind does not end the string.
        assert!(depth_ok(r#"["it's [[[", '"{{{']"#, 1));
        // Escaped quotes and escaped backslashes.
        assert!(depth_ok(r#"["\" [[[", '\' {{{', "\\"]"#, 1));
        assert!(!depth_ok(r#"["\\" ,[[]]]"#, 2));
        // Line continuations, LF and CR LF.
        assert!(depth_ok("['a\\\n[[[', 'b\\\r\n{{{']", 1));
        assert_eq!(
            check_nesting("['a\\\r\n[[', [[]]]", 2),
            Err(TooDeepAt { line: 2, column: 7 })
        );
    }

    #[test]
    fn brackets_in_comments_do_not_count() {
        assert!(depth_ok("// [[[[\n[1]", 1));
        assert!(depth_ok("[1, // [[[[\r 2, /* {{{ \n [[[ */ 3] /* [[ */", 1));
        assert!(depth_ok("[1 // [[[\u{2028} ]", 1));
        // A block comment ends at its first `*/`, a line comment at the line's end.
        assert!(!depth_ok("[/* */ [ ]]", 1));
        assert!(!depth_ok("[ // x\n [ ]]", 1));
        // A comment opener inside a string opens nothing.
        assert!(!depth_ok("['/*', [], '*/']", 1));
    }

    #[test]
    fn deep_text_fails_without_recursion() {
        assert!(!depth_ok(&"[".repeat(1_000_000), MAX_NESTING_DEPTH));
        assert!(depth_ok(
            &format!(
                "{}{}",
                "[".repeat(MAX_NESTING_DEPTH),
                "]".repeat(MAX_NESTING_DEPTH)
            ),
            MAX_NESTING_DEPTH
        ));
    }
}
