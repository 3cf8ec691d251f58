//! The layer with `service_fn` inner services: what passes through untouched, what is
//! refused before it leaves, and bodies read from a stream.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_ai_compat::CompatLayer;
use tower_ai_core::{Body, LlmRequest};

type Seen = Arc<Mutex<Option<(String, Bytes, Option<LlmRequest>)>>>;

async fn call(
    layer: CompatLayer,
    seen: &Seen,
    answer: &'static str,
    path: &str,
    body: &'static str,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let seen = seen.clone();
    let upstream = service_fn(move |req: Request<Body>| {
        let seen = seen.clone();
        async move {
            let uri = req.uri().to_string();
            let llm = req.extensions().get::<LlmRequest>().cloned();
            let body = req.into_body().collect_limited(1 << 20).await.unwrap();
            *seen.lock().unwrap() = Some((uri, body, llm));
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .header("content-length", answer.len())
                    .body(Full::new(Bytes::from_static(answer.as_bytes())))
                    .unwrap(),
            )
        }
    });
    let svc = ServiceBuilder::new().layer(layer).service(upstream);
    let req = Request::post(path)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn other_paths_pass_untouched() {
    let seen = Seen::default();
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    let (status, headers, out) = call(
        CompatLayer::new(),
        &seen,
        "{\"ok\":1}",
        "/openai/chat/completions?x=1",
        body,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-length"], "8",
        "the answer's length is kept"
    );
    assert_eq!(&out[..], b"{\"ok\":1}");
    let (uri, sent, llm) = seen.lock().unwrap().take().unwrap();
    assert_eq!(uri, "/openai/chat/completions?x=1");
    assert_eq!(&sent[..], body.as_bytes());
    assert!(llm.is_none());
}

#[tokio::test]
async fn the_native_request_carries_its_facts() {
    let seen = Seen::default();
    let answer = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP"}]}"#;
    let (status, headers, out) = call(
        CompatLayer::new(),
        &seen,
        answer,
        "/v1/acct/gw/compat/chat/completions",
        r#"{"model":"google-ai-studio/gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !headers.contains_key("content-length"),
        "the length changed"
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hi");
    assert_eq!(v["model"], "gemini-2.5-flash");
    let (uri, _, llm) = seen.lock().unwrap().take().unwrap();
    assert_eq!(
        uri,
        "/v1/acct/gw/google-ai-studio/v1beta/models/gemini-2.5-flash:generateContent"
    );
    let llm = llm.unwrap();
    assert_eq!(&*llm.provider, "google-ai-studio");
    assert_eq!(llm.model.as_deref(), Some("gemini-2.5-flash"));
}

#[tokio::test]
async fn refusals_before_anything_leaves() {
    let seen = Seen::default();
    // Too large, in Anthropic's dialect.
    let layer = CompatLayer::new().with_max_body_bytes(16);
    let (status, _, out) = call(
        layer,
        &seen,
        "{}",
        "/compat/v1/messages",
        r#"{"model":"openai/gpt-4o","max_tokens":5,"messages":[]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "request_too_large");
    // A model that would climb out of the path.
    let (status, _, out) = call(
        CompatLayer::new(),
        &seen,
        "{}",
        "/compat/chat/completions",
        r#"{"model":"google-ai-studio/../../x?key=1","messages":[]}"#,
    )
    .await;
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["param"], "model");
    // Anthropic has no embeddings.
    let (status, _, _) = call(
        CompatLayer::new(),
        &seen,
        "{}",
        "/compat/embeddings",
        r#"{"model":"anthropic/claude","input":"x"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        seen.lock().unwrap().is_none(),
        "nothing reached the provider"
    );
}

const ANTHROPIC_SSE: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

async fn stream_call() -> Response<tower_ai_compat::ResponseBody<Full<Bytes>>> {
    let upstream = service_fn(|_req: Request<Body>| async move {
        Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Full::new(Bytes::from_static(ANTHROPIC_SSE.as_bytes())))
                .unwrap(),
        )
    });
    let svc = ServiceBuilder::new()
        .layer(CompatLayer::new())
        .service(upstream);
    let req = Request::post("/compat/chat/completions")
        .body(Body::from(
            r#"{"model":"anthropic/claude","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .unwrap();
    svc.oneshot(req).await.unwrap()
}

#[tokio::test]
async fn the_native_usage_is_left_in_the_slot_once() {
    use tower_ai_core::{UsageSlot, UsageSource};
    // Read to the end: the provider's own figures, settled when its body ended.
    let res = stream_call().await;
    let slot = res.extensions().get::<UsageSlot>().unwrap().clone();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"data: [DONE]\n\n"));
    let u = slot.get().unwrap();
    assert_eq!(u.source, UsageSource::Reported);
    assert!(u.terminal);
    let u = u.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (7, 3));

    // Dropped unread: settled as it stood.
    let res = stream_call().await;
    let slot = res.extensions().get::<UsageSlot>().unwrap().clone();
    assert!(slot.get().is_none());
    drop(res);
    let u = slot.get().expect("settled on drop");
    assert!(!u.terminal);
}
