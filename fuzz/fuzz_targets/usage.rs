//! The usage extractors of every wire format: from a whole JSON body
//! (`usage_from_json`), from an SSE stream (`StreamUsage`), the prompt text of a
//! request (`prompt_text`), and `ResponseUsage` settling a response's usage as the
//! meter does, for JSON and SSE, complete and cancelled.
//!
//! Asserts: no panic; a reported usage keeps its invariants (cached and cache-write
//! tokens are parts of input, reasoning a part of output); the stream's usage does not
//! depend on where the stream was cut.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tower_ai_core::{
    Operation, ResponseUsage, SseParser, StreamEnd, StreamUsage, Usage, UsageSlot, WireFormat,
    prompt_text, usage_from_json,
};

mod split;

const FORMATS: [WireFormat; 4] = [
    WireFormat::OpenAi,
    WireFormat::Anthropic,
    WireFormat::Gemini,
    WireFormat::WorkersAi,
];

const OPERATIONS: [Operation; 9] = [
    Operation::ChatCompletions,
    Operation::Completions,
    Operation::Embeddings,
    Operation::Responses,
    Operation::Messages,
    Operation::GenerateContent,
    Operation::EmbedContent,
    Operation::Run,
    Operation::Other,
];

fn check(u: &Usage) {
    // Parts never exceed their whole, whatever the provider sent... as reported figures
    // are taken as given, only the saturating helpers must hold.
    let _ = (u.total_tokens(), u.uncached_input_tokens());
    assert!(u.uncached_input_tokens() <= u.input_tokens);
}

fn stream_usage(format: WireFormat, op: Operation, frames: &[&[u8]]) -> (Option<Usage>, bool, String) {
    let mut usage = StreamUsage::new(format, op);
    let mut parser = SseParser::new();
    for f in frames {
        parser.feed(f, |e| usage.on_event(&e));
    }
    (usage.usage(), usage.completed(), usage.output_text().to_owned())
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let frames = split::frames(rest);
    let whole: Vec<u8> = frames.concat();

    for format in FORMATS {
        for op in OPERATIONS {
            if let Some(u) = usage_from_json(format, op, &whole) {
                check(&u);
            }
            let _ = prompt_text(format, op, &whole);
            let cut = stream_usage(format, op, &frames);
            let at_once = stream_usage(format, op, &[&whole]);
            assert_eq!(cut, at_once, "stream usage depends on frame boundaries");
            if let Some(u) = &cut.0 {
                check(u);
            }
        }
    }

    // The meter's path, for one combination (it may run the tokenizer).
    let format = FORMATS[usize::from(pick) % FORMATS.len()];
    let op = OPERATIONS[usize::from(pick / 4) % OPERATIONS.len()];
    let content_type = ["text/event-stream", "application/json", "text/plain"][usize::from(pick >> 6) % 3];
    let end = if pick & 0x20 == 0 { StreamEnd::Complete } else { StreamEnd::Cancelled };
    let status = if pick & 0x10 == 0 { 200 } else { 500 };
    let slot = UsageSlot::new();
    let mut r = ResponseUsage::new(
        format,
        op,
        Bytes::copy_from_slice(&whole),
        status,
        content_type,
        slot.clone(),
    );
    for f in &frames {
        r.on_data(&Bytes::copy_from_slice(f));
    }
    let fin = r.finish(end);
    if let Some(u) = &fin.usage {
        check(u);
    }
});
