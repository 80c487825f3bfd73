//! llama.cpp's 70 real chat templates rendered by rftx as transformers renders them (issue 32).
//!
//! `tests/data/chat_templates_expected.jsonl` holds what transformers 5.25.0's
//! `apply_chat_template` (its `render_jinja_template`, Jinja2 3.1.6) makes of every template in
//! llama-cpp-python 0.3.36's `vendor/llama.cpp/models/templates/` on four conversations (system and
//! user; user only; few-shot turns without and with a system turn), with and without
//! `add_generation_prompt`, and on some with template variables (`enable_thinking = false`,
//! `date_string`, `tools`, …); `strftime_now` is fixed to rftx's default `prompt.date`.
//! `scripts/chat_template_expected.py` wrote it. The templates themselves are fetched
//! (`scripts/fetch-llama-templates.sh`; `.ci/run` sets `RFTX_TEMPLATES_DIR`). Every render must be
//! the same text, or a refusal where transformers refuses (with the template's own message where
//! it raised one); the exceptions are [`ALLOWED`], each with its reason.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rftx::core::prompt::{ChatTemplate, Date, Message, TemplateContext};
use serde_json::Value;
use sha2::{Digest, Sha256};

const EXPECTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/chat_templates_expected.jsonl");

/// Templates allowed to render differently from transformers, and why. Empty: all are identical.
const ALLOWED: &[(&str, &str)] = &[];

fn templates_dir() -> Option<PathBuf> {
    match std::env::var_os("RFTX_TEMPLATES_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            rftx::testing::skip(
                "RFTX_TEMPLATES_DIR is unset: run RFTX_TEMPLATES_DIR=$(scripts/fetch-llama-templates.sh) cargo test --release --test chat_templates",
            );
            None
        }
    }
}

/// The header (versions, date, conversations) and the rows of the expected file.
fn expected() -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(EXPECTED).unwrap();
    let mut lines = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap());
    let header = lines.next().expect("a header line");
    (header, lines.collect())
}

fn conversation(v: &Value) -> Vec<Message<'_>> {
    let turns = v.as_array().expect("a conversation is a list of turns");
    turns
        .iter()
        .map(|t| Message {
            role: t["role"].as_str().unwrap(),
            content: t["content"].as_str().unwrap(),
        })
        .collect()
}

/// How one render compares with transformers'.
#[derive(Debug, PartialEq)]
enum Verdict {
    Same,
    Differs(String),
}

fn judge(row: &Value, got: Result<String, String>) -> Verdict {
    let differs = |what: String| Verdict::Differs(what);
    match (row.get("output").and_then(Value::as_str), got) {
        (Some(want), Ok(got)) if want == got => Verdict::Same,
        (Some(want), Ok(got)) => differs(format!("want {want:?}\n    got  {got:?}")),
        (Some(_), Err(e)) => differs(format!("transformers renders it; rftx refuses: {e}")),
        (None, Ok(got)) => differs(format!("transformers refuses ({}); rftx renders {got:?}", row["error"])),
        (None, Err(e)) => {
            // A template's own raise_exception (Jinja2's TemplateError) must say the same; any
            // other failure (a template that cannot handle the conversation) only has to fail.
            let class = row["error"]["class"].as_str().unwrap_or_default();
            let message = row["error"]["message"].as_str().unwrap_or_default();
            if class != "TemplateError" || e.contains(message) {
                Verdict::Same
            } else {
                differs(format!("transformers refuses with {message:?}; rftx with {e:?}"))
            }
        }
    }
}

/// rftx's render of one expected row.
fn render(dir: &Path, date: Date, conversations: &Value, row: &Value) -> Result<String, String> {
    let name = row["template"].as_str().unwrap();
    let source = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        hex::encode(Sha256::digest(source.as_bytes())),
        row["sha256"].as_str().unwrap(),
        "{name} is not the template the expected outputs were made from"
    );
    let vars: toml::Table = toml::Value::try_from(&row["vars"]).unwrap().try_into().unwrap();
    let ctx = TemplateContext {
        bos: row["bos_token"].as_str().unwrap().into(),
        eos: row["eos_token"].as_str().unwrap().into(),
        date,
        vars,
    };
    let messages = conversation(&conversations[row["conversation"].as_str().unwrap()]);
    let agp = row["add_generation_prompt"].as_bool().unwrap();
    ChatTemplate::compile(&source, ctx)?.render_with(&messages, agp)
}

