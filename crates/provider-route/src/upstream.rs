//! Building the upstream URI.

use http::Uri;
use http::uri::{Authority, PathAndQuery};
use tower_ai_core::{Provider, ProviderPath};

/// The upstream URI for a request to `path` (already split) with `query`.
pub(crate) fn upstream_uri(
    provider: &Provider,
    split: &ProviderPath<'_>,
    query: Option<&str>,
    account_id: Option<&str>,
) -> Result<Uri, &'static str> {
    let mut rest = split.rest;
    check_segments(rest)?;
    let base = provider.base_url();

    let mut resource = None;
    if provider.resource_segment() {
        let r = rest.strip_prefix('/').unwrap_or(rest);
        let (seg, after) = match r.find('/') {
            Some(i) => (&r[..i], &r[i..]),
            None => (r, ""),
        };
        if seg.is_empty() {
            return Err("path must start with the resource name");
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("invalid resource name");
        }
        if !provider.allows_resource(seg) {
            return Err("this resource is not served by the gateway");
        }
        resource = Some(seg);
        rest = after;
    }

    let authority = if let Some(a) = base.parsed_authority() {
        a.clone()
    } else if base.authority().contains("{resource}") {
        let r = resource.ok_or("path must name the resource")?;
        Authority::try_from(base.authority().replace("{resource}", r))
            .map_err(|_| "invalid resource name")?
    } else {
        Authority::try_from(base.authority()).map_err(|_| "invalid host")?
    };

    let mut path = String::with_capacity(
        base.path().len() + rest.len() + 8 + query.map_or(0, |q| q.len() + 1),
    );
    let base_path = base.path();
    if base_path.contains("{account_id}") {
        let account = split.account.or(account_id).ok_or(
            "this provider needs an account id: use /v1/{account}/{gateway}/... or configure one",
        )?;
        if !account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("invalid account id");
        }
        path.push_str(&base_path.replace("{account_id}", account));
    } else {
        path.push_str(base_path);
    }
    // Workers AI: a bare model path runs the model.
    if rest.starts_with("/@cf/") || rest.starts_with("/@hf/") {
        path.push_str("/run");
    }
    path.push_str(rest);
    if path.is_empty() {
        path.push('/');
    }
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    let pq = PathAndQuery::try_from(path).map_err(|_| "invalid path")?;
    Uri::builder()
        .scheme(base.scheme().clone())
        .authority(authority)
        .path_and_query(pq)
        .build()
        .map_err(|_| "invalid path")
}

