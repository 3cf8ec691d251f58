//! The meter over real sockets against the mock provider: exact usage for every format,
//! streamed and not, usage asked for and hidden again, cancelled and broken streams, the
//! meter above and below provider routing, and the gateway's `/metrics`, `/usage` and
//! `/logs`.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_ai_client::Client;
use tower_ai_core::{Body, BoxError, Operation, PriceTable, Providers, Usage};
use tower_ai_meter::{MeterLayer, Outcome, Record, UsageSource};
use tower_ai_mock::MockProvider;
use tower_ai_provider_route::ProviderRouteLayer;

type Records = Arc<Mutex<Vec<Record>>>;

fn providers(mock: &MockProvider) -> Providers {
    let mut p = Providers::builtin();
    p.set_base_url("openai", &format!("{}/v1", mock.url()))
        .unwrap();
    p.set_base_url("anthropic", &mock.url()).unwrap();
    p
}

fn prices() -> PriceTable {
    PriceTable::from_toml(
        r#"
        [openai."gpt-4o-mini"]
        input = 0.15
        output = 0.60
        cached_input = 0.075
        [anthropic."claude-sonnet-4-5"]
        input = 3.0
        output = 15.0
        "#,
    )
    .unwrap()
}

fn meter(records: &Records, mock: &MockProvider) -> MeterLayer<impl tower_ai_meter::Recorder> {
    // The gateways of this file load the tokenizer in the background; these tests want
    // its counts, so it is loaded before they run.
    tower_ai_meter::warm_up_tokenizer();
    let sink = records.clone();
    MeterLayer::new(move |r: &Record| sink.lock().unwrap().push(r.clone()))
        .with_providers(providers(mock))
        .with_prices(prices())
}

/// Sends `req` through `svc`, reads the whole body frame by frame; returns status, the
/// bytes, and whether the body ended cleanly.
async fn drive<S, B>(svc: S, req: Request<Body>) -> (StatusCode, Bytes)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let res = within(20, svc.oneshot(req)).await.unwrap();
    let status = res.status();
    let body = within(20, res.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, body)
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test-key")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn only(records: &Records) -> Record {
    let r = records.lock().unwrap();
    assert_eq!(r.len(), 1, "exactly one record per request: {r:?}");
    r[0].clone()
}

/// The usage the mock reports in a JSON answer, normalised.
fn mock_usage(v: &serde_json::Value) -> Usage {
    let u = &v["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    if u.get("prompt_tokens").is_some() {
        Usage {
            input_tokens: n("prompt_tokens"),
            output_tokens: n("completion_tokens"),
            ..Usage::default()
        }
    } else if u.get("cache_read_input_tokens").is_some() {
        Usage {
            input_tokens: n("input_tokens")
                + n("cache_read_input_tokens")
                + n("cache_creation_input_tokens"),
            output_tokens: n("output_tokens"),
            cached_input_tokens: n("cache_read_input_tokens"),
            cache_write_tokens: n("cache_creation_input_tokens"),
            ..Usage::default()
        }
    } else {
        Usage {
            input_tokens: n("input_tokens"),
            output_tokens: n("output_tokens"),
            ..Usage::default()
        }
    }
}

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"count my words please"}]}"#;

