//! The provider registry: where each provider lives and how it authenticates.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};

/// The wire format a provider speaks: decides how usage is extracted and which
/// error shape its clients expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireFormat {
    /// OpenAI's chat completions, embeddings and Responses API, and every
    /// OpenAI-compatible provider (Azure OpenAI, Groq, Mistral, DeepSeek, OpenRouter, ...).
    OpenAi,
    /// Anthropic's messages API.
    Anthropic,
    /// Google AI Studio's `generateContent`.
    Gemini,
    /// Cloudflare Workers AI's `run` API.
    WorkersAi,
}

impl WireFormat {
    /// Parses a format name as written in configuration (`openai`, `anthropic`, `gemini`, `workers-ai`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            "gemini" | "google-ai-studio" => Some(Self::Gemini),
            "workers-ai" => Some(Self::WorkersAi),
            _ => None,
        }
    }
}

/// How a provider expects its API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthStyle {
    /// `authorization: Bearer KEY` (OpenAI and most others).
    Bearer,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKey,
    /// `x-goog-api-key: KEY` (Google AI Studio).
    GoogApiKey,
}

impl AuthStyle {
    /// Parses a style name as written in configuration (`bearer`, `x-api-key`, `api-key`, `x-goog-api-key`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "bearer" => Some(Self::Bearer),
            "x-api-key" => Some(Self::XApiKey),
            "api-key" => Some(Self::ApiKey),
            "x-goog-api-key" => Some(Self::GoogApiKey),
            _ => None,
        }
    }

    /// The header this style puts the key in.
    pub fn header_name(self) -> HeaderName {
        match self {
            Self::Bearer => AUTHORIZATION,
            Self::XApiKey => HeaderName::from_static("x-api-key"),
            Self::ApiKey => HeaderName::from_static("api-key"),
            Self::GoogApiKey => HeaderName::from_static("x-goog-api-key"),
        }
    }

    /// The header value carrying `key`, marked sensitive so that it is never logged.
    ///
    /// Fails when the key holds bytes a header value cannot.
    pub fn header_value(self, key: &str) -> Result<HeaderValue, InvalidProvider> {
        let value = match self {
            Self::Bearer => HeaderValue::try_from(format!("Bearer {key}")),
            _ => HeaderValue::try_from(key),
        };
        let mut value =
            value.map_err(|_| InvalidProvider::new("api key is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Every header a client may have put a provider credential in.
    pub const CREDENTIAL_HEADERS: [HeaderName; 4] = [
        AUTHORIZATION,
        HeaderName::from_static("x-api-key"),
        HeaderName::from_static("api-key"),
        HeaderName::from_static("x-goog-api-key"),
    ];
}

/// A provider's base URL, split once so that each request only appends a path.
///
/// The path may hold the placeholders `{resource}` (Azure OpenAI: filled from the first
/// path segment of the request) and `{account_id}` (Workers AI: filled from the
/// Cloudflare-style `/v1/{account}/{gateway}/...` prefix or the configured account).
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: String,
    /// The authority parsed once, when it has no placeholder: cloning it is a refcount.
    parsed_authority: Option<Authority>,
    path: String,
}

impl BaseUrl {
    /// Parses an absolute `http` or `https` URL. A trailing `/` is dropped.
    pub fn parse(url: &str) -> Result<Self, InvalidProvider> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::HTTPS, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::HTTP, rest)
        } else {
            return Err(InvalidProvider::new(format!(
                "base_url `{url}` must start with http:// or https://"
            )));
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(InvalidProvider::new(format!(
                "base_url `{url}` must not have a query or fragment"
            )));
        }
        if authority.is_empty() || authority.contains('@') {
            return Err(InvalidProvider::new(format!(
                "base_url `{url}` needs a host and no user info"
            )));
        }
        // `{resource}` may stand in the host (Azure); check the rest parses.
        let probe = authority.replace("{resource}", "r");
        let parsed = Authority::try_from(probe.as_str())
            .map_err(|_| InvalidProvider::new(format!("base_url `{url}` has an invalid host")))?;
        Ok(Self {
            scheme,
            parsed_authority: (!authority.contains('{')).then_some(parsed),
            authority: authority.to_owned(),
            path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The scheme, `http` or `https`.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The host and port, possibly with a `{resource}` placeholder.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The parsed host and port, when the URL has no `{resource}` placeholder.
    pub fn parsed_authority(&self) -> Option<&Authority> {
        self.parsed_authority.as_ref()
    }

    /// The path prefix, without a trailing `/` (possibly empty).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the URL needs the `{resource}` placeholder filled.
    pub fn needs_resource(&self) -> bool {
        self.authority.contains("{resource}") || self.path.contains("{resource}")
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// One upstream provider: name, base URL, auth style and wire format.
///
/// See the [crate docs](crate) for the built-in registry.
#[derive(Clone, Debug)]
pub struct Provider {
    name: Arc<str>,
    base_url: BaseUrl,
    auth: AuthStyle,
    format: WireFormat,
    resource_segment: bool,
    allowed_resources: Option<Arc<[Box<str>]>>,
    default_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Provider {
    /// A provider with the given name, base URL, auth style and wire format.
    pub fn new(
        name: &str,
        base_url: &str,
        auth: AuthStyle,
        format: WireFormat,
    ) -> Result<Self, InvalidProvider> {
        if !valid_name(name) {
            return Err(InvalidProvider::new(format!(
                "provider name `{name}` must be lowercase letters, digits, `-` or `_`"
            )));
        }
        Ok(Self {
            name: Arc::from(name),
            base_url: BaseUrl::parse(base_url)?,
            auth,
            format,
            resource_segment: false,
            allowed_resources: None,
            default_headers: Vec::new(),
        })
    }

    /// A custom OpenAI-compatible provider (bearer auth, OpenAI wire format).
    pub fn openai_compatible(name: &str, base_url: &str) -> Result<Self, InvalidProvider> {
        Self::new(name, base_url, AuthStyle::Bearer, WireFormat::OpenAi)
    }

    /// Replaces the base URL (how tests point a provider at the mock).
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, InvalidProvider> {
        self.base_url = BaseUrl::parse(base_url)?;
        Ok(self)
    }

    /// Adds a header sent upstream when the client did not send it
    /// (e.g. Anthropic's `anthropic-version`).
    pub fn with_default_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.default_headers.retain(|(n, _)| *n != name);
        self.default_headers.push((name, value));
        self
    }

    /// Marks the first path segment of each request as the `{resource}` of the base URL
    /// (Azure OpenAI's `/azure-openai/{resource}/{deployment}/...`).
    pub fn with_resource_segment(mut self, yes: bool) -> Self {
        self.resource_segment = yes;
        self
    }

    /// Restricts the `{resource}` a request may name (see
    /// [`with_resource_segment`](Self::with_resource_segment)) to these, compared without
    /// regard to ASCII case: a request for another is refused before it leaves. Needed
    /// whenever the gateway holds the provider's key, or a client could have the
    /// gateway send that key to any `{resource}.openai.azure.com`. Fails for a name that
    /// is not letters, digits, `-` or `_`.
    pub fn with_allowed_resources<I, S>(mut self, resources: I) -> Result<Self, InvalidProvider>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Vec::new();
        for r in resources {
            let r = r.as_ref();
            if !valid_resource(r) {
                return Err(InvalidProvider::new(format!(
                    "resource name `{r}` must be letters, digits, `-` or `_`"
                )));
            }
            list.push(Box::<str>::from(r));
        }
        self.allowed_resources = Some(list.into());
        Ok(self)
    }

    /// The resources requests may name, when restricted.
    pub fn allowed_resources(&self) -> Option<&[Box<str>]> {
        self.allowed_resources.as_deref()
    }

    /// Whether a request may name `resource`: always, unless
    /// [`with_allowed_resources`](Self::with_allowed_resources) restricted them.
    pub fn allows_resource(&self, resource: &str) -> bool {
        self.allowed_resources
            .as_deref()
            .is_none_or(|list| list.iter().any(|r| r.eq_ignore_ascii_case(resource)))
    }

    /// The provider's name, the first path segment of the gateway's routes.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as a shared string, cheap to clone into extensions.
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// Where requests go.
    pub fn base_url(&self) -> &BaseUrl {
        &self.base_url
    }

    /// How the provider expects its key.
    pub fn auth(&self) -> AuthStyle {
        self.auth
    }

    /// The wire format it speaks.
    pub fn format(&self) -> WireFormat {
        self.format
    }

    /// Whether the first path segment names the `{resource}`.
    pub fn resource_segment(&self) -> bool {
        self.resource_segment
    }

    /// Headers sent upstream when the client did not send them.
    pub fn default_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.default_headers
    }
}

/// A resource name as it may stand in a host name.
pub(crate) fn valid_resource(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The set of providers a gateway routes to, by name.
///
/// [`Providers::builtin`] holds the providers tower-ai knows; configuration overrides
/// base URLs and adds custom OpenAI-compatible ones. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Providers {
    /// foldhash: every request looks its provider up a few times (routing, the
    /// meter, the cache), and the names are the gateway's own.
    by_name: Arc<HashMap<Arc<str>, Provider, foldhash::fast::RandomState>>,
}

impl Providers {
    /// An empty registry.
    pub fn empty() -> Self {
        Self {
            by_name: Arc::new(HashMap::default()),
        }
    }

    /// The built-in providers with their public base URLs:
    ///
    /// | name | base URL | auth | format |
    /// |---|---|---|---|
    /// | `openai` | `https://api.openai.com/v1` | bearer | openai |
    /// | `anthropic` | `https://api.anthropic.com` | `x-api-key` | anthropic |
    /// | `azure-openai` | `https://{resource}.openai.azure.com/openai/deployments` | `api-key` | openai |
    /// | `workers-ai` | `https://api.cloudflare.com/client/v4/accounts/{account_id}/ai` | bearer | workers-ai |
    /// | `google-ai-studio` | `https://generativelanguage.googleapis.com` | `x-goog-api-key` | gemini |
    /// | `groq` | `https://api.groq.com/openai/v1` | bearer | openai |
    /// | `mistral` | `https://api.mistral.ai` | bearer | openai |
    /// | `deepseek` | `https://api.deepseek.com` | bearer | openai |
    /// | `openrouter` | `https://openrouter.ai/api` | bearer | openai |
    /// | `xai` | `https://api.x.ai` | bearer | openai |
    /// | `perplexity-ai` | `https://api.perplexity.ai` | bearer | openai |
    ///
    /// The paths clients append match Cloudflare AI Gateway's, e.g. `/openai/chat/completions`
    /// and `/anthropic/v1/messages`. Anthropic requests get `anthropic-version: 2023-06-01`
    /// when the client sends none.
    pub fn builtin() -> Self {
        use AuthStyle::*;
        use WireFormat::*;
        let table: [(&str, &str, AuthStyle, WireFormat); 11] = [
            ("openai", "https://api.openai.com/v1", Bearer, OpenAi),
            ("anthropic", "https://api.anthropic.com", XApiKey, Anthropic),
            (
                "azure-openai",
                "https://{resource}.openai.azure.com/openai/deployments",
                ApiKey,
                OpenAi,
            ),
            (
                "workers-ai",
                "https://api.cloudflare.com/client/v4/accounts/{account_id}/ai",
                Bearer,
                WorkersAi,
            ),
            (
                "google-ai-studio",
                "https://generativelanguage.googleapis.com",
                GoogApiKey,
                Gemini,
            ),
            ("groq", "https://api.groq.com/openai/v1", Bearer, OpenAi),
            ("mistral", "https://api.mistral.ai", Bearer, OpenAi),
            ("deepseek", "https://api.deepseek.com", Bearer, OpenAi),
            ("openrouter", "https://openrouter.ai/api", Bearer, OpenAi),
            ("xai", "https://api.x.ai", Bearer, OpenAi),
            ("perplexity-ai", "https://api.perplexity.ai", Bearer, OpenAi),
        ];
        let mut map = HashMap::with_capacity_and_hasher(table.len(), Default::default());
        for (name, url, auth, format) in table {
            let mut p = Provider::new(name, url, auth, format).expect("built-in provider is valid");
            match name {
                "anthropic" => {
                    p = p.with_default_header(
                        HeaderName::from_static("anthropic-version"),
                        HeaderValue::from_static("2023-06-01"),
                    )
                }
                "azure-openai" => p = p.with_resource_segment(true),
                _ => {}
            }
            map.insert(p.name.clone(), p);
        }
        Self {
            by_name: Arc::new(map),
        }
    }

    /// Adds or replaces a provider.
    pub fn insert(&mut self, provider: Provider) {
        Arc::make_mut(&mut self.by_name).insert(provider.name.clone(), provider);
    }

    /// Adds or replaces a provider, builder style.
    pub fn with(mut self, provider: Provider) -> Self {
        self.insert(provider);
        self
    }

    /// Points an existing provider at another base URL.
    pub fn set_base_url(&mut self, name: &str, base_url: &str) -> Result<(), InvalidProvider> {
        let map = Arc::make_mut(&mut self.by_name);
        let p = map
            .get_mut(name)
            .ok_or_else(|| InvalidProvider::new(format!("unknown provider `{name}`")))?;
        p.base_url = BaseUrl::parse(base_url)?;
        Ok(())
    }

    /// Looks a provider up by name.
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.by_name.get(name)
    }

    /// Every provider, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.by_name.values()
    }
}

