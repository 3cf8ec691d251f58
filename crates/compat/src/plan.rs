//! From a `/compat/...` request to the provider's native request, and the plan for
//! translating its answer.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{StatusCode, Uri};
use serde::Deserialize;
use serde_json::value::RawValue;
use tower_ai_core::{
    AuthStyle, LlmRequest, Provider, ProviderPath, Providers, WireFormat, credential,
};

use crate::error::TranslateError;
use crate::request::{self, Options};
use crate::{Dialect, anthropic, openai};

/// The pseudo-provider segment of the compat paths: `/compat/...`.
pub const COMPAT_SEGMENT: &str = LlmRequest::COMPAT_PROVIDER;

/// Which compat endpoint a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/compat/chat/completions`: OpenAI's dialect.
    ChatCompletions,
    /// `/compat/v1/messages`: Anthropic's dialect.
    Messages,
    /// `/compat/embeddings`: OpenAI's dialect.
    Embeddings,
}

impl Endpoint {
    /// The endpoint of a compat-relative path (after `/compat`), if it is one.
    pub fn from_rest(rest: &str) -> Option<Self> {
        match rest.trim_end_matches('/') {
            "/chat/completions" | "/v1/chat/completions" => Some(Self::ChatCompletions),
            "/v1/messages" | "/messages" => Some(Self::Messages),
            "/embeddings" | "/v1/embeddings" => Some(Self::Embeddings),
            _ => None,
        }
    }

    /// The dialect its clients speak.
    pub fn dialect(self) -> Dialect {
        match self {
            Self::Messages => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }
}

/// A compat path split: the endpoint and, for Cloudflare-style paths, the
/// `/v1/{account}/{gateway}` prefix to keep.
pub(crate) fn parse_path(path: &str) -> Option<(Endpoint, Option<&str>)> {
    let p = ProviderPath::parse(path)?;
    if p.provider != COMPAT_SEGMENT {
        return None;
    }
    let endpoint = Endpoint::from_rest(p.rest)?;
    let prefix = p
        .account
        .map(|_| &path[..path.len() - p.rest.len() - COMPAT_SEGMENT.len() - 1]);
    Some((endpoint, prefix))
}

/// How the answer is handled.
#[derive(Clone, Debug)]
pub(crate) enum Translation {
    /// The target speaks the client's dialect: the answer passes untouched.
    Pass,
    /// Anthropic message -> OpenAI chat completion.
    AnthropicToOpenAi,
    /// Gemini -> OpenAI chat completion.
    GeminiToOpenAi,
    /// OpenAI chat completion -> Anthropic message.
    OpenAiToAnthropic,
    /// Gemini -> Anthropic message (through OpenAI's dialect).
    GeminiToAnthropic,
    /// Gemini embeddings -> OpenAI embeddings.
    GeminiEmbeddings,
}

/// What the response side needs to know.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) dialect: Dialect,
    pub(crate) target: WireFormat,
    pub(crate) translation: Translation,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    /// The model, as the target knows it (echoed where the answer names none).
    pub(crate) model: String,
    /// The native request, for the usage reader.
    pub(crate) llm: LlmRequest,
}

/// A request refused before it left: status and the error in the client's dialect.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Refusal {
    fn bad_request(dialect: Dialect, e: &TranslateError) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: crate::error::error_body(
                dialect,
                StatusCode::BAD_REQUEST,
                Some("invalid_request_error"),
                e.message(),
                e.param(),
            ),
        }
    }
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
}

/// The native request: path, body, and the plan for the answer.
pub(crate) struct Native {
    pub(crate) path: String,
    pub(crate) body: Bytes,
    pub(crate) plan: Plan,
    pub(crate) provider: Provider,
}