#[tokio::test]
async fn exact_usage_for_every_format_streamed_and_not() {
    let mock = MockProvider::start().await.unwrap();
    let cases: [(&str, &str, Operation); 7] = [
        ("/openai/chat/completions", CHAT, Operation::ChatCompletions),
        (
            "/openai/chat/completions",
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"count my words please"}]}"#,
            Operation::ChatCompletions,
        ),
        (
            "/openai/responses",
            r#"{"model":"gpt-4o-mini","input":"tell me a story today"}"#,
            Operation::Responses,
        ),
        (
            "/openai/responses",
            r#"{"model":"gpt-4o-mini","stream":true,"input":"tell me a story today"}"#,
            Operation::Responses,
        ),
        (
            "/openai/embeddings",
            r#"{"model":"text-embedding-3-small","input":["one two three","four"]}"#,
            Operation::Embeddings,
        ),
        (
            "/anthropic/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":9,"system":"be brief","messages":[{"role":"user","content":"hello there"}]}"#,
            Operation::Messages,
        ),
        (
            "/anthropic/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":9,"stream":true,"system":"be brief","messages":[{"role":"user","content":"hello there"}]}"#,
            Operation::Messages,
        ),
    ];
    for (path, body, op) in cases {
        let records = Records::default();
        let svc = ServiceBuilder::new()
            .layer(meter(&records, &mock))
            .layer(ProviderRouteLayer::new(providers(&mock)))
            .service(Client::builder().build().unwrap());
        let (status, bytes) = drive(svc, post(path, body)).await;
        assert_eq!(status, 200, "{path}");
        // What the mock reports, asked directly without streaming.
        let plain = body.replace(r#""stream":true,"#, "");
        let direct_path = path
            .replacen("/openai", "/v1", 1)
            .replacen("/anthropic", "", 1);
        let direct = post_json(
            &client(),
            &format!("{}{direct_path}", mock.url()),
            &[],
            &plain,
        )
        .await;
        let expected = mock_usage(&direct.json());
        let r = only(&records);
        assert_eq!(r.usage, Some(expected), "{path} {body}");
        assert_eq!(r.usage_source, UsageSource::Reported, "{path}");
        assert_eq!(r.outcome, Outcome::Complete, "{path}");
        assert_eq!(r.operation, op);
        assert_eq!(r.status, Some(200));
        assert!(r.error_origin.is_none());
        assert_eq!(r.stream, body.contains(r#""stream":true"#));
        assert!(r.key_id.as_deref().is_some_and(|k| k.starts_with("key_")));
        assert!(!bytes.is_empty());
    }
}

#[tokio::test]
async fn cost_is_priced_per_token_kind_and_unknown_models_have_no_cost() {
    let mock = MockProvider::start().await.unwrap();
    let records = Records::default();
    let svc = ServiceBuilder::new()
        .layer(meter(&records, &mock))
        .layer(ProviderRouteLayer::new(providers(&mock)))
        .service(Client::builder().build().unwrap());
    drive(svc.clone(), post("/openai/chat/completions", CHAT)).await;
    let r = only(&records);
    let u = r.usage.unwrap();
    let expected = (u.input_tokens as f64 * 0.15 + u.output_tokens as f64 * 0.60) / 1e6;
    assert!((r.cost_usd.unwrap() - expected).abs() < 1e-12, "{r:?}");

    records.lock().unwrap().clear();
    drive(
        svc,
        post(
            "/openai/chat/completions",
            &CHAT.replace("gpt-4o-mini", "no-such-model-anywhere"),
        ),
    )
    .await;
    let r = only(&records);
    assert!(r.usage.is_some());
    assert_eq!(r.cost_usd, None, "unknown price is unknown cost, not zero");
}

#[tokio::test]
async fn stream_without_usage_is_asked_for_it_and_the_client_sees_what_it_asked_for() {
    let mock = MockProvider::start().await.unwrap();
    let records = Records::default();
    let svc = ServiceBuilder::new()
        .layer(meter(&records, &mock))
        .layer(ProviderRouteLayer::new(providers(&mock)))
        .service(Client::builder().build().unwrap());
    let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"count my words please"}]}"#;
    let (status, metered) = drive(svc, post("/openai/chat/completions", body)).await;
    assert_eq!(status, 200);

    // The upstream was asked for usage...
    let sent: serde_json::Value =
        serde_json::from_slice(&mock.last_request().unwrap().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    // ...and the record has it, exactly.
    let r = only(&records);
    assert_eq!(r.usage_source, UsageSource::Reported);
    assert_eq!(r.usage.unwrap().input_tokens, 4);
    assert_eq!(r.usage.unwrap().output_tokens, 16);

    // The client got the stream it asked for: the same bytes as the mock sends without
    // include_usage (ids aside), no usage chunk, no `"usage":null`.
    let direct = post_json(
        &client(),
        &format!("{}/v1/chat/completions", mock.url()),
        &[],
        body,
    )
    .await;
    let text = String::from_utf8(metered.to_vec()).unwrap();
    let direct_text = String::from_utf8(direct.body.to_vec()).unwrap();
    assert!(!text.contains("\"usage\""), "{text}");
    let id = |s: &str| {
        let i = s.find("chatcmpl-mock-").unwrap();
        let j = i + s[i..].find('"').unwrap();
        s[i..j].to_owned()
    };
    assert_eq!(direct_text.replace(&id(&direct_text), &id(&text)), text);
}

