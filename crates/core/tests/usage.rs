//! Usage extraction from every wire format: JSON bodies and SSE streams (fixtures in the
//! providers' documented shapes, and the mock provider's real outputs), split at every
//! byte, broken in every way we could think of.

use tower_ai_core::{
    Operation, PromptSize, SseEvent, SseParser, StreamUsage, Usage, WireFormat, prompt_size,
    prompt_text, usage_from_json,
};

use Operation::*;
use WireFormat::*;

fn usage(input: u64, output: u64, cached: u64, cache_write: u64, reasoning: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_write_tokens: cache_write,
        reasoning_tokens: reasoning,
    }
}

/// What a stream told: usage, output text, completed.
type Outcome = (Option<Usage>, String, bool);

fn outcome(s: &StreamUsage) -> Outcome {
    (s.usage(), s.output_text().to_owned(), s.completed())
}

/// Feeds `chunks` through a fresh parser into a fresh `StreamUsage`.
fn run(format: WireFormat, op: Operation, chunks: &[&[u8]]) -> Outcome {
    let mut parser = SseParser::new();
    let mut usage = StreamUsage::new(format, op);
    for c in chunks {
        parser.feed(c, |e| usage.on_event(&e));
    }
    outcome(&usage)
}

/// The events of a stream, owned: (event, data).
fn events(stream: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    SseParser::new().feed(stream, |e| out.push((e.event.to_owned(), e.data.to_vec())));
    out
}

fn event<'a>(name: &'a str, data: &'a [u8]) -> SseEvent<'a> {
    SseEvent {
        event: name,
        data,
        id: None,
    }
}

/// A stream fixture: its format, operation, bytes and what it must yield.
struct Stream {
    name: &'static str,
    format: WireFormat,
    op: Operation,
    bytes: &'static str,
    usage: Option<Usage>,
    text: &'static str,
    /// Indexes (among the parsed events) of the OpenAI usage-only chunks.
    usage_only: &'static [usize],
}

// ---------------------------------------------------------------------------------------
// OpenAI chat completions and compatible providers
// ---------------------------------------------------------------------------------------

/// OpenAI's documented chat completion, from a reasoning model with a cache hit.
const OPENAI_CHAT_JSON: &str = r#"{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "o3-mini-2025-01-31",
  "choices": [
    {
      "index": 0,
      "message": {"role": "assistant", "content": "The image shows a wooden boardwalk.", "refusal": null, "annotations": []},
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 1117,
    "completion_tokens": 846,
    "total_tokens": 1963,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 768, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
  },
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}"#;

/// OpenAI chat stream with `stream_options.include_usage`: every chunk has `"usage":null`,
/// the last one has `choices: []` and the usage.
const OPENAI_CHAT_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"! \\\"usage\\\": {\\n\\u00e9\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
);

/// Azure OpenAI: a first chunk with `choices: []` and prompt filter results (no usage),
/// content filter results on the deltas, and the usage chunk.
const AZURE_CHAT_STREAM: &str = concat!(
    "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"content\":\"\",\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1739000000,\"id\":\"chatcmpl-AZ1\",\"model\":\"gpt-4o-2024-11-20\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\",\"usage\":null}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}},\"delta\":{\"content\":\"Azure\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1739000000,\"id\":\"chatcmpl-AZ1\",\"model\":\"gpt-4o-2024-11-20\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\",\"usage\":null}\n\n",
    "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":\"stop\",\"index\":0,\"logprobs\":null}],\"created\":1739000000,\"id\":\"chatcmpl-AZ1\",\"model\":\"gpt-4o-2024-11-20\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\",\"usage\":null}\n\n",
    "data: {\"choices\":[],\"created\":1739000000,\"id\":\"chatcmpl-AZ1\",\"model\":\"gpt-4o-2024-11-20\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b705f0c291\",\"usage\":{\"completion_tokens\":1,\"completion_tokens_details\":{\"accepted_prediction_tokens\":0,\"audio_tokens\":0,\"reasoning_tokens\":0,\"rejected_prediction_tokens\":0},\"prompt_tokens\":2000,\"prompt_tokens_details\":{\"audio_tokens\":0,\"cached_tokens\":1920},\"total_tokens\":2001}}\n\n",
    "data: [DONE]\n\n",
);

/// Mistral: no `usage: null` chunks; the usage rides on the last content chunk.
const MISTRAL_CHAT_STREAM: &str = concat!(
    "data: {\"id\":\"cmpl-e5cc70bb28c444948073e77776eb30ef\",\"object\":\"chat.completion.chunk\",\"created\":1702256327,\"model\":\"mistral-small-latest\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"cmpl-e5cc70bb28c444948073e77776eb30ef\",\"object\":\"chat.completion.chunk\",\"created\":1702256327,\"model\":\"mistral-small-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Bonjour\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"cmpl-e5cc70bb28c444948073e77776eb30ef\",\"object\":\"chat.completion.chunk\",\"created\":1702256327,\"model\":\"mistral-small-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" !\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":10,\"total_tokens\":25,\"completion_tokens\":15}}\n\n",
    "data: [DONE]\n\n",
);

/// DeepSeek (reasoner): `reasoning_content` deltas (not output text), the usage on the last
/// chunk with `prompt_cache_hit_tokens` and reasoning details.
const DEEPSEEK_CHAT_STREAM: &str = concat!(
    "data: {\"id\":\"d1\",\"object\":\"chat.completion.chunk\",\"created\":1738000000,\"model\":\"deepseek-reasoner\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"d1\",\"object\":\"chat.completion.chunk\",\"created\":1738000000,\"model\":\"deepseek-reasoner\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":null,\"reasoning_content\":\"Let me think.\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"d1\",\"object\":\"chat.completion.chunk\",\"created\":1738000000,\"model\":\"deepseek-reasoner\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"42\",\"reasoning_content\":null},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"d1\",\"object\":\"chat.completion.chunk\",\"created\":1738000000,\"model\":\"deepseek-reasoner\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\",\"reasoning_content\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":300,\"total_tokens\":1300,\"prompt_tokens_details\":{\"cached_tokens\":640},\"completion_tokens_details\":{\"reasoning_tokens\":250},\"prompt_cache_hit_tokens\":640,\"prompt_cache_miss_tokens\":360}}\n\n",
    "data: [DONE]\n\n",
);

/// Groq without `include_usage`: the usage under `x_groq` on the last chunk, with float
/// timings beside the counts.
const GROQ_CHAT_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-g1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"llama-3.1-8b-instant\",\"system_fingerprint\":\"fp_9cb648b966\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"x_groq\":{\"id\":\"req_01\"}}\n\n",
    "data: {\"id\":\"chatcmpl-g1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"llama-3.1-8b-instant\",\"system_fingerprint\":\"fp_9cb648b966\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Fast\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-g1\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"llama-3.1-8b-instant\",\"system_fingerprint\":\"fp_9cb648b966\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"x_groq\":{\"id\":\"req_01\",\"usage\":{\"queue_time\":0.017,\"prompt_tokens\":18,\"prompt_time\":0.0009,\"completion_tokens\":4,\"completion_time\":0.003,\"total_tokens\":22,\"total_time\":0.004}}}\n\n",
    "data: [DONE]\n\n",
);