/// Builds the native request for `endpoint` from the client's body.
pub(crate) fn native(
    providers: &Providers,
    options: &Options,
    endpoint: Endpoint,
    prefix: Option<&str>,
    body: &Bytes,
) -> Result<Native, Refusal> {
    let dialect = endpoint.dialect();
    let bad = |e: TranslateError| Refusal::bad_request(dialect, &e);
    let peek: Peek<'_> = serde_json::from_slice(body).map_err(|e| {
        bad(TranslateError::other(format!(
            "the request body is not a JSON object: {e}"
        )))
    })?;
    let raw = peek.model.ok_or_else(|| {
        bad(TranslateError::invalid(
            "model",
            "is required, as `provider/model`",
        ))
    })?;
    let full: Cow<'_, str> = serde_json::from_str(raw.get()).map_err(|_| {
        bad(TranslateError::invalid(
            "model",
            "must be a string `provider/model`",
        ))
    })?;
    let (provider_name, model) = full
        .split_once('/')
        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
        .ok_or_else(|| {
            bad(TranslateError::invalid(
                "model",
                "must be `provider/model`, e.g. `anthropic/claude-sonnet-4-5`",
            ))
        })?;
    let provider = providers.get(provider_name).ok_or_else(|| {
        bad(TranslateError::invalid(
            "model",
            format!(
                "names an unknown provider `{}`",
                provider_name.chars().take(64).collect::<String>()
            ),
        ))
    })?;
    let target = match provider.format() {
        WireFormat::WorkersAi => WireFormat::OpenAi,
        f => f,
    };
    // A model that goes into a path (Gemini's, Azure's) must be one.
    let in_path = target == WireFormat::Gemini || provider.resource_segment();
    if in_path && !path_safe(model) {
        return Err(bad(TranslateError::invalid(
            "model",
            "must be letters, digits, `-`, `.`, `_`, `@` and `/` between non-dot segments",
        )));
    }
    // The model as the provider knows it; Azure's `{resource}/{deployment}` is a path.
    let (body_model, openai_prefix) = if provider.resource_segment() {
        (
            model.rsplit('/').next().unwrap_or(model),
            format!("/{model}"),
        )
    } else if provider.base_url().path().ends_with("/v1") {
        (model, String::new())
    } else {
        (model, "/v1".to_owned())
    };

    let (rest, new_body, translation, stream, include_usage) = match (endpoint, target) {
        (Endpoint::ChatCompletions, WireFormat::OpenAi) => (
            format!("{openai_prefix}/chat/completions"),
            splice_model(body, raw, body_model),
            Translation::Pass,
            false,
            false,
        ),
        (Endpoint::Embeddings, WireFormat::OpenAi) => (
            format!("{openai_prefix}/embeddings"),
            splice_model(body, raw, body_model),
            Translation::Pass,
            false,
            false,
        ),
        (Endpoint::Messages, WireFormat::Anthropic) => (
            "/v1/messages".to_owned(),
            splice_model(body, raw, body_model),
            Translation::Pass,
            false,
            false,
        ),
        (Endpoint::ChatCompletions, WireFormat::Anthropic) => {
            let req: openai::ChatRequest = parse(body, dialect)?;
            let stream = req.stream == Some(true);
            let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
            let out = request::chat_to_anthropic(req, body_model, options).map_err(bad)?;
            (
                "/v1/messages".to_owned(),
                to_json(&out),
                Translation::AnthropicToOpenAi,
                stream,
                include_usage,
            )
        }
        (Endpoint::ChatCompletions, WireFormat::Gemini) => {
            let req: openai::ChatRequest = parse(body, dialect)?;
            let stream = req.stream == Some(true);
            let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
            let out = request::chat_to_gemini(req, options).map_err(bad)?;
            (
                gemini_path(body_model, stream),
                to_json(&out),
                Translation::GeminiToOpenAi,
                stream,
                include_usage,
            )
        }
        (Endpoint::Messages, WireFormat::OpenAi) => {
            let req: anthropic::MessagesRequest = parse(body, dialect)?;
            let stream = req.stream == Some(true);
            let mut out = request::anthropic_to_chat(req, body_model, options).map_err(bad)?;
            request::check_for_openai(&mut out, options).map_err(bad)?;
            (
                format!("{openai_prefix}/chat/completions"),
                to_json(&out),
                Translation::OpenAiToAnthropic,
                stream,
                true,
            )
        }
        (Endpoint::Messages, WireFormat::Gemini) => {
            let req: anthropic::MessagesRequest = parse(body, dialect)?;
            let stream = req.stream == Some(true);
            let chat = request::anthropic_to_chat(req, body_model, options).map_err(bad)?;
            let out = request::chat_to_gemini(chat, options).map_err(bad)?;
            (
                gemini_path(body_model, stream),
                to_json(&out),
                Translation::GeminiToAnthropic,
                stream,
                true,
            )
        }
        (Endpoint::Embeddings, WireFormat::Gemini) => {
            let req: openai::EmbeddingsRequest = parse(body, dialect)?;
            let out = request::embeddings_to_gemini(req, body_model, options).map_err(bad)?;
            (
                format!("/v1beta/models/{body_model}:batchEmbedContents"),
                to_json(&out),
                Translation::GeminiEmbeddings,
                false,
                false,
            )
        }
        (Endpoint::Embeddings, _) => {
            return Err(bad(TranslateError::invalid(
                "model",
                format!("`{provider_name}` has no embeddings endpoint"),
            )));
        }
        (_, _) => {
            return Err(bad(TranslateError::invalid(
                "model",
                format!("`{provider_name}` speaks a wire format /compat does not translate"),
            )));
        }
    };
    let llm_path = rest.split('?').next().unwrap_or(&rest).to_owned();
    let llm = LlmRequest::parse(provider.name(), &llm_path, new_body.clone());
    let path = format!("{}/{}{}", prefix.unwrap_or(""), provider.name(), rest);
    Ok(Native {
        path,
        body: new_body,
        plan: Plan {
            dialect,
            target,
            translation,
            stream,
            include_usage,
            model: body_model.to_owned(),
            llm,
        },
        provider: provider.clone(),
    })
}

