//! The signature headers, parsed: the crate's own code, so every malformed value has one known
//! answer ([`Malformed`]) and never a panic. Public for the fuzz targets and for anyone who needs
//! to read a header without verifying it.
//!
//! Every parser takes the raw header bytes. Leading and trailing spaces and tabs are ignored (HTTP
//! strips them; an in-process request may not have); anything else that is not exactly the format
//! is [`Malformed`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The length of an HMAC-SHA256 tag in bytes.
pub const TAG_LEN: usize = 32;

/// An HMAC-SHA256 tag as a header carries it.
pub type Tag = [u8; TAG_LEN];

/// A header value that is not in its scheme's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed signature header")
    }
}

impl std::error::Error for Malformed {}

fn trim(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// A Unix timestamp in seconds: 1 to 19 ASCII digits (no sign, no fraction, no spaces inside),
/// as `webhook-timestamp`, `X-Slack-Request-Timestamp` and Stripe's `t=` carry it.
pub fn parse_timestamp(value: &[u8]) -> Result<u64, Malformed> {
    let digits = trim(value);
    // 19 digits always fit in a u64; a 20-digit timestamp is nowhere near any clock's tolerance.
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Malformed);
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Exactly 64 hex digits (either case) as a tag.
pub fn parse_hex_tag(value: &[u8]) -> Result<Tag, Malformed> {
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(value, &mut tag).map_err(|_| Malformed)?;
    Ok(tag)
}

/// A `<prefix><64 hex digits>` value, the prefix matched exactly (case-sensitive).
pub fn parse_prefixed_hex_tag(value: &[u8], prefix: &[u8]) -> Result<Tag, Malformed> {
    let value = trim(value);
    let hex = value.strip_prefix(prefix).ok_or(Malformed)?;
    parse_hex_tag(hex)
}

/// GitHub's `X-Hub-Signature-256`: `sha256=<64 hex digits>`. A value without `sha256=` is
/// malformed.
pub fn parse_github_signature(value: &[u8]) -> Result<Tag, Malformed> {
    parse_prefixed_hex_tag(value, b"sha256=")
}

/// Slack's `X-Slack-Signature`: `v0=<64 hex digits>`. A value without `v0=` is malformed.
pub fn parse_slack_signature(value: &[u8]) -> Result<Tag, Malformed> {
    parse_prefixed_hex_tag(value, b"v0=")
}

/// Stripe's `Stripe-Signature`: comma-separated `key=value` entries, exactly one `t=<timestamp>`,
/// at least one `v1=<64 hex digits>`; entries with other keys (`v0=`, future schemes) are ignored.
///
/// Choices where Stripe's description is silent: an entry without `=`, an empty entry, a second
/// `t=` (which timestamp was signed?) and a `v1=` that is not 64 hex digits are malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripeSignature<'a> {
    /// The signed timestamp (`t=`).
    pub timestamp: u64,
    timestamp_text: &'a [u8],
    entries: &'a [u8],
}

impl<'a> StripeSignature<'a> {
    /// Parses a header value.
    pub fn parse(value: &'a [u8]) -> Result<Self, Malformed> {
        let entries = trim(value);
        let mut timestamp = None;
        let mut signatures = 0usize;
        for entry in entries.split(|&b| b == b',') {
            let (key, value) = split_once(entry, b'=').ok_or(Malformed)?;
            match key {
                b"t" if timestamp.is_none() => timestamp = Some((parse_timestamp(value)?, value)),
                b"t" => return Err(Malformed),
                b"v1" => {
                    parse_hex_tag(value)?;
                    signatures += 1;
                }
                _ => {}
            }
        }
        match timestamp {
            Some((timestamp, timestamp_text)) if signatures > 0 => Ok(Self {
                timestamp,
                timestamp_text,
                entries,
            }),
            _ => Err(Malformed),
        }
    }

    /// The timestamp as written: what was signed, leading zeros and all.
    pub fn timestamp_text(&self) -> &'a [u8] {
        self.timestamp_text
    }

    /// The `v1` tags, in header order.
    pub fn signatures(&self) -> impl Iterator<Item = Tag> + 'a {
        self.entries.split(|&b| b == b',').filter_map(|entry| {
            let (key, value) = split_once(entry, b'=')?;
            (key == b"v1").then(|| parse_hex_tag(value).ok()).flatten()
        })
    }
}

/// Standard Webhooks' `webhook-signature`: space-separated `<version>,<base64>` entries. Entries of
/// versions other than `v1` (`v1a` is the asymmetric scheme) are ignored; at least one `v1` entry
/// whose signature is 32 bytes of standard base64 must be present.
///
/// Choices where the specification is silent: several spaces between entries are one separator;
/// an entry without `,` and a `v1` entry that is not a 32-byte base64 tag are malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandardSignatures<'a> {
    entries: &'a [u8],
}

impl<'a> StandardSignatures<'a> {
    /// Parses a header value.
    pub fn parse(value: &'a [u8]) -> Result<Self, Malformed> {
        let entries = trim(value);
        let mut signatures = 0usize;
        for entry in entries.split(|&b| b == b' ').filter(|e| !e.is_empty()) {
            let (version, signature) = split_once(entry, b',').ok_or(Malformed)?;
            if version == b"v1" {
                parse_base64_tag(signature)?;
                signatures += 1;
            }
        }
        if signatures == 0 {
            return Err(Malformed);
        }
        Ok(Self { entries })
    }

