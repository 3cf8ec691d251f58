//! Criterion micro-benchmarks of `/compat` translation: what one request costs to
//! translate (parse, translate, serialise), what one answer costs, and what each stream
//! event costs, per direction.
//!
//! `cargo bench --bench compat`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower_ai_compat::stream::{
    AnthropicToOpenAi, GeminiToOpenAi, OpenAiEvent, OpenAiToAnthropic, StreamTranslator,
};
use tower_ai_compat::{Options, anthropic, gemini, openai, request, response};

/// A typical agent turn (~1.3 KB): system prompt, a few turns, a tool call and its
/// result, two tools.
const CHAT: &str = r#"{"model":"anthropic/claude-sonnet-4-5","stream":true,"max_tokens":1024,"temperature":0.3,
"messages":[{"role":"system","content":"You are a helpful assistant that answers briefly and uses tools when needed."},
{"role":"user","content":"What is the weather like in Paris and in Berlin today? I am planning a trip."},
{"role":"assistant","content":"Let me check both cities.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
{"role":"tool","tool_call_id":"call_1","content":"{\"temp_c\":21,\"sky\":\"sunny\"}"},
{"role":"user","content":"And Berlin?"}],
"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
{"type":"function","function":{"name":"get_time","description":"Local time in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]}"#;

const MESSAGES: &str = r#"{"model":"openai/gpt-4o-mini","max_tokens":1024,"stream":true,"system":"You are a helpful assistant that answers briefly and uses tools when needed.",
"messages":[{"role":"user","content":"What is the weather like in Paris and in Berlin today? I am planning a trip."},
{"role":"assistant","content":[{"type":"text","text":"Let me check both cities."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"{\"temp_c\":21,\"sky\":\"sunny\"}"},{"type":"text","text":"And Berlin?"}]}],
"tools":[{"name":"get_weather","description":"Current weather for a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]}"#;

const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Berlin is cloudy at 14 degrees; Paris is sunny at 21 degrees. Pack a light jacket."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":412,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":24}}"#;

const GEMINI_ANSWER: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Berlin is cloudy at 14 degrees; Paris is sunny at 21 degrees. Pack a light jacket."}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":412,"candidatesTokenCount":24,"totalTokenCount":436},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;

const OPENAI_ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Berlin is cloudy at 14 degrees; Paris is sunny at 21 degrees. Pack a light jacket.","refusal":null},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":412,"completion_tokens":24,"total_tokens":436}}"#;

const ANTHROPIC_START: &str = r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":412,"output_tokens":1}}}"#;
const ANTHROPIC_DELTA: &str =
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" cloudy"}}"#;
const ANTHROPIC_JSON_DELTA: &str = r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Ber"}}"#;
const GEMINI_CHUNK: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":" cloudy"}]},"index":0}],"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;
const OPENAI_CHUNK: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" cloudy"},"logprobs":null,"finish_reason":null}]}"#;

fn bench(c: &mut Criterion) {
    let opts = Options::default();
    let mut g = c.benchmark_group("compat request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("openai -> anthropic (parse, translate, serialise)", |b| {
        b.iter(|| {
            let req: openai::ChatRequest = serde_json::from_str(black_box(CHAT)).unwrap();
            let out = request::chat_to_anthropic(req, "claude-sonnet-4-5", &opts).unwrap();
            black_box(serde_json::to_vec(&out).unwrap())
        })
    });
    g.bench_function("openai -> gemini (parse, translate, serialise)", |b| {
        b.iter(|| {
            let req: openai::ChatRequest = serde_json::from_str(black_box(CHAT)).unwrap();
            let out = request::chat_to_gemini(req, &opts).unwrap();
            black_box(serde_json::to_vec(&out).unwrap())
        })
    });
    g.bench_function("anthropic -> openai (parse, translate, serialise)", |b| {
        b.iter(|| {
            let req: anthropic::MessagesRequest =
                serde_json::from_str(black_box(MESSAGES)).unwrap();
            let out = request::anthropic_to_chat(req, "gpt-4o-mini", &opts).unwrap();
            black_box(serde_json::to_vec(&out).unwrap())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("compat answer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("anthropic -> openai", |b| {
        b.iter(|| {
            let m: anthropic::MessageResponse =
                serde_json::from_str(black_box(ANTHROPIC_ANSWER)).unwrap();
            black_box(serde_json::to_vec(&response::anthropic_to_chat(m, 1)).unwrap())
        })
    });
    g.bench_function("gemini -> openai", |b| {
        b.iter(|| {
            let r: gemini::GenerateContentResponse =
                serde_json::from_str(black_box(GEMINI_ANSWER)).unwrap();
            black_box(serde_json::to_vec(&response::gemini_to_chat(r, "g", 1)).unwrap())
        })
    });
    g.bench_function("openai -> anthropic", |b| {
        b.iter(|| {
            let r: openai::ChatCompletion = serde_json::from_str(black_box(OPENAI_ANSWER)).unwrap();
            black_box(serde_json::to_vec(&response::chat_to_anthropic(r)).unwrap())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("compat stream event");
    g.throughput(Throughput::Elements(1));
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("anthropic text_delta -> openai chunk", |b| {
        let mut t = StreamTranslator::AnthropicToOpenAi(AnthropicToOpenAi::new("c", 1, false));
        t.on_event(ANTHROPIC_START.as_bytes(), &mut out);
        b.iter(|| {
            out.clear();
            t.on_event(black_box(ANTHROPIC_DELTA.as_bytes()), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("anthropic input_json_delta -> openai chunk", |b| {
        let mut t = StreamTranslator::AnthropicToOpenAi(AnthropicToOpenAi::new("c", 1, false));
        t.on_event(ANTHROPIC_START.as_bytes(), &mut out);
        t.on_event(
            br#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
            &mut out,
        );
        b.iter(|| {
            out.clear();
            t.on_event(black_box(ANTHROPIC_JSON_DELTA.as_bytes()), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("gemini chunk -> openai chunk", |b| {
        let mut t = StreamTranslator::GeminiToOpenAi(GeminiToOpenAi::new("g", 1, false));
        b.iter(|| {
            out.clear();
            t.on_event(black_box(GEMINI_CHUNK.as_bytes()), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("openai chunk -> anthropic delta", |b| {
        let mut t = StreamTranslator::OpenAiToAnthropic(OpenAiToAnthropic::new("o"));
        t.on_event(OPENAI_CHUNK.as_bytes(), &mut out);
        b.iter(|| {
            out.clear();
            t.on_event(black_box(OPENAI_CHUNK.as_bytes()), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("openai chunk parse only (floor)", |b| {
        b.iter(|| black_box(OpenAiEvent::parse(black_box(OPENAI_CHUNK.as_bytes()))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
