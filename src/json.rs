//! Structured JSON bodies: plain `serde_json` values, with records kept typed until the body is
//! written.
//!
//! Building a `serde_json::Value` for every record cost more than all the middleware of a request
//! together: a `String` per key and per value, an index-map insert per member, then freeing it all
//! after serialising. A [`JsonDocument`] keeps records (the TaskFlow [`Flow`](crate::taskflow::Flow) and
//! [`Task`](crate::taskflow::Task)) as they are: they serialise straight from their fields, and only the
//! members a client may see. Anything else is an ordinary [`Value`].
//!
//! This module knows nothing of TaskFlows: a record is anything that offers its members through
//! the crate-internal `JsonRecord` trait, which the records implement where they are defined.
//!
//! ```
//! use serde_json::json;
//! use tower_webhooks::json::JsonDocument;
//!
//! let document = JsonDocument::object([("ok", true.into()), ("result", json!({"n": 1}).into())]);
//! assert_eq!(document.to_vec(), br#"{"ok":true,"result":{"n":1}}"#);
//! assert_eq!(document.to_value(), json!({"ok": true, "result": {"n": 1}}));
//! ```

use std::fmt;
use std::io;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A JSON document this crate answers with: objects and arrays of plain values and typed records.
///
/// Serialises to exactly the bytes of [`to_value`](Self::to_value), key order included. Two
/// documents are equal when their values are.
#[derive(Clone, Debug)]
pub struct JsonDocument(Node);

#[derive(Clone, Debug)]
enum Node {
    Value(Value),
    Object(Vec<(&'static str, JsonDocument)>),
    Array(Vec<JsonDocument>),
    // Shared, not copied: a `list_flows` answer points at the store's own records.
    Record(Arc<dyn JsonRecord>),
}

/// A record that serialises from its fields, member by member, without building a [`Value`].
///
/// It offers only what a client may see: the TaskFlow records keep their owner fields out of it,
/// so no answer built from a record can carry them.
pub(crate) trait JsonRecord: fmt::Debug + Send + Sync {
    /// Calls `visit` with each member in wire order, absent optional members skipped, until
    /// `visit` breaks (a serialiser failed).
    fn visit_members(&self, visit: &mut MemberVisitor<'_>) -> ControlFlow<()>;
}

/// What [`JsonRecord::visit_members`] calls with each member.
pub(crate) type MemberVisitor<'v> = dyn FnMut(&'static str, Member<'_>) -> ControlFlow<()> + 'v;

/// One member of a record, borrowed from its fields.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Member<'a> {
    Str(&'a str),
    Id(Uuid),
    U64(u64),
    Json(&'a Value),
}

impl JsonDocument {
    /// An object with these members, in this order.
    pub fn object(members: impl IntoIterator<Item = (&'static str, JsonDocument)>) -> Self {
        Self(Node::Object(members.into_iter().collect()))
    }

    /// An array of these elements.
    pub fn array(elements: impl IntoIterator<Item = JsonDocument>) -> Self {
        Self(Node::Array(elements.into_iter().collect()))
    }

    /// `null`.
    pub fn null() -> Self {
        Self(Node::Value(Value::Null))
    }

    /// A record, serialised from its fields when the document is written.
    pub(crate) fn record(record: Arc<dyn JsonRecord>) -> Self {
        Self(Node::Record(record))
    }

    /// Applies `edit` to the document as a `serde_json::Value`: in place when it is one, else on
    /// a value built from it, which then replaces it (records and our own members become plain
    /// values; the bytes are the same).
    pub(crate) fn edit_as_value(&mut self, edit: impl FnOnce(&mut Value)) {
        if let Node::Value(value) = &mut self.0 {
            edit(value);
            return;
        }
        let mut value = self.to_value();
        edit(&mut value);
        self.0 = Node::Value(value);
    }

    /// The document as a `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match &self.0 {
            Node::Value(value) => value.clone(),
            Node::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(key, member)| ((*key).to_owned(), member.to_value()))
                    .collect(),
            ),
            Node::Array(elements) => Value::Array(elements.iter().map(Self::to_value).collect()),
            Node::Record(record) => record_to_value(&**record),
        }
    }

    /// The serialised bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        // Most envelopes are a few hundred bytes: one allocation instead of serde_json's doubling
        // from 128.
        let mut out = Vec::with_capacity(512);
        // Writing to a `Vec` cannot fail and every map key is a string, so the error arm is
        // unreachable; `null` rather than a panic keeps the "never panic" promise structural.
        if serde_json::to_writer(&mut out, self).is_err() {
            out.clear();
            out.extend_from_slice(b"null");
        }
        out
    }
}

impl PartialEq for JsonDocument {
    fn eq(&self, other: &Self) -> bool {
        self.to_value() == other.to_value()
    }
}

impl Default for JsonDocument {
    fn default() -> Self {
        Self::null()
    }
}

