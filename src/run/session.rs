//! A loaded model with what generation needs around it: the one way `run`, `bench` and
//! `plan --check` open a model, tokenize prompts and generate a question's samples.
use std::path::PathBuf;
use std::time::Instant;

use super::Prepared;
use crate::base::error::{Error, Result};
use crate::base::record::Completion;
use crate::base::sampling::Sampler;
use crate::core::config::{Config, ModelInit, PromptConfig};
use crate::core::generate::{ChunkReport, Finished, GenerationParams, Generator, Job, SharedPrefix, StopAfter};
use crate::core::plan::Arch;
use crate::core::prompt::{self, ChatTemplate, TemplateContext};
use crate::engine::device::{GpuInfo, GpuMemory};
use crate::engine::{GpuOptions, Model, Weights};
use crate::source::{GgufTokenizer, ModelSource};

pub struct Session {
    pub model_path: PathBuf,
    /// The model's architecture and sizes, read from the file's header when it was opened (the
    /// header itself is not kept: its metadata holds megabytes of vocabulary).
    pub arch: Arch,
    pub model: Model,
    /// GPU memory peaks (and the `memory.device_limit` reservation), on a GPU.
    pub gpu: Option<GpuMemory>,
    /// Which GPU it is (name, compute capability, memory), on a GPU: recorded per session.
    pub gpu_info: Option<GpuInfo>,
    pub tokenizer: GgufTokenizer,
    /// Tokens that end a sample: none for random weights, whose samples run to the budget.
    pub stop_ids: Vec<u32>,
    pub template: ChatTemplate,
    pub shared: Option<SharedPrefix>,
    /// Seconds to load the model and prefill the shared prefix.
    pub load_s: f64,
}

