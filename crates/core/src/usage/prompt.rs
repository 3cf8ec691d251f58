//! The prompt text of a request body, collected in one pass without building a JSON tree.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Dialect;
use super::de::{Count, Text};

/// The top-level keys that hold prompt text, per dialect.
fn root_keys(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Chat => &["messages", "prompt"],
        Dialect::Embeddings => &["input"],
        Dialect::Responses => &["instructions", "input"],
        Dialect::Anthropic => &["system", "messages"],
        Dialect::Gemini => &[
            "systemInstruction",
            "system_instruction",
            "contents",
            "content",
            "requests",
        ],
        Dialect::WorkersAi => &["prompt", "messages", "text", "input"],
        Dialect::OpenAiOther => &["instructions", "system", "messages", "prompt", "input"],
    }
}

/// Keys of an object inside prompt content whose values hold text: message `content`,
/// part `text`, Gemini `parts` (and Gemini embeddings' `content`).
const CONTENT_KEYS: [&str; 3] = ["content", "text", "parts"];

pub(super) fn prompt_text(dialect: Dialect, body: &[u8]) -> String {
    let mut out = Prompt {
        text: Some(String::new()),
        ..Prompt::default()
    };
    match out.read(dialect, body) {
        true => out.text.unwrap_or_default(),
        false => String::new(),
    }
}

pub(super) fn prompt_size(dialect: Dialect, body: &[u8]) -> super::PromptSize {
    let mut out = Prompt::default();
    match out.read(dialect, body) {
        true => super::PromptSize {
            text_len: out.len,
            max_output_tokens: out.max.iter().find_map(|m| m.0),
        },
        false => super::PromptSize::default(),
    }
}

/// What one pass over a request body collects.
#[derive(Default)]
struct Prompt {
    /// The prompt text, when it is wanted (not for its size only).
    text: Option<String>,
    /// The length of the prompt text, wanted or not.
    len: usize,
    /// The top-level `max_tokens`, `max_completion_tokens` and `max_output_tokens`
    /// (the last of each when repeated; anything but a count reads as absent).
    max: [Count; 3],
}

const MAX_KEYS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

impl Prompt {
    /// Whether `body` was JSON all through (nothing collected counts otherwise).
    fn read(&mut self, dialect: Dialect, body: &[u8]) -> bool {
        let mut de = serde_json::Deserializer::from_slice(body);
        Collect {
            out: self,
            keys: root_keys(dialect),
            root: true,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .is_ok()
    }
}

/// Appends every string found under the given keys: at the root, the dialect's keys; in
/// content, [`CONTENT_KEYS`], and every string of an array.
struct Collect<'s> {
    out: &'s mut Prompt,
    keys: &'static [&'static str],
    root: bool,
}

impl Collect<'_> {
    fn push(&mut self, s: &str) {
        if self.root || s.is_empty() {
            return;
        }
        if self.out.len > 0 {
            self.out.len += 1;
        }
        self.out.len += s.len();
        if let Some(text) = &mut self.out.text {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(s);
        }
    }

    fn content(&mut self) -> Collect<'_> {
        Collect {
            out: self.out,
            keys: &CONTENT_KEYS,
            root: false,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Collect<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Collect<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(mut self, v: &str) -> Result<(), E> {
        self.push(v);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if self.root {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        while seq.next_element_seed(self.content())?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let key = key.as_str();
            if self.root
                && let Some(i) = key.and_then(|k| MAX_KEYS.iter().position(|m| *m == k))
            {
                self.out.max[i] = map.next_value()?;
                continue;
            }
            let wanted = key.is_some_and(|k| self.keys.contains(&k));
            if wanted {
                map.next_value_seed(self.content())?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}
