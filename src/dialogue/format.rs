//! The dialogue file format: YAML read by serde-saphyr into a positioned tree, then into raw
//! structs with `deny_unknown_fields`.
//!
//! Reading happens in two passes so that one file yields *all* its problems at once: serde-saphyr
//! builds a [`Node`] tree that remembers the line and column of every key and value (duplicate
//! keys are passed through so the compiler can report each one), then every part of the tree is
//! deserialized on its own into the raw structs below through [`from_node`]. A type error in one
//! step therefore does not hide the errors in the next.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based line and column in the source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
}

impl Pos {
    /// A position from serde-saphyr's location.
    fn from_location(loc: &serde_saphyr::Location) -> Pos {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }

    /// The position `chars` characters to the right (for offsets inside a one-line value).
    pub fn shifted(self, chars: usize) -> Pos {
        Pos {
            line: self.line,
            column: self
                .column
                .saturating_add(u32::try_from(chars).unwrap_or(u32::MAX)),
        }
    }
}

/// One YAML node with the position where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the value starts.
    pub pos: Pos,
    /// The value.
    pub value: NodeValue,
}

/// A mapping key with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key as text (scalar keys of other types are shown as written).
    pub name: String,
    /// Where the key starts.
    pub pos: Pos,
}

/// The value of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; duplicate keys are kept so they can be reported.
    Map(Vec<(Key, Node)>),
}

impl NodeValue {
    /// A short name for error messages ("a list", "a number"...).
    pub fn kind(&self) -> &'static str {
        match self {
            NodeValue::Null => "nothing",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) | NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The entries when this node is a mapping.
    pub fn entries(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The first entry with this key, when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&(Key, Node)> {
        self.entries()?.iter().find(|(k, _)| k.name == key)
    }

    /// The items when this node is a list.
    pub fn items(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Seq(items) => Some(items),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeValue>::deserialize(deserializer)?;
        Ok(Node {
            pos: Pos::from_location(&spanned.referenced),
            value: spanned.value,
        })
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_none<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        d.deserialize_any(NodeVisitor)
    }

    fn visit_bool<E>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<NodeValue, E> {
        // Numbers past i64 are only ever wrong in a dialogue; keep them as floats to report.
        Ok(i64::try_from(v).map_or(NodeValue::Float(v as f64), NodeValue::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let name = match key.value {
                NodeValue::Str(s) => s,
                NodeValue::Int(i) => i.to_string(),
                NodeValue::Float(f) => f.to_string(),
                NodeValue::Bool(b) => b.to_string(),
                NodeValue::Null => "~".to_owned(),
                NodeValue::Seq(_) | NodeValue::Map(_) => {
                    return Err(de::Error::custom("keys must be plain words"));
                }
            };
            let value = map.next_value::<Node>()?;
            entries.push((Key { name, pos: key.pos }, value));
        }
        Ok(NodeValue::Map(entries))
    }
}

/// A YAML syntax error with its position (when known) and a plain message.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// What it found.
    pub message: String,
}

/// Reads a YAML document into a positioned tree; duplicate keys are kept.
pub fn parse_tree(source: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
        // `label: No` and a fact named `n` are words, not YAML 1.1 booleans.
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
    };
    serde_saphyr::from_str_with_options::<Node>(source, options).map_err(|e| {
        let pos = e
            .location()
            .map(|l| Pos::from_location(&l))
            .unwrap_or(Pos { line: 1, column: 1 });
        let render = serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
        };
        let text = e.render_with_options(render);
        SyntaxError {
            pos,
            message: plain_message(&text),
        }
    })
}

/// serde-saphyr suffixes messages with their location; ours is printed in front instead.
fn plain_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered).trim();
    let cut = first.rfind(" at line ").unwrap_or(first.len());
    let message = first[..cut].trim().trim_end_matches(':');
    if message.is_empty() {
        "invalid YAML".to_owned()
    } else {
        message.to_owned()
    }
}

/// An error found while reading a node into a raw struct.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeError {
    /// Where the problem is, once known (filled by the innermost key or value).
    pub pos: Option<Pos>,
    /// What is wrong.
    pub message: String,
    /// For unknown fields: the key as written, so the compiler can suggest a valid one.
    pub unknown_field: Option<(String, &'static [&'static str])>,
}