impl From<Value> for JsonDocument {
    fn from(value: Value) -> Self {
        Self(Node::Value(value))
    }
}

impl From<bool> for JsonDocument {
    fn from(value: bool) -> Self {
        Self(Node::Value(Value::Bool(value)))
    }
}

impl From<&str> for JsonDocument {
    fn from(value: &str) -> Self {
        Self(Node::Value(Value::String(value.to_owned())))
    }
}

impl From<String> for JsonDocument {
    fn from(value: String) -> Self {
        Self(Node::Value(Value::String(value)))
    }
}

impl<T: Into<JsonDocument>> From<Option<T>> for JsonDocument {
    /// `None` is `null`.
    fn from(value: Option<T>) -> Self {
        value.map_or_else(Self::null, Into::into)
    }
}

impl<T: Into<JsonDocument>> From<Vec<T>> for JsonDocument {
    fn from(elements: Vec<T>) -> Self {
        Self::array(elements.into_iter().map(Into::into))
    }
}

impl Serialize for JsonDocument {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Node::Value(value) => value.serialize(serializer),
            Node::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (key, member) in members {
                    map.serialize_entry(key, member)?;
                }
                map.end()
            }
            Node::Array(elements) => {
                let mut seq = serializer.serialize_seq(Some(elements.len()))?;
                for element in elements {
                    seq.serialize_element(element)?;
                }
                seq.end()
            }
            Node::Record(record) => serialize_record(&**record, serializer),
        }
    }
}

impl Serialize for Member<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::Str(text) => serializer.serialize_str(text),
            Self::Id(id) => {
                let mut buf = Uuid::encode_buffer();
                serializer.serialize_str(id.hyphenated().encode_lower(&mut buf))
            }
            Self::U64(n) => serializer.serialize_u64(n),
            Self::Json(value) => value.serialize(serializer),
        }
    }
}

impl Member<'_> {
    fn to_value(self) -> Value {
        match self {
            Self::Str(text) => Value::String(text.to_owned()),
            Self::Id(id) => Value::String(
                id.hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer())
                    .to_owned(),
            ),
            Self::U64(n) => Value::from(n),
            Self::Json(value) => value.clone(),
        }
    }
}

/// A record's members as a `serde_json::Value`, keys in wire order.
pub(crate) fn record_to_value(record: &dyn JsonRecord) -> Value {
    let mut map = Map::new();
    let _ = record.visit_members(&mut |key, member| {
        map.insert(key.to_owned(), member.to_value());
        ControlFlow::Continue(())
    });
    Value::Object(map)
}

/// The length of a record's JSON text, without building it.
pub(crate) fn json_size(record: &dyn JsonRecord) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Counting cannot fail and every key is a string, so serialisation cannot either.
    let _ = serialize_record(record, &mut serde_json::Serializer::new(&mut counter));
    counter.0
}

fn serialize_record<S: Serializer>(
    record: &dyn JsonRecord,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(None)?;
    // The visitor is a trait object, so it cannot return the serialiser's own error type: keep
    // the first error here and stop the walk.
    let mut failed = None;
    let _ = record.visit_members(&mut |key, member| match map.serialize_entry(key, &member) {
        Ok(()) => ControlFlow::Continue(()),
        Err(error) => {
            failed = Some(error);
            ControlFlow::Break(())
        }
    });
    match failed {
        Some(error) => Err(error),
        None => map.end(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A record with one member of each kind, two of them absent.
    #[derive(Debug)]
    struct Sample;

    impl JsonRecord for Sample {
        fn visit_members(&self, visit: &mut MemberVisitor<'_>) -> ControlFlow<()> {
            visit("id", Member::Id(Uuid::from_u128(7)))?;
            visit("text", Member::Str("a \"quoted\" é"))?;
            visit("n", Member::U64(3))?;
            visit("json", Member::Json(&Value::Null))
        }
    }

    #[test]
    fn records_serialise_to_the_bytes_of_their_value() {
        let document = JsonDocument::object([
            ("record", JsonDocument::record(Arc::new(Sample))),
            (
                "records",
                JsonDocument::array([JsonDocument::record(Arc::new(Sample))]),
            ),
            ("none", Option::<bool>::None.into()),
        ]);
        let value = document.to_value();
        assert_eq!(document.to_vec(), serde_json::to_vec(&value).unwrap());
        assert_eq!(
            value["record"],
            json!({"id": "00000000-0000-0000-0000-000000000007", "text": "a \"quoted\" é",
                   "n": 3, "json": null})
        );
        assert_eq!(value["none"], Value::Null);
        assert_eq!(
            json_size(&Sample),
            serde_json::to_vec(&value["record"]).unwrap().len()
        );
    }

    #[test]
    fn a_serialiser_error_stops_the_walk() {
        struct Refuses;
        impl io::Write for Refuses {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let document = JsonDocument::record(Arc::new(Sample));
        assert!(serde_json::to_writer(Refuses, &document).is_err());
    }
}
