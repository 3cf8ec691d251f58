//! OpenAI chat completions and embeddings: the wire types the translations read and write.
//!
//! Fields the gateway does not translate are kept in `other` (requests) so that a
//! translation can name them; optional fields are left out when `None`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /chat/completions` request.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ChatRequest {
    /// The model; on `/compat/...` it is `provider/model`.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Legacy cap on output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Cap on output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling: not OpenAI's, carried from an Anthropic request towards Gemini.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Stream the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Tool definitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Which tool to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tools may be called in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// JSON mode / structured outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Number of choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Presence penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// An end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, untranslated.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `stop`: one string or several.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// One message of the conversation.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text or parts; `None` for an assistant turn with only tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// The assistant's tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// For `tool` messages: the call answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Message content: a string or parts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<Part>),
}

impl Content {
    /// The text of the content, parts joined (images left out).
    pub fn text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Parts(parts) => {
                let mut out = String::new();
                for p in parts {
                    if let Part::Text { text } = p {
                        out.push_str(text);
                    }
                }
                out
            }
        }
    }
}

/// One content part.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, by URL or `data:` URL.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
    /// Any other part type (audio, files): not translated.
    #[serde(other)]
    Unsupported,
}

/// `image_url`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ImageUrl {
    /// An `https:` URL or a `data:{mime};base64,{data}` URL.
    pub url: String,
    /// `low`, `high` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A tool call made by the assistant.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ToolCall {
    /// The call's id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function called.
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

/// The function of a tool call.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments, a JSON object as a string.
    pub arguments: String,
}

/// A tool definition.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Tool {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDef>,
}

/// A function a tool offers.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FunctionDef {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its parameters, a JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: a mode or a named function.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(String),
    /// `{"type":"function","function":{"name":..}}`.
    Named(NamedToolChoice),
}

/// A named tool choice.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NamedToolChoice {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: NamedFunction,
}

/// The function a named tool choice names.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NamedFunction {
    /// Its name.
    pub name: String,
}

/// `response_format`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Plain text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema {
        /// The schema.
        json_schema: JsonSchema,
    },
}

/// A named JSON schema.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JsonSchema {
    /// Its name.
    pub name: String,
    /// What it describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Strict adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A chat completion (non-streamed answer).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ChatCompletion {
    /// The id.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The choices.
    pub choices: Vec<Choice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
}

/// One choice of a completion.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Choice {
    /// Its index.
    pub index: u32,
    /// The answer.
    pub message: ResponseMessage,
    /// Why it stopped.
    pub finish_reason: Option<String>,
    /// Always null here.
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// The assistant's answer.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ResponseMessage {
    /// `assistant`.
    pub role: String,
    /// The text, or null.
    pub content: Option<String>,
    /// The tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A refusal, or null.
    #[serde(default)]
    pub refusal: Option<String>,
}

/// `usage` of a completion.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ChatUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
    /// Cached input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Reasoning output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

/// `prompt_tokens_details`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct PromptTokensDetails {
    /// Tokens read from the prompt cache.
    #[serde(default)]
    pub cached_tokens: u64,
}

/// `completion_tokens_details`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CompletionTokensDetails {
    /// Reasoning tokens.
    #[serde(default)]
    pub reasoning_tokens: u64,
}

/// One `chat.completion.chunk` of a stream.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Chunk {
    /// The id, the same on every chunk.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model.
    pub model: String,
    /// The deltas.
    pub choices: Vec<ChunkChoice>,
    /// The usage, on the last chunk when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
}

/// A delta of one choice.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ChunkChoice {
    /// The choice's index.
    pub index: u32,
    /// What is new.
    pub delta: Delta,
    /// Why it stopped, on the last delta.
    pub finish_reason: Option<String>,
}

/// What a chunk adds.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Delta {
    /// `assistant`, on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// More text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool call pieces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a tool call.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ToolCallDelta {
    /// Which call.
    pub index: u32,
    /// The call's id, on its first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, on its first piece.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name and argument pieces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
}

/// Pieces of a function call.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct FunctionDelta {
    /// The name, on the first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More of the arguments string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// `POST /embeddings` request.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EmbeddingsRequest {
    /// The model (`provider/model` on `/compat`).
    pub model: String,
    /// A string or a list of strings.
    pub input: Value,
    /// Output dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u64>,
    /// `float` or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// An end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `POST /embeddings` answer.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EmbeddingsResponse {
    /// `list`.
    pub object: String,
    /// One embedding per input.
    pub data: Vec<Embedding>,
    /// The model.
    pub model: String,
    /// Tokens read.
    pub usage: EmbeddingsUsage,
}

/// One embedding.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Embedding {
    /// `embedding`.
    pub object: String,
    /// Which input.
    pub index: u32,
    /// The vector.
    pub embedding: Vec<f64>,
}

/// `usage` of embeddings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct EmbeddingsUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// The same.
    pub total_tokens: u64,
}

/// OpenAI's error body: `{"error":{"message","type","param","code"}}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The `error` object.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ErrorDetail {
    /// What went wrong.
    pub message: String,
    /// The kind (`invalid_request_error`, ...).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The parameter at fault.
    #[serde(default)]
    pub param: Option<String>,
    /// A code.
    #[serde(default)]
    pub code: Option<Value>,
}
