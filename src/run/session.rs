//! A loaded model with what generation needs around it: the one way `run`, `bench` and
//! `plan --check` open a model, tokenize prompts and generate a question's samples.
use std::path::PathBuf;
use std::time::Instant;

use super::Prepared;
use crate::config::Config;
use crate::engine::Model;
use crate::error::{Error, Result};
use crate::generate::{ChunkReport, Completion, GenerationParams, Generator, SharedPrefix};
use crate::plan::Arch;
use crate::prompt::{self, ChatFormat};
use crate::sampling::Sampler;
use crate::source::{GgufTokenizer, ModelSource};

pub struct Session {
    pub model_path: PathBuf,
    /// The model's architecture and sizes, read from the file's header when it was opened (the
    /// header itself is not kept: its metadata holds megabytes of vocabulary).
    pub arch: Arch,
    pub model: Model,
    pub tokenizer: GgufTokenizer,
    pub format: ChatFormat,
    pub shared: Option<SharedPrefix>,
    /// Seconds to load the model and prefill the shared prefix.
    pub load_s: f64,
}

/// Fetches the default model if needed (`say` gets progress lines) and opens the model file.
pub fn open_source(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<ModelSource> {
    ModelSource::open(&p.model_file(say)?)
}

/// The chat format of a model's template.
pub fn chat_format(source: &ModelSource) -> Result<ChatFormat> {
    ChatFormat::detect(source.chat_template())
        .map_err(|e| Error::input(source.path(), format!("cannot format prompts for this model: {e}")))
}

impl Session {
    /// Opens the model file, loads the model onto the configured device, recognises its chat
    /// format and prefills the shared prompt prefix.
    pub fn open(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<Session> {
        let c = &p.resolved.config;
        let mut source = open_source(p, say)?;
        let start = Instant::now();
        let device = p.device.create()?;
        let tokenizer = source.tokenizer()?;
        let model = Model::load(&mut source, c.model.weights, &device)?;
        let format = chat_format(&source)?;
        let shared = shared_prefix(&model, &tokenizer, format, c)?;
        Ok(Session {
            model_path: source.path().to_path_buf(),
            arch: Arch::from_source(&source),
            model,
            tokenizer,
            format,
            shared,
            load_s: start.elapsed().as_secs_f64(),
        })
    }

    /// The token ids of every question's prompt.
    pub fn prompts(&self, p: &Prepared) -> Result<Vec<Vec<u32>>> {
        let c = &p.resolved.config;
        p.questions
            .questions
            .iter()
            .map(|q| self.tokenizer.encode(&prompt_text(c, self.format, &q.question)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Run(format!("cannot tokenize a prompt: {e}")))
    }

    /// Tokens of the shared prompt prefix (0 without one).
    pub fn shared_tokens(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.tokens.len())
    }

    /// The samples of question `index` (prompt `ids`) with `params`, and the chunks' reports.
    pub fn generate(
        &self,
        index: usize,
        ids: &[u32],
        params: GenerationParams,
        on_tokens: &mut dyn FnMut(usize),
    ) -> Result<(Vec<Completion>, Vec<ChunkReport>)> {
        let generator = Generator {
            model: &self.model,
            shared: self.shared.as_ref(),
            stop_ids: &self.tokenizer.stop_ids,
            params,
        };
        generator.question(index as u64, ids, on_tokens)
    }
}

/// The chat-formatted prompt text of every question, in the model's chat format; reads only
/// the model file's header.
pub fn rendered_prompts(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<Vec<String>> {
    let format = chat_format(&open_source(p, say)?)?;
    Ok(p.questions
        .questions
        .iter()
        .map(|q| prompt_text(&p.resolved.config, format, &q.question))
        .collect())
}

/// The generation parameters of a config, at `chunk_size`.
pub fn generation_params(c: &Config, chunk_size: usize) -> GenerationParams {
    GenerationParams {
        oversample: c.generation.oversample,
        chunk_size,
        max_new_tokens: c.generation.max_new_tokens,
        sampler: Sampler {
            temperature: c.generation.temperature,
            top_p: c.generation.top_p,
        },
        seed: c.seed,
    }
}

/// The cache of the prompt text all questions share (system, few-shot turns), computed once per
/// session; `None` if it tokenizes to nothing.
fn shared_prefix(
    model: &Model,
    tokenizer: &GgufTokenizer,
    format: ChatFormat,
    c: &Config,
) -> Result<Option<SharedPrefix>> {
    let tokens = tokenizer
        .encode(&prompt::shared_prefix(format, &c.prompt))
        .map_err(Error::Run)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    Ok(Some(SharedPrefix::new(model, tokens)?))
}

/// The chat-formatted prompt of one question.
pub fn prompt_text(c: &Config, format: ChatFormat, question: &str) -> String {
    prompt::render(format, &prompt::messages(&c.prompt, question))
}
