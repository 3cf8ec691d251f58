//! The gateway's path conventions: `/{provider}/{rest}` and the Cloudflare-style
//! `/v1/{account}/{gateway}/{provider}/{rest}`.

/// A request path split into the provider it names and the path it carries to that
/// provider. Borrowed from the request URI: splitting allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderPath<'a> {
    /// The account of a Cloudflare-style path, if it was one.
    pub account: Option<&'a str>,
    /// The gateway of a Cloudflare-style path, if it was one.
    pub gateway: Option<&'a str>,
    /// The provider's name: the segment that picks the upstream.
    pub provider: &'a str,
    /// The rest of the path, appended to the provider's base URL: empty or starting with `/`.
    pub rest: &'a str,
}

impl<'a> ProviderPath<'a> {
    /// Splits a path (no query). `None` when the path names no provider, e.g. `/` or the
    /// universal endpoint `/v1/{account}/{gateway}`.
    ///
    /// ```
    /// use tower_ai_core::ProviderPath;
    /// let p = ProviderPath::parse("/openai/chat/completions").unwrap();
    /// assert_eq!((p.provider, p.rest), ("openai", "/chat/completions"));
    /// let p = ProviderPath::parse("/v1/acct/gw/anthropic/v1/messages").unwrap();
    /// assert_eq!((p.account, p.provider, p.rest), (Some("acct"), "anthropic", "/v1/messages"));
    /// assert!(ProviderPath::parse("/v1/acct/gw").is_none());
    /// ```
    pub fn parse(path: &'a str) -> Option<Self> {
        let path = path.strip_prefix('/')?;
        if let Some(cf) = path.strip_prefix("v1/") {
            let mut it = cf.splitn(4, '/');
            let account = it.next().filter(|s| !s.is_empty())?;
            let gateway = it.next().filter(|s| !s.is_empty())?;
            let provider = it.next().filter(|s| !s.is_empty())?;
            let rest = &cf[account.len() + gateway.len() + provider.len() + 2..];
            return Some(Self {
                account: Some(account),
                gateway: Some(gateway),
                provider,
                rest,
            });
        }
        let (provider, rest) = match path.find('/') {
            Some(i) => path.split_at(i),
            None => (path, ""),
        };
        if provider.is_empty() {
            return None;
        }
        Some(Self {
            account: None,
            gateway: None,
            provider,
            rest,
        })
    }

    /// Whether `path` is the universal endpoint: `/` or `/v1/{account}/{gateway}`.
    pub fn is_universal(path: &str) -> bool {
        let path = path.trim_end_matches('/');
        if path.is_empty() {
            return true;
        }
        match path.strip_prefix("/v1/") {
            Some(rest) => {
                let mut it = rest.split('/');
                matches!((it.next(), it.next(), it.next()), (Some(a), Some(g), None) if !a.is_empty() && !g.is_empty())
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let p = ProviderPath::parse("/anthropic/v1/messages").unwrap();
        assert_eq!(p.provider, "anthropic");
        assert_eq!(p.rest, "/v1/messages");
        assert_eq!(p.account, None);
        let p = ProviderPath::parse("/openai").unwrap();
        assert_eq!((p.provider, p.rest), ("openai", ""));
        assert!(ProviderPath::parse("/").is_none());
        assert!(ProviderPath::parse("").is_none());
        assert!(ProviderPath::parse("//x").is_none());
    }

    #[test]
    fn cloudflare_style() {
        let p = ProviderPath::parse("/v1/a/g/workers-ai/@cf/meta/llama").unwrap();
        assert_eq!(p.account, Some("a"));
        assert_eq!(p.gateway, Some("g"));
        assert_eq!(p.provider, "workers-ai");
        assert_eq!(p.rest, "/@cf/meta/llama");
        let p = ProviderPath::parse("/v1/a/g/openai").unwrap();
        assert_eq!((p.provider, p.rest), ("openai", ""));
        assert!(ProviderPath::parse("/v1/a/g").is_none());
        assert!(ProviderPath::parse("/v1/a/g/").is_none());
        assert!(ProviderPath::parse("/v1//g/openai/x").is_none());
    }

    #[test]
    fn universal() {
        assert!(ProviderPath::is_universal("/"));
        assert!(ProviderPath::is_universal("/v1/acct/gw"));
        assert!(ProviderPath::is_universal("/v1/acct/gw/"));
        assert!(!ProviderPath::is_universal("/v1/acct/gw/openai"));
        assert!(!ProviderPath::is_universal("/openai"));
    }
}