/// OpenRouter: processing comments, then a usage chunk with `cost` and cache writes.
const OPENROUTER_CHAT_STREAM: &str = concat!(
    ": OPENROUTER PROCESSING\n\n",
    ": OPENROUTER PROCESSING\n\n",
    "data: {\"id\":\"gen-1\",\"provider\":\"Anthropic\",\"model\":\"anthropic/claude-sonnet-4\",\"object\":\"chat.completion.chunk\",\"created\":1750000000,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Routed\"},\"finish_reason\":null,\"native_finish_reason\":null,\"logprobs\":null}]}\n\n",
    "data: {\"id\":\"gen-1\",\"provider\":\"Anthropic\",\"model\":\"anthropic/claude-sonnet-4\",\"object\":\"chat.completion.chunk\",\"created\":1750000000,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":\"stop\",\"native_finish_reason\":\"end_turn\",\"logprobs\":null}]}\n\n",
    "data: {\"id\":\"gen-1\",\"provider\":\"Anthropic\",\"model\":\"anthropic/claude-sonnet-4\",\"object\":\"chat.completion.chunk\",\"created\":1750000000,\"choices\":[],\"usage\":{\"prompt_tokens\":1500,\"completion_tokens\":20,\"total_tokens\":1520,\"cost\":0.0123,\"is_byok\":false,\"prompt_tokens_details\":{\"cached_tokens\":1000,\"cache_write_tokens\":400,\"audio_tokens\":0},\"cost_details\":{\"upstream_inference_cost\":null},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"image_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
);

/// Legacy completions stream (`choices[].text`).
const COMPLETIONS_STREAM: &str = concat!(
    "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1690000000,\"choices\":[{\"text\":\"Once\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
    "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1690000000,\"choices\":[{\"text\":\" upon\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
    "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1690000000,\"choices\":[],\"model\":\"gpt-3.5-turbo-instruct\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
    "data: [DONE]\n\n",
);

const EMBEDDINGS_JSON: &str = r#"{
  "object": "list",
  "data": [{"object": "embedding", "embedding": [0.0023064255, -0.009327292, -0.0028842222], "index": 0}],
  "model": "text-embedding-3-small",
  "usage": {"prompt_tokens": 8, "total_tokens": 8}
}"#;

// ---------------------------------------------------------------------------------------
// OpenAI Responses API
// ---------------------------------------------------------------------------------------

const RESPONSES_JSON: &str = r#"{
  "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
  "object": "response",
  "created_at": 1741476777,
  "status": "completed",
  "error": null,
  "incomplete_details": null,
  "instructions": null,
  "max_output_tokens": null,
  "model": "o3-mini-2025-01-31",
  "output": [
    {"type": "reasoning", "id": "rs_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41", "summary": []},
    {"type": "message", "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41", "status": "completed", "role": "assistant",
     "content": [{"type": "output_text", "text": "The classic tongue twister...", "annotations": []}]}
  ],
  "parallel_tool_calls": true,
  "previous_response_id": null,
  "reasoning": {"effort": "medium", "summary": null},
  "store": true,
  "temperature": 1.0,
  "text": {"format": {"type": "text"}},
  "tool_choice": "auto",
  "tools": [],
  "top_p": 1.0,
  "truncation": "disabled",
  "usage": {
    "input_tokens": 81,
    "input_tokens_details": {"cached_tokens": 64},
    "output_tokens": 1035,
    "output_tokens_details": {"reasoning_tokens": 832},
    "total_tokens": 1116
  },
  "user": null,
  "metadata": {}
}"#;

const RESPONSES_STREAM: &str = concat!(
    "event: response.created\n",
    "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1741290958,\"status\":\"in_progress\",\"error\":null,\"model\":\"gpt-4.1-2025-04-14\",\"output\":[],\"usage\":null}}\n\n",
    "event: response.in_progress\n",
    "data: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1741290958,\"status\":\"in_progress\",\"output\":[],\"usage\":null}}\n\n",
    "event: response.output_item.added\n",
    "data: {\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0,\"item\":{\"id\":\"msg_1\",\"type\":\"message\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}}\n\n",
    "event: response.content_part.added\n",
    "data: {\"type\":\"response.content_part.added\",\"sequence_number\":3,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[]}}\n\n",
    "event: response.output_text.delta\n",
    "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n",
    "event: response.output_text.delta\n",
    "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":5,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\" there\\n\"}\n\n",
    "event: response.output_text.done\n",
    "data: {\"type\":\"response.output_text.done\",\"sequence_number\":6,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"text\":\"Hi there\\n\"}\n\n",
    "event: response.content_part.done\n",
    "data: {\"type\":\"response.content_part.done\",\"sequence_number\":7,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"Hi there\\n\",\"annotations\":[]}}\n\n",
    "event: response.output_item.done\n",
    "data: {\"type\":\"response.output_item.done\",\"sequence_number\":8,\"output_index\":0,\"item\":{\"id\":\"msg_1\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi there\\n\",\"annotations\":[]}]}}\n\n",
    "event: response.completed\n",
    "data: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1741290958,\"status\":\"completed\",\"error\":null,\"model\":\"gpt-4.1-2025-04-14\",\"output\":[{\"id\":\"msg_1\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi there\\n\",\"annotations\":[]}]}],\"usage\":{\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":12},\"output_tokens\":11,\"output_tokens_details\":{\"reasoning_tokens\":3},\"total_tokens\":48},\"user\":null,\"metadata\":{}}}\n\n",
);

// ---------------------------------------------------------------------------------------
// Anthropic
// ---------------------------------------------------------------------------------------

const ANTHROPIC_JSON: &str = r#"{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [{"type": "text", "text": "Hello!"}],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {
    "input_tokens": 21,
    "cache_creation_input_tokens": 188086,
    "cache_read_input_tokens": 1000,
    "cache_creation": {"ephemeral_5m_input_tokens": 188086, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 393,
    "service_tier": "standard"
  }
}"#;

/// Anthropic's documented basic stream.
const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-opus-4-20250514\", \"stop_reason\": null, \"stop_sequence\": null, \"usage\": {\"input_tokens\": 25, \"output_tokens\": 1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}\n\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"Hello\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"!\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\": \"content_block_stop\", \"index\": 0}\n\n",
    "event: message_delta\n",
    "data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\":null}, \"usage\": {\"output_tokens\": 15}}\n\n",
    "event: message_stop\n",
    "data: {\"type\": \"message_stop\"}\n\n",
);

/// The current API: `message_delta` repeats the (cumulative) input and cache figures;
/// extended thinking (thinking and signature deltas are not output text), and a tool use
/// block (its JSON deltas are not text either).
const ANTHROPIC_CUMULATIVE_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":27,\"cache_creation_input_tokens\":1200,\"cache_read_input_tokens\":5000,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1200,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":4,\"service_tier\":\"standard\"}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me think\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking the weather.\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"Paris\\\"}\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":27,\"cache_creation_input_tokens\":1200,\"cache_read_input_tokens\":5000,\"output_tokens\":89,\"server_tool_use\":{\"web_search_requests\":0}}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

/// An Anthropic-compatible vendor: `message_start` reports zeros, only `message_delta`
/// has the input and cache figures.
const ANTHROPIC_VENDOR_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_v\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"vendor-model\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Vendor reply\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":120,\"cache_read_input_tokens\":40,\"output_tokens\":30}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

