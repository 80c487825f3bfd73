//! Chat formatting. The prompt asks for brief reasoning and a final `<answer>NUMBER</answer>`,
//! with few-shot examples as earlier turns so that even a small model often produces the tag.
use crate::core::config::PromptConfig;

/// A model's chat template, rendered with a Jinja engine (minijinja, with Python's string
/// methods, trim_blocks, lstrip_blocks and loop controls) as transformers renders it: `messages`, `add_generation_prompt = true`, `bos_token`
/// and `eos_token`. `strftime_now` is deliberately not defined, so that templates that print
/// today's date fall back to their fixed one and prompts do not change with the day.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos: String,
    eos: String,
}

/// ChatML (SmolLM2's template without its default system turn): prompts estimated when no model
/// file is at hand.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

impl ChatTemplate {
    /// Compiles a model's template and renders a trial conversation (system and user turns).
    pub fn new(source: Option<&str>, bos: &str, eos: &str) -> Result<Self, String> {
        let source = source.ok_or(
            "it has no chat template (GGUF tokenizer.chat_template, chat_template.jinja or tokenizer_config.json's chat_template); rftx needs an instruct model",
        )?;
        let mut env = minijinja::Environment::new();
        // transformers renders with trim_blocks, lstrip_blocks and the loopcontrols extension.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("the default delimiters");
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |m: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, m))
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("its chat template does not compile: {e}"))?;
        let t = ChatTemplate {
            env,
            bos: bos.into(),
            eos: eos.into(),
        };
        let trial = [
            Message {
                role: "system",
                content: "s",
            },
            Message {
                role: "user",
                content: "u",
            },
        ];
        t.render(&trial)?;
        Ok(t)
    }

    /// [`CHATML`].
    pub fn chatml() -> Self {
        ChatTemplate::new(Some(CHATML), "", "<|im_end|>").expect("the built-in template renders")
    }

    /// Renders the conversation and opens the assistant's turn.
    pub fn render(&self, messages: &[Message]) -> Result<String, String> {
        let template = self.env.get_template("chat").map_err(|e| e.to_string())?;
        let ctx = minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => true,
            bos_token => &self.bos,
            eos_token => &self.eos,
        };
        template
            .render(ctx)
            .map_err(|e| format!("its chat template failed to render: {e:#}"))
    }
}

/// One conversation turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// The text every question's prompt starts with: system, few-shot turns and the opening of the
/// last user turn. Its KV cache is computed once per run and shared by all questions.
pub fn shared_prefix(template: &ChatTemplate, cfg: &PromptConfig) -> Result<String, String> {
    const MARK: &str = "\u{1}";
    let text = template.render(&messages(cfg, MARK))?;
    Ok(text.find(MARK).map_or(String::new(), |at| text[..at].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_matches_the_smollm2_template() {
        let cfg = crate::core::config::Config::default().prompt;
        let text = ChatTemplate::chatml()
            .render(&messages(&cfg, "How many grams are in 2 kilograms?"))
            .unwrap();
        assert!(text.starts_with("<|im_start|>system\nYou are a careful assistant"));
        assert!(text.contains("<|im_end|>\n<|im_start|>user\nHow many meters are in 3 kilometers?<|im_end|>\n<|im_start|>assistant\n1 kilometer"));
        assert!(
            text.ends_with("<|im_start|>user\nHow many grams are in 2 kilograms?<|im_end|>\n<|im_start|>assistant\n")
        );
        assert_eq!(text.matches("<|im_start|>").count(), 1 + 2 * cfg.examples.len() + 1 + 1);
    }

    #[test]
    fn the_shared_prefix_ends_where_the_question_starts() {
        let cfg = crate::core::config::Config::default().prompt;
        let prefix = shared_prefix(&ChatTemplate::chatml(), &cfg).unwrap();
        assert!(prefix.ends_with("<|im_start|>user\n"));
        let full = ChatTemplate::chatml()
            .render(&messages(&cfg, "Convert 3 m to cm."))
            .unwrap();
        assert_eq!(
            full.strip_prefix(&prefix).unwrap(),
            "Convert 3 m to cm.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    /// Qwen2.5's template (its tool branches left out): a default system turn when none is given.
    const QWEN: &str = "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

    #[test]
    fn real_templates_render_as_transformers_does() {
        let cfg = crate::core::config::Config::default().prompt;
        let qwen = ChatTemplate::new(Some(QWEN), "", "<|im_end|>").unwrap();
        let conversation = messages(&cfg, "Convert 3 m to cm.");
        assert_eq!(
            qwen.render(&conversation).unwrap(),
            ChatTemplate::chatml().render(&conversation).unwrap()
        );
        let bare = qwen
            .render(&[Message {
                role: "user",
                content: "Hi",
            }])
            .unwrap();
        assert!(bare.starts_with("<|im_start|>system\nYou are Qwen"), "{bare}");
        // Python string methods, bos_token, and a template's own refusal.
        let llama =
            "{{ bos_token }}{% for m in messages %}{{ m['role'] | upper }}: {{ m['content'].strip() }}\n{% endfor %}";
        let t = ChatTemplate::new(Some(llama), "<s>", "</s>").unwrap();
        assert_eq!(
            t.render(&[Message {
                role: "user",
                content: "  hi  "
            }])
            .unwrap(),
            "<s>USER: hi\n"
        );
        let strict =
            "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}";
        let e = ChatTemplate::new(Some(strict), "", "").unwrap_err();
        assert!(e.contains("System role not supported"), "{e}");
        assert!(ChatTemplate::new(None, "", "")
            .unwrap_err()
            .contains("no chat template"));
        assert!(ChatTemplate::new(Some("{% for %}"), "", "")
            .unwrap_err()
            .contains("does not compile"));
    }
}
