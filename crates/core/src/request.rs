//! [`LlmRequest`]: the facts every layer wants from a request, parsed once.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

/// What a request asks the provider to do, from its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// OpenAI-style `.../chat/completions`.
    ChatCompletions,
    /// Legacy `.../completions`.
    Completions,
    /// `.../embeddings`.
    Embeddings,
    /// OpenAI Responses API, `.../responses`.
    Responses,
    /// Anthropic `.../messages`.
    Messages,
    /// Gemini `...:generateContent` or `...:streamGenerateContent`.
    GenerateContent,
    /// Gemini `...:embedContent` / `...:batchEmbedContents`.
    EmbedContent,
    /// Workers AI `/@cf/...` or `/run/...` model runs.
    Run,
    /// Anything else (model lists, files, ...).
    Other,
}

impl Operation {
    /// The operation a provider-relative path names.
    pub fn from_path(path: &str) -> Self {
        let path = path.trim_end_matches('/');
        if let Some((_, verb)) = path.rsplit_once(':') {
            return match verb {
                "generateContent" | "streamGenerateContent" => Self::GenerateContent,
                "embedContent" | "batchEmbedContents" => Self::EmbedContent,
                _ => Self::Other,
            };
        }
        if path.ends_with("/chat/completions") {
            Self::ChatCompletions
        } else if path.ends_with("/completions") {
            Self::Completions
        } else if path.ends_with("/embeddings") {
            Self::Embeddings
        } else if path.ends_with("/responses") {
            Self::Responses
        } else if path.ends_with("/messages") {
            Self::Messages
        } else if path.starts_with("/@cf/")
            || path.starts_with("/@hf/")
            || path.starts_with("/run/")
        {
            Self::Run
        } else {
            Self::Other
        }
    }

    /// A short stable name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Responses => "responses",
            Self::Messages => "messages",
            Self::GenerateContent => "generate_content",
            Self::EmbedContent => "embed_content",
            Self::Run => "run",
            Self::Other => "other",
        }
    }
}

/// The facts parsed from an LLM request: provider, operation, model, stream flag and the
/// JSON body. Stored in request extensions by the first layer that needed the body, so
/// that no later layer parses it again. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LlmRequest {
    /// The provider the request goes to.
    pub provider: Arc<str>,
    /// The provider-relative path, e.g. `/chat/completions`.
    pub path: Arc<str>,
    /// What the request asks for.
    pub operation: Operation,
    /// The model, from the body's `model`, or from the path for Gemini
    /// (`/models/{model}:...`), Azure (the deployment) and Workers AI (`@cf/...`).
    /// `None` when unknown, and for a name over [`MAX_MODEL_LEN`](Self::MAX_MODEL_LEN)
    /// bytes: no real model is named so, and every layer that keys on the model (prices,
    /// metric labels, logs) stays cheap.
    pub model: Option<Arc<str>>,
    /// Whether the client asked for a stream (`"stream": true`, or Gemini's
    /// `:streamGenerateContent`).
    pub stream: bool,
    /// Whether the body parsed as a JSON object.
    pub json: bool,
    /// The request body as received; forwarded untouched.
    pub body: Bytes,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
}

impl LlmRequest {
    /// The longest model name kept, in bytes; a longer one is recorded as unknown.
    pub const MAX_MODEL_LEN: usize = 256;

    /// The path segment of the one-API-for-every-provider endpoints (`/compat/chat/completions`,
    /// `/compat/v1/messages`, `/compat/embeddings`). [`parse`](Self::parse) given this as the
    /// provider takes the provider and model from the body's `model: "provider/model"`, so
    /// that layers price, label and key such a request by the provider that serves it.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tower_ai_core::{LlmRequest, Operation};
    /// let body = Bytes::from_static(br#"{"model":"anthropic/claude-sonnet-4-5","messages":[]}"#);
    /// let r = LlmRequest::parse(LlmRequest::COMPAT_PROVIDER, "/chat/completions", body);
    /// assert_eq!(&*r.provider, "anthropic");
    /// assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5"));
    /// assert_eq!(r.operation, Operation::ChatCompletions);
    /// ```
    pub const COMPAT_PROVIDER: &'static str = "compat";