    /// The `v1` tags, in header order.
    pub fn signatures(&self) -> impl Iterator<Item = Tag> + 'a {
        self.entries
            .split(|&b| b == b' ')
            .filter_map(|entry| match split_once(entry, b',')? {
                (b"v1", signature) => parse_base64_tag(signature).ok(),
                _ => None,
            })
    }
}

/// A 32-byte tag in standard base64 with padding (44 characters).
pub fn parse_base64_tag(value: &[u8]) -> Result<Tag, Malformed> {
    if value.len() != 44 {
        return Err(Malformed);
    }
    // Room for the decoder's estimate (33 bytes for 44 characters); exactly 32 must come out.
    let mut buffer = [0u8; 36];
    match STANDARD.decode_slice(value, &mut buffer) {
        Ok(TAG_LEN) => {
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&buffer[..TAG_LEN]);
            Ok(tag)
        }
        _ => Err(Malformed),
    }
}

fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == separator)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_plain_digits() {
        assert_eq!(parse_timestamp(b"1614265330"), Ok(1_614_265_330));
        assert_eq!(parse_timestamp(b" 0 "), Ok(0));
        assert_eq!(
            parse_timestamp(b"9999999999999999999"),
            Ok(9_999_999_999_999_999_999)
        );
        for bad in [
            &b""[..],
            b" ",
            b"+1",
            b"-1",
            b"1.0",
            b"1e9",
            b"1 2",
            b"0x10",
            b"12345678901234567890",
            "１２".as_bytes(),
        ] {
            assert_eq!(parse_timestamp(bad), Err(Malformed), "{bad:?}");
        }
    }

    #[test]
    fn github_and_slack_need_their_prefix_and_64_hex_digits() {
        let hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let tag = parse_hex_tag(hex.as_bytes()).unwrap();
        assert_eq!(
            parse_github_signature(format!("sha256={hex}").as_bytes()),
            Ok(tag)
        );
        assert_eq!(
            parse_github_signature(format!("sha256={}", hex.to_uppercase()).as_bytes()),
            Ok(tag)
        );
        assert_eq!(
            parse_slack_signature(format!("v0={hex}").as_bytes()),
            Ok(tag)
        );
        for bad in [
            hex.to_owned(),
            format!("SHA256={hex}"),
            format!("sha1={hex}"),
            format!("sha256= {hex}"),
            format!("sha256={}", &hex[1..]),
            format!("sha256={hex}0"),
            format!("sha256={}g", &hex[1..]),
            "sha256=".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                parse_github_signature(bad.as_bytes()),
                Err(Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            parse_slack_signature(format!("v1={hex}").as_bytes()),
            Err(Malformed)
        );
        assert_eq!(parse_slack_signature(hex.as_bytes()), Err(Malformed));
    }

    #[test]
    fn stripe_needs_one_timestamp_and_a_v1_and_ignores_other_schemes() {
        let a = "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd";
        let b = "6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39";
        // The shape of the example header in Stripe's "Verify webhook signatures" documentation.
        let header = format!("t=1492774577,v1={a},v0={b}");
        let parsed = StripeSignature::parse(header.as_bytes()).unwrap();
        assert_eq!(parsed.timestamp, 1_492_774_577);
        assert_eq!(
            parsed.signatures().collect::<Vec<_>>(),
            [parse_hex_tag(a.as_bytes()).unwrap()]
        );
        let two = format!("v1={a},t=5,v1={b},scheme=x");
        assert_eq!(
            StripeSignature::parse(two.as_bytes())
                .unwrap()
                .signatures()
                .count(),
            2
        );
        for bad in [
            format!("v1={a}"),
            "t=1492774577".to_owned(),
            format!("t=1492774577,v0={b}"),
            format!("t=1,t=2,v1={a}"),
            format!("t=x,v1={a}"),
            format!("t=1,v1={}", &a[2..]),
            format!("t=1,,v1={a}"),
            format!("t=1,v1={a},"),
            format!("t=1, v1={a}"),
            "t=1,v1".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                StripeSignature::parse(bad.as_bytes()),
                Err(Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn standard_webhooks_reads_v1_entries_and_skips_other_versions() {
        let tag = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let header = format!("v1a,abc  v1,{tag} v2,zzz");
        let parsed = StandardSignatures::parse(header.as_bytes()).unwrap();
        assert_eq!(
            parsed.signatures().collect::<Vec<_>>(),
            [parse_base64_tag(tag.as_bytes()).unwrap()]
        );
        for bad in [
            tag.to_owned(),
            format!("v1a,{tag}"),
            format!("v1,{}", &tag[..43]),
            format!("v1,{}A", &tag[..43]),
            format!("v1,{tag}=="),
            format!("v1;{tag}"),
            format!("v1,{tag} junk"),
            format!("v1,{}", tag.replace('+', "-")),
            String::new(),
        ] {
            assert_eq!(
                StandardSignatures::parse(bad.as_bytes()),
                Err(Malformed),
                "{bad}"
            );
        }
    }
}