// ---------------------------------------------------------------------------------------
// Gemini
// ---------------------------------------------------------------------------------------

const GEMINI_JSON: &str = r#"{
  "candidates": [
    {
      "content": {"parts": [{"text": "The answer is 42."}], "role": "model"},
      "finishReason": "STOP",
      "index": 0
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 1200,
    "candidatesTokenCount": 50,
    "totalTokenCount": 1550,
    "cachedContentTokenCount": 1000,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1000}],
    "thoughtsTokenCount": 300
  },
  "modelVersion": "gemini-2.5-flash",
  "responseId": "mAitaLmkHPPlz7IPvtfUqQ4"
}"#;

/// `streamGenerateContent?alt=sse`: `\r\n` line endings, usage on every chunk (cumulative),
/// two parts in one chunk, `finishReason` on the last.
const GEMINI_STREAM: &str = concat!(
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 109,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 9}],\"thoughtsTokenCount\": 100},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky is\"}, {\"text\": \" blue\\n\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 4,\"totalTokenCount\": 113,\"thoughtsTokenCount\": 100},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"because of Rayleigh scattering.\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 12,\"totalTokenCount\": 121,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 9}],\"thoughtsTokenCount\": 100},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
);

// ---------------------------------------------------------------------------------------
// Workers AI
// ---------------------------------------------------------------------------------------

const WORKERS_JSON: &str = r#"{"result":{"response":"Hello! How can I help you today?","tool_calls":[],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29}},"success":true,"errors":[],"messages":[]}"#;

const WORKERS_STREAM: &str = concat!(
    "data: {\"response\":\"Hello\",\"p\":\"abdefgh\"}\n\n",
    "data: {\"response\":\"!\",\"p\":\"abdef\"}\n\n",
    "data: {\"response\":\" How\\u0020can\",\"p\":\"ab\"}\n\n",
    "data: {\"response\":\"\",\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":3,\"total_tokens\":23}}\n\n",
    "data: [DONE]\n\n",
);

fn streams() -> Vec<Stream> {
    vec![
        Stream {
            name: "openai chat",
            format: OpenAi,
            op: ChatCompletions,
            bytes: OPENAI_CHAT_STREAM,
            usage: Some(usage(9, 12, 0, 0, 0)),
            text: "Hello! \"usage\": {\né",
            usage_only: &[4],
        },
        Stream {
            name: "azure chat",
            format: OpenAi,
            op: ChatCompletions,
            bytes: AZURE_CHAT_STREAM,
            usage: Some(usage(2000, 1, 1920, 0, 0)),
            text: "Azure",
            usage_only: &[4],
        },
        Stream {
            name: "mistral chat",
            format: OpenAi,
            op: ChatCompletions,
            bytes: MISTRAL_CHAT_STREAM,
            usage: Some(usage(10, 15, 0, 0, 0)),
            text: "Bonjour !",
            usage_only: &[],
        },
        Stream {
            name: "deepseek chat",
            format: OpenAi,
            op: ChatCompletions,
            bytes: DEEPSEEK_CHAT_STREAM,
            usage: Some(usage(1000, 300, 640, 0, 250)),
            text: "42",
            usage_only: &[],
        },
        Stream {
            name: "groq chat",
            format: OpenAi,
            op: ChatCompletions,
            bytes: GROQ_CHAT_STREAM,
            usage: Some(usage(18, 4, 0, 0, 0)),
            text: "Fast",
            usage_only: &[],
        },
        Stream {
            name: "openrouter chat",
            format: OpenAi,
            op: ChatCompletions,
            bytes: OPENROUTER_CHAT_STREAM,
            usage: Some(usage(1500, 20, 1000, 400, 0)),
            text: "Routed",
            usage_only: &[2],
        },
        Stream {
            name: "completions",
            format: OpenAi,
            op: Completions,
            bytes: COMPLETIONS_STREAM,
            usage: Some(usage(5, 2, 0, 0, 0)),
            text: "Once upon",
            usage_only: &[2],
        },
        Stream {
            name: "responses",
            format: OpenAi,
            op: Responses,
            bytes: RESPONSES_STREAM,
            usage: Some(usage(37, 11, 12, 0, 3)),
            text: "Hi there\n",
            usage_only: &[],
        },
        Stream {
            name: "anthropic",
            format: Anthropic,
            op: Messages,
            bytes: ANTHROPIC_STREAM,
            usage: Some(usage(25, 15, 0, 0, 0)),
            text: "Hello!",
            usage_only: &[],
        },
        Stream {
            name: "anthropic cumulative",
            format: Anthropic,
            op: Messages,
            bytes: ANTHROPIC_CUMULATIVE_STREAM,
            usage: Some(usage(27 + 1200 + 5000, 89, 5000, 1200, 0)),
            text: "Checking the weather.",
            usage_only: &[],
        },
        Stream {
            name: "anthropic vendor",
            format: Anthropic,
            op: Messages,
            bytes: ANTHROPIC_VENDOR_STREAM,
            usage: Some(usage(160, 30, 40, 0, 0)),
            text: "Vendor reply",
            usage_only: &[],
        },
        Stream {
            name: "gemini",
            format: Gemini,
            op: GenerateContent,
            bytes: GEMINI_STREAM,
            usage: Some(usage(9, 112, 0, 0, 100)),
            text: "The sky is blue\nbecause of Rayleigh scattering.",
            usage_only: &[],
        },
        Stream {
            name: "workers ai",
            format: WorkersAi,
            op: Run,
            bytes: WORKERS_STREAM,
            usage: Some(usage(20, 3, 0, 0, 0)),
            text: "Hello! How can",
            usage_only: &[],
        },
    ]
}

// ---------------------------------------------------------------------------------------
// JSON bodies
// ---------------------------------------------------------------------------------------

#[test]
fn json_openai_chat() {
    assert_eq!(
        usage_from_json(OpenAi, ChatCompletions, OPENAI_CHAT_JSON.as_bytes()),
        Some(usage(1117, 846, 1024, 0, 768))
    );
    let u = usage_from_json(OpenAi, ChatCompletions, OPENAI_CHAT_JSON.as_bytes()).unwrap();
    assert_eq!(u.total_tokens(), 1963);
    assert_eq!(u.uncached_input_tokens(), 93);
}

#[test]
fn json_deepseek_cache_hit_tokens() {
    // Older DeepSeek: no details, only prompt_cache_hit_tokens.
    let body = br#"{"id":"x","object":"chat.completion","model":"deepseek-chat","choices":[],"usage":{"prompt_tokens":1024,"completion_tokens":300,"total_tokens":1324,"prompt_cache_hit_tokens":768,"prompt_cache_miss_tokens":256}}"#;
    assert_eq!(
        usage_from_json(OpenAi, ChatCompletions, body),
        Some(usage(1024, 300, 768, 0, 0))
    );
    // Both reported: prompt_cache_hit_tokens wins.
    let body = br#"{"usage":{"prompt_tokens":1024,"completion_tokens":300,"prompt_tokens_details":{"cached_tokens":0},"prompt_cache_hit_tokens":512,"completion_tokens_details":{"reasoning_tokens":100}}}"#;
    assert_eq!(
        usage_from_json(OpenAi, ChatCompletions, body),
        Some(usage(1024, 300, 512, 0, 100))
    );
}

