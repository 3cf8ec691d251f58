//! The per-request state the meter carries from the request to the end of the response,
//! and the [`Observer`] that feeds on the response body.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tower_ai_core::{
    CacheStatus, LlmRequest, Observer, SseParser, StreamEnd, StreamUsage, Usage, WireFormat,
    prompt_text, usage_from_json,
};

use crate::estimate::estimate_tokens;
use crate::layer::Shared;
use crate::record::{ErrorOrigin, Outcome, Record, Recorder, UsageSource};

/// JSON bodies larger than this are passed on but not parsed for usage.
const MAX_JSON: usize = 16 * 1024 * 1024;

/// What the meter learnt from the request.
pub(crate) struct Ctx<R> {
    pub(crate) shared: Arc<Shared<R>>,
    pub(crate) start: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) request_id: Option<Arc<str>>,
    pub(crate) key_id: Option<Arc<str>>,
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) llm: LlmRequest,
    pub(crate) format: WireFormat,
    pub(crate) span: tracing::Span,
}

/// What the meter learnt from the response head.
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) sse: bool,
    pub(crate) json: bool,
    pub(crate) known: Option<Usage>,
    pub(crate) cache_status: Option<CacheStatus>,
    pub(crate) fallback_step: Option<u32>,
    pub(crate) gateway_generated: bool,
}

enum Mode {
    Sse {
        parser: SseParser,
        usage: Box<StreamUsage>,
    },
    Json {
        chunks: Vec<Bytes>,
        len: usize,
    },
    Opaque,
}

/// Watches one response body and records the request when it ends.
pub(crate) struct Tracker<R: Recorder> {
    ctx: Ctx<R>,
    head: Head,
    mode: Mode,
    ttft: Option<Duration>,
}

impl<R: Recorder> Tracker<R> {
    pub(crate) fn new(ctx: Ctx<R>, head: Head) -> Self {
        let mode = if head.known.is_some() {
            Mode::Opaque
        } else if head.sse {
            Mode::Sse {
                parser: SseParser::new(),
                usage: Box::new(StreamUsage::new(ctx.format, ctx.llm.operation)),
            }
        } else if head.json {
            Mode::Json {
                chunks: Vec::new(),
                len: 0,
            }
        } else {
            Mode::Opaque
        };
        Self {
            ctx,
            head,
            mode,
            ttft: None,
        }
    }
}

impl<R: Recorder> Observer for Tracker<R> {
    fn on_data(&mut self, data: &Bytes) {
        if self.ttft.is_none() {
            self.ttft = Some(self.ctx.start.elapsed());
        }
        match &mut self.mode {
            Mode::Sse { parser, usage } => parser.feed(data, |e| usage.on_event(&e)),
            Mode::Json { chunks, len } => {
                *len += data.len();
                if *len <= MAX_JSON {
                    // A refcount, not a copy.
                    chunks.push(data.clone());
                } else {
                    chunks.clear();
                }
            }
            Mode::Opaque => {}
        }
    }

    fn on_end(self, end: StreamEnd) {
        let Tracker {
            ctx,
            head,
            mode,
            ttft,
        } = self;
        let ok = (200..300).contains(&head.status);
        let mut outcome = match end {
            StreamEnd::Complete => Outcome::Complete,
            StreamEnd::Failed => Outcome::Failed,
            StreamEnd::Cancelled => Outcome::Cancelled,
        };
        let llm = &ctx.llm;
        let (usage, source) = if let Some(known) = head.known {
            (Some(known), UsageSource::Known)
        } else {
            match mode {
                Mode::Sse { usage, .. } => {
                    if ok && outcome == Outcome::Complete && !usage.completed() {
                        // A clean end without the protocol's terminal event: cut short.
                        outcome = Outcome::Failed;
                    }
                    let finished = usage.completed();
                    match usage.usage() {
                        Some(u) if finished => (Some(u), UsageSource::Reported),
                        Some(mut u) => {
                            // Cut before the final figures: count what was streamed.
                            let streamed = estimate_tokens(usage.output_text());
                            if streamed > u.output_tokens {
                                u.output_tokens = streamed;
                                (Some(u), UsageSource::Estimated)
                            } else {
                                (Some(u), UsageSource::Reported)
                            }
                        }
                        None if ok => {
                            let input =
                                estimate_tokens(&prompt_text(ctx.format, llm.operation, &llm.body));
                            let output = estimate_tokens(usage.output_text());
                            let u = Usage {
                                input_tokens: input,
                                output_tokens: output,
                                ..Usage::default()
                            };
                            (Some(u), UsageSource::Estimated)
                        }
                        None => (None, UsageSource::Unknown),
                    }
                }
                Mode::Json { chunks, len } if len <= MAX_JSON && outcome == Outcome::Complete => {
                    let body = concat(chunks, len);
                    match usage_from_json(ctx.format, llm.operation, &body) {
                        Some(u) => (Some(u), UsageSource::Reported),
                        None if ok => match answer_text(&body) {
                            // An answer without usage: count it ourselves.
                            Some(text) => {
                                let u = Usage {
                                    input_tokens: estimate_tokens(&prompt_text(
                                        ctx.format,
                                        llm.operation,
                                        &llm.body,
                                    )),
                                    output_tokens: estimate_tokens(&text),
                                    ..Usage::default()
                                };
                                (Some(u), UsageSource::Estimated)
                            }
                            None => (None, UsageSource::Unknown),
                        },
                        None => (None, UsageSource::Unknown),
                    }
                }
                _ => (None, UsageSource::Unknown),
            }
        };
        let error_origin = if head.status >= 400 {
            Some(if head.gateway_generated {
                ErrorOrigin::Gateway
            } else {
                ErrorOrigin::Provider
            })
        } else if outcome == Outcome::Failed {
            Some(ErrorOrigin::Provider)
        } else {
            None
        };
        let cost_usd = match (&usage, &llm.model) {
            (Some(u), Some(model)) if error_origin != Some(ErrorOrigin::Gateway) => {
                ctx.shared.prices.cost(&llm.provider, model, u)
            }
            _ => None,
        };
        let record = Record {
            request_id: ctx.request_id.clone(),
            started_at: ctx.started_at,
            duration: ctx.start.elapsed(),
            ttft,
            gateway: ctx.shared.gateway.clone(),
            provider: llm.provider.clone(),
            model: llm.model.clone(),
            operation: llm.operation,
            stream: llm.stream,
            key_id: ctx.key_id.clone(),
            metadata: ctx.metadata,
            status: Some(head.status),
            outcome,
            error_origin,
            usage,
            usage_source: source,
            cost_usd,
            cache_status: head.cache_status,
            fallback_step: head.fallback_step,
        };
        finish(&ctx.shared, &ctx.span, &record);
    }
}

