use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{ACCEPT_ENCODING, HOST};
use http::{Request, Response, Version};
use tower_ai_core::{
    AuthStyle, CallerId, ErrorResponse, GatewayHeaders, ProviderKeys, ProviderPath, ResolvedRoute,
    headers,
};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::upstream::upstream_uri;

/// Routes `/{provider}/...` to the provider's upstream. See the [crate docs](crate).
#[derive(Clone)]
pub struct ProviderRoute<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for ProviderRoute<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRoute")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> ProviderRoute<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Rewrites `req` for its upstream, or says why it cannot.
    fn rewrite<B>(&self, req: &mut Request<B>) -> Result<(), ErrorResponse> {
        let shared = &*self.shared;
        let uri = req.uri();
        let split = ProviderPath::parse(uri.path()).ok_or_else(|| {
            ErrorResponse::bad_request("the path must name a provider: /{provider}/{path}")
        })?;
        let provider = shared
            .providers
            .get(split.provider)
            .ok_or_else(|| ErrorResponse::unknown_provider(split.provider))?;
        let upstream = upstream_uri(provider, &split, uri.query(), shared.account_id.as_deref())
            .map_err(ErrorResponse::bad_request)?;
        // A key held for this caller (a virtual key's) first, then the gateway's own.
        let caller_key = req
            .extensions()
            .get::<ProviderKeys>()
            .and_then(|k| k.get(provider.name()))
            .map(|(name, value)| (name.clone(), value.clone()));
        let gateway_key = caller_key.or_else(|| {
            shared
                .keys
                .get(provider.name())
                .map(|v| (provider.auth().header_name(), v.clone()))
        });
        let route = ResolvedRoute {
            provider: provider.name_arc().clone(),
            path: Arc::from(split.rest),
            gateway_key: gateway_key.is_some(),
        };

        // Who is calling, before credentials are removed or replaced.
        let caller = match req.extensions().get::<CallerId>() {
            Some(_) => None,
            None => CallerId::from_headers(req.headers()),
        };
        let h = req.headers_mut();
        headers::strip_hop_by_hop(h);
        let taken = headers::take_all(h);
        h.remove(HOST);
        h.remove(ACCEPT_ENCODING);
        if let Some((name, key)) = gateway_key {
            for name in AuthStyle::CREDENTIAL_HEADERS {
                h.remove(name);
            }
            h.insert(name, key);
        } else {
            // The client's own key goes through, but is never printed.
            for name in AuthStyle::CREDENTIAL_HEADERS {
                if let Some(v) = h.get_mut(&name) {
                    v.set_sensitive(true);
                }
            }
        }
        for (name, value) in provider.default_headers() {
            if !h.contains_key(name) {
                h.insert(name.clone(), value.clone());
            }
        }
        tracing::debug!(
            provider = provider.name(),
            upstream.host = upstream.host().unwrap_or(""),
            upstream.path = upstream.path(),
            gateway_key = route.gateway_key,
            "routing to provider"
        );
        *req.uri_mut() = upstream;
        // The upstream connection's version is negotiated by the client (ALPN); a
        // request that came in over HTTP/2 must not demand it upstream.
        *req.version_mut() = Version::HTTP_11;
        let ext = req.extensions_mut();
        ext.insert(route);
        if let Some(caller) = caller {
            ext.insert(caller);
        }
        if !taken.is_empty() {
            // For the layers below: `aigw-metadata`, `aigw-request-id`, ...
            match ext.get_mut::<GatewayHeaders>() {
                Some(GatewayHeaders(mine)) => mine.extend(taken),
                None => {
                    ext.insert(GatewayHeaders(taken));
                }
            }
        }
        Ok(())
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ProviderRoute<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.rewrite(&mut req) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(e) => ResponseFuture::error(e.into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::{HeaderValue, StatusCode};
    use http_body_util::BodyExt;
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    use tower_ai_core::Providers;
    use tower_layer::Layer;
    use tower_test::mock;

    use super::*;
    use crate::ProviderRouteLayer;

    type Echo = Request<String>;

    async fn through(
        layer: ProviderRouteLayer,
        req: Request<String>,
    ) -> (Option<Echo>, Response<ResponseBody<String>>) {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let s = seen.clone();
        let svc =
            ServiceBuilder::new()
                .layer(layer)
                .service(service_fn(move |req: Request<String>| {
                    let s = s.clone();
                    async move {
                        *s.lock().unwrap() = Some(req);
                        let mut res = Response::new(String::from("upstream"));
                        res.headers_mut()
                            .insert("connection", HeaderValue::from_static("close"));
                        res.headers_mut()
                            .insert("transfer-encoding", HeaderValue::from_static("chunked"));
                        res.headers_mut()
                            .insert("x-request-id", HeaderValue::from_static("up-1"));
                        Ok::<_, Infallible>(res)
                    }
                }));
        let res = svc.oneshot(req).await.unwrap();
        let seen = seen.lock().unwrap().take();
        (seen, res)
    }

    #[tokio::test]
    async fn passthrough_keeps_client_key() {
        let req = Request::post("/openai/chat/completions?x=1")
            .header("authorization", "Bearer sk-client")
            .header("host", "gateway.local")
            .header("connection", "keep-alive")
            .header("accept-encoding", "gzip")
            .header("aigw-cache-ttl", "60")
            .header("cf-aig-metadata", "{}")
            .header("content-type", "application/json")
            .body(String::from("{}"))
            .unwrap();
        let (seen, res) = through(ProviderRouteLayer::new(Providers::builtin()), req).await;
        let seen = seen.unwrap();
        assert_eq!(seen.uri(), "https://api.openai.com/v1/chat/completions?x=1");
        assert_eq!(seen.headers()["authorization"], "Bearer sk-client");
        assert!(seen.headers()["authorization"].is_sensitive());
        assert_eq!(seen.headers()["content-type"], "application/json");
        for gone in [
            "host",
            "connection",
            "accept-encoding",
            "aigw-cache-ttl",
            "cf-aig-metadata",
        ] {
            assert!(!seen.headers().contains_key(gone), "{gone} forwarded");
        }
        let route = seen.extensions().get::<ResolvedRoute>().unwrap();
        assert_eq!(&*route.provider, "openai");
        assert_eq!(&*route.path, "/chat/completions");
        assert!(!route.gateway_key);
        // Response: hop-by-hop gone, the rest kept.
        assert!(!res.headers().contains_key("connection"));
        assert!(!res.headers().contains_key("transfer-encoding"));
        assert_eq!(res.headers()["x-request-id"], "up-1");
    }

    #[tokio::test]
    async fn a_callers_provider_keys_come_first_and_replace_the_clients() {
        let providers = Providers::builtin();
        let keys = ProviderKeys::new()
            .with_key(providers.get("anthropic").unwrap(), "sk-ant-tenant")
            .unwrap();
        let layer = ProviderRouteLayer::new(providers)
            .with_key("anthropic", "sk-ant-gw")
            .unwrap();
        let mut req = Request::post("/anthropic/v1/messages")
            .header("authorization", "Bearer gateway-token")
            .header("x-api-key", "client-key")
            .body(String::new())
            .unwrap();
        req.extensions_mut().insert(keys.clone());
        let (seen, _) = through(layer.clone(), req).await;
        let seen = seen.unwrap();
        assert_eq!(seen.headers()["x-api-key"], "sk-ant-tenant");
        assert!(seen.headers()["x-api-key"].is_sensitive());
        assert!(!seen.headers().contains_key("authorization"));
        assert!(
            seen.extensions()
                .get::<ResolvedRoute>()
                .unwrap()
                .gateway_key
        );
        // A provider the caller holds no key for: the gateway's own, or the client's.
        let mut req = Request::post("/openai/chat/completions")
            .header("authorization", "Bearer sk-client")
            .body(String::new())
            .unwrap();
        req.extensions_mut().insert(keys);
        let (seen, _) = through(layer, req).await;
        assert_eq!(seen.unwrap().headers()["authorization"], "Bearer sk-client");
    }

    #[tokio::test]
    async fn injects_gateway_key_in_the_providers_header() {
        let mut providers = Providers::builtin();
        let azure = providers
            .get("azure-openai")
            .unwrap()
            .clone()
            .with_allowed_resources(["r"])
            .unwrap();
        providers.insert(azure);
        let layer = ProviderRouteLayer::new(providers)
            .with_key("anthropic", "sk-ant-gw")
            .unwrap()
            .with_key("azure-openai", "az-gw")
            .unwrap()
            .with_key("google-ai-studio", "goog-gw")
            .unwrap()
            .with_key("openai", "sk-gw")
            .unwrap();
        let cases = [
            ("/anthropic/v1/messages", "x-api-key", "sk-ant-gw"),
            ("/azure-openai/r/d/chat/completions", "api-key", "az-gw"),
            (
                "/google-ai-studio/v1beta/models/g:generateContent",
                "x-goog-api-key",
                "goog-gw",
            ),
            ("/openai/chat/completions", "authorization", "Bearer sk-gw"),
        ];
        for (path, header, value) in cases {
            let req = Request::post(path)
                .header("authorization", "Bearer client-or-gateway-token")
                .header("x-api-key", "client-key")
                .body(String::new())
                .unwrap();
            let (seen, _) = through(layer.clone(), req).await;
            let seen = seen.unwrap();
            assert_eq!(seen.headers()[header], value, "{path}");
            assert!(seen.headers()[header].is_sensitive());
            let creds = AuthStyle::CREDENTIAL_HEADERS
                .iter()
                .filter(|h| seen.headers().contains_key(*h))
                .count();
            assert_eq!(creds, 1, "{path}: only the gateway's credential is sent");
            assert!(
                seen.extensions()
                    .get::<ResolvedRoute>()
                    .unwrap()
                    .gateway_key
            );
        }
    }

    #[tokio::test]
    async fn gateway_headers_and_the_caller_reach_the_layers_below() {
        let layer = ProviderRouteLayer::new(Providers::builtin())
            .with_key("openai", "sk-gw")
            .unwrap();
        let req = Request::post("/openai/chat/completions")
            .header("authorization", "Bearer sk-client")
            .header("aigw-request-id", "req-7")
            .header("cf-aig-metadata", r#"{"team":"a"}"#)
            .body(String::new())
            .unwrap();
        let (seen, _) = through(layer.clone(), req).await;
        let seen = seen.unwrap();
        assert!(!seen.headers().contains_key("aigw-request-id"));
        let ext = seen.extensions();
        assert_eq!(
            headers::REQUEST_ID.get_in(seen.headers(), ext).unwrap(),
            "req-7"
        );
        assert_eq!(
            headers::METADATA.get_in(seen.headers(), ext).unwrap(),
            r#"{"team":"a"}"#
        );
        // The client's key, not the gateway's that replaced it.
        let caller = ext.get::<CallerId>().unwrap();
        assert_eq!(&*caller.0, tower_ai_core::key_id("sk-client"));

        // The gateway's own token names the caller when there is one.
        let req = Request::post("/openai/chat/completions")
            .header("aigw-authorization", "Bearer gw-token")
            .body(String::new())
            .unwrap();
        let (seen, _) = through(layer.clone(), req).await;
        let seen = seen.unwrap();
        let ext = seen.extensions();
        assert_eq!(
            &*ext.get::<CallerId>().unwrap().0,
            tower_ai_core::key_id("gw-token")
        );
        assert!(ext.get::<GatewayHeaders>().unwrap().0["aigw-authorization"].is_sensitive());

        // Nothing to leave: no extension.
        let req = Request::post("/openai/chat/completions")
            .body(String::new())
            .unwrap();
        let (seen, _) = through(layer, req).await;
        let seen = seen.unwrap();
        assert!(seen.extensions().get::<GatewayHeaders>().is_none());
        assert!(seen.extensions().get::<CallerId>().is_none());
    }

    #[tokio::test]
    async fn azure_resource_outside_the_allowlist_is_a_400() {
        let mut providers = Providers::builtin();
        let azure = providers
            .get("azure-openai")
            .unwrap()
            .clone()
            .with_allowed_resources(["myres"])
            .unwrap();
        providers.insert(azure);
        let layer = ProviderRouteLayer::new(providers)
            .with_key("azure-openai", "az-gw")
            .unwrap();
        let req = Request::post("/azure-openai/myres/dep/chat/completions")
            .body(String::new())
            .unwrap();
        let (seen, _) = through(layer.clone(), req).await;
        assert_eq!(seen.unwrap().headers()["api-key"], "az-gw");
        let req = Request::post("/azure-openai/attacker/dep/chat/completions")
            .body(String::new())
            .unwrap();
        let (seen, res) = through(layer, req).await;
        assert!(seen.is_none(), "the gateway's key never left");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn an_azure_key_needs_an_allowlist_of_resources() {
        let err = ProviderRouteLayer::new(Providers::builtin())
            .with_key("azure-openai", "az-gw")
            .unwrap_err();
        assert!(err.to_string().contains("resources"), "{err}");
    }

    #[tokio::test]
    async fn anthropic_version_default_and_client_override() {
        let layer = ProviderRouteLayer::new(Providers::builtin());
        let req = Request::post("/anthropic/v1/messages")
            .body(String::new())
            .unwrap();
        let (seen, _) = through(layer.clone(), req).await;
        assert_eq!(seen.unwrap().headers()["anthropic-version"], "2023-06-01");
        let req = Request::post("/anthropic/v1/messages")
            .header("anthropic-version", "2024-01-01")
            .body(String::new())
            .unwrap();
        let (seen, _) = through(layer, req).await;
        assert_eq!(seen.unwrap().headers()["anthropic-version"], "2024-01-01");
    }

    #[tokio::test]
    async fn unknown_provider_is_a_json_400_that_never_reaches_upstream() {
        for path in ["/nope/chat/completions", "/", "/openai/../x"] {
            let req = Request::post(path).body(String::new()).unwrap();
            let (seen, res) = through(ProviderRouteLayer::new(Providers::builtin()), req).await;
            assert!(seen.is_none(), "{path}");
            assert_eq!(res.status(), StatusCode::BAD_REQUEST);
            assert_eq!(res.headers()["content-type"], "application/json");
            assert!(res.body().is_own());
            let body: Bytes = res.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["type"], "invalid_request_error", "{path}");
        }
    }

    #[tokio::test]
    async fn http2_request_goes_upstream_as_negotiable() {
        let req = Request::post("/openai/embeddings")
            .version(Version::HTTP_2)
            .body(String::new())
            .unwrap();
        let (seen, _) = through(ProviderRouteLayer::new(Providers::builtin()), req).await;
        assert_eq!(seen.unwrap().version(), Version::HTTP_11);
    }

    #[tokio::test]
    async fn readiness_is_the_inner_services() {
        let (inner, mut handle) = mock::pair::<Request<String>, Response<String>>();
        let mut svc = ProviderRouteLayer::new(Providers::builtin()).layer(inner);
        let mut task = tokio_test::task::spawn(());
        handle.allow(0);
        assert_pending!(task.enter(|cx, _| svc.poll_ready(cx)));
        handle.allow(1);
        assert_ready_ok!(task.enter(|cx, _| svc.poll_ready(cx)));
    }

    #[test]
    fn key_for_unknown_provider_is_a_config_error() {
        assert!(
            ProviderRouteLayer::new(Providers::builtin())
                .with_key("nope", "k")
                .is_err()
        );
        assert!(
            ProviderRouteLayer::new(Providers::builtin())
                .with_key("openai", "bad\nkey")
                .is_err()
        );
    }
}