#[test]
fn json_legacy_completions_and_groq() {
    let body = br#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-3.5-turbo-instruct","choices":[{"text":"\n\nThis is indeed a test","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
    assert_eq!(
        usage_from_json(OpenAi, Completions, body),
        Some(usage(5, 7, 0, 0, 0))
    );
    let body = br#"{"id":"chatcmpl-g","object":"chat.completion","model":"llama-3.3-70b-versatile","choices":[],"usage":{"queue_time":0.03,"prompt_tokens":18,"prompt_time":0.002,"completion_tokens":556,"completion_time":0.46,"total_tokens":574,"total_time":0.46},"x_groq":{"id":"req_1"}}"#;
    assert_eq!(
        usage_from_json(OpenAi, ChatCompletions, body),
        Some(usage(18, 556, 0, 0, 0))
    );
}

#[test]
fn json_embeddings() {
    assert_eq!(
        usage_from_json(OpenAi, Embeddings, EMBEDDINGS_JSON.as_bytes()),
        Some(usage(8, 0, 0, 0, 0))
    );
    // Whatever else a provider reports, embeddings have no output.
    let body =
        br#"{"data":[],"usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12}}"#;
    assert_eq!(
        usage_from_json(OpenAi, Embeddings, body),
        Some(usage(3, 0, 0, 0, 0))
    );
}

#[test]
fn json_responses() {
    assert_eq!(
        usage_from_json(OpenAi, Responses, RESPONSES_JSON.as_bytes()),
        Some(usage(81, 1035, 64, 0, 832))
    );
    // A background response still in progress reports no usage yet.
    let body = br#"{"id":"resp_1","object":"response","status":"queued","usage":null}"#;
    assert_eq!(usage_from_json(OpenAi, Responses, body), None);
}

