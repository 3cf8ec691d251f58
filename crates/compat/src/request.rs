//! Request translation: OpenAI chat completions to Anthropic messages and to Gemini
//! `generateContent`, Anthropic messages to OpenAI chat completions (the pivot for an
//! Anthropic client served by any provider), OpenAI embeddings to Gemini.

use serde_json::{Map, Value, json};

use crate::error::TranslateError;
use crate::{anthropic as a, gemini as g, openai as o};

/// How translation treats a parameter the target has no equivalent for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Drop such parameters instead of refusing the request with a 400.
    pub drop_unsupported: bool,
}

/// The `max_tokens` sent to Anthropic when an OpenAI request sets none (Anthropic
/// requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Request fields that change nothing in the answer (ids, storage and billing hints):
/// dropped silently when the target has no equivalent.
const HARMLESS: &[&str] = &[
    "store",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "user",
];

impl Options {
    /// `Ok` when dropping is allowed, else the error for `param`.
    fn unsupported(&self, param: impl AsRef<str>, target: &str) -> Result<(), TranslateError> {
        if self.drop_unsupported {
            Ok(())
        } else {
            Err(TranslateError::unsupported(param.as_ref(), target))
        }
    }

    /// Checks the fields no translation reads: null and `false` count as absent,
    /// harmless ones are dropped, any other is unsupported.
    fn rest(&self, other: &Map<String, Value>, target: &str) -> Result<(), TranslateError> {
        for (k, v) in other {
            if v.is_null() || *v == Value::Bool(false) || HARMLESS.contains(&k.as_str()) {
                continue;
            }
            self.unsupported(k, target)?;
        }
        Ok(())
    }
}

/// A `data:{mime};base64,{data}` URL split, or `None` for any other URL.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    Some((mime, data))
}

/// A media type guessed from a URL's extension, for Gemini's `fileData`.
fn mime_from_url(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    if path.ends_with(".png") {
        "image/png"
    } else if path.ends_with(".gif") {
        "image/gif"
    } else if path.ends_with(".webp") {
        "image/webp"
    } else if path.ends_with(".pdf") {
        "application/pdf"
    } else {
        "image/jpeg"
    }
}

fn parse_arguments(args: &str, at: impl FnOnce() -> String) -> Result<Value, TranslateError> {
    if args.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(args).map_err(|_| TranslateError::invalid(at(), "is not valid JSON"))
}

fn max_tokens(req: &o::ChatRequest) -> Option<u64> {
    req.max_completion_tokens.or(req.max_tokens)
}