/// Refuses a path that could climb out of the base URL once some server decodes it:
/// a segment that percent-decodes to `.` or `..`, or to anything holding `/` or `\`, and
/// empty segments (`//`). A trailing `/` is kept.
fn check_segments(rest: &str) -> Result<(), &'static str> {
    const BAD: &str = "path must not contain `.`, `..`, empty or encoded `/` or `\\` segments";
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(());
    }
    for seg in rest.split('/') {
        if seg.is_empty() {
            return Err(BAD);
        }
        // Decoding can only shorten a segment: one over two bytes that holds no `%`
        // (nor a backslash) cannot be a dot segment or hide a separator.
        if !seg.contains('%') && !seg.contains('\\') && seg.len() > 2 {
            continue;
        }
        let mut decoded = [0u8; 3];
        let mut len = 0;
        let bytes = seg.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = match bytes[i] {
                b'%' => {
                    let hex = match bytes.get(i + 1..i + 3) {
                        Some(&[h, l]) => hex_digit(h).zip(hex_digit(l)).map(|(h, l)| h << 4 | l),
                        _ => None,
                    };
                    match hex {
                        Some(b) => {
                            i += 3;
                            b
                        }
                        // A stray `%`: kept as it is, as servers do.
                        None => {
                            i += 1;
                            b'%'
                        }
                    }
                }
                b => {
                    i += 1;
                    b
                }
            };
            if b == b'/' || b == b'\\' {
                return Err(BAD);
            }
            if len < decoded.len() {
                decoded[len] = b;
            }
            len += 1;
        }
        let dots = match len {
            1 => decoded[0] == b'.',
            2 => decoded[..2] == *b"..",
            _ => false,
        };
        if dots {
            return Err(BAD);
        }
    }
    Ok(())
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use tower_ai_core::Providers;

    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum RouteError {
        NoProvider,
        UnknownProvider,
        BadPath(&'static str),
    }

    fn route(
        providers: &Providers,
        path_and_query: &str,
        account: Option<&str>,
    ) -> Result<String, RouteError> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let split = ProviderPath::parse(path).ok_or(RouteError::NoProvider)?;
        let p = providers
            .get(split.provider)
            .ok_or(RouteError::UnknownProvider)?;
        upstream_uri(p, &split, query, account)
            .map(|u| u.to_string())
            .map_err(RouteError::BadPath)
    }

    #[test]
    fn builtin_upstreams() {
        let p = Providers::builtin();
        let cases = [
            (
                "/openai/chat/completions",
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "/anthropic/v1/messages",
                "https://api.anthropic.com/v1/messages",
            ),
            (
                "/azure-openai/myres/gpt4o/chat/completions?api-version=2024-06-01",
                "https://myres.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-06-01",
            ),
            (
                "/v1/acc123/gw/workers-ai/@cf/meta/llama-3.1-8b-instruct",
                "https://api.cloudflare.com/client/v4/accounts/acc123/ai/run/@cf/meta/llama-3.1-8b-instruct",
            ),
            (
                "/v1/acc123/gw/workers-ai/v1/chat/completions",
                "https://api.cloudflare.com/client/v4/accounts/acc123/ai/v1/chat/completions",
            ),
            (
                "/google-ai-studio/v1beta/models/gemini-2.5-flash:generateContent",
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
            ),
            (
                "/groq/chat/completions",
                "https://api.groq.com/openai/v1/chat/completions",
            ),
            (
                "/mistral/v1/chat/completions",
                "https://api.mistral.ai/v1/chat/completions",
            ),
            (
                "/deepseek/chat/completions",
                "https://api.deepseek.com/chat/completions",
            ),
            (
                "/openrouter/v1/chat/completions",
                "https://openrouter.ai/api/v1/chat/completions",
            ),
            (
                "/v1/a/g/openai/embeddings",
                "https://api.openai.com/v1/embeddings",
            ),
        ];
        for (from, to) in cases {
            assert_eq!(route(&p, from, None).unwrap(), to, "{from}");
        }
    }

    #[test]
    fn overridden_base_url() {
        let mut p = Providers::builtin();
        p.set_base_url("openai", "http://127.0.0.1:9001/v1")
            .unwrap();
        p.set_base_url("azure-openai", "http://127.0.0.1:9001/openai/deployments")
            .unwrap();
        assert_eq!(
            route(&p, "/openai/chat/completions", None).unwrap(),
            "http://127.0.0.1:9001/v1/chat/completions"
        );
        assert_eq!(
            route(&p, "/azure-openai/res/dep/embeddings?api-version=1", None).unwrap(),
            "http://127.0.0.1:9001/openai/deployments/dep/embeddings?api-version=1"
        );
    }

    #[test]
    fn account_from_config() {
        let p = Providers::builtin();
        assert!(matches!(
            route(&p, "/workers-ai/@cf/x/y", None),
            Err(RouteError::BadPath(_))
        ));
        assert_eq!(
            route(&p, "/workers-ai/@cf/x/y", Some("cfg")).unwrap(),
            "https://api.cloudflare.com/client/v4/accounts/cfg/ai/run/@cf/x/y"
        );
    }

    #[test]
    fn azure_resources_can_be_restricted() {
        let mut p = Providers::builtin();
        let azure = p
            .get("azure-openai")
            .unwrap()
            .clone()
            .with_allowed_resources(["myres"])
            .unwrap();
        p.insert(azure);
        assert_eq!(
            route(&p, "/azure-openai/myres/dep/chat/completions", None).unwrap(),
            "https://myres.openai.azure.com/openai/deployments/dep/chat/completions"
        );
        assert!(matches!(
            route(&p, "/azure-openai/attacker/dep/chat/completions", None),
            Err(RouteError::BadPath(_))
        ));
    }

    #[test]
    fn bad_paths() {
        let p = Providers::builtin();
        for bad in [
            "/openai/../admin",
            "/openai/chat/../../x",
            "/openai/%2e%2e/x",
            "/openai/a%2Fb",
            "/openai/.%2e/x",
            "/openai/%2e./x",
            "/openai/%2E%2E/x",
            "/openai/%2e/x",
            "/openai/chat/.",
            "/openai/chat/%2E%2e",
            "/openai/a%5cb",
            "/openai/a%5C..%5Cb",
            "/openai/a\\b",
            "/openai//admin",
            "/openai/chat//completions",
            "/openai/%2fadmin",
            "/azure-openai//dep/chat/completions",
            "/azure-openai/evil.com:80/dep",
            "/v1/a.b/g/workers-ai/@cf/x",
        ] {
            assert!(
                matches!(route(&p, bad, None), Err(RouteError::BadPath(_))),
                "{bad}"
            );
        }
        // Dots and percents that are not dot segments are fine, and so is a trailing `/`.
        for good in [
            "/openai/v1.2/chat",
            "/openai/...",
            "/openai/a%20b",
            "/openai/%2e%2e%2e",
            "/openai/models/",
            "/openai/100%",
        ] {
            assert!(route(&p, good, None).is_ok(), "{good}");
        }
        assert_eq!(route(&p, "/nope/x", None), Err(RouteError::UnknownProvider));
        assert_eq!(route(&p, "/", None), Err(RouteError::NoProvider));
    }
}
