//! Prints, for the first N questions of a config, the conversation rftx builds, the prompt its
//! chat template renders and the token ids its tokenizer gives, as JSON: what
//! `bench/tokenizer_vs_transformers.py` compares with transformers.
//!
//! `cargo run --release --example prompt_ids -- CONFIG [N]`
use rftx::run::{self, session};
use rftx::source::ModelSource;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (config, n) = match args.as_slice() {
        [_, c] => (c.clone(), 20),
        [_, c, n] => (c.clone(), n.parse()?),
        _ => return Err("usage: prompt_ids CONFIG [N]".into()),
    };
    let p = run::prepare(rftx::core::config::load(config.as_ref(), &[])?, "runs".as_ref())?;
    let source = ModelSource::open(&p.model_file(&mut |s| eprintln!("{s}"))?)?;
    let template = session::chat_template(&source, &p.resolved.config.prompt)?;
    let tokenizer = source.tokenizer()?;
    let mut out = Vec::new();
    for q in p.questions.questions.iter().take(n) {
        let messages = rftx::core::prompt::messages(&p.resolved.config.prompt, &q.question);
        let text = template.render(&messages)?;
        let ids = tokenizer.encode(&text)?;
        out.push(serde_json::json!({ "messages": messages, "text": text, "ids": ids }));
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