/// The checks every OpenAI-to-X translation shares: `n`, `tools[].type`, content parts.
fn check_tools(tools: &[o::Tool], target: &str) -> Result<(), TranslateError> {
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" || t.function.is_none() {
            return Err(TranslateError::unsupported(
                format!("tools[{i}].type={}", t.kind),
                target,
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// OpenAI -> Anthropic
// ---------------------------------------------------------------------------------------

/// Translates an OpenAI chat completions request into an Anthropic messages request for
/// `model`.
///
/// System and developer messages become `system`; tool results become `tool_result`
/// blocks of a user turn; consecutive turns of one role are merged (Anthropic wants them
/// alternating). `max_tokens` defaults to [`DEFAULT_MAX_TOKENS`]. `n > 1`, penalties,
/// `seed`, `logit_bias`, `logprobs` and JSON `response_format` have no Anthropic
/// equivalent.
pub fn chat_to_anthropic(
    req: o::ChatRequest,
    model: &str,
    opts: &Options,
) -> Result<a::MessagesRequest, TranslateError> {
    const T: &str = "anthropic";
    if req.n.is_some_and(|n| n > 1) {
        opts.unsupported("n", T)?;
    }
    for (name, set) in [
        ("presence_penalty", req.presence_penalty.is_some()),
        ("frequency_penalty", req.frequency_penalty.is_some()),
        ("seed", req.seed.is_some()),
    ] {
        if set {
            opts.unsupported(name, T)?;
        }
    }
    match &req.response_format {
        None | Some(o::ResponseFormat::Text) => {}
        Some(_) => opts.unsupported("response_format", T)?,
    }
    opts.rest(&req.other, T)?;

    let max = max_tokens(&req);
    let mut system = String::new();
    let mut messages: Vec<a::Message> = Vec::with_capacity(req.messages.len());
    let push = |messages: &mut Vec<a::Message>, role: &str, blocks: Vec<a::Block>| {
        if blocks.is_empty() {
            return;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => {
                if let a::Content::Blocks(b) = &mut last.content {
                    b.extend(blocks);
                }
            }
            _ => messages.push(a::Message {
                role: role.to_owned(),
                content: a::Content::Blocks(blocks),
            }),
        }
    };
    for (i, m) in req.messages.into_iter().enumerate() {
        match m.role.as_str() {
            "system" | "developer" => {
                if let Some(c) = &m.content {
                    if !system.is_empty() {
                        system.push('\n');
                    }
                    system.push_str(&c.text());
                }
            }
            "user" => {
                let blocks = content_to_blocks(m.content, i)?;
                push(&mut messages, "user", blocks);
            }
            "assistant" => {
                let mut blocks = Vec::new();
                if let Some(c) = m.content {
                    let text = c.text();
                    if !text.is_empty() {
                        blocks.push(a::Block::Text { text });
                    }
                }
                for (j, call) in m.tool_calls.into_iter().flatten().enumerate() {
                    let input = parse_arguments(&call.function.arguments, || {
                        format!("messages[{i}].tool_calls[{j}].function.arguments")
                    })?;
                    blocks.push(a::Block::ToolUse {
                        id: call.id,
                        name: call.function.name,
                        input,
                    });
                }
                push(&mut messages, "assistant", blocks);
            }
            "tool" => {
                let id = m.tool_call_id.ok_or_else(|| {
                    TranslateError::invalid(format!("messages[{i}].tool_call_id"), "is missing")
                })?;
                let content = m.content.map(|c| a::ToolResultContent::Text(c.text()));
                push(
                    &mut messages,
                    "user",
                    vec![a::Block::ToolResult {
                        tool_use_id: id,
                        content,
                        is_error: None,
                    }],
                );
            }
            other => {
                return Err(TranslateError::invalid(
                    format!("messages[{i}].role"),
                    format!("`{other}` is not a role"),
                ));
            }
        }
    }

    let tools = match req.tools {
        Some(tools) => {
            check_tools(&tools, T)?;
            Some(
                tools
                    .into_iter()
                    .filter_map(|t| t.function)
                    .map(|f| a::Tool {
                        name: f.name,
                        description: f.description,
                        input_schema: Some(
                            f.parameters
                                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                        ),
                        kind: None,
                    })
                    .collect(),
            )
        }
        None => None,
    };
    let mut tool_choice = match req.tool_choice {
        None => None,
        Some(o::ToolChoice::Mode(m)) => Some(match m.as_str() {
            "none" => "none",
            "auto" => "auto",
            "required" => "any",
            other => {
                return Err(TranslateError::invalid(
                    "tool_choice",
                    format!("`{other}` is not a tool choice"),
                ));
            }
        })
        .map(|kind| a::ToolChoice {
            kind: kind.to_owned(),
            name: None,
            disable_parallel_tool_use: None,
        }),
        Some(o::ToolChoice::Named(n)) => Some(a::ToolChoice {
            kind: "tool".to_owned(),
            name: Some(n.function.name),
            disable_parallel_tool_use: None,
        }),
    };
    if req.parallel_tool_calls == Some(false) && tools.is_some() {
        let choice = tool_choice.get_or_insert_with(|| a::ToolChoice {
            kind: "auto".to_owned(),
            name: None,
            disable_parallel_tool_use: None,
        });
        if choice.kind != "none" {
            choice.disable_parallel_tool_use = Some(true);
        }
    }

    Ok(a::MessagesRequest {
        model: model.to_owned(),
        messages,
        system: (!system.is_empty()).then_some(a::System::Text(system)),
        max_tokens: Some(max.unwrap_or(DEFAULT_MAX_TOKENS)),
        stop_sequences: req.stop.map(o::Stop::into_vec),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stream: req.stream.filter(|s| *s),
        tools,
        tool_choice,
        metadata: req.user.map(|u| a::Metadata { user_id: Some(u) }),
        other: Map::new(),
    })
}

fn content_to_blocks(
    content: Option<o::Content>,
    i: usize,
) -> Result<Vec<a::Block>, TranslateError> {
    Ok(match content {
        None => Vec::new(),
        Some(o::Content::Text(text)) => vec![a::Block::Text { text }],
        Some(o::Content::Parts(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, p) in parts.into_iter().enumerate() {
                blocks.push(match p {
                    o::Part::Text { text } => a::Block::Text { text },
                    o::Part::ImageUrl { image_url } => a::Block::Image {
                        source: match parse_data_url(&image_url.url) {
                            Some((mime, data)) => a::ImageSource::Base64 {
                                media_type: mime.to_owned(),
                                data: data.to_owned(),
                            },
                            None => a::ImageSource::Url { url: image_url.url },
                        },
                    },
                    o::Part::Unsupported => {
                        return Err(TranslateError::unsupported(
                            format!("messages[{i}].content[{j}].type"),
                            "this endpoint",
                        ));
                    }
                });
            }
            blocks
        }
    })
}

// ---------------------------------------------------------------------------------------
// OpenAI -> Gemini
// ---------------------------------------------------------------------------------------

/// Translates an OpenAI chat completions request into a Gemini `generateContent`
/// request (the model and streaming go in the path).
///
/// System and developer messages become `systemInstruction`; assistant turns are role
/// `model`; tool results are `functionResponse` parts named after the call they answer
/// (found by `tool_call_id` among the assistant's earlier calls). Images by `data:` URL
/// are `inlineData`, by other URL `fileData`. `logit_bias`, `logprobs` and
/// `parallel_tool_calls: false` have no Gemini equivalent.
pub fn chat_to_gemini(
    req: o::ChatRequest,
    opts: &Options,
) -> Result<g::GenerateContentRequest, TranslateError> {
    const T: &str = "google-ai-studio";
    if req.parallel_tool_calls == Some(false) {
        opts.unsupported("parallel_tool_calls", T)?;
    }
    opts.rest(&req.other, T)?;

    let max = max_tokens(&req);
    let mut system: Vec<g::Part> = Vec::new();
    let mut contents: Vec<g::Content> = Vec::with_capacity(req.messages.len());
    // Tool call id -> function name, for the results.
    let mut call_names: Vec<(String, String)> = Vec::new();
    let push = |contents: &mut Vec<g::Content>, role: &str, parts: Vec<g::Part>| {
        if parts.is_empty() {
            return;
        }
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(g::Content {
                role: Some(role.to_owned()),
                parts,
            }),
        }
    };
    for (i, m) in req.messages.into_iter().enumerate() {
        match m.role.as_str() {
            "system" | "developer" => {
                if let Some(c) = &m.content {
                    system.push(text_part(c.text()));
                }
            }
            "user" => {
                let parts = content_to_parts(m.content, i)?;
                push(&mut contents, "user", parts);
            }
            "assistant" => {
                let mut parts = Vec::new();
                if let Some(c) = m.content {
                    let text = c.text();
                    if !text.is_empty() {
                        parts.push(text_part(text));
                    }
                }
                for (j, call) in m.tool_calls.into_iter().flatten().enumerate() {
                    let args = parse_arguments(&call.function.arguments, || {
                        format!("messages[{i}].tool_calls[{j}].function.arguments")
                    })?;
                    call_names.push((call.id.clone(), call.function.name.clone()));
                    parts.push(g::Part {
                        function_call: Some(g::FunctionCall {
                            id: None,
                            name: call.function.name,
                            args,
                        }),
                        ..g::Part::default()
                    });
                }
                push(&mut contents, "model", parts);
            }
            "tool" => {
                let id = m.tool_call_id.unwrap_or_default();
                let name = call_names
                    .iter()
                    .find(|(c, _)| *c == id)
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| {
                        TranslateError::invalid(
                            format!("messages[{i}].tool_call_id"),
                            "answers no tool call of an earlier assistant message",
                        )
                    })?;
                let text = m.content.map(|c| c.text()).unwrap_or_default();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({ "content": text }),
                };
                push(
                    &mut contents,
                    "user",
                    vec![g::Part {
                        function_response: Some(g::FunctionResponse {
                            id: None,
                            name,
                            response,
                        }),
                        ..g::Part::default()
                    }],
                );
            }
            other => {
                return Err(TranslateError::invalid(
                    format!("messages[{i}].role"),
                    format!("`{other}` is not a role"),
                ));
            }
        }
    }

    let mut config = g::GenerationConfig {
        stop_sequences: req.stop.map(o::Stop::into_vec),
        max_output_tokens: max,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        candidate_count: req.n.filter(|n| *n != 1),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        ..g::GenerationConfig::default()
    };
    match req.response_format {
        None | Some(o::ResponseFormat::Text) => {}
        Some(o::ResponseFormat::JsonObject) => {
            config.response_mime_type = Some("application/json".to_owned());
        }
        Some(o::ResponseFormat::JsonSchema { json_schema }) => {
            config.response_mime_type = Some("application/json".to_owned());
            config.response_json_schema = json_schema.schema;
        }
    }

    let tools = match req.tools {
        Some(tools) => {
            check_tools(&tools, T)?;
            Some(vec![g::Tool {
                function_declarations: tools
                    .into_iter()
                    .filter_map(|t| t.function)
                    .map(|f| g::FunctionDeclaration {
                        name: f.name,
                        description: f.description,
                        parameters_json_schema: f.parameters,
                    })
                    .collect(),
            }])
        }
        None => None,
    };
    let tool_config = match req.tool_choice {
        None => None,
        Some(o::ToolChoice::Mode(m)) => Some(match m.as_str() {
            "none" => ("NONE", None),
            "auto" => ("AUTO", None),
            "required" => ("ANY", None),
            other => {
                return Err(TranslateError::invalid(
                    "tool_choice",
                    format!("`{other}` is not a tool choice"),
                ));
            }
        }),
        Some(o::ToolChoice::Named(n)) => Some(("ANY", Some(vec![n.function.name]))),
    }
    .map(|(mode, names)| g::ToolConfig {
        function_calling_config: g::FunctionCallingConfig {
            mode: mode.to_owned(),
            allowed_function_names: names,
        },
    });

    Ok(g::GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(g::Content {
            role: None,
            parts: system,
        }),
        tools,
        tool_config,
        generation_config: (config != g::GenerationConfig::default()).then_some(config),
    })
}

