//! Chat formatting. The prompt asks for brief reasoning and a final `<answer>NUMBER</answer>`,
//! with few-shot examples as earlier turns so that even a small model often produces the tag.
use std::collections::BTreeMap;

use crate::core::config::PromptConfig;

mod jinja;
mod rewrite;
mod strftime;

pub use strftime::Date;

/// Variables rftx sets itself, which `prompt.template_vars` may not name.
pub const RESERVED_VARS: &[&str] = &["messages", "add_generation_prompt"];

/// A model's chat template, rendered with a Jinja engine (minijinja) in the environment
/// transformers' `apply_chat_template` uses (`jinja::environment`): `messages`,
/// `add_generation_prompt`, `bos_token`, `eos_token`, `tools` and `documents` (none), and
/// `prompt.template_vars` over them; `strftime_now` formats `prompt.date`, so that prompts do not
/// change with the day.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    /// Every variable but `messages` and `add_generation_prompt`.
    vars: Vec<(String, minijinja::Value)>,
}

/// What a template is rendered with besides the conversation.
#[derive(Debug, Clone, Default)]
pub struct TemplateContext {
    pub bos: String,
    pub eos: String,
    /// `strftime_now`'s day.
    pub date: Date,
    /// `prompt.template_vars`.
    pub vars: toml::Table,
}

impl TemplateContext {
    /// The special tokens with the defaults: [`Date::DEFAULT`], no variables.
    pub fn new(bos: &str, eos: &str) -> Self {
        TemplateContext {
            bos: bos.into(),
            eos: eos.into(),
            ..Default::default()
        }
    }

    /// With `prompt.date` and `prompt.template_vars`.
    pub fn with_prompt(mut self, cfg: &PromptConfig) -> Result<Self, String> {
        if let Some(d) = &cfg.date {
            self.date = Date::parse(d).map_err(|e| format!("prompt.date: {e}"))?;
        }
        self.vars = cfg.template_vars.clone();
        Ok(self)
    }
}

/// ChatML (SmolLM2's template without its default system turn): prompts estimated when no model
/// file is at hand.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

impl ChatTemplate {
    /// Compiles a model's template and renders a trial conversation (system and user turns).
    pub fn new(source: Option<&str>, bos: &str, eos: &str) -> Result<Self, String> {
        Self::with_context(source, TemplateContext::new(bos, eos))
    }

    /// [`ChatTemplate::new`] with a date and template variables.
    pub fn with_context(source: Option<&str>, ctx: TemplateContext) -> Result<Self, String> {
        let source = source.ok_or(
            "it has no chat template (GGUF tokenizer.chat_template, chat_template.jinja or tokenizer_config.json's chat_template); rftx needs an instruct model",
        )?;
        let t = Self::compile(source, ctx)?;
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

    /// Compiles a template without trying it on a conversation.
    pub fn compile(source: &str, ctx: TemplateContext) -> Result<Self, String> {
        let env =
            jinja::environment(source, ctx.date).map_err(|e| format!("its chat template does not compile: {e}"))?;
        // apply_chat_template's order: the special tokens, then its keyword arguments over them.
        let mut vars = vec![
            ("bos_token".to_string(), minijinja::Value::from(ctx.bos)),
            ("eos_token".to_string(), minijinja::Value::from(ctx.eos)),
            ("tools".to_string(), minijinja::Value::from(())),
            ("documents".to_string(), minijinja::Value::from(())),
        ];
        for (k, v) in &ctx.vars {
            vars.retain(|(name, _)| name != k);
            vars.push((k.clone(), toml_value(v)));
        }
        Ok(ChatTemplate { env, vars })
    }

    /// [`CHATML`].
    pub fn chatml() -> Self {
        ChatTemplate::new(Some(CHATML), "", "<|im_end|>").expect("the built-in template renders")
    }

    /// Renders the conversation and opens the assistant's turn.
    pub fn render(&self, messages: &[Message]) -> Result<String, String> {
        self.render_with(messages, true)
    }

    /// Renders the conversation, with or without the opening of the assistant's turn.
    pub fn render_with(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String> {
        let template = self.env.get_template("chat").map_err(|e| e.to_string())?;
        let mut ctx: BTreeMap<String, minijinja::Value> = self.vars.iter().cloned().collect();
        ctx.insert(
            "messages".into(),
            minijinja::Value::from(minijinja::value::Serde(messages)),
        );
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        template
            .render(ctx)
            .map_err(|e| format!("its chat template failed to render: {e:#}"))
    }
}

/// A TOML value as the template sees it (a date or time as its TOML text).
fn toml_value(v: &toml::Value) -> minijinja::Value {
    match v {
        toml::Value::String(s) => s.as_str().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.iter().map(toml_value).collect::<Vec<_>>().into(),
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| (k.clone(), toml_value(v)))
            .collect::<BTreeMap<_, _>>()
            .into(),
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