#[test]
fn json_anthropic() {
    assert_eq!(
        usage_from_json(Anthropic, Messages, ANTHROPIC_JSON.as_bytes()),
        Some(usage(21 + 188086 + 1000, 393, 1000, 188086, 0))
    );
    let u = usage_from_json(Anthropic, Messages, ANTHROPIC_JSON.as_bytes()).unwrap();
    assert_eq!(u.uncached_input_tokens(), 21);
    // Without cache fields.
    let body = br#"{"type":"message","content":[],"usage":{"input_tokens":10,"output_tokens":3}}"#;
    assert_eq!(
        usage_from_json(Anthropic, Messages, body),
        Some(usage(10, 3, 0, 0, 0))
    );
    // Token counting is not a billed call and has no `usage`.
    assert_eq!(
        usage_from_json(Anthropic, Other, br#"{"input_tokens":14}"#),
        None
    );
    // An error body.
    let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(usage_from_json(Anthropic, Messages, body), None);
}

#[test]
fn json_gemini() {
    assert_eq!(
        usage_from_json(Gemini, GenerateContent, GEMINI_JSON.as_bytes()),
        Some(usage(1200, 350, 1000, 0, 300))
    );
    // No thoughts, and a tool-use prompt (e.g. grounding results) counted as input.
    let body = br#"{"candidates":[{"content":{"parts":[{"text":"x"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5,"toolUsePromptTokenCount":7,"totalTokenCount":22}}"#;
    assert_eq!(
        usage_from_json(Gemini, GenerateContent, body),
        Some(usage(17, 5, 0, 0, 0))
    );
    // `streamGenerateContent` without `alt=sse`: a JSON array of chunks, the last usage wins.
    let body = br#"[{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":4,"totalTokenCount":4}},
                   {"candidates":[{"content":{"parts":[{"text":"b"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6}}]"#;
    assert_eq!(
        usage_from_json(Gemini, GenerateContent, body),
        Some(usage(4, 2, 0, 0, 0))
    );
    // embedContent reports no usage.
    let body = br#"{"embedding":{"values":[0.1,0.2]}}"#;
    assert_eq!(usage_from_json(Gemini, EmbedContent, body), None);
}

#[test]
fn json_workers_ai() {
    assert_eq!(
        usage_from_json(WorkersAi, Run, WORKERS_JSON.as_bytes()),
        Some(usage(20, 9, 0, 0, 0))
    );
    // A top-level usage is accepted too.
    let body =
        br#"{"response":"hi","usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    assert_eq!(
        usage_from_json(WorkersAi, Run, body),
        Some(usage(3, 1, 0, 0, 0))
    );
    // Its OpenAI-compatible endpoint is read as OpenAI.
    let body = br#"{"id":"id-1","object":"chat.completion","created":1,"model":"@cf/meta/llama-3.1-8b-instruct","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#;
    assert_eq!(
        usage_from_json(WorkersAi, ChatCompletions, body),
        Some(usage(12, 2, 0, 0, 0))
    );
    let body = br#"{"object":"list","data":[],"model":"@cf/baai/bge-small-en-v1.5","usage":{"prompt_tokens":6,"total_tokens":6}}"#;
    assert_eq!(
        usage_from_json(WorkersAi, Embeddings, body),
        Some(usage(6, 0, 0, 0, 0))
    );
    // Embedding models on `run` report no usage.
    let body =
        br#"{"result":{"shape":[1,3],"data":[[0.1,0.2,0.3]],"pooling":"cls"},"success":true}"#;
    assert_eq!(usage_from_json(WorkersAi, Run, body), None);
}

#[test]
fn json_operation_decides_the_shape() {
    // Gemini's and Anthropic's OpenAI-compatible endpoints.
    let chat =
        br#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#;
    for format in [Gemini, Anthropic, OpenAi, WorkersAi] {
        assert_eq!(
            usage_from_json(format, ChatCompletions, chat),
            Some(usage(7, 2, 0, 0, 0)),
            "{format:?}"
        );
    }
    // DeepSeek's Anthropic-compatible endpoint: an OpenAI-format provider, messages.
    let messages = br#"{"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":30,"output_tokens":3}}"#;
    assert_eq!(
        usage_from_json(OpenAi, Messages, messages),
        Some(usage(40, 3, 30, 0, 0))
    );
    // Other operations: the provider's format; for OpenAI, either spelling.
    assert_eq!(
        usage_from_json(Anthropic, Other, messages),
        Some(usage(40, 3, 30, 0, 0))
    );
    assert_eq!(
        usage_from_json(OpenAi, Other, RESPONSES_JSON.as_bytes()),
        Some(usage(81, 1035, 64, 0, 832))
    );
    assert_eq!(
        usage_from_json(OpenAi, Other, OPENAI_CHAT_JSON.as_bytes()),
        Some(usage(1117, 846, 1024, 0, 768))
    );
    assert_eq!(
        usage_from_json(Gemini, Other, GEMINI_JSON.as_bytes()),
        Some(usage(1200, 350, 1000, 0, 300))
    );
    assert_eq!(
        usage_from_json(WorkersAi, Other, WORKERS_JSON.as_bytes()),
        Some(usage(20, 9, 0, 0, 0))
    );
}

#[test]
fn json_broken_input() {
    let bodies: &[&[u8]] = &[
        b"",
        b"not json",
        b"{",
        b"{\"usage\":{\"prompt_tokens\":5",
        b"[1,2",
        b"\xff\xfe\xfd",
        b"{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\xff",
        b"null",
        b"42",
        b"\"usage\"",
        b"[]",
        b"[null, 1, \"x\", {\"usageMetadata\": 5}]",
        b"{\"usage\":\"lots\"}",
        b"{\"usage\":[1,2,3]}",
        b"{\"usage\":null}",
        b"{\"usage\":{}}",
        b"{\"usage\":{\"total_tokens\":10}}",
        b"{\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":1.5}}",
        b"{\"usage\":{\"prompt_tokens\":\"5\",\"completion_tokens\":null}}",
        b"{\"usage\":{\"input_tokens\":-3,\"output_tokens\":2e3}}",
        b"{\"result\":\"x\",\"usage\":true}",
        b"{\"usageMetadata\":{\"promptTokenCount\":-5,\"candidatesTokenCount\":1.0}}",
        b"{\"result\":{\"usage\":{\"prompt_tokens\":[]}}}",
    ];
    for body in bodies {
        for format in [OpenAi, Anthropic, Gemini, WorkersAi] {
            for op in OPERATIONS {
                assert_eq!(
                    usage_from_json(format, op, body),
                    None,
                    "{format:?} {op:?} {}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
}

const OPERATIONS: [Operation; 9] = [
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Messages,
    GenerateContent,
    EmbedContent,
    Run,
    Other,
];

#[test]
fn json_wrong_types_are_partial() {
    // A count that is too big, negative or a float is absent; the rest is kept.
    let body = br#"{"usage":{"prompt_tokens":18446744073709551616,"completion_tokens":3,"prompt_tokens_details":"x","completion_tokens_details":{"reasoning_tokens":-1}}}"#;
    assert_eq!(
        usage_from_json(OpenAi, ChatCompletions, body),
        Some(usage(0, 3, 0, 0, 0))
    );
    let body = br#"{"usage":{"input_tokens":10,"cache_read_input_tokens":2.5,"cache_creation_input_tokens":"4","output_tokens":1}}"#;
    assert_eq!(
        usage_from_json(Anthropic, Messages, body),
        Some(usage(10, 1, 0, 0, 0))
    );
    let body = br#"{"candidates":"nope","usageMetadata":{"promptTokenCount":3,"thoughtsTokenCount":null}}"#;
    assert_eq!(
        usage_from_json(Gemini, GenerateContent, body),
        Some(usage(3, 0, 0, 0, 0))
    );
    // The largest count is fine, and sums saturate.
    let body = br#"{"usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":1,"output_tokens":1}}"#;
    let u = usage_from_json(Anthropic, Messages, body).unwrap();
    assert_eq!(u.input_tokens, u64::MAX);
    assert_eq!(u.total_tokens(), u64::MAX);
}

// ---------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------

#[test]
fn streams_whole() {
    for s in streams() {
        let got = run(s.format, s.op, &[s.bytes.as_bytes()]);
        assert_eq!(
            got,
            (s.usage, s.text.to_owned(), true),
            "{}: whole stream",
            s.name
        );
    }
}

#[test]
fn streams_split_at_every_byte() {
    for s in streams() {
        let bytes = s.bytes.as_bytes();
        let want = (s.usage, s.text.to_owned(), true);
        for i in 0..=bytes.len() {
            assert_eq!(
                run(s.format, s.op, &[&bytes[..i], &bytes[i..]]),
                want,
                "{}: split at {i}",
                s.name
            );
        }
        // A sample of two-boundary splits: `i` every few bytes against a stride of `j`,
        // and the two split points side by side.
        let stride = (bytes.len() / 20).max(1);
        for i in (0..=bytes.len()).step_by(5) {
            for j in (i..=bytes.len()).step_by(stride).chain([i + 1, i + 2]) {
                let j = j.min(bytes.len());
                assert_eq!(
                    run(s.format, s.op, &[&bytes[..i], &bytes[i..j], &bytes[j..]]),
                    want,
                    "{}: split at {i},{j}",
                    s.name
                );
            }
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(s.format, s.op, &bytewise), want, "{}: bytewise", s.name);
    }
}

#[test]
fn streams_with_other_line_endings() {
    for s in streams() {
        for ending in ["\r\n", "\r"] {
            let bytes = s.bytes.replace("\r\n", "\n").replace('\n', ending);
            assert_eq!(
                run(s.format, s.op, &[bytes.as_bytes()]),
                (s.usage, s.text.to_owned(), true),
                "{}: {ending:?}",
                s.name
            );
        }
    }
}

#[test]
fn completed_only_with_the_terminal_event() {
    for s in streams() {
        let events = events(s.bytes.as_bytes());
        let mut usage = StreamUsage::new(s.format, s.op);
        assert!(!usage.completed());
        let (last, rest) = events.split_last().unwrap();
        for (name, data) in rest {
            usage.on_event(&event(name, data));
            assert!(!usage.completed(), "{}: completed before the end", s.name);
        }
        usage.on_event(&event(&last.0, &last.1));
        assert!(usage.completed(), "{}", s.name);
    }
    // Other terminal events.
    for terminal in ["response.incomplete", "response.failed"] {
        let mut usage = StreamUsage::new(OpenAi, Responses);
        let data = format!(
            r#"{{"type":"{terminal}","response":{{"status":"x","usage":{{"input_tokens":3,"output_tokens":1}}}}}}"#
        );
        usage.on_event(&event(terminal, data.as_bytes()));
        assert!(usage.completed(), "{terminal}");
        assert_eq!(usage.usage(), Some(usage_(3, 1)));
    }
    // An error event ends nothing.
    let mut u = StreamUsage::new(Anthropic, Messages);
    u.on_event(&event(
        "error",
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    ));
    assert!(!u.completed());
    let mut u = StreamUsage::new(OpenAi, Responses);
    u.on_event(&event(
        "error",
        br#"{"type":"error","code":"server_error","message":"x"}"#,
    ));
    assert!(!u.completed());
    // A Gemini chunk whose prompt was blocked ends the stream.
    let mut u = StreamUsage::new(Gemini, GenerateContent);
    u.on_event(&event(
        "message",
        br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}}"#,
    ));
    assert!(u.completed());
    assert_eq!(u.usage(), Some(usage_(8, 0)));
}

fn usage_(input: u64, output: u64) -> Usage {
    usage(input, output, 0, 0, 0)
}

#[test]
fn cut_short_streams_keep_what_they_got() {
    // Anthropic cut after message_start: input known, output as far as reported.
    let bytes = ANTHROPIC_CUMULATIVE_STREAM.as_bytes();
    let cut = ANTHROPIC_CUMULATIVE_STREAM
        .find("event: message_delta")
        .unwrap();
    let (u, text, completed) = run(Anthropic, Messages, &[&bytes[..cut]]);
    assert_eq!(u, Some(usage(6227, 4, 5000, 1200, 0)));
    assert_eq!(text, "Checking the weather.");
    assert!(!completed);
    // OpenAI chat cut before the usage chunk: the text, no usage.
    let cut = OPENAI_CHAT_STREAM.find("\"choices\":[]").unwrap();
    let (u, text, completed) = run(
        OpenAi,
        ChatCompletions,
        &[&OPENAI_CHAT_STREAM.as_bytes()[..cut]],
    );
    assert_eq!(
        (u, text.as_str(), completed),
        (None, "Hello! \"usage\": {\né", false)
    );
}

#[test]
fn anthropic_cumulative_message_delta_never_double_counts() {
    // message_delta repeats input and cache figures: they replace, not add.
    let (u, ..) = run(
        Anthropic,
        Messages,
        &[ANTHROPIC_CUMULATIVE_STREAM.as_bytes()],
    );
    assert_eq!(u, Some(usage(6227, 89, 5000, 1200, 0)));
    // Several message_deltas (server tools iterating): each replaces the previous, and a
    // later, larger input figure is taken.
    let stream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":100,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"input_tokens\":100,\"cache_read_input_tokens\":10,\"output_tokens\":20}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":250,\"cache_read_input_tokens\":10,\"output_tokens\":45}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    assert_eq!(
        run(Anthropic, Messages, &[stream.as_bytes()]),
        (Some(usage(260, 45, 10, 0, 0)), String::new(), true)
    );
    // A message_delta leaving input at zero does not erase it; output is replaced.
    let stream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":100,\"cache_creation_input_tokens\":50,\"output_tokens\":1}}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":0,\"cache_creation_input_tokens\":0,\"output_tokens\":7}}\n\n",
    );
    assert_eq!(
        run(Anthropic, Messages, &[stream.as_bytes()]).0,
        Some(usage(150, 7, 0, 50, 0))
    );
}

#[test]
fn anthropic_input_only_in_message_delta() {
    let (u, text, completed) = run(Anthropic, Messages, &[ANTHROPIC_VENDOR_STREAM.as_bytes()]);
    assert_eq!(u, Some(usage(160, 30, 40, 0, 0)));
    assert_eq!((text.as_str(), completed), ("Vendor reply", true));
    // message_start without any input field at all.
    let stream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"output_tokens\":1}}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":33,\"output_tokens\":5}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    assert_eq!(
        run(Anthropic, Messages, &[stream.as_bytes()]).0,
        Some(usage_(33, 5))
    );
}