impl NodeError {
    fn at(mut self, pos: Pos) -> NodeError {
        self.pos.get_or_insert(pos);
        self
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

impl de::Error for NodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NodeError {
            pos: None,
            message: msg.to_string(),
            unknown_field: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        NodeError {
            pos: None,
            message: format!("unknown key '{field}'"),
            unknown_field: Some((field.to_owned(), expected)),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing key '{field}'"))
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {exp}, found {unexp}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format_args!(
            "unknown value '{variant}', expected one of: {}",
            expected.join(", ")
        ))
    }
}

/// Deserializes a raw struct (or any serde type) from a node, with positions in errors.
pub fn from_node<'a, T: Deserialize<'a>>(node: &'a Node) -> Result<T, NodeError> {
    T::deserialize(NodeDeserializer(node)).map_err(|e| e.at(node.pos))
}

/// Feeds a [`Node`] to serde.
struct NodeDeserializer<'a>(&'a Node);

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de> {
    type Error = NodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match &self.0.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Bool(b) => visitor.visit_bool(*b),
            NodeValue::Int(i) => visitor.visit_i64(*i),
            NodeValue::Float(f) => visitor.visit_f64(*f),
            NodeValue::Str(s) => visitor.visit_borrowed_str(s),
            NodeValue::Seq(items) => visitor.visit_seq(NodeSeq {
                items: items.iter(),
            }),
            NodeValue::Map(entries) => visitor.visit_map(NodeMap {
                entries: entries.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.0.value {
            NodeValue::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        match &self.0.value {
            NodeValue::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => Err(de::Error::custom(format_args!(
                "expected a word, found {}",
                other.kind()
            ))),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        // A text written without quotes may read as a number or boolean (`label: 2024`,
        // `say: yes`): take it as written rather than refuse it.
        match &self.0.value {
            NodeValue::Int(i) => visitor.visit_string(i.to_string()),
            NodeValue::Float(f) => visitor.visit_string(f.to_string()),
            NodeValue::Bool(b) => visitor.visit_string(b.to_string()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct NodeSeq<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for NodeSeq<'de> {
    type Error = NodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(NodeDeserializer(node))
                .map(Some)
                .map_err(|e| e.at(node.pos)),
            None => Ok(None),
        }
    }
}

struct NodeMap<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for NodeMap<'de> {
    type Error = NodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(key.name.as_str().into_deserializer())
                    .map(Some)
                    .map_err(|e: NodeError| e.at(key.pos))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, NodeError> {
        match self.value.take() {
            Some(node) => seed
                .deserialize(NodeDeserializer(node))
                .map_err(|e| e.at(node.pos)),
            None => Err(de::Error::custom("a value without a key")),
        }
    }
}

/// The keys a dialogue file may have at the top level; each is read on its own so that every
/// problem is reported.
pub const DIALOGUE_KEYS: &[&str] = &[
    "id",
    "locale",
    "sources",
    "thresholds",
    "remind_after",
    "start",
    "steps",
];

/// `thresholds: { warm: 30, hot: 70 }`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholds {
    pub warm: i32,
    pub hot: i32,
}

/// The keys a step may have.
pub const STEP_KEYS: &[&str] = &[
    "say", "ask", "choices", "input", "save", "score", "set", "next", "branch", "end",
];

/// One step as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub say: Option<String>,
    pub ask: Option<String>,
    pub choices: Option<Vec<RawChoice>>,
    pub input: Option<super::InputKind>,
    pub save: Option<String>,
    pub score: Option<i32>,
    pub set: Option<RawSet>,
    pub next: Option<String>,
    pub branch: Option<Vec<RawRule>>,
    pub end: Option<bool>,
}

/// The keys a choice may have.
pub const CHOICE_KEYS: &[&str] = &["label", "also", "score", "hot", "set", "next"];

/// One button of a choice step as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChoice {
    pub label: String,
    /// Other answers a person may type for this button (`also: [да, согласна]`).
    pub also: Option<Vec<String>>,
    pub score: Option<i32>,
    pub hot: Option<bool>,
    pub set: Option<RawSet>,
    pub next: String,
}

/// `set: { consent: true }`: values in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawSet(pub Vec<(String, super::Fact)>);

impl<'de> Deserialize<'de> for RawSet {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SetVisitor;

        impl<'de> Visitor<'de> for SetVisitor {
            type Value = RawSet;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to values, like { consent: true }")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSet, A::Error> {
                let mut pairs = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, super::Fact>()? {
                    pairs.push((key, value));
                }
                Ok(RawSet(pairs))
            }
        }

        deserializer.deserialize_map(SetVisitor)
    }
}

/// The keys a branch rule may have.
pub const RULE_KEYS: &[&str] = &["if", "next"];

/// One rule of a branch as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "if")]
    pub condition: Option<String>,
    pub next: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_keep_their_positions() {
        let tree = parse_tree("id: demo\nsteps:\n  a:\n    say: hi\n").unwrap();
        let (key, value) = tree.get("steps").unwrap();
        assert_eq!(key.pos, Pos { line: 2, column: 1 });
        let (a, step) = &value.entries().unwrap()[0];
        assert_eq!(a.pos, Pos { line: 3, column: 3 });
        let (say, text) = step.get("say").unwrap();
        assert_eq!(say.pos, Pos { line: 4, column: 5 });
        assert_eq!(
            text.pos,
            Pos {
                line: 4,
                column: 10
            }
        );
    }

    #[test]
    fn duplicate_keys_are_kept_for_the_checker() {
        let tree = parse_tree("steps:\n  a: {end: true}\n  a: {end: true}\n").unwrap();
        let steps = &tree.get("steps").unwrap().1;
        assert_eq!(steps.entries().unwrap().len(), 2);
    }

    #[test]
    fn syntax_errors_have_a_position_and_a_plain_message() {
        let err = parse_tree("id: [unclosed\nstart: a\n").unwrap_err();
        assert!(err.pos.line >= 1);
        assert!(!err.message.contains(" at line "), "{}", err.message);
    }

    #[test]
    fn unknown_step_keys_name_the_key_and_its_position() {
        let tree = parse_tree("say: hi\nnxt: b\n").unwrap();
        let err = from_node::<RawStep>(&tree).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 2, column: 1 }));
        assert_eq!(err.unknown_field.unwrap().0, "nxt");
    }

    #[test]
    fn wrong_types_point_at_the_value() {
        let tree =
            parse_tree("ask: q\nchoices:\n  - { label: A, score: lots, next: b }\n").unwrap();
        let err = from_node::<RawStep>(&tree).unwrap_err();
        assert_eq!(
            err.pos,
            Some(Pos {
                line: 3,
                column: 24
            })
        );
    }

    #[test]
    fn set_values_read_as_facts() {
        let tree = parse_tree("say: hi\nset: { consent: true, n: 3, t: x }\nnext: b\n").unwrap();
        let step = from_node::<RawStep>(&tree).unwrap();
        assert_eq!(
            step.set.unwrap().0,
            vec![
                ("consent".to_owned(), super::super::Fact::Bool(true)),
                ("n".to_owned(), super::super::Fact::Int(3)),
                ("t".to_owned(), super::super::Fact::Text("x".to_owned())),
            ]
        );
    }
}