fn text_part(text: String) -> g::Part {
    g::Part {
        text: Some(text),
        ..g::Part::default()
    }
}

fn content_to_parts(content: Option<o::Content>, i: usize) -> Result<Vec<g::Part>, TranslateError> {
    Ok(match content {
        None => Vec::new(),
        Some(o::Content::Text(text)) => vec![text_part(text)],
        Some(o::Content::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.into_iter().enumerate() {
                out.push(match p {
                    o::Part::Text { text } => text_part(text),
                    o::Part::ImageUrl { image_url } => match parse_data_url(&image_url.url) {
                        Some((mime, data)) => g::Part {
                            inline_data: Some(g::Blob {
                                mime_type: mime.to_owned(),
                                data: data.to_owned(),
                            }),
                            ..g::Part::default()
                        },
                        None => g::Part {
                            file_data: Some(g::FileData {
                                mime_type: Some(mime_from_url(&image_url.url).to_owned()),
                                file_uri: image_url.url,
                            }),
                            ..g::Part::default()
                        },
                    },
                    o::Part::Unsupported => {
                        return Err(TranslateError::unsupported(
                            format!("messages[{i}].content[{j}].type"),
                            "this endpoint",
                        ));
                    }
                });
            }
            out
        }
    })
}

/// Translates OpenAI embeddings into a Gemini `batchEmbedContents` request for `model`.
pub fn embeddings_to_gemini(
    req: o::EmbeddingsRequest,
    model: &str,
    opts: &Options,
) -> Result<g::BatchEmbedRequest, TranslateError> {
    const T: &str = "google-ai-studio";
    if req.encoding_format.as_deref().is_some_and(|f| f != "float") {
        opts.unsupported("encoding_format", T)?;
    }
    opts.rest(&req.other, T)?;
    let inputs: Vec<String> = match req.input {
        Value::String(s) => vec![s],
        Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(TranslateError::unsupported("input (token arrays)", T)),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(TranslateError::invalid(
                "input",
                "must be a string or a non-empty array of strings",
            ));
        }
    };
    let name = format!("models/{model}");
    Ok(g::BatchEmbedRequest {
        requests: inputs
            .into_iter()
            .map(|text| g::EmbedContentRequest {
                model: Some(name.clone()),
                content: g::Content {
                    role: None,
                    parts: vec![text_part(text)],
                },
                output_dimensionality: req.dimensions,
            })
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------
// Anthropic -> OpenAI (the pivot)
// ---------------------------------------------------------------------------------------

/// Translates an Anthropic messages request into an OpenAI chat completions request for
/// `model`: what an Anthropic client sends, for a provider that is not Anthropic.
///
/// `system` becomes a system message; `tool_result` blocks become `tool` messages (put
/// before the rest of their user turn, as OpenAI wants results right after the calls);
/// `tool_use` blocks become `tool_calls`; earlier thinking blocks are left out (they
/// mean something to Anthropic only). `top_k` is carried for Gemini (the OpenAI step
/// refuses it). A stream asks for `include_usage`, so the usage comes back. Extended
/// thinking and server tools have no equivalent.
pub fn anthropic_to_chat(
    req: a::MessagesRequest,
    model: &str,
    opts: &Options,
) -> Result<o::ChatRequest, TranslateError> {
    const T: &str = "a provider that is not anthropic";
    for (k, v) in &req.other {
        let disabled = k == "thinking" && v.get("type").and_then(Value::as_str) == Some("disabled");
        if v.is_null() || disabled || HARMLESS.contains(&k.as_str()) {
            continue;
        }
        opts.unsupported(k, T)?;
    }
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    match req.system {
        Some(a::System::Text(t)) => messages.push(text_message("system", t)),
        Some(a::System::Blocks(blocks)) => {
            let text = blocks_text(&blocks);
            messages.push(text_message("system", text));
        }
        None => {}
    }
    for (i, m) in req.messages.into_iter().enumerate() {
        let blocks = match m.content {
            a::Content::Text(t) => {
                messages.push(text_message(&m.role, t));
                continue;
            }
            a::Content::Blocks(b) => b,
        };
        let mut parts: Vec<o::Part> = Vec::new();
        let mut calls: Vec<o::ToolCall> = Vec::new();
        for (j, b) in blocks.into_iter().enumerate() {
            match b {
                a::Block::Text { text } => parts.push(o::Part::Text { text }),
                a::Block::Image { source } => parts.push(o::Part::ImageUrl {
                    image_url: o::ImageUrl {
                        url: match source {
                            a::ImageSource::Base64 { media_type, data } => {
                                format!("data:{media_type};base64,{data}")
                            }
                            a::ImageSource::Url { url } => url,
                        },
                        detail: None,
                    },
                }),
                a::Block::ToolUse { id, name, input } => calls.push(o::ToolCall {
                    id,
                    kind: "function".to_owned(),
                    function: o::FunctionCall {
                        name,
                        arguments: input.to_string(),
                    },
                }),
                a::Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => {
                    let mut text = match content {
                        None => String::new(),
                        Some(a::ToolResultContent::Text(t)) => t,
                        Some(a::ToolResultContent::Blocks(b)) => blocks_text(&b),
                    };
                    if is_error == Some(true) {
                        text.insert_str(0, "Error: ");
                    }
                    messages.push(o::Message {
                        role: "tool".to_owned(),
                        content: Some(o::Content::Text(text)),
                        tool_call_id: Some(tool_use_id),
                        ..o::Message::default()
                    });
                }
                a::Block::Thinking { .. } | a::Block::RedactedThinking { .. } => {}
                a::Block::Unsupported => {
                    opts.unsupported(format!("messages[{i}].content[{j}].type"), T)?;
                }
            }
        }
        if parts.is_empty() && calls.is_empty() {
            continue;
        }
        let content = match parts.len() {
            0 => None,
            // One text part: plain text, which every OpenAI-compatible server reads.
            1 if matches!(parts[0], o::Part::Text { .. }) => match parts.pop() {
                Some(o::Part::Text { text }) => Some(o::Content::Text(text)),
                _ => None,
            },
            _ => Some(o::Content::Parts(parts)),
        };
        messages.push(o::Message {
            role: m.role,
            content,
            tool_calls: (!calls.is_empty()).then_some(calls),
            ..o::Message::default()
        });
    }

    let tools = match req.tools {
        Some(tools) => {
            let mut out = Vec::with_capacity(tools.len());
            for (i, t) in tools.into_iter().enumerate() {
                if t.kind.as_deref().is_some_and(|k| k != "custom") {
                    opts.unsupported(format!("tools[{i}].type"), T)?;
                    continue;
                }
                out.push(o::Tool {
                    kind: "function".to_owned(),
                    function: Some(o::FunctionDef {
                        name: t.name,
                        description: t.description,
                        parameters: t.input_schema,
                        strict: None,
                    }),
                });
            }
            Some(out)
        }
        None => None,
    };
    let mut parallel = None;
    let tool_choice = match req.tool_choice {
        None => None,
        Some(c) => {
            if c.disable_parallel_tool_use == Some(true) {
                parallel = Some(false);
            }
            Some(match c.kind.as_str() {
                "auto" => o::ToolChoice::Mode("auto".to_owned()),
                "any" => o::ToolChoice::Mode("required".to_owned()),
                "none" => o::ToolChoice::Mode("none".to_owned()),
                "tool" => o::ToolChoice::Named(o::NamedToolChoice {
                    kind: "function".to_owned(),
                    function: o::NamedFunction {
                        name: c.name.unwrap_or_default(),
                    },
                }),
                other => {
                    return Err(TranslateError::invalid(
                        "tool_choice.type",
                        format!("`{other}` is not a tool choice"),
                    ));
                }
            })
        }
    };
    let stream = req.stream == Some(true);
    Ok(o::ChatRequest {
        model: model.to_owned(),
        messages,
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stop: req.stop_sequences.map(o::Stop::Many),
        stream: stream.then_some(true),
        stream_options: stream.then_some(o::StreamOptions {
            include_usage: true,
        }),
        tools,
        tool_choice,
        parallel_tool_calls: parallel,
        user: req.metadata.and_then(|m| m.user_id),
        ..o::ChatRequest::default()
    })
}

fn text_message(role: &str, text: String) -> o::Message {
    o::Message {
        role: role.to_owned(),
        content: Some(o::Content::Text(text)),
        ..o::Message::default()
    }
}

fn blocks_text(blocks: &[a::Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        if let a::Block::Text { text } = b {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(text);
        }
    }
    out
}

/// Checks an OpenAI-format request built by [`anthropic_to_chat`] against what OpenAI
/// itself takes: `top_k` is not among it.
pub fn check_for_openai(req: &mut o::ChatRequest, opts: &Options) -> Result<(), TranslateError> {
    if req.top_k.is_some() {
        opts.unsupported("top_k", "an OpenAI-format provider")?;
        req.top_k = None;
    }
    Ok(())
}
