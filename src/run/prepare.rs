//! A configuration with its inputs resolved and digested, and the run hash and directory they
//! give. Nothing is created and no model is loaded.
use std::path::{Path, PathBuf};

use crate::base::error::{Error, Result};
use crate::core::config::{EngineKey, ModelInit, Resolved};
use crate::core::data::QuestionSet;
use crate::core::rft::Grader;
use crate::core::store;
use crate::engine::{DeviceChoice, WeightFormat};
use crate::source::fetch;

/// Where the digests of model folders' files are cached (in the model cache directory).
pub const DIGEST_CACHE: &str = "digests.json";

/// A configuration with all its inputs resolved and digested: everything the hash depends on.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub resolved: Resolved,
    /// The model file; for the default model, its place in the cache (it may not exist yet).
    pub model_path: PathBuf,
    pub model_is_default: bool,
    pub model_sha256: String,
    /// Where the model computes, from the config and the build (never probed: see
    /// [`DeviceChoice::resolve`]); which GPU it is, the session learns when it opens it.
    pub device: DeviceChoice,
    /// `model.weights` made concrete for the kind of device.
    pub weights: WeightFormat,
    pub questions: QuestionSet,
    /// `[rft]` compiled; every question's reference answer was checked against it.
    pub grader: Grader,
    /// sha256 of the canonical config, 64 hex digits.
    pub hash: String,
    pub dir: PathBuf,
}

/// Resolves inputs and computes the run hash and directory, creating nothing. The default
/// model's digest is the pinned one (it is verified when fetched and when loaded).
pub fn prepare(resolved: Resolved, runs_dir: &Path) -> Result<Prepared> {
    let model = resolve_model(&resolved)?;
    let questions = QuestionSet::from_config(
        resolved.data_path.as_deref(),
        &resolved.config.data,
        resolved.config.prompt.template.as_deref(),
    )?;
    let digest = (questions.sha256.clone(), questions.questions.len());
    assemble(resolved, model, questions, digest, runs_dir)
}

/// A config's model: the file or folder, whether it is the default model, and its digest.
#[derive(Debug, Clone)]
pub(crate) struct ModelFile {
    pub path: PathBuf,
    pub is_default: bool,
    pub sha256: String,
}

/// The model `model.path` names (a hub repository id resolved in the local cache, a folder, a
/// file) with its digest, or the default model's place in the cache with its pinned digest.
pub(crate) fn resolve_model(resolved: &Resolved) -> Result<ModelFile> {
    // config::load keeps a repository id relative, as written.
    let hub_id = resolved
        .model_path
        .as_ref()
        .filter(|p| p.is_relative())
        .and_then(|p| p.to_str());
    let model_path = match hub_id {
        Some(id) => Some(
            crate::source::hub::resolve(id, &crate::source::hub::cache_dir())
                .map_err(|m| Error::input(&resolved.file, format!("model.path = {id:?}: {m}")))?,
        ),
        None => resolved.model_path.clone(),
    };
    let file = |path: PathBuf, sha256| ModelFile {
        path,
        is_default: false,
        sha256,
    };
    match model_path {
        Some(p) if crate::source::hf::is_folder(&p) => {
            let cache = fetch::models_dir().join(DIGEST_CACHE);
            let sha256 = crate::source::hf::content_digest(&p, &cache)?;
            Ok(file(p, sha256))
        }
        Some(p) => {
            if !p.is_file() {
                let what = if p.is_dir() {
                    "a directory without config.json"
                } else {
                    "no such file"
                };
                return Err(Error::input(
                    &p,
                    format!("model.path: {what} (set in {}); point it at a llama-architecture GGUF file or Hugging Face model folder, or remove it to use the default model", resolved.file.display()),
                ));
            }
            let sha256 = crate::base::util::sha256_file(&p)?;
            Ok(file(p, sha256))
        }
        None => Ok(ModelFile {
            path: fetch::default_model_path(),
            is_default: true,
            sha256: fetch::DEFAULT_MODEL_SHA256.to_string(),
        }),
    }
}

