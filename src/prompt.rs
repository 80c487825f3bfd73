//! Chat formatting. The prompt asks for brief reasoning and a final `<answer>NUMBER</answer>`,
//! with few-shot examples as earlier turns so that even a small model often produces the tag.
use crate::config::PromptConfig;

/// Chat formats rftx can render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFormat {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen, …).
    ChatMl,
}

impl ChatFormat {
    /// Recognises the format from a GGUF chat template.
    pub fn detect(template: Option<&str>) -> Result<Self, String> {
        match template {
            Some(t) if t.contains("<|im_start|>") => Ok(ChatFormat::ChatMl),
            Some(_) => {
                Err("its chat template is not ChatML (`<|im_start|>`), the only chat format rftx renders so far".into())
            }
            None => Err("it has no chat template (tokenizer.chat_template); rftx needs a ChatML instruct model".into()),
        }
    }
}

/// One conversation turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// The conversation for one question: system, few-shot turns, the question.
pub fn messages<'a>(cfg: &'a PromptConfig, question: &'a str) -> Vec<Message<'a>> {
    let mut m = vec![Message {
        role: "system",
        content: &cfg.system,
    }];
    for e in &cfg.examples {
        m.push(Message {
            role: "user",
            content: &e.question,
        });
        m.push(Message {
            role: "assistant",
            content: &e.response,
        });
    }
    m.push(Message {
        role: "user",
        content: question,
    });
    m
}

/// Renders the conversation and opens the assistant's turn.
pub fn render(format: ChatFormat, messages: &[Message]) -> String {
    match format {
        ChatFormat::ChatMl => {
            let mut s = String::new();
            for m in messages {
                s.push_str("<|im_start|>");
                s.push_str(m.role);
                s.push('\n');
                s.push_str(m.content);
                s.push_str("<|im_end|>\n");
            }
            s.push_str("<|im_start|>assistant\n");
            s
        }
    }
}

/// The text every question's prompt starts with: system, few-shot turns and the opening of the
/// last user turn. Its KV cache is computed once per run and shared by all questions.
pub fn shared_prefix(format: ChatFormat, cfg: &PromptConfig) -> String {
    const MARK: &str = "\u{1}";
    let text = render(format, &messages(cfg, MARK));
    text[..text.find(MARK).expect("the mark is in the rendered text")].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_matches_the_smollm2_template() {
        let cfg = crate::config::Config::default().prompt;
        let text = render(
            ChatFormat::ChatMl,
            &messages(&cfg, "How many grams are in 2 kilograms?"),
        );
        assert!(text.starts_with("<|im_start|>system\nYou are a careful assistant"));
        assert!(text.contains("<|im_end|>\n<|im_start|>user\nHow many meters are in 3 kilometers?<|im_end|>\n<|im_start|>assistant\n1 kilometer"));
        assert!(
            text.ends_with("<|im_start|>user\nHow many grams are in 2 kilograms?<|im_end|>\n<|im_start|>assistant\n")
        );
        assert_eq!(text.matches("<|im_start|>").count(), 1 + 2 * cfg.examples.len() + 1 + 1);
    }

    #[test]
    fn the_shared_prefix_ends_where_the_question_starts() {
        let cfg = crate::config::Config::default().prompt;
        let prefix = shared_prefix(ChatFormat::ChatMl, &cfg);
        assert!(prefix.ends_with("<|im_start|>user\n"));
        let full = render(ChatFormat::ChatMl, &messages(&cfg, "Convert 3 m to cm."));
        assert_eq!(
            full.strip_prefix(&prefix).unwrap(),
            "Convert 3 m to cm.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn detection() {
        assert_eq!(
            ChatFormat::detect(Some("{{'<|im_start|>' + role}}")),
            Ok(ChatFormat::ChatMl)
        );
        assert!(ChatFormat::detect(Some("[INST]")).is_err());
        assert!(ChatFormat::detect(None).is_err());
    }
}
