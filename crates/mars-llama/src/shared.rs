//! What the engine and its decode thread share: the model and its prompt format.

use std::path::PathBuf;

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use mars::ChatRequest;

use crate::error::{Error, Result};
use crate::prompt::chat_messages;

/// What the worker and the engine share: the model and its prompt format.
pub(crate) struct Shared {
    pub(crate) model: LlamaModel,
    pub(crate) template: LlamaChatTemplate,
    pub(crate) default_system: Option<String>,
    pub(crate) path: PathBuf,
}

impl Shared {
    /// The conversation rendered by the model's template, ending with the assistant's turn.
    pub(crate) fn render(&self, request: &ChatRequest) -> Result<String> {
        let messages = chat_messages(request, self.default_system.as_deref())
            .into_iter()
            .map(|(role, content)| LlamaChatMessage::new(role.to_owned(), content))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Engine {
                operation: "render the prompt",
                detail: e.to_string(),
            })?;
        self.model
            .apply_chat_template(&self.template, &messages, true)
            .map_err(|e| Error::Engine {
                operation: "apply the chat template",
                detail: e.to_string(),
            })
    }

    /// The tokens the engine evaluates for `request`.
    pub(crate) fn prompt_tokens(&self, request: &ChatRequest) -> Result<Vec<LlamaToken>> {
        let text = self.render(request)?;
        Ok(self.model.vocab().tokenize(text.as_bytes(), true, true))
    }
}