/// Records a finished request: the recorder, and the tracing span's GenAI attributes.
pub(crate) fn finish<R: Recorder>(shared: &Shared<R>, span: &tracing::Span, record: &Record) {
    if let Some(u) = &record.usage {
        span.record("gen_ai.usage.input_tokens", u.input_tokens);
        span.record("gen_ai.usage.output_tokens", u.output_tokens);
    }
    if let Some(cost) = record.cost_usd {
        span.record("gen_ai.usage.cost", cost);
    }
    span.record("http.response.status_code", record.status.unwrap_or(0));
    span.record("outcome", record.outcome.as_str());
    tracing::debug!(
        parent: span,
        usage_source = record.usage_source.as_str(),
        duration_ms = record.duration.as_secs_f64() * 1e3,
        "metered"
    );
    shared.recorder.record(record);
}

/// The generated text of a JSON answer in any of the wire formats (OpenAI chat and
/// completions, Responses, Anthropic, Gemini, Workers AI), when it has one.
fn answer_text(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut out = String::new();
    let mut push = |t: Option<&str>| {
        if let Some(t) = t {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(t);
        }
    };
    let items = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    for c in items(&v["choices"]) {
        push(c["message"]["content"].as_str());
        push(c["text"].as_str());
    }
    for o in items(&v["output"]) {
        for c in items(&o["content"]) {
            push(c["text"].as_str());
        }
    }
    if v["type"] == "message" {
        for c in items(&v["content"]) {
            push(c["text"].as_str());
        }
    }
    for c in items(&v["candidates"]) {
        for p in items(&c["content"]["parts"]) {
            push(p["text"].as_str());
        }
    }
    push(v["result"]["response"].as_str());
    push(v["response"].as_str());
    (!out.is_empty()).then_some(out)
}

fn concat(chunks: Vec<Bytes>, len: usize) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.into_iter().next().expect("one chunk"),
        _ => {
            let mut v = Vec::with_capacity(len);
            for c in chunks {
                v.extend_from_slice(&c);
            }
            Bytes::from(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::answer_text;

    #[test]
    fn answer_text_of_each_format() {
        let cases = [
            (r#"{"choices":[{"message":{"content":"a b"}}]}"#, "a b"),
            (r#"{"choices":[{"text":"legacy"}]}"#, "legacy"),
            (
                r#"{"output":[{"content":[{"type":"output_text","text":"resp"}]}]}"#,
                "resp",
            ),
            (
                r#"{"type":"message","content":[{"type":"text","text":"claude"}]}"#,
                "claude",
            ),
            (
                r#"{"candidates":[{"content":{"parts":[{"text":"gem"}]}}]}"#,
                "gem",
            ),
            (r#"{"result":{"response":"workers"}}"#, "workers"),
        ];
        for (body, want) in cases {
            assert_eq!(
                answer_text(body.as_bytes()).as_deref(),
                Some(want),
                "{body}"
            );
        }
        assert_eq!(answer_text(b"{}"), None);
        assert_eq!(answer_text(b"nope"), None);
    }
}