    /// Parses the facts from a provider name, its provider-relative path and the body.
    ///
    /// Never fails: a body that is not JSON gives `json: false` and no model, and is
    /// still forwarded as it is.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tower_ai_core::{LlmRequest, Operation};
    /// let body = Bytes::from_static(br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#);
    /// let r = LlmRequest::parse("openai", "/chat/completions", body);
    /// assert_eq!(r.operation, Operation::ChatCompletions);
    /// assert_eq!(r.model.as_deref(), Some("gpt-4o-mini"));
    /// assert!(r.stream);
    /// ```
    pub fn parse(provider: &str, path: &str, body: Bytes) -> Self {
        let mut provider = provider;
        let operation = Operation::from_path(path);
        // Only an object: serde would also read a struct from an array, positionally
        // (`["gpt-4o", true]` as model and stream).
        let object = body.trim_ascii_start().first() == Some(&b'{');
        let peeked = match object {
            true => serde_json::from_slice::<Peek<'_>>(&body).ok(),
            false => None,
        };
        let (body_model, mut stream, json) = match peeked {
            Some(peek) => (
                peek.model,
                matches!(peek.stream, Some(serde_json::Value::Bool(true))),
                true,
            ),
            None => (None, false, false),
        };
        // The body's model wins over the path's; either one too long is unknown.
        let model = match &body_model {
            Some(m) => Some(m.as_ref()),
            None => model_from_path(provider, path),
        }
        .filter(|m| m.len() <= Self::MAX_MODEL_LEN);
        // `/compat/...`: the provider that serves is the one `model` names.
        let model = match model {
            Some(m) if provider == Self::COMPAT_PROVIDER => match m.split_once('/') {
                Some((p, rest)) if !p.is_empty() && !rest.is_empty() => {
                    provider = p;
                    Some(rest)
                }
                _ => Some(m),
            },
            m => m,
        }
        .map(Arc::<str>::from);
        if path.ends_with(":streamGenerateContent") {
            stream = true;
        }
        Self {
            provider: Arc::from(provider),
            path: Arc::from(path),
            operation,
            model,
            stream,
            json,
            body,
        }
    }
}