#[test]
fn unnamed_events_dispatch_on_their_type() {
    // A proxy that dropped the `event:` lines: the data's `type` says what each is.
    for (format, op, stream, want) in [
        (Anthropic, Messages, ANTHROPIC_STREAM, usage_(25, 15)),
        (OpenAi, Responses, RESPONSES_STREAM, usage(37, 11, 12, 0, 3)),
    ] {
        let stripped: String = stream
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("event:"))
            .collect();
        let (u, text, completed) = run(format, op, &[stripped.as_bytes()]);
        assert_eq!(u, Some(want), "{op:?}");
        assert!(completed, "{op:?}");
        assert!(!text.is_empty(), "{op:?}");
    }
    // An OpenAI-format provider's other operation follows a Responses stream by name.
    let (u, text, completed) = run(OpenAi, Other, &[RESPONSES_STREAM.as_bytes()]);
    assert_eq!(
        (u, text.as_str(), completed),
        (Some(usage(37, 11, 12, 0, 3)), "Hi there\n", true)
    );
}

#[test]
fn chat_usage_last_wins() {
    // Some compatible providers repeat a growing usage on several chunks.
    let stream = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"c\"}}],\"usage\":null}\n\n",
        "data: [DONE]\n\n",
    );
    assert_eq!(
        run(OpenAi, ChatCompletions, &[stream.as_bytes()]),
        (Some(usage_(5, 2)), "abc".to_owned(), true)
    );
}

#[test]
fn usage_only_chunk_is_recognised_exactly() {
    for s in streams() {
        let events = events(s.bytes.as_bytes());
        let flagged: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, (name, data))| StreamUsage::is_usage_only_chunk(&event(name, data)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(flagged, s.usage_only, "{}", s.name);
    }
    let yes: &[&[u8]] = &[
        br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        br#"{ "choices" : [ ] , "usage" : { } }"#,
        b"{\"usage\":\n{\"prompt_tokens\":1},\n\"choices\":\r\n[\t]}",
    ];
    for data in yes {
        assert!(
            StreamUsage::is_usage_only_chunk(&event("message", data)),
            "{}",
            String::from_utf8_lossy(data)
        );
    }
    let no: &[&[u8]] = &[
        br#"{"choices":[],"usage":null}"#,
        br#"{"choices":[]}"#,
        br#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}"#,
        br#"{"choices":[{"delta":{"content":"\"choices\":[], \"usage\":{"}}]}"#,
        br#"{"x":{"choices":[],"usage":{"prompt_tokens":1}},"choices":[{"delta":{}}]}"#,
        br#"{"choices":[],"usage":{"prompt_tokens":1}"#,
        br#"{"choices":"[]","usage":{}}"#,
        b"[DONE]",
        b"",
        b"\xff\"choices\":[],\"usage\":{}",
    ];
    for data in no {
        assert!(
            !StreamUsage::is_usage_only_chunk(&event("message", data)),
            "{}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn broken_streams_never_panic_and_keep_what_is_valid() {
    let garbage = concat!(
        "garbage line without colon\n",
        "data: {not json\n\n",
        "data: \u{0}\u{1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":\"lots\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":5}\n\n",
        "event: response.output_text.delta\ndata: {\"delta\":[1,2]}\n\n",
        "event: response.completed\ndata: {\"response\":{\"usage\":[]}}\n\n",
        "data: {\"choices\":\"x\",\"usage\":{\"prompt_tokens\":-1}}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":7}}],\"usage\":{\"completion_tokens\":1e400}}\n\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":{\"text\":\"x\"}},\"finishReason\":7}],\"usageMetadata\":[]}\n\n",
        "data: {\"response\":{},\"usage\":{\"prompt_tokens\":{}}}\n\n",
        "data: [1,2,3]\n\n",
        "data: \"string\"\n\n",
        "data: null\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}\n\n",
        "data: {\"truncated\": \"event",
    );
    let mut bytes = garbage.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n\ndata: \xff\xfe{\"usage\":{\"prompt_tokens\":9}}\n\n");
    for format in [OpenAi, Anthropic, Gemini, WorkersAi] {
        for op in OPERATIONS {
            let (u, text, _) = run(format, op, &[&bytes]);
            // Nothing invented.
            assert!(u.is_none_or(|u| u.input_tokens <= 9), "{format:?} {op:?}");
            if matches!(op, ChatCompletions | Completions | Embeddings) {
                assert_eq!(u, Some(usage_(2, 1)), "{format:?} {op:?}");
                assert_eq!(text, "ok");
            }
        }
    }
    // A truncated stream of a valid format keeps the usage it had.
    let cut = &GEMINI_STREAM.as_bytes()[..GEMINI_STREAM.len() - 40];
    let (u, text, completed) = run(Gemini, GenerateContent, &[cut]);
    assert_eq!(u, Some(usage(9, 104, 0, 0, 100)));
    assert_eq!(text, "The sky is blue\n");
    assert!(!completed);
}