/// Whether `model` can stand in a path as it is.
fn path_safe(model: &str) -> bool {
    model
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._@/".contains(&b))
        && model
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

fn gemini_path(model: &str, stream: bool) -> String {
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], dialect: Dialect) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        Refusal::bad_request(
            dialect,
            &TranslateError::other(format!("the request body is not a valid request: {e}")),
        )
    })
}

/// The body with its `model` value replaced by `model`: the rest of the bytes as they
/// came, never re-serialised.
fn splice_model(body: &Bytes, raw: &RawValue, model: &str) -> Bytes {
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    let end = start + raw.get().len();
    let quoted = serde_json::to_string(model).expect("a string serialises");
    let mut out = Vec::with_capacity(body.len() - (end - start) + quoted.len());
    out.extend_from_slice(&body[..start]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[end..]);
    Bytes::from(out)
}

/// Seconds since the epoch, for `created`.
pub(crate) fn created() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Rewrites the request head for the native request: path (query kept, Gemini's
/// `alt=sse` added), length, content type, and the client's credential moved into the
/// header the target expects.
pub(crate) fn rewrite_head(
    parts: &mut http::request::Parts,
    native: &Native,
) -> Result<(), http::Error> {
    let (path, native_query) = match native.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (native.path.as_str(), None),
    };
    let query = match (parts.uri.query(), native_query) {
        (Some(a), Some(b)) => Some(format!("{a}&{b}")),
        (Some(a), None) => Some(a.to_owned()),
        (None, Some(b)) => Some(b.to_owned()),
        (None, None) => None,
    };
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut uri = Uri::builder().path_and_query(pq);
    if let Some(s) = parts.uri.scheme() {
        uri = uri.scheme(s.clone());
    }
    if let Some(a) = parts.uri.authority() {
        uri = uri.authority(a.clone());
    }
    parts.uri = uri.build()?;
    let h = &mut parts.headers;
    h.insert(CONTENT_LENGTH, HeaderValue::from(native.body.len()));
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if native.plan.target != WireFormat::Anthropic {
        h.remove("anthropic-version");
        h.remove("anthropic-beta");
    }
    // The client's key, in the header the target reads it from.
    let want = native.provider.auth();
    let cred = credential(h).map(str::to_owned);
    if let Some(cred) = cred {
        let present = h.contains_key(want.header_name());
        if !present && let Ok(v) = want.header_value(&cred) {
            for name in AuthStyle::CREDENTIAL_HEADERS {
                h.remove(name);
            }
            h.insert(want.header_name(), v);
        }
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("a wire type serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("/compat/chat/completions"),
            Some((Endpoint::ChatCompletions, None))
        );
        assert_eq!(
            parse_path("/compat/v1/messages"),
            Some((Endpoint::Messages, None))
        );
        assert_eq!(
            parse_path("/v1/acct/gw/compat/embeddings"),
            Some((Endpoint::Embeddings, Some("/v1/acct/gw")))
        );
        assert_eq!(parse_path("/openai/chat/completions"), None);
        assert_eq!(parse_path("/compat/models"), None);
    }

    #[test]
    fn models_in_paths() {
        assert!(path_safe("gemini-2.5-flash"));
        assert!(path_safe("res/deploy_1"));
        for bad in ["a?b", "a#b", "../x", "a//b", "a b", "a%2e", "x/.."] {
            assert!(!path_safe(bad), "{bad}");
        }
    }

    #[test]
    fn splice_keeps_the_rest() {
        let body = Bytes::from_static(br#"{ "messages":[] , "model" : "anthropic/x\"y", "n":1}"#);
        let peek: Peek<'_> = serde_json::from_slice(&body).unwrap();
        let out = splice_model(&body, peek.model.unwrap(), "claude");
        assert_eq!(&out[..], br#"{ "messages":[] , "model" : "claude", "n":1}"#);
    }
}