#[tokio::test]
async fn a_client_hanging_up_mid_stream_is_recorded_cancelled_with_estimated_usage() {
    let mock = MockProvider::start().await.unwrap();
    let records = Records::default();
    let svc = ServiceBuilder::new()
        .layer(meter(&records, &mock))
        .layer(ProviderRouteLayer::new(providers(&mock)))
        .service(Client::builder().build().unwrap());
    let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"count my words please"}]}"#;
    let mut req = post("/openai/chat/completions", body);
    req.headers_mut()
        .insert("x-mock-chunks", "40".parse().unwrap());
    req.headers_mut()
        .insert("x-mock-chunk-delay-ms", "50".parse().unwrap());
    let res = within(20, svc.oneshot(req)).await.unwrap();
    let mut body = res.into_body();
    let mut seen = String::new();
    while seen.matches("\"content\"").count() < 6 {
        let f = within(20, body.frame()).await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(f.data_ref().unwrap()).unwrap());
    }
    drop(body);
    within(20, mock.wait_for_cancelled(1)).await;
    let r = only(&records);
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert_eq!(r.usage_source, UsageSource::Estimated);
    let u = r.usage.unwrap();
    // At least the words that reached the client, far fewer than the 40 asked for.
    assert!((5..40).contains(&u.output_tokens), "{u:?}");
    assert!(u.input_tokens >= 4, "{u:?}");
    assert!(r.error_origin.is_none());
}

#[tokio::test]
async fn a_stream_reset_by_the_provider_is_recorded_failed() {
    let mock = MockProvider::start().await.unwrap();
    let records = Records::default();
    let svc = ServiceBuilder::new()
        .layer(meter(&records, &mock))
        .layer(ProviderRouteLayer::new(providers(&mock)))
        .service(Client::builder().build().unwrap());
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"hello there"}]}"#;
    let mut req = post("/anthropic/v1/messages", body);
    req.headers_mut()
        .insert("x-mock-reset-after", "5".parse().unwrap());
    let res = within(20, svc.oneshot(req)).await.unwrap();
    assert!(within(20, res.into_body().collect()).await.is_err());
    let r = only(&records);
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.error_origin, Some(tower_ai_meter::ErrorOrigin::Provider));
    // message_start reported the input; the output is what was streamed.
    assert_eq!(r.usage.unwrap().input_tokens, 2);
}

#[tokio::test]
async fn frames_reach_the_client_as_they_are_produced() {
    let mock = MockProvider::start().await.unwrap();
    let records = Records::default();
    let svc = ServiceBuilder::new()
        .layer(meter(&records, &mock))
        .layer(ProviderRouteLayer::new(providers(&mock)))
        .service(Client::builder().build().unwrap());
    let body =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut req = post("/openai/chat/completions", body);
    req.headers_mut()
        .insert("x-mock-chunks", "5".parse().unwrap());
    req.headers_mut()
        .insert("x-mock-chunk-delay-ms", "150".parse().unwrap());
    let res = within(20, svc.oneshot(req)).await.unwrap();
    let mut body = res.into_body();
    let mut arrivals = Vec::new();
    while let Some(f) = within(20, body.frame()).await {
        f.unwrap();
        arrivals.push(Instant::now());
    }
    assert!(arrivals.len() >= 6, "{} frames", arrivals.len());
    let spread = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        spread >= Duration::from_millis(600),
        "held back: {spread:?}"
    );
    assert_eq!(only(&records).outcome, Outcome::Complete);
}