impl Default for Providers {
    fn default() -> Self {
        Self::builtin()
    }
}

/// A provider definition that cannot be used.
#[derive(Clone, Debug)]
pub struct InvalidProvider {
    message: String,
}

impl InvalidProvider {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidProvider {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_splits() {
        let u = BaseUrl::parse("http://127.0.0.1:9001/v1/").unwrap();
        assert_eq!(u.scheme(), &Scheme::HTTP);
        assert_eq!(u.authority(), "127.0.0.1:9001");
        assert_eq!(u.path(), "/v1");
        assert_eq!(u.to_string(), "http://127.0.0.1:9001/v1");
        let u = BaseUrl::parse("https://api.anthropic.com").unwrap();
        assert_eq!(u.path(), "");
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("https://").is_err());
        assert!(BaseUrl::parse("https://a/b?c=d").is_err());
        assert!(BaseUrl::parse("https://user:pw@a/b").is_err());
        assert!(
            BaseUrl::parse("https://{resource}.openai.azure.com/openai")
                .unwrap()
                .needs_resource()
        );
    }

    #[test]
    fn builtin_registry() {
        let p = Providers::builtin();
        for name in [
            "openai",
            "anthropic",
            "azure-openai",
            "workers-ai",
            "google-ai-studio",
            "groq",
            "mistral",
            "deepseek",
            "openrouter",
        ] {
            assert!(p.get(name).is_some(), "{name}");
        }
        assert_eq!(p.get("anthropic").unwrap().auth(), AuthStyle::XApiKey);
        assert_eq!(p.get("azure-openai").unwrap().auth(), AuthStyle::ApiKey);
        assert_eq!(
            p.get("google-ai-studio").unwrap().auth(),
            AuthStyle::GoogApiKey
        );
        assert_eq!(p.get("groq").unwrap().format(), WireFormat::OpenAi);
        assert!(p.get("nope").is_none());
    }