#[test]
fn mutated_fixtures_never_panic() {
    // A deterministic fuzz: flip, drop and duplicate bytes of every fixture, feed each
    // mutant to every format.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let bodies: Vec<&[u8]> = streams()
        .iter()
        .map(|s| s.bytes.as_bytes())
        .chain(
            [
                OPENAI_CHAT_JSON,
                EMBEDDINGS_JSON,
                RESPONSES_JSON,
                ANTHROPIC_JSON,
                GEMINI_JSON,
                WORKERS_JSON,
            ]
            .map(str::as_bytes),
        )
        .collect();
    const JSONISH: &[u8] = b"{}[]\":,\\\n0-9e";
    for body in bodies {
        for _ in 0..60 {
            let mut m = body.to_vec();
            for _ in 0..=(next() % 4) {
                let at = (next() as usize) % m.len().max(1);
                match next() % 4 {
                    0 if !m.is_empty() => m[at] = next() as u8,
                    1 if !m.is_empty() => {
                        m.remove(at);
                    }
                    2 => m.insert(at.min(m.len()), JSONISH[(next() as usize) % JSONISH.len()]),
                    _ => m.truncate(at),
                }
            }
            for format in [OpenAi, Anthropic, Gemini, WorkersAi] {
                for op in OPERATIONS {
                    let _ = usage_from_json(format, op, &m);
                    let text = prompt_text(format, op, &m);
                    assert_eq!(prompt_size(format, op, &m).text_len, text.len());
                    let _ = run(format, op, &[&m]);
                }
            }
            let mut parser = SseParser::new();
            parser.feed(&m, |e| {
                let _ = StreamUsage::is_usage_only_chunk(&e);
            });
        }
    }
}

#[test]
fn output_text_is_bounded() {
    let mut usage = StreamUsage::new(OpenAi, ChatCompletions);
    let delta = format!(
        r#"{{"choices":[{{"delta":{{"content":"{}"}}}}],"usage":null}}"#,
        "é".repeat(5000)
    );
    for _ in 0..120 {
        usage.on_event(&event("message", delta.as_bytes()));
    }
    let text = usage.output_text();
    assert!(text.len() <= 1024 * 1024);
    assert!(text.len() > 1024 * 1024 - 4);
    assert!(text.chars().all(|c| c == 'é'));
    // Usage still arrives after the text bound.
    usage.on_event(&event(
        "message",
        br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1200000}}"#,
    ));
    usage.on_event(&event("message", b"[DONE]"));
    assert_eq!(usage.usage(), Some(usage_(1, 1_200_000)));
    assert!(usage.completed());
}

// ---------------------------------------------------------------------------------------
// Prompt text
// ---------------------------------------------------------------------------------------