#[test]
fn llama_cpp_templates_render_as_transformers_does() {
    let Some(dir) = templates_dir() else { return };
    let (header, rows) = expected();
    let date = Date::parse(header["date"].as_str().unwrap()).unwrap();
    assert_eq!(
        date,
        Date::DEFAULT,
        "the expected outputs were made with prompt.date's default"
    );
    let mut renders: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for row in &rows {
        let name = row["template"].as_str().unwrap();
        let verdict = judge(row, render(&dir, date, &header["conversations"], row));
        let counts = renders.entry(name).or_default();
        counts.1 += 1;
        match verdict {
            Verdict::Same => counts.0 += 1,
            Verdict::Differs(what) => eprintln!(
                "{name} on {} (add_generation_prompt = {}, vars {}):\n    {what}",
                row["conversation"], row["add_generation_prompt"], row["vars"]
            ),
        }
    }
    let on_disk = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("RFTX_TEMPLATES_DIR={}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".jinja"))
        .collect::<Vec<_>>();
    for n in &on_disk {
        assert!(
            renders.contains_key(n.as_str()),
            "{n} has no expected outputs: rerun scripts/chat_template_expected.py"
        );
    }
    let identical: Vec<&str> = renders.iter().filter(|(_, (s, t))| s == t).map(|(n, _)| *n).collect();
    let same_renders: usize = renders.values().map(|c| c.0).sum();
    println!(
        "{} of {} templates identical to transformers on every conversation; {same_renders} of {} renders",
        identical.len(),
        renders.len(),
        rows.len()
    );
    let differing: Vec<&str> = renders.keys().filter(|n| !identical.contains(n)).copied().collect();
    for n in &differing {
        let (s, t) = renders[n];
        println!("  {n}: {s}/{t}");
    }
    let unexplained: Vec<&&str> = differing
        .iter()
        .filter(|n| !ALLOWED.iter().any(|(a, _)| a == *n))
        .collect();
    assert!(
        unexplained.is_empty(),
        "templates rendered differently from transformers: {unexplained:?}"
    );
    for (a, why) in ALLOWED {
        assert!(
            differing.contains(a),
            "{a} is allowed to differ ({why}) but no longer does: remove it from ALLOWED"
        );
    }
}

/// `prompt.date`, `prompt.template_vars` and `{% generation %}` through a model file's own
/// template: the prompts `rftx bench --write-prompts` writes, and the run hash.
#[test]
fn prompt_date_and_template_vars_reach_a_model_template_and_the_hash() {
    let f = common::Fixture::new("");
    let template = "{{ strftime_now('%d %B %Y') }}|{{ enable_thinking | default(true) }}|\
        {{ tools | tojson }}|{% for m in messages %}{% generation %}{{ m.role }}:{{ m.content }};{% endgeneration %}\
        {% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
    common::rewrite_metadata(&f.model, "tokenizer.chat_template", template);
    let config = f.config.to_str().unwrap();
    let first_prompt = |sets: &[&str]| -> String {
        let out = f.path().join("prompts.json");
        let mut args = vec!["bench", config, "--write-prompts", out.to_str().unwrap()];
        sets.iter().for_each(|s| args.extend(["--set", s]));
        let r = common::rftx(&args, &[], f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        let prompts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        prompts[0].clone()
    };
    let default = first_prompt(&[]);
    assert!(default.starts_with("26 July 2024|True|null|system:"), "{default}");
    assert!(default.ends_with(";assistant:"), "{default}");
    let set = first_prompt(&[
        "prompt.date=2026-01-01",
        "prompt.template_vars.enable_thinking=false",
        "prompt.template_vars.tools=[{name = \"convert\"}]",
    ]);
    assert!(
        set.starts_with("01 January 2026|False|[{\"name\": \"convert\"}]|system:"),
        "{set}"
    );
    let hash = |sets: &[&str]| {
        let mut args = vec!["hash", config];
        sets.iter().for_each(|s| args.extend(["--set", s]));
        let r = common::rftx(&args, &[], f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.last_line().to_string()
    };
    let plain = hash(&[]);
    assert_ne!(hash(&["prompt.date=2026-01-01"]), plain);
    assert_ne!(hash(&["prompt.template_vars.enable_thinking=false"]), plain);
    let r = common::rftx(&["hash", config, "--set", "prompt.date=2026-02-30"], &[], f.path());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("prompt.date = \"2026-02-30\""), "{}", r.stderr);
}
