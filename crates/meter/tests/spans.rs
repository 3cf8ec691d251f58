//! The meter's tracing span carries the OpenTelemetry GenAI attributes.
//!
//! Alone in its test binary on purpose: tracing keeps process-wide state (each callsite's
//! cached interest, the maximum level) that the meter's unit tests, hitting the same span
//! on threads without a subscriber, raced with. Among them this test found no span now
//! and then (4 runs in 60; recomputing the interest cache inside the subscriber's scope
//! did not help); alone, 0 in 200.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};
use tower_ai_core::Body;
use tower_ai_meter::MeterLayer;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn spans_carry_the_gen_ai_attributes() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let upstream = tower::service_fn(|_req: Request<Body>| async {
        let res = Response::builder()
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from_static(
                br#"{"usage":{"prompt_tokens":12,"completion_tokens":5}}"#,
            )))
            .unwrap();
        Ok::<_, std::convert::Infallible>(res)
    });
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let svc = MeterLayer::new(()).layer(upstream);
            let req = Request::post("/openai/chat/completions")
                .body(Body::from(r#"{"model":"gpt-4o-mini"}"#))
                .unwrap();
            let res = svc.oneshot(req).await.unwrap();
            res.into_body().collect().await.unwrap();
        });
    });
    let out = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for field in [
        "gen_ai.system=\"openai\"",
        "gen_ai.operation.name=\"chat\"",
        "gen_ai.request.model=\"gpt-4o-mini\"",
        "gen_ai.usage.input_tokens=12",
        "gen_ai.usage.output_tokens=5",
    ] {
        assert!(out.contains(field), "{field} missing from: {out}");
    }
}
