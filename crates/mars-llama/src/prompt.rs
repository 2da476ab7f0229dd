//! The conversation as the model's chat template sees it, and the template's default system
//! prompt.
//!
//! llama.cpp applies a GGUF's chat template with its built-in template engine, which recognizes
//! the template's format (ChatML for SmolLM2) but not the Jinja logic around it. SmolLM2's
//! template adds a default system prompt when the conversation has none; llama.cpp drops it. So
//! the engine reads that default out of the template and passes it explicitly.

use mars::ChatRequest;

/// The messages to render, as (role, content) pairs, system prompt first.
///
/// The request's own system prompt wins; without one, the template's default (if any) is used.
pub(crate) fn chat_messages(
    request: &ChatRequest,
    default_system: Option<&str>,
) -> Vec<(&'static str, String)> {
    let system = request.system.as_deref().or(default_system);
    system
        .map(|s| ("system", s.to_owned()))
        .into_iter()
        .chain(
            request
                .messages
                .iter()
                .map(|m| (m.role.as_str(), m.content.clone())),
        )
        .collect()
}

/// The default system prompt that a ChatML Jinja template inserts when the conversation has
/// none, e.g. SmolLM2's `<|im_start|>system\nYou are a helpful AI assistant named SmolLM,
/// trained by Hugging Face<|im_end|>`; `None` for templates without one.
///
/// Every `<|im_start|>system` occurrence is read: in Qwen's template the first one opens the
/// tools branch (its content is an expression), and the literal default comes later.
pub(crate) fn default_system_prompt(template: &str) -> Option<String> {
    const MARKERS: [&str; 2] = ["<|im_start|>system\n", "<|im_start|>system\\n"];
    MARKERS.iter().find_map(|marker| {
        template.match_indices(marker).find_map(|(at, _)| {
            let rest = &template[at + marker.len()..];
            let text = &rest[..rest.find("<|im_end|>")?];
            // A template expression (the message's content) is not a literal default.
            let is_literal = !["{{", "{%", "'", "\"", "+", "message"]
                .iter()
                .any(|syntax| text.contains(syntax));
            (is_literal && !text.is_empty()).then(|| text.replace("\\n", "\n"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mars::Message;

    /// The chat template of both Qwen2.5-Coder presets, as read from the 0.5B GGUF.
    const QWEN: &str = include_str!("../testdata/qwen2.5-coder-chat-template.jinja");

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn default_system_prompt_is_read_from_chatml_templates() {
        let plain_chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
        let escaped =
            r"{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.<|im_end|>\n' }}";
        let dynamic = "{{ '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>' }}";
        let llama3 = "{{ '<|start_header_id|>system<|end_header_id|>\n\n' }}";
        let cases = [
            (
                SMOLLM2,
                Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
            ),
            (
                QWEN,
                Some("You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
            ),
            (plain_chatml, None),
            (escaped, Some("You are Qwen, created by Alibaba Cloud.")),
            (dynamic, None),
            (llama3, None),
            ("", None),
        ];
        for (template, want) in cases {
            assert_eq!(
                default_system_prompt(template).as_deref(),
                want,
                "{template}"
            );
        }
    }

    #[test]
    fn the_request_system_prompt_wins_over_the_default() {
        let request = ChatRequest {
            messages: vec![
                Message::user("hi"),
                Message::assistant("hello"),
                Message::user("?"),
            ],
            ..ChatRequest::default()
        };
        let roles = |msgs: Vec<(&'static str, String)>| {
            msgs.into_iter().map(|(r, _)| r).collect::<Vec<_>>()
        };
        assert_eq!(
            chat_messages(&request, Some("default")),
            vec![
                ("system", "default".to_owned()),
                ("user", "hi".to_owned()),
                ("assistant", "hello".to_owned()),
                ("user", "?".to_owned()),
            ]
        );
        assert_eq!(
            roles(chat_messages(&request, None)),
            ["user", "assistant", "user"]
        );
        let own = request.with_system("own");
        assert_eq!(
            chat_messages(&own, Some("default"))[0],
            ("system", "own".to_owned())
        );
    }
}