    #[test]
    fn override_and_custom() {
        let mut p = Providers::builtin();
        p.set_base_url("openai", "http://127.0.0.1:1/v1").unwrap();
        assert_eq!(
            p.get("openai").unwrap().base_url().to_string(),
            "http://127.0.0.1:1/v1"
        );
        assert!(p.set_base_url("nope", "http://x").is_err());
        p.insert(Provider::openai_compatible("local-llm", "http://127.0.0.1:8080/v1").unwrap());
        assert_eq!(p.get("local-llm").unwrap().auth(), AuthStyle::Bearer);
        assert!(Provider::openai_compatible("Bad Name", "http://x").is_err());
    }

    #[test]
    fn allowed_resources() {
        let azure = Providers::builtin().get("azure-openai").unwrap().clone();
        assert!(azure.allows_resource("anything"));
        let azure = azure.with_allowed_resources(["myres", "Other-1"]).unwrap();
        assert!(azure.allows_resource("myres"));
        assert!(azure.allows_resource("other-1"));
        assert!(!azure.allows_resource("evil"));
        assert_eq!(azure.allowed_resources().unwrap().len(), 2);
        assert!(
            Providers::builtin()
                .get("azure-openai")
                .unwrap()
                .clone()
                .with_allowed_resources(["evil.com:80"])
                .is_err()
        );
    }

    #[test]
    fn key_header_is_sensitive() {
        let v = AuthStyle::Bearer.header_value("sk-1").unwrap();
        assert_eq!(v, "Bearer sk-1");
        assert!(v.is_sensitive());
        assert!(AuthStyle::XApiKey.header_value("bad\nkey").is_err());
    }
}
