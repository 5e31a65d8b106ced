//! Chat templates: how an instruct model expects a conversation written out as
//! one prompt. Models ship theirs as a Jinja template (GGUF
//! `tokenizer.chat_template`, HF `tokenizer_config.json`); rather than run
//! Jinja, we recognise the family by the markers the template writes, as
//! llama.cpp does, and write the turns ourselves:
//!
//! - ChatML (SmolLM2, Qwen): `<|im_start|>role\n…<|im_end|>\n`;
//! - Gemma: `<start_of_turn>user\n…<end_of_turn>\n`, the assistant called `model`,
//!   a system message folded into the first user turn;
//! - Llama 3: `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>`.

use crate::error::Error;

/// The template families we can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFamily {
    ChatMl,
    Gemma,
    Llama3,
}

impl ChatFamily {
    pub fn name(self) -> &'static str {
        match self {
            ChatFamily::ChatMl => "ChatML",
            ChatFamily::Gemma => "Gemma",
            ChatFamily::Llama3 => "Llama 3",
        }
    }

    /// The token that closes a turn; a chat reply stops there.
    pub fn end_of_turn(self) -> &'static str {
        match self {
            ChatFamily::ChatMl => "<|im_end|>",
            ChatFamily::Gemma => "<end_of_turn>",
            ChatFamily::Llama3 => "<|eot_id|>",
        }
    }
}

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    pub role: Role,
    pub content: &'a str,
}

/// A model's chat template, recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    family: ChatFamily,
    /// The system message the template writes when a chat has none (SmolLM2's).
    default_system: Option<String>,
    /// The BOS token's text, when the template starts a conversation with it.
    bos: Option<String>,
}

/// Why a model cannot chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoChat {
    /// No template at all: a base model.
    Missing,
    /// A template whose family we do not know.
    Unknown,
}

impl NoChat {
    pub fn error(&self) -> Error {
        let known = "ChatML, Gemma and Llama 3";
        Error::invalid(match self {
            NoChat::Missing => format!(
                "this model has no chat template (a base model?), so it cannot chat; give it plain text to continue instead (chat templates we know: {known})"
            ),
            NoChat::Unknown => format!(
                "this model's chat template is not one we know ({known}), so it cannot chat; give it plain text to continue instead"
            ),
        })
    }
}

impl ChatTemplate {
    /// Recognises `template` (Jinja source) by the markers it writes. `bos` is
    /// the BOS token's text, written first when the template uses `bos_token`.
    pub fn detect(template: &str, bos: Option<&str>) -> std::result::Result<Self, NoChat> {
        let family = if template.contains("<|im_start|>") {
            ChatFamily::ChatMl
        } else if template.contains("<start_of_turn>") {
            ChatFamily::Gemma
        } else if template.contains("<|start_header_id|>") {
            ChatFamily::Llama3
        } else {
            return Err(NoChat::Unknown);
        };
        let default_system = match family {
            ChatFamily::ChatMl => literal_after(template, "<|im_start|>system\n", "<|im_end|>"),
            _ => None,
        };
        Ok(ChatTemplate {
            family,
            default_system,
            bos: bos
                .filter(|_| template.contains("bos_token"))
                .map(str::to_string),
        })
    }

    pub fn family(&self) -> ChatFamily {
        self.family
    }

    /// The whole conversation, ending where the assistant's reply begins when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        let mut out = self.bos.clone().unwrap_or_default();
        let (system, rest) = match messages.first() {
            Some(m) if m.role == Role::System => (Some(m.content), &messages[1..]),
            _ => (self.default_system.as_deref(), messages),
        };
        match self.family {
            ChatFamily::ChatMl => {
                if let Some(system) = system {
                    out += &chatml_turn("system", system);
                }
                for m in rest {
                    out += &chatml_turn(role_name(m.role, "assistant"), m.content);
                }
            }
            ChatFamily::Gemma => {
                for (i, m) in rest.iter().enumerate() {
                    let content = match (i, system) {
                        (0, Some(system)) => format!("{}\n\n{}", system, m.content.trim()),
                        _ => m.content.trim().to_string(),
                    };
                    out += &gemma_turn(role_name(m.role, "model"), &content);
                }
            }
            ChatFamily::Llama3 => {
                if let Some(system) = system {
                    out += &llama3_turn("system", system);
                }
                for m in rest {
                    out += &llama3_turn(role_name(m.role, "assistant"), m.content);
                }
            }
        }
        if add_generation_prompt {
            out += self.reply_start();
        }
        out
    }

    /// What follows a finished assistant reply (which ended with the
    /// [end-of-turn token](ChatFamily::end_of_turn)) to add one more user turn
    /// and start the next reply.
    pub fn next_turn(&self, user: &str) -> String {
        let turn = match self.family {
            // The template puts a newline after every end-of-turn token.
            ChatFamily::ChatMl => format!("\n{}", chatml_turn("user", user)),
            ChatFamily::Gemma => format!("\n{}", gemma_turn("user", user.trim())),
            ChatFamily::Llama3 => llama3_turn("user", user),
        };
        turn + self.reply_start()
    }

    fn reply_start(&self) -> &'static str {
        match self.family {
            ChatFamily::ChatMl => "<|im_start|>assistant\n",
            ChatFamily::Gemma => "<start_of_turn>model\n",
            ChatFamily::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
        }
    }
}

fn role_name(role: Role, assistant: &'static str) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => assistant,
    }
}

fn chatml_turn(role: &str, content: &str) -> String {
    format!("<|im_start|>{role}\n{content}<|im_end|>\n")
}

fn gemma_turn(role: &str, content: &str) -> String {
    format!("<start_of_turn>{role}\n{content}<end_of_turn>\n")
}

fn llama3_turn(role: &str, content: &str) -> String {
    format!(
        "<|start_header_id|>{role}<|end_header_id|>\n\n{}<|eot_id|>",
        content.trim()
    )
}

/// The text between `start` and `end` in `template` when it is written out
/// literally (not built from Jinja expressions): SmolLM2's default system message.
fn literal_after(template: &str, start: &str, end: &str) -> Option<String> {
    let from = template.find(start)? + start.len();
    let text = &template[from..from + template[from..].find(end)?];
    let literal = !text.is_empty() && !text.contains(['\'', '"', '{', '}', '+']);
    literal.then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn user(content: &str) -> ChatMessage<'_> {
        ChatMessage {
            role: Role::User,
            content,
        }
    }

    #[test]
    fn smollm2_gets_its_default_system_message() {
        let t = ChatTemplate::detect(SMOLLM2, Some("<|im_start|>")).unwrap();
        assert_eq!(t.family(), ChatFamily::ChatMl);
        assert_eq!(
            t.render(&[user("Hi")], true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn unknown_templates_are_recognised_as_such() {
        assert_eq!(
            ChatTemplate::detect("{{ messages }}", None),
            Err(NoChat::Unknown)
        );
    }
}