fn model_from_path<'a>(provider: &str, path: &'a str) -> Option<&'a str> {
    // Gemini: /v1beta/models/{model}:generateContent
    if let Some(i) = path.find("/models/") {
        let rest = &path[i + "/models/".len()..];
        let end = rest.find([':', '/']).unwrap_or(rest.len());
        if end > 0 {
            return Some(&rest[..end]);
        }
    }
    // Workers AI: /@cf/meta/llama-3.1-8b-instruct or /run/@cf/...
    let run = path.strip_prefix("/run").unwrap_or(path);
    if run.starts_with("/@cf/") || run.starts_with("/@hf/") {
        return Some(&run[1..]);
    }
    // Azure OpenAI: /{resource}/{deployment}/chat/completions: the deployment.
    if provider == "azure-openai" {
        let mut it = path.trim_start_matches('/').split('/');
        let _resource = it.next()?;
        return it.next().filter(|d| !d.is_empty());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(provider: &str, path: &str, body: &'static str) -> LlmRequest {
        LlmRequest::parse(provider, path, Bytes::from_static(body.as_bytes()))
    }

    /// Found by the `request` fuzz target: a JSON array was read positionally as
    /// `{model, stream}` and counted as a JSON object.
    #[test]
    fn only_an_object_is_json() {
        let r = parse("openai", "/chat/completions", r#"["gpt-4o", true]"#);
        assert_eq!((r.json, r.model, r.stream), (false, None, false));
        let r = parse("openai", "/chat/completions", "[]");
        assert!(!r.json);
        let r = parse("openai", "/chat/completions", " \n{\"model\":\"m\"}");
        assert_eq!((r.json, r.model.as_deref()), (true, Some("m")));
    }

    #[test]
    fn operations() {
        assert_eq!(
            Operation::from_path("/v1/chat/completions"),
            Operation::ChatCompletions
        );
        assert_eq!(
            Operation::from_path("/v1/completions"),
            Operation::Completions
        );
        assert_eq!(Operation::from_path("/embeddings"), Operation::Embeddings);
        assert_eq!(Operation::from_path("/v1/responses"), Operation::Responses);
        assert_eq!(Operation::from_path("/v1/messages"), Operation::Messages);
        assert_eq!(
            Operation::from_path("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            Operation::GenerateContent
        );
        assert_eq!(
            Operation::from_path("/@cf/meta/llama-3.1-8b-instruct"),
            Operation::Run
        );
        assert_eq!(Operation::from_path("/v1/models"), Operation::Other);
    }

    #[test]
    fn body_facts() {
        let r = parse(
            "anthropic",
            "/v1/messages",
            r#"{"max_tokens":5,"model":"claude-x","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(r.model.as_deref(), Some("claude-x"));
        assert!(!r.stream);
        assert!(r.json);
        let r = parse(
            "openai",
            "/chat/completions",
            r#"{"model":"a\"b","stream":true}"#,
        );
        assert_eq!(r.model.as_deref(), Some("a\"b"));
        assert!(r.stream);
        // `stream` that is not `true` is not a stream.
        assert!(!parse("openai", "/chat/completions", r#"{"stream":"yes"}"#).stream);
    }

    #[test]
    fn malformed_body_is_kept() {
        let r = parse("openai", "/chat/completions", "{not json");
        assert!(!r.json);
        assert_eq!(r.model, None);
        assert_eq!(&r.body[..], b"{not json");
        let r = parse("openai", "/chat/completions", "[1,2]");
        assert!(!r.json);
    }

    #[test]
    fn model_from_path() {
        let r = parse(
            "google-ai-studio",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            r#"{"contents":[]}"#,
        );
        assert_eq!(r.model.as_deref(), Some("gemini-2.5-flash"));
        assert!(r.stream);
        let r = parse("workers-ai", "/@cf/meta/llama-3.1-8b-instruct", "{}");
        assert_eq!(r.model.as_deref(), Some("@cf/meta/llama-3.1-8b-instruct"));
        let r = parse(
            "azure-openai",
            "/my-resource/gpt4o-deploy/chat/completions",
            "{}",
        );
        assert_eq!(r.model.as_deref(), Some("gpt4o-deploy"));
        // The body's model wins over the path's.
        let r = parse("workers-ai", "/v1/chat/completions", r#"{"model":"@cf/x"}"#);
        assert_eq!(r.model.as_deref(), Some("@cf/x"));
    }

    #[test]
    fn compat_requests_name_their_provider_in_the_model() {
        let r = parse(
            "compat",
            "/v1/messages",
            r#"{"model":"openai/gpt-4o-mini","stream":true}"#,
        );
        assert_eq!(&*r.provider, "openai");
        assert_eq!(r.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(r.operation, Operation::Messages);
        assert!(r.stream);
        // Without a provider in it, the model is kept as it is.
        let r = parse("compat", "/chat/completions", r#"{"model":"gpt-4o"}"#);
        assert_eq!(&*r.provider, "compat");
        assert_eq!(r.model.as_deref(), Some("gpt-4o"));
        // Only for the compat segment.
        let r = parse(
            "openrouter",
            "/v1/chat/completions",
            r#"{"model":"openai/gpt-4o"}"#,
        );
        assert_eq!(&*r.provider, "openrouter");
        assert_eq!(r.model.as_deref(), Some("openai/gpt-4o"));
    }

    #[test]
    fn an_overlong_model_is_unknown() {
        let at_cap = "m".repeat(LlmRequest::MAX_MODEL_LEN);
        let body = format!(r#"{{"model":"{at_cap}"}}"#);
        let r = LlmRequest::parse("openai", "/chat/completions", Bytes::from(body));
        assert_eq!(r.model.as_deref(), Some(at_cap.as_str()));
        let long = "a-".repeat(100_000);
        let body = format!(r#"{{"model":"{long}","stream":true}}"#);
        let r = LlmRequest::parse("openai", "/chat/completions", Bytes::from(body));
        assert_eq!(r.model, None);
        assert!(r.stream && r.json, "the rest is still parsed");
        // From the path too, and a too-long body model does not fall back to the path.
        let r = LlmRequest::parse(
            "google-ai-studio",
            &format!("/v1beta/models/{long}:generateContent"),
            Bytes::from_static(b"{}"),
        );
        assert_eq!(r.model, None);
        let body = format!(r#"{{"model":"{long}"}}"#);
        let r = LlmRequest::parse("workers-ai", "/@cf/meta/x", Bytes::from(body));
        assert_eq!(r.model, None);
    }
}
