//! Anthropic messages: the wire types the translations read and write.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/messages` request.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct MessagesRequest {
    /// The model; on `/compat/v1/messages` it is `provider/model`.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    /// Cap on output tokens (required by Anthropic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    /// Stream the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Tool definitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Which tool to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// `{"user_id": ..}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Every other field, untranslated.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `system`: a string or text blocks.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum System {
    /// Plain text.
    Text(String),
    /// Text blocks.
    Blocks(Vec<Block>),
}

/// `metadata`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Metadata {
    /// An end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// One message.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    /// Text or blocks.
    pub content: Content,
}

/// Message content: a string or blocks.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content blocks.
    Blocks(Vec<Block>),
}

/// A content block, in requests and answers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    Image {
        /// Where it is.
        source: ImageSource,
    },
    /// A tool call by the assistant.
    ToolUse {
        /// The call's id.
        id: String,
        /// The tool.
        name: String,
        /// The arguments.
        input: Value,
    },
    /// The result of a tool call.
    ToolResult {
        /// The call answered.
        tool_use_id: String,
        /// The result: text or blocks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent>,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// Extended thinking.
    Thinking {
        /// The thoughts.
        thinking: String,
        /// Their signature.
        #[serde(default)]
        signature: String,
    },
    /// Redacted thinking.
    RedactedThinking {
        /// Opaque data.
        data: String,
    },
    /// Any other block (documents, server tools): not translated.
    #[serde(other)]
    Unsupported,
}

/// A tool result's content.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ToolResultContent {
    /// Text.
    Text(String),
    /// Blocks.
    Blocks(Vec<Block>),
}

/// An image's source.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// Inline data.
    Base64 {
        /// `image/png`, ...
        media_type: String,
        /// Base64 data.
        data: String,
    },
    /// A URL.
    Url {
        /// The URL.
        url: String,
    },
}

/// A tool definition.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its input, a JSON schema (absent for Anthropic's server tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// A server tool's type (`web_search_20250305`, ...): not translated.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `tool_choice`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ToolChoice {
    /// `auto`, `any`, `tool` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tool, for `tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One tool call at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// A message (non-streamed answer).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MessageResponse {
    /// The id.
    pub id: String,
    /// `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `assistant`.
    pub role: String,
    /// The model.
    pub model: String,
    /// The answer's blocks.
    pub content: Vec<Block>,
    /// Why it stopped.
    pub stop_reason: Option<String>,
    /// The stop sequence that matched.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Token usage.
    pub usage: MessageUsage,
}

/// `usage`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct MessageUsage {
    /// Uncached input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input written to the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input read from the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

/// One event of a messages stream.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The message begins (empty content).
    MessageStart {
        /// The message so far.
        message: MessageResponse,
    },
    /// A block begins.
    ContentBlockStart {
        /// Its index.
        index: u32,
        /// The block, empty.
        content_block: Block,
    },
    /// More of a block.
    ContentBlockDelta {
        /// Its index.
        index: u32,
        /// What is new.
        delta: BlockDelta,
    },
    /// A block ends.
    ContentBlockStop {
        /// Its index.
        index: u32,
    },
    /// The message's stop reason and usage.
    MessageDelta {
        /// Stop reason and sequence.
        delta: MessageDeltaBody,
        /// Usage so far.
        #[serde(default)]
        usage: MessageUsage,
    },
    /// The end.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// An error mid-stream.
    Error {
        /// The error.
        error: ErrorDetail,
    },
}

/// What a `content_block_delta` adds.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// More text.
    TextDelta {
        /// The text.
        text: String,
    },
    /// More of a tool call's input JSON.
    InputJsonDelta {
        /// The JSON piece.
        partial_json: String,
    },
    /// More thinking.
    ThinkingDelta {
        /// The thoughts.
        thinking: String,
    },
    /// The thinking's signature.
    SignatureDelta {
        /// The signature.
        signature: String,
    },
    /// Anything else.
    #[serde(other)]
    Other,
}

/// `message_delta.delta`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct MessageDeltaBody {
    /// Why it stopped.
    pub stop_reason: Option<String>,
    /// The stop sequence that matched.
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

/// Anthropic's error body: `{"type":"error","error":{"type","message"}}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ErrorBody {
    /// `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error.
    pub error: ErrorDetail,
}

/// The `error` object.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `rate_limit_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub message: String,
}
