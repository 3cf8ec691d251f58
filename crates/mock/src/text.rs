//! The deterministic reply text and the word-count "tokenizer".

use serde_json::Value;

/// The reply's words, cycled.
const WORDS: [&str; 16] = [
    "Hello",
    "from",
    "the",
    "mock",
    "provider.",
    "This",
    "reply",
    "is",
    "deterministic",
    "so",
    "tests",
    "can",
    "assert",
    "exact",
    "token",
    "counts.",
];

/// Output words when neither the `chunks` fault nor a `max_tokens`-like field says
/// otherwise.
pub(crate) const DEFAULT_OUTPUT_WORDS: usize = WORDS.len();

/// The deterministic reply text with `n` words (one output token each).
///
/// The words `Hello from the mock provider. This reply is deterministic so tests can
/// assert exact token counts.` are cycled and joined by single spaces; `n = 0` is the
/// empty string.
///
/// ```
/// assert_eq!(tower_ai_mock::reply_words(3), "Hello from the");
/// assert_eq!(tower_ai_mock::reply_words(18), format!("{} Hello from", tower_ai_mock::reply_words(16)));
/// ```
pub fn reply_words(n: usize) -> String {
    (0..n).map(delta).collect()
}

/// The `i`th stream delta: the first word bare, every later one as `" " + word`, so the
/// deltas concatenate to [`reply_words`].
pub(crate) fn delta(i: usize) -> &'static str {
    const SPACED: [&str; 16] = [
        " Hello",
        " from",
        " the",
        " mock",
        " provider.",
        " This",
        " reply",
        " is",
        " deterministic",
        " so",
        " tests",
        " can",
        " assert",
        " exact",
        " token",
        " counts.",
    ];
    if i == 0 {
        WORDS[0]
    } else {
        SPACED[i % SPACED.len()]
    }
}

/// Whitespace-separated words in `s`.
pub(crate) fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Words in a message `content`: a string, or an array of parts whose `text` is counted
/// when the part's `type` is one of `types` (any type when `types` is empty).
pub(crate) fn content_words(content: &Value, types: &[&str]) -> u64 {
    match content {
        Value::String(s) => words(s),
        Value::Array(parts) => parts
            .iter()
            .filter(|part| {
                types.is_empty()
                    || part
                        .get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| types.contains(&t))
            })
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(words)
            .sum(),
        _ => 0,
    }
}

/// How long the reply is and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Output {
    /// Output words = output tokens.
    pub(crate) words: usize,
    /// `true` when a `max_tokens`-like field cut the reply short (finish reason `length`).
    pub(crate) truncated: bool,
}

impl Output {
    /// `chunks` (the fault) wins; else `max_tokens` when below the default length; else
    /// the default. Never below 1.
    pub(crate) fn new(chunks: Option<usize>, max_tokens: Option<u64>) -> Output {
        if let Some(n) = chunks {
            return Output {
                words: n.max(1),
                truncated: false,
            };
        }
        match max_tokens {
            Some(max) if max < DEFAULT_OUTPUT_WORDS as u64 => Output {
                words: (max as usize).max(1),
                truncated: true,
            },
            _ => Output {
                words: DEFAULT_OUTPUT_WORDS,
                truncated: false,
            },
        }
    }

    /// The reply text.
    pub(crate) fn text(self) -> String {
        reply_words(self.words)
    }
}

/// The first field of `names` that is an unsigned integer.
pub(crate) fn first_u64(request: &Value, names: &[&str]) -> Option<u64> {
    names
        .iter()
        .find_map(|name| request.get(*name).and_then(Value::as_u64))
}

/// Output tokens of a reply that calls a tool.
pub(crate) const TOOL_CALL_TOKENS: u64 = 5;

/// The arguments of every mock tool call.
pub(crate) static TOOL_ARGS: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| serde_json::json!({"location": "Paris", "unit": "celsius"}));

/// The tool an OpenAI chat or Anthropic request asks to call: the named one, else the
/// first offered, unless the choice is `none` or the last message is a tool's result.
pub(crate) fn tool_to_call(request: &Value) -> Option<String> {
    let tools = request.get("tools")?.as_array()?;
    let choice = request.get("tool_choice");
    let kind = choice.and_then(|c| c.as_str().or_else(|| c.get("type").and_then(Value::as_str)));
    if kind == Some("none") {
        return None;
    }
    let last = request.get("messages").and_then(Value::as_array)?.last()?;
    let answered = last.get("role").and_then(Value::as_str) == Some("tool")
        || last
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|b| {
                b.iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            });
    if answered {
        return None;
    }
    let named = choice.and_then(|c| {
        c.pointer("/function/name")
            .or_else(|| c.get("name"))
            .and_then(Value::as_str)
    });
    if let Some(n) = named {
        return Some(n.to_owned());
    }
    tools
        .iter()
        .find_map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
        })
        .map(str::to_owned)
}

/// The request's `model`, or `mock-model`.
pub(crate) fn model(request: &Value) -> &str {
    request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
}

/// `true` when the request's `stream` is `true`.
pub(crate) fn is_stream(request: &Value) -> bool {
    request.get("stream").and_then(Value::as_bool) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reply_text() {
        assert_eq!(reply_words(0), "");
        assert_eq!(reply_words(1), "Hello");
        assert_eq!(
            reply_words(16),
            "Hello from the mock provider. This reply is deterministic so tests can assert exact token counts."
        );
        assert_eq!(words(&reply_words(40)), 40);
        let deltas: String = (0..40).map(delta).collect();
        assert_eq!(deltas, reply_words(40));
    }

    #[test]
    fn output_length() {
        assert_eq!(
            Output::new(None, None),
            Output {
                words: 16,
                truncated: false
            }
        );
        assert_eq!(
            Output::new(None, Some(5)),
            Output {
                words: 5,
                truncated: true
            }
        );
        assert_eq!(
            Output::new(None, Some(0)),
            Output {
                words: 1,
                truncated: true
            }
        );
        assert_eq!(
            Output::new(None, Some(16)),
            Output {
                words: 16,
                truncated: false
            }
        );
        assert_eq!(
            Output::new(None, Some(100)),
            Output {
                words: 16,
                truncated: false
            }
        );
        assert_eq!(
            Output::new(Some(40), Some(5)),
            Output {
                words: 40,
                truncated: false
            }
        );
        assert_eq!(
            Output::new(Some(0), None),
            Output {
                words: 1,
                truncated: false
            }
        );
    }

    #[test]
    fn content_counting() {
        assert_eq!(content_words(&json!("  two  words "), &[]), 2);
        let parts = json!([
            {"type": "text", "text": "one two"},
            {"type": "image_url", "image_url": {"url": "x y z"}},
            {"type": "input_text", "text": "three"}
        ]);
        assert_eq!(content_words(&parts, &["text"]), 2);
        assert_eq!(content_words(&parts, &[]), 3);
        assert_eq!(content_words(&json!(null), &[]), 0);
    }
}
