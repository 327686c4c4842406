//! Structured JSON bodies: plain `serde_json` values, with TaskFlow records kept typed until the
//! body is written.
//!
//! Building a `serde_json::Value` for every record cost more than all the middleware of a request
//! together: a `String` per key and per value, an index-map insert per member, then freeing it all
//! after serialising. A [`JsonDocument`] keeps [`Flow`] and [`Task`] records as they are: they
//! serialise straight from their fields, and [`ScrubConfig`](crate::ScrubConfig) removes a member
//! from one by setting a bit. Anything else is an ordinary [`Value`].
//!
//! ```
//! use serde_json::json;
//! use tower_webhooks::json::JsonDocument;
//!
//! let document = JsonDocument::object([("ok", true.into()), ("result", json!({"n": 1}).into())]);
//! assert_eq!(document.to_vec(), br#"{"ok":true,"result":{"n":1}}"#);
//! assert_eq!(document.to_value(), json!({"ok": true, "result": {"n": 1}}));
//! ```

use std::io;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::taskflow::{Flow, Task};

/// A JSON document this crate answers with: objects and arrays of plain values and typed records.
///
/// Serialises to exactly the bytes of [`to_value`](Self::to_value), key order included.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonDocument(pub(crate) Node);

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Value(Value),
    Object(Vec<(&'static str, JsonDocument)>),
    Array(Vec<JsonDocument>),
    // Shared, not boxed: a `list_flows` answer points at the store's own records instead of copying
    // them, and scrubbing never edits a record (it only sets `Omitted` bits).
    Flow(Arc<Flow>, Omitted),
    Task(Box<Task>, Omitted),
}

/// Members of a record removed by scrubbing: bit `i` is member `i` of the record's member list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Omitted(u32);

impl Omitted {
    fn contains(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }
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

    /// The document as a `serde_json::Value` (scrubbed members stay removed).
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
            Node::Flow(flow, omitted) => record_to_value(&**flow, *omitted),
            Node::Task(task, omitted) => record_to_value(&**task, *omitted),
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

    pub(crate) fn is_record(&self) -> bool {
        matches!(self.0, Node::Flow(..) | Node::Task(..))
    }

    /// Turns a record into a plain value, so rules that reach inside it can edit it.
    pub(crate) fn flatten_record(&mut self) {
        if self.is_record() {
            self.0 = Node::Value(self.to_value());
        }
    }

    /// Removes the member `key` of a record; whether it was there.
    pub(crate) fn omit_record_member(&mut self, key: &str) -> bool {
        match &mut self.0 {
            Node::Flow(flow, omitted) => omit(&**flow, omitted, key),
            Node::Task(task, omitted) => omit(&**task, omitted, key),
            _ => false,
        }
    }
}

fn omit<R: Record>(record: &R, omitted: &mut Omitted, key: &str) -> bool {
    let Some(index) = R::MEMBERS.iter().position(|member| *member == key) else {
        return false;
    };
    if omitted.contains(index) || !record.has_member(index) {
        return false;
    }
    omitted.0 |= 1 << index;
    true
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

impl From<Flow> for JsonDocument {
    fn from(flow: Flow) -> Self {
        Self::from(Arc::new(flow))
    }
}

impl From<Arc<Flow>> for JsonDocument {
    /// The record itself, not a copy: it is serialised when the body is written.
    fn from(flow: Arc<Flow>) -> Self {
        Self(Node::Flow(flow, Omitted::default()))
    }
}

impl From<Task> for JsonDocument {
    fn from(task: Task) -> Self {
        Self(Node::Task(Box::new(task), Omitted::default()))
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
            Node::Flow(flow, omitted) => serialize_record(&**flow, *omitted, serializer),
            Node::Task(task, omitted) => serialize_record(&**task, *omitted, serializer),
        }
    }
}

/// One member of a record, borrowed from its fields.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Member<'a> {
    Str(&'a str),
    Id(Uuid),
    U64(u64),
    Json(&'a Value),
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

/// Feeds a record's members, in wire order, to a visitor. Absent optional members are skipped but
/// still take their index, so index `i` always names `MEMBERS[i]`.
pub(crate) struct Members<F> {
    next: usize,
    visit: F,
}

impl<E, F: FnMut(usize, Member<'_>) -> Result<(), E>> Members<F> {
    pub(crate) fn new(visit: F) -> Self {
        Self { next: 0, visit }
    }

    pub(crate) fn put(&mut self, member: Option<Member<'_>>) -> Result<(), E> {
        let index = self.next;
        self.next += 1;
        match member {
            Some(member) => (self.visit)(index, member),
            None => Ok(()),
        }
    }

    /// How many members were offered, present or not.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.next
    }
}

/// A record that serialises from its fields: [`Flow`] and [`Task`].
pub(crate) trait Record {
    /// Every member the record can have, in wire order (at most 32).
    const MEMBERS: &'static [&'static str];

    /// Offers each member to `members`, in the order of [`MEMBERS`](Self::MEMBERS).
    fn members<E, F: FnMut(usize, Member<'_>) -> Result<(), E>>(
        &self,
        members: &mut Members<F>,
    ) -> Result<(), E>;

    fn has_member(&self, index: usize) -> bool {
        self.members(&mut Members::new(
            |i, _| if i == index { Err(()) } else { Ok(()) },
        ))
        .is_err()
    }
}

pub(crate) fn record_to_value<R: Record>(record: &R, omitted: Omitted) -> Value {
    let mut map = Map::with_capacity(R::MEMBERS.len());
    let _ = record.members(&mut Members::new(|i, member: Member<'_>| {
        if !omitted.contains(i) {
            map.insert(R::MEMBERS[i].to_owned(), member.to_value());
        }
        Ok::<(), ()>(())
    }));
    Value::Object(map)
}