#[test]
fn prompt_size_counts_the_text_and_reads_the_output_cap() {
    let size = |body: &[u8]| prompt_size(OpenAi, ChatCompletions, body);
    let chat = br#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}],"max_tokens":7}"#;
    assert_eq!(
        size(chat),
        PromptSize {
            text_len: "Be brief.\nHi".len(),
            max_output_tokens: Some(7),
        }
    );
    // max_tokens, else max_completion_tokens, else max_output_tokens.
    let cap = |body: &str| size(body.as_bytes()).max_output_tokens;
    assert_eq!(
        cap(r#"{"max_completion_tokens":9,"max_tokens":8}"#),
        Some(8)
    );
    assert_eq!(
        cap(r#"{"max_completion_tokens":9,"max_output_tokens":3}"#),
        Some(9)
    );
    assert_eq!(cap(r#"{"max_output_tokens":3}"#), Some(3));
    // Anything but a count is absent, and does not hide the others; the last of a
    // repeated member counts (as everywhere a JSON object is read).
    assert_eq!(
        cap(r#"{"max_tokens":"8","max_completion_tokens":9}"#),
        Some(9)
    );
    assert_eq!(cap(r#"{"max_tokens":-1}"#), None);
    assert_eq!(cap(r#"{"max_tokens":1.5}"#), None);
    assert_eq!(
        cap(r#"{"max_tokens":{"a":1},"max_output_tokens":[4]}"#),
        None
    );
    assert_eq!(cap(r#"{"max_tokens":1,"max_tokens":2}"#), Some(2));
    // Only at the top level.
    assert_eq!(
        cap(r#"{"messages":[{"max_tokens":5,"content":"x"}]}"#),
        None
    );
    // Not JSON (or not all of it): nothing.
    for body in [&b"not json"[..], br#"{"max_tokens":5"#, b"[5]", b""] {
        assert_eq!(size(body), PromptSize::default());
    }
}

#[test]
fn prompt_text_per_format() {
    let chat = br#"{"model":"gpt-4o","messages":[
        {"role":"system","content":"Be brief."},
        {"role":"user","content":[{"type":"text","text":"What is in this image?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"sunny"}
    ],"max_tokens":5,"stream":true}"#;
    assert_eq!(
        prompt_text(OpenAi, ChatCompletions, chat),
        "Be brief.\nWhat is in this image?\nsunny"
    );
    let completions = br#"{"model":"m","prompt":["Say this","is a test"]}"#;
    assert_eq!(
        prompt_text(OpenAi, Completions, completions),
        "Say this\nis a test"
    );
    let embeddings = br#"{"model":"text-embedding-3-small","input":["one two","three"]}"#;
    assert_eq!(
        prompt_text(OpenAi, Embeddings, embeddings),
        "one two\nthree"
    );
    assert_eq!(prompt_text(OpenAi, Embeddings, br#"{"input":[1,2,3]}"#), "");
    let responses = br#"{"model":"gpt-4.1","instructions":"Talk like a pirate.","input":[
        {"role":"user","content":"Hi"},
        {"type":"message","role":"user","content":[{"type":"input_text","text":"How are you?"},{"type":"input_image","image_url":"https://x/y.png"}]}
    ],"text":{"format":{"type":"text"}}}"#;
    assert_eq!(
        prompt_text(OpenAi, Responses, responses),
        "Talk like a pirate.\nHi\nHow are you?"
    );
    assert_eq!(
        prompt_text(OpenAi, Responses, br#"{"input":"Tell me a joke"}"#),
        "Tell me a joke"
    );
    let anthropic = br#"{"model":"claude-sonnet-4-5","max_tokens":1024,
        "system":[{"type":"text","text":"You are terse.","cache_control":{"type":"ephemeral"}}],
        "messages":[
          {"role":"user","content":"Hello"},
          {"role":"assistant","content":[{"type":"text","text":"Hi"},{"type":"tool_use","id":"t","name":"n","input":{"q":"x"}}]},
          {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"result"}]},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]}
        ]}"#;
    assert_eq!(
        prompt_text(Anthropic, Messages, anthropic),
        "You are terse.\nHello\nHi\nresult"
    );
    let gemini = br#"{"systemInstruction":{"parts":[{"text":"You are a cat."}]},
        "contents":[{"role":"user","parts":[{"text":"Hello"},{"inlineData":{"mimeType":"image/png","data":"AAAA"}}]},{"role":"model","parts":[{"text":"Meow"}]}],
        "generationConfig":{"temperature":0.5}}"#;
    assert_eq!(
        prompt_text(Gemini, GenerateContent, gemini),
        "You are a cat.\nHello\nMeow"
    );
    let embed =
        br#"{"model":"models/text-embedding-004","content":{"parts":[{"text":"embed me"}]}}"#;
    assert_eq!(prompt_text(Gemini, EmbedContent, embed), "embed me");
    let workers = br#"{"prompt":"Tell me a story","stream":true}"#;
    assert_eq!(prompt_text(WorkersAi, Run, workers), "Tell me a story");
    let workers =
        br#"{"messages":[{"role":"system","content":"sys"},{"role":"user","content":"hi"}]}"#;
    assert_eq!(prompt_text(WorkersAi, Run, workers), "sys\nhi");
    // Not JSON, or not an object: empty.
    for body in [
        &b""[..],
        b"{",
        b"not json",
        b"[\"a\"]",
        b"\"text\"",
        b"\xff",
    ] {
        for format in [OpenAi, Anthropic, Gemini, WorkersAi] {
            for op in OPERATIONS {
                assert_eq!(prompt_text(format, op, body), "", "{format:?} {op:?}");
            }
        }
    }
    // Truncated JSON is not half-read.
    assert_eq!(
        prompt_text(OpenAi, ChatCompletions, &chat[..chat.len() - 3]),
        ""
    );
}

// ---------------------------------------------------------------------------------------
// The mock provider's own outputs
// ---------------------------------------------------------------------------------------

mod mock {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use tower_ai_mock::{MockProvider, reply_words};

    use super::*;

    type HttpClient = Client<HttpConnector, Full<Bytes>>;

    /// POSTs `body` to `path`; returns the status and the body's frames, each as it came.
    async fn post(client: &HttpClient, mock: &MockProvider, path: &str, body: &str) -> Vec<Bytes> {
        let request = http::Request::post(format!("{}{path}", mock.url()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let mut body = response.into_body();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                frames.push(data);
            }
        }
        frames
    }

    fn concat(frames: &[Bytes]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.iter().copied()).collect()
    }

    /// Follows `frames` frame by frame, as the tee would; also checks every split.
    fn follow(format: WireFormat, op: Operation, frames: &[Bytes]) -> (Outcome, usize) {
        let chunks: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        let got = run(format, op, &chunks);
        let all = concat(frames);
        for i in (0..=all.len()).step_by(3) {
            assert_eq!(
                run(format, op, &[&all[..i], &all[i..]]),
                got,
                "split at {i}"
            );
        }
        let usage_only = events(&all)
            .iter()
            .filter(|(name, data)| StreamUsage::is_usage_only_chunk(&event(name, data)))
            .count();
        (got, usage_only)
    }

    fn words(s: &str) -> u64 {
        s.split_whitespace().count() as u64
    }

    #[tokio::test]
    async fn mock_provider_outputs() {
        let mock = MockProvider::start().await.unwrap();
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

        // OpenAI chat, plain.
        let chat = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"one two three"}]}],"max_tokens":5}"#;
        let body = concat(&post(&client, &mock, "/v1/chat/completions", chat).await);
        assert_eq!(
            usage_from_json(OpenAi, ChatCompletions, &body),
            Some(usage_(5, 5))
        );
        assert_eq!(
            words(&prompt_text(OpenAi, ChatCompletions, chat.as_bytes())),
            5
        );

        // OpenAI chat, streamed with include_usage.
        let stream = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello to me"}],"max_tokens":7,"stream":true,"stream_options":{"include_usage":true}}"#;
        let frames = post(&client, &mock, "/v1/chat/completions", stream).await;
        let ((u, text, completed), usage_only) = follow(OpenAi, ChatCompletions, &frames);
        assert_eq!(u, Some(usage_(4, 7)));
        assert_eq!(text, reply_words(7));
        assert!(completed);
        assert_eq!(usage_only, 1);
        assert_eq!(
            words(&prompt_text(OpenAi, ChatCompletions, stream.as_bytes())),
            4
        );

        // OpenAI chat, streamed without include_usage: no usage, the text to estimate from.
        let stream = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello"}],"stream":true}"#;
        let frames = post(&client, &mock, "/v1/chat/completions", stream).await;
        let ((u, text, completed), usage_only) = follow(OpenAi, ChatCompletions, &frames);
        assert_eq!(
            (u, text, completed, usage_only),
            (None, reply_words(16), true, 0)
        );

        // Responses API, plain and streamed (the streamed one cut by max_output_tokens).
        let responses = r#"{"model":"gpt-4.1","instructions":"a b","input":[{"role":"user","content":"c d e"}]}"#;
        let body = concat(&post(&client, &mock, "/v1/responses", responses).await);
        assert_eq!(
            usage_from_json(OpenAi, Responses, &body),
            Some(usage_(5, 16))
        );
        assert_eq!(
            words(&prompt_text(OpenAi, Responses, responses.as_bytes())),
            5
        );
        let stream =
            r#"{"model":"gpt-4.1","input":"Tell me a joke","max_output_tokens":6,"stream":true}"#;
        let frames = post(&client, &mock, "/v1/responses", stream).await;
        let ((u, text, completed), usage_only) = follow(OpenAi, Responses, &frames);
        assert_eq!(u, Some(usage_(4, 6)));
        assert_eq!(text, reply_words(6));
        assert!(completed, "response.incomplete is terminal");
        assert_eq!(usage_only, 0);
        let stream = r#"{"model":"gpt-4.1","input":"Tell me a joke","stream":true}"#;
        let frames = post(&client, &mock, "/v1/responses", stream).await;
        let ((u, text, completed), _) = follow(OpenAi, Responses, &frames);
        assert_eq!(
            (u, text, completed),
            (Some(usage_(4, 16)), reply_words(16), true)
        );

        // Embeddings.
        let embeddings =
            r#"{"model":"text-embedding-3-small","input":["one two","three four five"]}"#;
        let body = concat(&post(&client, &mock, "/v1/embeddings", embeddings).await);
        assert_eq!(
            usage_from_json(OpenAi, Embeddings, &body),
            Some(usage_(5, 0))
        );
        assert_eq!(
            words(&prompt_text(OpenAi, Embeddings, embeddings.as_bytes())),
            5
        );

        // Anthropic, plain and streamed.
        let messages = r#"{"model":"claude-x","max_tokens":3,"system":[{"type":"text","text":"be brief"}],"messages":[{"role":"user","content":"one two"},{"role":"user","content":[{"type":"text","text":"three"}]}]}"#;
        let body = concat(&post(&client, &mock, "/v1/messages", messages).await);
        assert_eq!(
            usage_from_json(Anthropic, Messages, &body),
            Some(usage_(5, 3))
        );
        assert_eq!(
            words(&prompt_text(Anthropic, Messages, messages.as_bytes())),
            5
        );
        let stream = r#"{"model":"claude-x","max_tokens":100,"messages":[{"role":"user","content":"Hello there"}],"stream":true}"#;
        let frames = post(&client, &mock, "/v1/messages", stream).await;
        let ((u, text, completed), usage_only) = follow(Anthropic, Messages, &frames);
        assert_eq!(u, Some(usage_(2, 16)));
        assert_eq!(text, reply_words(16));
        assert!(completed);
        assert_eq!(usage_only, 0);

        // A stream cut by the provider: no terminal event, the usage known so far.
        let request = http::Request::post(format!("{}/v1/messages", mock.url()))
            .header("x-mock-reset-after", "5")
            .body(Full::new(Bytes::copy_from_slice(stream.as_bytes())))
            .unwrap();
        let mut body = client.request(request).await.unwrap().into_body();
        let mut usage = StreamUsage::new(Anthropic, Messages);
        let mut parser = SseParser::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                parser.feed(&data, |e| usage.on_event(&e));
            }
        }
        assert!(!usage.completed());
        assert_eq!(usage.usage(), Some(usage_(2, 1)));
        assert_eq!(usage.output_text(), reply_words(2));

        mock.shutdown().await;
    }
}