/// Fetches the default model if needed (`say` gets progress lines) and opens the model file.
pub fn open_source(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<ModelSource> {
    ModelSource::open(&p.model_file(say)?)
}

/// A model's chat template, ready to render with `prompt.date` and `prompt.template_vars`.
pub fn chat_template(source: &ModelSource, cfg: &PromptConfig) -> Result<ChatTemplate> {
    let (bos, eos) = source.template_tokens();
    let cannot = |e: String| Error::input(source.path(), format!("cannot format prompts for this model: {e}"));
    let ctx = TemplateContext::new(&bos, &eos).with_prompt(cfg).map_err(cannot)?;
    ChatTemplate::with_context(source.chat_template().as_deref(), ctx).map_err(cannot)
}

impl Session {
    /// Opens the model file, loads the model onto the configured device, recognises its chat
    /// format and prefills the shared prompt prefix. Running out of device memory on the way is
    /// an error that says what to change.
    pub fn open(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<Session> {
        Self::load(p, say).map_err(|e| opening_oom(p, e))
    }

    fn load(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<Session> {
        let c = &p.resolved.config;
        let mut source = open_source(p, say)?;
        let start = Instant::now();
        let device = p.device.create()?;
        let gpu_info = crate::engine::device::gpu_info(&device)?;
        check_weights_on(p, gpu_info.as_ref())?;
        let mut gpu = GpuMemory::new(&device)?;
        if let (Some(gpu), Some(limit)) = (gpu.as_mut(), &c.memory.device_limit) {
            let bytes = crate::core::plan::device(limit)
                .map_err(|e| Error::input(&p.resolved.file, format!("memory.device_limit: {e}")))?
                .capacity_bytes;
            let reserved = gpu.limit(bytes)?;
            say(&format!(
                "memory.device_limit = {limit:?}: the run sees {} of GPU memory ({} reserved)",
                crate::base::util::human_bytes(bytes),
                crate::base::util::human_bytes(reserved)
            ));
        }
        let tokenizer = source.tokenizer()?;
        let (model, arch) = match c.model.init {
            ModelInit::File => {
                let model = Model::load(&mut source, p.weights, &device, gpu_options(c, &device))?
                    .with_kv_cache(c.model.kv_cache);
                (model, Arch::from_source(&source))
            }
            ModelInit::Random => random_model(p, &tokenizer, &device)?,
        };
        let template = chat_template(&source, &c.prompt)?;
        let shared = shared_prefix(&model, &tokenizer, &template, c)?;
        let stop_ids = match c.model.init {
            ModelInit::File => tokenizer.stop_ids.clone(),
            ModelInit::Random => Vec::new(),
        };
        Ok(Session {
            model_path: source.path().to_path_buf(),
            arch,
            model,
            gpu,
            gpu_info,
            tokenizer,
            stop_ids,
            template,
            shared,
            load_s: start.elapsed().as_secs_f64(),
        })
    }

    /// The token ids of every question's prompt.
    pub fn prompts(&self, p: &Prepared) -> Result<Vec<Vec<u32>>> {
        self.prompts_in(p, 0..p.questions.questions.len())
    }

    /// The token ids of the prompts of the questions in `range`, indexed by question (those
    /// outside it are left empty, not tokenized: a shard tokenizes only its own).
    pub fn prompts_in(&self, p: &Prepared, range: std::ops::Range<usize>) -> Result<Vec<Vec<u32>>> {
        let c = &p.resolved.config;
        p.questions
            .questions
            .iter()
            .enumerate()
            .map(|(i, q)| {
                if !range.contains(&i) {
                    return Ok(Vec::new());
                }
                let text =
                    prompt_text(c, &self.template, q.user_text()).map_err(|e| Error::input(&self.model_path, e))?;
                let ids = self
                    .tokenizer
                    .encode(&text)
                    .map_err(|e| Error::Run(format!("cannot tokenize a prompt: {e}")))?;
                self.fits(i, ids.len(), c.generation.max_new_tokens, &p.questions.source)?;
                Ok(ids)
            })
            .collect()
    }

    /// A question's prompt and its token budget must fit the model's positions: else exit 2
    /// before anything runs, naming the question and the keys to change.
    fn fits(&self, index: usize, prompt: usize, budget: usize, source: &str) -> Result<()> {
        let max = self.model.max_positions();
        if prompt + budget <= max {
            return Ok(());
        }
        Err(Error::input(
            std::path::Path::new(source),
            format!(
                "question {index}: its prompt is {prompt} tokens, plus generation.max_new_tokens = {budget} is more than the {max} positions of the model; lower generation.max_new_tokens, shorten prompt.system, prompt.examples or prompt.template, or leave the question out"
            ),
        ))
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
        self.generator(params, None).question(index as u64, ids, on_tokens)
    }

    /// The questions of `jobs`, `prompts` at a time (see [`Generator::batch`]), each ended
    /// early by `stop` where given.
    pub fn generate_batch<'p>(
        &self,
        jobs: &mut dyn Iterator<Item = Job<'p>>,
        prompts: usize,
        (params, stop): (GenerationParams, Option<StopAfter<'_>>),
        on_tokens: &mut dyn FnMut(usize),
        on_done: &mut dyn FnMut(Finished) -> Result<()>,
    ) -> Result<()> {
        self.generator(params, stop).batch(jobs, prompts, on_tokens, on_done)
    }

    fn generator<'s>(&'s self, params: GenerationParams, stop: Option<StopAfter<'s>>) -> Generator<'s> {
        Generator {
            model: &self.model,
            shared: self.shared.as_ref(),
            stop_ids: &self.stop_ids,
            params,
            gpu: self.gpu.as_ref(),
            stop,
        }
    }
}

/// An out-of-memory while the session opens (the `memory.device_limit` reservation, the
/// weights, the shared prefix): no question has started; what to change.
fn opening_oom(p: &Prepared, e: Error) -> Error {
    let Error::DeviceOutOfMemory { site, message, .. } = e else {
        return e;
    };
    let limit = match &p.resolved.config.memory.device_limit {
        Some(l) => format!("memory.device_limit = {l:?}"),
        None => "the whole device".into(),
    };
    Error::Run(format!(
        "out of memory in {} while loading the model with {limit} ({message}): the model does not fit; raise memory.device_limit, or use smaller weights (model.weights) or a smaller model",
        site.describe()
    ))
}

/// Refuses bf16 weights on a GPU without bf16 kernels (compute capability below 8.0: a T4).
fn check_weights_on(p: &Prepared, gpu: Option<&GpuInfo>) -> Result<()> {
    let Some(g) = gpu else { return Ok(()) };
    let cc = g.compute_capability.parse::<f64>().unwrap_or(0.0);
    if p.weights.dense_dtype() == Some(candle_core::DType::BF16) && cc < 8.0 {
        return Err(Error::input(
            &p.resolved.file,
            format!(
                "model.weights = \"bf16\": {} (compute capability {}) has no bf16 kernels; use f16",
                g.name, g.compute_capability
            ),
        ));
    }
    Ok(())
}

/// A random-weight model of the `model.arch` preset's shape, drawn from `seed` on the device.
fn random_model(p: &Prepared, tokenizer: &GgufTokenizer, device: &candle_core::Device) -> Result<(Model, Arch)> {
    let c = &p.resolved.config;
    let arch = random_arch(p, tokenizer)?;
    let mut weights = Weights::Random {
        spec: arch.spec.clone(),
        seed: c.seed,
        host: false,
    };
    let model = Model::build(&mut weights, p.weights, device, gpu_options(c, device))?.with_kv_cache(c.model.kv_cache);
    Ok((model, arch))
}

/// The `model.arch` preset of a random-weight model, checked against the tokenizer.
fn random_arch(p: &Prepared, tokenizer: &GgufTokenizer) -> Result<Arch> {
    let c = &p.resolved.config;
    let name = c.model.arch.as_deref().unwrap_or_default();
    let arch = crate::core::plan::arch_preset(name).ok_or_else(|| {
        Error::input(
            &p.resolved.file,
            format!("model.arch = {name:?}: not a known architecture"),
        )
    })?;
    if arch.spec.vocab_size != tokenizer.vocab_size {
        return Err(Error::input(
            &p.model_path,
            format!(
                "model.init = \"random\": the tokenizer has {} tokens but {name} has a vocabulary of {}; point model.path at a GGUF whose tokenizer fits",
                tokenizer.vocab_size, arch.spec.vocab_size
            ),
        ));
    }
    Ok(arch)
}

/// rftx's CUDA kernels checked on the config's device against their CPU reference
/// (`rftx bench --kernels`), with the config's model: its file's weights, or random ones of
/// `model.arch` drawn on the host (the same on both devices).
pub fn check_kernels(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<Vec<crate::engine::cuda::check::KernelCheck>> {
    use crate::engine::cuda::check::{self, CheckModel};
    let mut source = open_source(p, say)?;
    let device = p.device.create()?;
    match p.resolved.config.model.init {
        ModelInit::File => check::run(CheckModel::File(&mut source), &device),
        ModelInit::Random => {
            let arch = random_arch(p, &source.tokenizer()?)?;
            check::run(CheckModel::Random(arch.spec), &device)
        }
    }
}

/// The GPU kernels the config names (`None` on the CPU).
fn gpu_options(c: &Config, device: &candle_core::Device) -> Option<GpuOptions> {
    (!device.is_cpu()).then_some(GpuOptions {
        kernels: c.model.gpu_kernels,
        batch_invariant: c.model.batch_invariant,
    })
}

/// The chat-formatted prompt text of every question, in the model's chat format; reads only
/// the model file's header.
pub fn rendered_prompts(p: &Prepared, say: &mut dyn FnMut(&str)) -> Result<Vec<String>> {
    let source = open_source(p, say)?;
    let template = chat_template(&source, &p.resolved.config.prompt)?;
    p.questions
        .questions
        .iter()
        .map(|q| prompt_text(&p.resolved.config, &template, q.user_text()).map_err(|e| Error::input(source.path(), e)))
        .collect()
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
        logprobs: c.generation.logprobs,
    }
}

/// The cache of the prompt text all questions share (system, few-shot turns), computed once per
/// session; `None` if it tokenizes to nothing.
fn shared_prefix(
    model: &Model,
    tokenizer: &GgufTokenizer,
    template: &ChatTemplate,
    c: &Config,
) -> Result<Option<SharedPrefix>> {
    let text = prompt::shared_prefix(template, &c.prompt).map_err(Error::Run)?;
    let tokens = tokenizer.encode(&text).map_err(Error::Run)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    Ok(Some(SharedPrefix::new(model, tokens)?))
}

/// The chat-formatted prompt of one question.
pub fn prompt_text(c: &Config, template: &ChatTemplate, question: &str) -> std::result::Result<String, String> {
    template.render(&prompt::messages(&c.prompt, question))
}
