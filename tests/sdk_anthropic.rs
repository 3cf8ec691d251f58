//! The official Anthropic SDK (Python, `anthropic`, pinned below) against the gateway:
//! `/compat/v1/messages` with an `openai/...` model (translated both ways), and
//! `/anthropic/...` passed through; plain, streamed, and with tools, every event parsed
//! by the SDK's own types.
//!
//! No maintained Rust Anthropic SDK builds here on rustls without a second HTTP stack, so
//! the test drives the Python one: on first run it makes a virtualenv under `target/`
//! and installs the pinned SDK from PyPI (`python3 -m venv`, `pip`); later runs reuse it.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::Value;
use tower_ai_mock::{MockProvider, reply_words};

const SDK: &str = "anthropic==2.12.0";

/// The virtualenv's python with the SDK installed, made once per target directory.
fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/anthropic-sdk");
    let py = root.join("bin/python");
    let ready = root.join(format!(".ready-{SDK}"));
    if ready.exists() {
        return py;
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&root)
        .status()
        .expect("python3 is needed for the Anthropic SDK test")
        .success();
    assert!(ok, "python3 -m venv failed");
    let ok = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SDK,
        ])
        .status()
        .expect("pip runs")
        .success();
    assert!(ok, "pip install {SDK} failed (PyPI unreachable?)");
    std::fs::write(&ready, b"").unwrap();
    py
}

/// Runs the SDK script against `base_url` with `model`; returns what it printed.
fn run_sdk(base_url: &str, model: &str) -> Value {
    let script = r#"
import json, sys
import anthropic

base_url, model = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base_url, api_key="sk-ant-client", max_retries=0)
out = {}

m = client.messages.create(model=model, max_tokens=64,
    messages=[{"role": "user", "content": "Say something nice"}])
out["plain"] = {"type": m.type, "role": m.role, "text": m.content[0].text,
    "stop_reason": m.stop_reason, "input_tokens": m.usage.input_tokens,
    "output_tokens": m.usage.output_tokens}

events = []
with client.messages.stream(model=model, max_tokens=64,
        messages=[{"role": "user", "content": "Say something nice"}]) as stream:
    for event in stream:
        events.append(event.type)
    final = stream.get_final_message()
out["stream"] = {"events": events, "text": final.content[0].text,
    "stop_reason": final.stop_reason, "output_tokens": final.usage.output_tokens}

tools = [{"name": "get_weather", "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]
t = client.messages.create(model=model, max_tokens=64, tools=tools,
    messages=[{"role": "user", "content": "Weather in Paris?"}])
use = [b for b in t.content if b.type == "tool_use"][0]
out["tools"] = {"stop_reason": t.stop_reason, "name": use.name, "input": use.input}

with client.messages.stream(model=model, max_tokens=64, tools=tools,
        messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
    final = stream.get_final_message()
use = [b for b in final.content if b.type == "tool_use"][0]
out["tools_stream"] = {"stop_reason": final.stop_reason, "name": use.name, "input": use.input}

follow = client.messages.create(model=model, max_tokens=64, tools=tools, messages=[
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C, sunny"}]},
])
out["tool_result"] = {"stop_reason": follow.stop_reason, "text": follow.content[0].text}

try:
    client.messages.create(model=model, max_tokens=64,
        messages=[{"role": "user", "content": "hi"}], extra_headers={"x-mock-status": "429"})
    out["error"] = None
except anthropic.RateLimitError as e:
    out["error"] = {"status": e.status_code, "type": e.body["error"]["type"] if isinstance(e.body, dict) else None}

print(json.dumps(out))
"#;
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(base_url)
        .arg(model)
        .output()
        .expect("the SDK script runs");
    assert!(
        output.status.success(),
        "the Anthropic SDK failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_through_compat_and_native() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway_for(&mock, "").await;
    let words = reply_words(16);
    for (base, model, native_path) in [
        (
            format!("{}/compat", gw.url()),
            "openai/gpt-4o-mini",
            "/v1/chat/completions",
        ),
        (
            format!("{}/anthropic", gw.url()),
            "claude-sonnet-4-5",
            "/v1/messages",
        ),
    ] {
        let model = model.to_owned();
        let out = tokio::task::spawn_blocking(move || run_sdk(&base, &model))
            .await
            .unwrap();
        let plain = &out["plain"];
        assert_eq!(plain["type"], "message");
        assert_eq!(plain["role"], "assistant");
        assert_eq!(plain["text"], words.as_str(), "{native_path}");
        assert_eq!(plain["stop_reason"], "end_turn");
        assert_eq!(plain["input_tokens"], 3);
        assert_eq!(plain["output_tokens"], 16);

        let stream = &out["stream"];
        let events: Vec<&str> = stream["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(events.first(), Some(&"message_start"), "{events:?}");
        assert_eq!(events.last(), Some(&"message_stop"), "{events:?}");
        assert!(events.contains(&"content_block_delta"), "{events:?}");
        assert_eq!(stream["text"], words.as_str());
        assert_eq!(stream["stop_reason"], "end_turn");
        assert_eq!(stream["output_tokens"], 16);

        for key in ["tools", "tools_stream"] {
            let t = &out[key];
            assert_eq!(t["stop_reason"], "tool_use", "{key}: {t}");
            assert_eq!(t["name"], "get_weather", "{key}");
            assert!(t["input"].is_object(), "{key}: {t}");
        }
        assert_eq!(out["tool_result"]["stop_reason"], "end_turn");
        assert!(
            out["tool_result"]["text"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );

        assert_eq!(out["error"]["status"], 429, "{}", out["error"]);
        assert_eq!(out["error"]["type"], "rate_limit_error");

        let served = mock.recorded();
        assert!(
            served.iter().all(|r| r.uri.path() == native_path),
            "{native_path}: {:?}",
            served
                .iter()
                .map(|r| r.uri.path().to_owned())
                .collect::<Vec<_>>()
        );
        mock.clear_recorded();
    }
}