/// The prepared run of `resolved` with its `model` and `questions`, the hash computed over the
/// question set's digest and count `(sha256, count)`, its directory under `runs_dir`.
pub(crate) fn assemble(
    resolved: Resolved,
    model: ModelFile,
    questions: QuestionSet,
    (questions_sha256, count): (String, usize),
    runs_dir: &Path,
) -> Result<Prepared> {
    let grader = check_references(&resolved, &questions)?;
    let (device, weights) = resolve_engine(&resolved)?;
    // The activations' dtype on that device: an f32 cache on the CPU is the cache of `auto`.
    let activations = match device.is_gpu() {
        true => weights.dense_dtype().unwrap_or(candle_core::DType::F32),
        false => candle_core::DType::F32,
    };
    let kv = resolved.config.model.kv_cache;
    let engine = EngineKey {
        weights,
        kv_cache: (kv.dtype(activations) != activations).then_some(kv),
        gpu: device.is_gpu(),
    };
    let input = resolved.hash_input(&engine, &model.sha256, &questions_sha256, count);
    let hash = crate::base::util::sha256_hex(crate::core::config::canonical_json(&input).as_bytes());
    let dir = store::run_dir_path(runs_dir, &resolved.config.name, &hash);
    Ok(Prepared {
        resolved,
        model_path: model.path,
        model_is_default: model.is_default,
        model_sha256: model.sha256,
        device,
        weights,
        questions,
        grader,
        hash,
        dir,
    })
}

/// The device the config names and the weight format for it, from the config and the build
/// alone: nothing is probed, so the hash is the same on every host.
fn resolve_engine(resolved: &Resolved) -> Result<(DeviceChoice, WeightFormat)> {
    let c = &resolved.config;
    let bad = |m: String| Error::input(&resolved.file, m);
    let device = DeviceChoice::resolve(&c.device).map_err(|e| bad(format!("device = {:?}: {e}", c.device)))?;
    let gpu = device.is_gpu();
    let weights = c.model.weights.resolve(gpu);
    match (gpu, weights.dense_dtype()) {
        (true, None) => {
            return Err(bad(format!(
                "model.weights = {:?} runs on the CPU only; on a GPU use f16, bf16 or f32 (auto: f16)",
                weights.as_str()
            )))
        }
        (false, Some(candle_core::DType::BF16)) => {
            return Err(bad(
                "model.weights = \"bf16\" runs on GPUs only; on the CPU use q8_0, f16 or f32".into(),
            ))
        }
        _ => {}
    }
    if !gpu && c.memory.device_limit.is_some() {
        return Err(bad(
            "memory.device_limit applies to GPU runs; on the CPU use memory.budget".into(),
        ));
    }
    if c.model.init == ModelInit::Random && c.model.arch.is_none() {
        return Err(bad("model.init = \"random\" needs model.arch".into()));
    }
    Ok((device, weights))
}

impl Prepared {
    /// The model file, the default model fetched and verified first if needed (`say` gets
    /// progress lines).
    pub fn model_file(&self, say: &mut dyn FnMut(&str)) -> Result<PathBuf> {
        if self.model_is_default {
            fetch::ensure_default_model(say)
        } else {
            Ok(self.model_path.clone())
        }
    }

    /// The model file or folder if it is on disk already (the default model may not be fetched
    /// yet).
    pub fn model_on_disk(&self) -> Option<&Path> {
        self.model_path.exists().then_some(self.model_path.as_path())
    }
}

/// `[rft]` compiled, once every reference answer is known to be gradable by it: else exit 2
/// naming the question, before any run directory exists.
fn check_references(resolved: &Resolved, questions: &QuestionSet) -> Result<Grader> {
    let grader = Grader::new(&resolved.config.rft)
        .map_err(|e| Error::input(&resolved.file, e))?
        .for_data(&resolved.config.data);
    for (i, q) in questions.questions.iter().enumerate() {
        grader.check_reference(&q.answer).map_err(|e| {
            let place = q.id.as_ref().map_or(String::new(), |id| format!(" (id {id})"));
            Error::input(Path::new(&questions.source), format!("question {i}{place}: {e}"))
        })?;
    }
    Ok(grader)
}