#[tokio::test]
async fn works_below_provider_routing_too() {
    let mock = MockProvider::start().await.unwrap();
    let records = Records::default();
    let svc = ServiceBuilder::new()
        .layer(
            ProviderRouteLayer::new(providers(&mock))
                .with_key("openai", "sk-gateway-held-key")
                .unwrap(),
        )
        .layer(meter(&records, &mock))
        .service(Client::builder().build().unwrap());
    // The route layer strips the `aigw-` headers and swaps the client's key for the
    // gateway's: the meter below it still sees the tags, the id and the caller.
    let mut req = post("/openai/chat/completions", CHAT);
    req.headers_mut()
        .insert("aigw-metadata", r#"{"team":"below"}"#.parse().unwrap());
    req.headers_mut()
        .insert("cf-aig-request-id", "req-below-1".parse().unwrap());
    let (status, _) = drive(svc, req).await;
    assert_eq!(status, 200);
    assert_eq!(
        mock.last_request().unwrap().headers["authorization"],
        "Bearer sk-gateway-held-key"
    );
    let r = only(&records);
    assert_eq!(&*r.provider, "openai");
    assert_eq!(r.usage.unwrap().input_tokens, 4);
    assert!(r.cost_usd.is_some());
    assert_eq!(r.metadata, vec![("team".to_owned(), "below".to_owned())]);
    assert_eq!(r.request_id.as_deref(), Some("req-below-1"));
    assert_eq!(
        r.key_id.as_deref(),
        Some(tower_ai_core::key_id("sk-test-key").as_str()),
        "the client's key id, not the gateway key's"
    );
}

#[tokio::test]
async fn an_empty_answer_hyper_never_polls_is_recorded_complete() {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;

    let records = Records::default();
    let sink = records.clone();
    let upstream = service_fn(|_req: Request<Body>| async {
        let res = Response::builder()
            .header("content-type", "application/json")
            .header("content-length", "0")
            .body(Full::new(Bytes::new()))
            .unwrap();
        Ok::<_, Infallible>(res)
    });
    let svc = ServiceBuilder::new()
        .layer(MeterLayer::new(move |r: &Record| {
            sink.lock().unwrap().push(r.clone())
        }))
        .service(upstream);
    // A real hyper server: it sees `is_end_stream()` true and drops the body unpolled.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        let hyper_svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            svc.clone().oneshot(req.map(|_| Body::from(CHAT)))
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(io), hyper_svc)
            .await;
    });
    let res = send(
        &client(),
        request(
            Method::POST,
            &format!("http://{addr}/openai/chat/completions"),
            &[],
            CHAT,
        ),
    )
    .await;
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());
    let r = eventually(|| async { records.lock().unwrap().first().cloned() }).await;
    assert_eq!(r.outcome, Outcome::Complete, "{r:?}");
    assert_eq!(r.status, Some(200));
    assert_eq!(records.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn unparseable_bodies_pass_untouched_with_unknown_usage() {
    let records = Records::default();
    let sink = records.clone();
    let cases: [(&str, &'static [u8]); 3] = [
        ("text/plain", b"this is not json"),
        (
            "application/json",
            b"{\"usage\": {\"prompt_tokens\": \"many\"",
        ),
        (
            "text/event-stream",
            b"data: {broken\n\ngarbage\r\n\ndata: [DONE]\n\n",
        ),
    ];
    for (ct, body) in cases {
        records.lock().unwrap().clear();
        let upstream = service_fn(move |_req: Request<Body>| async move {
            let res = Response::builder()
                .header("content-type", ct)
                .body(Full::new(Bytes::from_static(body)))
                .unwrap();
            Ok::<_, Infallible>(res)
        });
        let sink = sink.clone();
        let svc = ServiceBuilder::new()
            .layer(MeterLayer::new(move |r: &Record| {
                sink.lock().unwrap().push(r.clone())
            }))
            .service(upstream);
        let (status, got) = drive(svc, post("/openai/chat/completions", CHAT)).await;
        assert_eq!(status, 200);
        assert_eq!(&got[..], body, "{ct}: passed on untouched");
        let r = only(&records);
        if ct == "text/event-stream" {
            // A stream with no usage is estimated from the prompt, and nothing parsed.
            assert_eq!(r.usage_source, UsageSource::Estimated, "{ct}");
        } else {
            assert_eq!(r.usage, None, "{ct}");
            assert_eq!(r.usage_source, UsageSource::Unknown, "{ct}");
        }
    }
}

#[tokio::test]
async fn an_upstream_failure_is_recorded_as_the_providers() {
    let records = Records::default();
    let sink = records.clone();
    let upstream = service_fn(|_req: Request<Body>| async move {
        Err::<Response<Full<Bytes>>, BoxError>("connection refused".into())
    });
    let svc = ServiceBuilder::new()
        .layer(MeterLayer::new(move |r: &Record| {
            sink.lock().unwrap().push(r.clone())
        }))
        .service(upstream);
    assert!(
        svc.oneshot(post("/openai/chat/completions", CHAT))
            .await
            .is_err()
    );
    let r = only(&records);
    assert_eq!(r.status, None);
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.error_origin, Some(tower_ai_meter::ErrorOrigin::Provider));
}

#[tokio::test]
async fn bad_metadata_is_a_400_and_tags_are_recorded() {
    let mock = MockProvider::start().await.unwrap();
    let records = Records::default();
    let svc = ServiceBuilder::new()
        .layer(meter(&records, &mock))
        .layer(ProviderRouteLayer::new(providers(&mock)))
        .service(Client::builder().build().unwrap());
    let mut req = post("/openai/chat/completions", CHAT);
    req.headers_mut().insert(
        "aigw-metadata",
        r#"{"team":"search","user":7}"#.parse().unwrap(),
    );
    drive(svc.clone(), req).await;
    let r = only(&records);
    assert!(r.metadata.contains(&("team".into(), "search".into())));
    assert!(r.metadata.contains(&("user".into(), "7".into())));

    records.lock().unwrap().clear();
    let mut req = post("/openai/chat/completions", CHAT);
    req.headers_mut()
        .insert("aigw-metadata", "not json".parse().unwrap());
    let before = mock.requests();
    let (status, body) = drive(svc, req).await;
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(mock.requests(), before, "never reached the provider");
    assert_eq!(
        only(&records).error_origin,
        Some(tower_ai_meter::ErrorOrigin::Gateway)
    );
}

#[tokio::test]
async fn the_gateway_serves_metrics_usage_and_logs() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(
        &mock,
        "[prices.openai.\"gpt-4o-mini\"]\ninput = 1.0\noutput = 2.0",
    )
    .await;
    let c = client();
    const CLIENT_KEY: &str = "sk-client-metered-0001";
    const ANTHROPIC_KEY: &str = "sk-ant-client-metered-0002";
    let auth = format!("Bearer {CLIENT_KEY}");
    let stream = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"count my words please"}]}"#;
    for body in [CHAT, stream, CHAT] {
        let r = post_json(
            &c,
            &format!("{}/openai/chat/completions", gw.url()),
            &[
                ("aigw-metadata", r#"{"team":"a"}"#),
                ("authorization", &auth),
            ],
            body,
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = post_json(
        &c,
        &format!("{}/anthropic/v1/messages", gw.url()),
        &[("x-api-key", ANTHROPIC_KEY)],
        r#"{"model":"claude-sonnet-4-5","max_tokens":9,"messages":[{"role":"user","content":"hello there"}]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    // The stream was metered when its body ended; give the log writer its moment.
    let usage = eventually(|| async {
        let u = send(
            &c,
            request(Method::GET, &format!("{}/usage", gw.url()), &[], ""),
        )
        .await;
        let v = u.json();
        (v["totals"]["requests"] == 4).then_some(v)
    })
    .await;
    assert_eq!(usage["totals"]["input_tokens"], 4 * 3 + 2);
    assert_eq!(usage["totals"]["output_tokens"], 16 * 3 + 9);
    let openai = usage["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "gpt-4o-mini")
        .unwrap();
    assert_eq!(openai["requests"], 3);
    let cost = openai["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - (12.0 * 1.0 + 48.0 * 2.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );

    let since_future = send(
        &c,
        request(
            Method::GET,
            &format!("{}/usage?since=4102444800", gw.url()),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(since_future.json()["totals"]["requests"], 0);

    let logs = send(
        &c,
        request(
            Method::GET,
            &format!("{}/logs?model=gpt-4o-mini&limit=2", gw.url()),
            &[],
            "",
        ),
    )
    .await;
    let v = logs.json();
    let rows = v["logs"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0]["id"].as_i64() > rows[1]["id"].as_i64(),
        "newest first"
    );
    assert_eq!(rows[0]["metadata"]["team"], "a");
    assert_eq!(rows[1]["stream"], true);
    // Callers are named by key id, never by key.
    assert_eq!(
        rows[0]["key_id"],
        tower_ai_core::key_id(CLIENT_KEY).as_str()
    );
    let all_logs = send(
        &c,
        request(
            Method::GET,
            &format!("{}/logs?limit=1000", gw.url()),
            &[],
            "",
        ),
    )
    .await;
    let all_logs = String::from_utf8(all_logs.body.to_vec()).unwrap();
    assert_eq!(all_logs.matches("\"key_id\"").count(), 4, "{all_logs}");
    for secret in ["sk-", CLIENT_KEY, ANTHROPIC_KEY] {
        assert!(
            !all_logs.contains(secret),
            "`{secret}` in /logs: {all_logs}"
        );
    }
    let next = v["next"].as_i64().unwrap();
    let page2 = send(
        &c,
        request(
            Method::GET,
            &format!("{}/logs?model=gpt-4o-mini&limit=2&before={next}", gw.url()),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(page2.json()["logs"].as_array().unwrap().len(), 1);
    let bad = send(
        &c,
        request(
            Method::GET,
            &format!("{}/logs?limit=lots", gw.url()),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(bad.status, 400);

    let metrics = send(
        &c,
        request(Method::GET, &format!("{}/metrics", gw.url()), &[], ""),
    )
    .await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(
        text.contains(
            r#"aigw_tokens_total{provider="openai",model="gpt-4o-mini",type="input"} 12"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"aigw_tokens_total{provider="anthropic",model="claude-sonnet-4-5",type="output"} 9"#
    ));
    assert!(text.contains("aigw_time_to_first_token_seconds_bucket"));
    assert!(text.contains("aigw_request_duration_seconds_count{provider=\"openai\"} 3"));
    assert!(!text.contains("sk-"), "no secret in a label");
    assert!(!text.contains(CLIENT_KEY) && !text.contains(ANTHROPIC_KEY));
}

async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition never held");
}

#[tokio::test]
async fn a_cache_hit_is_recorded_with_the_usage_it_saved_and_answers_without_usage_are_estimated() {
    tower_ai_meter::warm_up_tokenizer();
    let records = Records::default();
    let sink = records.clone();
    let saved = Usage {
        input_tokens: 120,
        output_tokens: 30,
        ..Usage::default()
    };
    let upstream = service_fn(move |req: Request<Body>| async move {
        let hit = req.headers().contains_key("x-test-hit");
        let body: &'static [u8] = if hit {
            b"{\"cached\":true}"
        } else {
            br#"{"choices":[{"message":{"role":"assistant","content":"three words here"}}]}"#
        };
        let mut res = Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        if hit {
            res.extensions_mut()
                .insert(tower_ai_core::KnownUsage(saved));
            res.extensions_mut().insert(tower_ai_core::CacheStatus::Hit);
        }
        Ok::<_, Infallible>(res)
    });
    let svc = ServiceBuilder::new()
        .layer(
            MeterLayer::new(move |r: &Record| sink.lock().unwrap().push(r.clone()))
                .with_prices(prices()),
        )
        .service(upstream);
    let mut req = post("/openai/chat/completions", CHAT);
    req.headers_mut().insert("x-test-hit", "1".parse().unwrap());
    drive(svc.clone(), req).await;
    let r = only(&records);
    assert_eq!(r.usage, Some(saved));
    assert_eq!(r.usage_source, UsageSource::Known);
    assert_eq!(r.cache_status, Some(tower_ai_core::CacheStatus::Hit));
    assert!(r.cost_usd.unwrap() > 0.0, "what the hit saved is priced");

    records.lock().unwrap().clear();
    drive(svc, post("/openai/chat/completions", CHAT)).await;
    let r = only(&records);
    assert_eq!(r.usage_source, UsageSource::Estimated);
    let u = r.usage.unwrap();
    assert!((3..=5).contains(&u.output_tokens), "{u:?}");
    assert!((4..=8).contains(&u.input_tokens), "{u:?}");
}

#[tokio::test]
async fn usage_a_layer_below_already_read_is_not_parsed_again() {
    let records = Records::default();
    let sink = records.clone();
    let upstream = service_fn(|_req: Request<Body>| async {
        let mut res = Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"usage":{"prompt_tokens":12,"completion_tokens":5}}"#,
            )))
            .unwrap();
        // A layer below read this response already: its figures are in the slot.
        let slot = tower_ai_core::UsageSlot::new();
        slot.set(tower_ai_core::FinalUsage {
            usage: Some(Usage {
                input_tokens: 99,
                output_tokens: 1,
                ..Usage::default()
            }),
            source: UsageSource::Reported,
            terminal: true,
        });
        res.extensions_mut().insert(slot);
        Ok::<_, Infallible>(res)
    });
    let svc = ServiceBuilder::new()
        .layer(MeterLayer::new(move |r: &Record| {
            sink.lock().unwrap().push(r.clone())
        }))
        .service(upstream);
    drive(svc, post("/openai/chat/completions", CHAT)).await;
    assert_eq!(only(&records).usage.unwrap().input_tokens, 99);

    // Two meters stacked: the inner one reads, the outer one takes its figures.
    let mock = MockProvider::start().await.unwrap();
    let (outer, inner) = (Records::default(), Records::default());
    let svc = ServiceBuilder::new()
        .layer(meter(&outer, &mock))
        .layer(meter(&inner, &mock))
        .layer(ProviderRouteLayer::new(providers(&mock)))
        .service(Client::builder().build().unwrap());
    let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"count my words please"}]}"#;
    drive(svc, post("/openai/chat/completions", body)).await;
    assert_eq!(only(&outer).usage, only(&inner).usage);
    assert_eq!(only(&outer).usage.unwrap().output_tokens, 16);
}