/// The length of a record's JSON text, `ownerKey` and all, without building it: what the store's
/// per-owner byte cap counts.
pub(crate) fn json_size<R: Record>(record: &R) -> usize {
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
    let _ = serialize_record(
        record,
        Omitted::default(),
        &mut serde_json::Serializer::new(&mut counter),
    );
    counter.0
}

fn serialize_record<R: Record, S: Serializer>(
    record: &R,
    omitted: Omitted,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(None)?;
    record.members(&mut Members::new(|i, member: Member<'_>| {
        if omitted.contains(i) {
            return Ok(());
        }
        map.serialize_entry(R::MEMBERS[i], &member)
    }))?;
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskflow::{FlowStatus, NewTask, NotifyPolicy, Runtime, SyncMode};
    use serde_json::json;

    fn flow() -> Flow {
        Flow {
            flow_id: Uuid::from_u128(7),
            sync_mode: SyncMode::Managed,
            owner_key: "agent:main:x".into(),
            controller_id: "ctl".into(),
            revision: 3,
            status: FlowStatus::Waiting,
            notify_policy: NotifyPolicy::DoneOnly,
            goal: "ship \"it\"".into(),
            current_step: Some("step".into()),
            blocked_task_id: None,
            blocked_summary: Some(String::new()),
            state_json: Some(json!({"ownerKey": 1, "a": [1, 2]})),
            wait_json: Some(Value::Null),
            cancel_requested_at: None,
            created_at: 1_000,
            updated_at: 2_000,
            ended_at: None,
        }
    }

    fn record_keys(value: &Value) -> Vec<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn records_serialise_to_the_bytes_of_their_value() {
        let flow = flow();
        let task =
            NewTask::new(Runtime::Cli, "run").into_task(flow.flow_id, "agent:main:x".into(), 2_000);
        let document = JsonDocument::object([
            ("flow", flow.clone().into()),
            ("tasks", vec![task.clone()].into()),
            ("none", Option::<Flow>::None.into()),
        ]);
        let value = document.to_value();
        assert_eq!(document.to_vec(), serde_json::to_vec(&value).unwrap());
        assert_eq!(value["none"], Value::Null);
        assert_eq!(
            value["flow"]["flowId"],
            "00000000-0000-0000-0000-000000000007"
        );
        assert_eq!(value["flow"]["waitJson"], Value::Null);
        // Every member the records wrote is in their member list, in its order.
        for (record, members) in [
            (&value["flow"], Flow::MEMBERS),
            (&value["tasks"][0], Task::MEMBERS),
        ] {
            let keys = record_keys(record);
            let mut expected: Vec<&str> = members.to_vec();
            expected.retain(|m| keys.iter().any(|k| k == m));
            assert_eq!(keys, expected);
        }
    }

    #[test]
    fn every_member_index_names_its_key() {
        let mut offered = Members::new(|_, _| Ok::<(), ()>(()));
        flow().members(&mut offered).unwrap();
        assert_eq!(offered.count(), Flow::MEMBERS.len());
        let task = NewTask::new(Runtime::Cli, "t").into_task(Uuid::nil(), "o".into(), 0);
        let mut offered = Members::new(|_, _| Ok::<(), ()>(()));
        task.members(&mut offered).unwrap();
        assert_eq!(offered.count(), Task::MEMBERS.len());
        assert!(Flow::MEMBERS.len() <= 32 && Task::MEMBERS.len() <= 32);
    }

    #[test]
    fn omitting_removes_present_members_once() {
        let mut document = JsonDocument::from(flow());
        assert!(document.omit_record_member("ownerKey"));
        assert!(!document.omit_record_member("ownerKey"));
        assert!(!document.omit_record_member("endedAt"), "absent member");
        assert!(!document.omit_record_member("noSuchKey"));
        let value = document.to_value();
        assert!(value.get("ownerKey").is_none());
        assert_eq!(value["stateJson"]["ownerKey"], 1);
        assert_eq!(document.to_vec(), serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn json_size_is_the_length_of_the_serialised_record() {
        let flow = flow();
        assert_eq!(
            json_size(&flow),
            serde_json::to_vec(&flow.to_json()).unwrap().len()
        );
        let task = NewTask::new(Runtime::Acp, "t\u{e9}\"").into_task(flow.flow_id, "o".into(), 5);
        assert_eq!(
            json_size(&task),
            serde_json::to_vec(&task.to_json()).unwrap().len()
        );
    }

    #[test]
    fn flattening_keeps_omissions() {
        let mut document = JsonDocument::from(flow());
        document.omit_record_member("ownerKey");
        let before = document.to_value();
        document.flatten_record();
        assert!(matches!(document.0, Node::Value(_)));
        assert_eq!(document.to_value(), before);
    }
}
