//! How a byte-level BPE tokenizer splits text before its merges, per `tokenizer.ggml.pre`.
//!
//! The names and regexes are llama.cpp's (`src/llama-vocab.cpp`: the `tokenizer_pre` names of each
//! `LLAMA_VOCAB_PRE_TYPE_*`, and the `regex_exprs` of `llm_tokenizer_bpe`); the pipeline around
//! them is the one the models' own `tokenizer.json` files define: each regex a `Split` whose
//! matches are isolated, applied in turn, then `ByteLevel` without its own regex; Unicode NFC
//! first where the tokenizer.json has it (Qwen2, GPT-NeoX's MPT vocabulary, Command R); a word
//! that is a vocabulary entry one token where the BPE model ignores merges (Llama 3). Where
//! llama.cpp rewrites a tokenizer.json regex for C++'s `std::regex` (`(?i:'s|…)` as
//! `'[sS]|…`), the original is kept: rftx runs it with the same engine (Oniguruma) as
//! Hugging Face `tokenizers`, which made llama.cpp's expected tokens.
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

/// How text is split into words.
pub(super) enum Splits {
    /// GPT-2's byte-level regex (`ByteLevel` with `use_regex`), after every digit is isolated
    /// where `digits` (the pipeline rftx has always built for SmolLM2: its run hashes depend on it).
    Gpt2 { digits: bool },
    /// These regexes in turn, each one's matches isolated, then byte-level without a regex.
    Regexes(&'static [&'static str]),
}

/// One `LLAMA_VOCAB_PRE_TYPE_*` (or a group of them with the same pipeline).
pub(super) struct PreType {
    /// The `tokenizer.ggml.pre` values llama.cpp maps to it.
    pub names: &'static [&'static str],
    pub splits: Splits,
    /// Unicode NFC before splitting (the models' tokenizer.json `normalizer`).
    pub nfc: bool,
    /// A word that is itself a vocabulary entry is one token (tokenizer.json's `ignore_merges`).
    pub ignore_merges: bool,
}

/// GPT-2's regex as llama.cpp writes it (without the trailing `|\s+`, which changes no split:
/// what it would match is left between matches and so isolated all the same).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's tokenizer.json regex (llama.cpp: LLAMA3, DBRX, SMAUG).
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's tokenizer.json regex: Llama 3's with digits one by one (llama.cpp: QWEN2, STABLELM2,
/// HUNYUAN, SOLAR_OPEN).
const QWEN2: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen3.5's tokenizer.json regex: Qwen2's with combining marks kept in words.
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// DeepSeek LLM's (llama.cpp: DEEPSEEK_LLM; its letters and CJK ranges written as escapes, since
/// some of them, `\u{2126}` OHM SIGN for one, are changed by Unicode normalisation in an editor).
const DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
    "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+",
    "\\s+$",
    "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
    "\\p{N}+",
];

/// DeepSeek Coder's (llama.cpp: DEEPSEEK_CODER).
const DEEPSEEK_CODER: &[&str] = &[
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
    "\\p{N}",
];

/// Falcon's (llama.cpp: FALCON).
const FALCON: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"];

const fn regexes(
    names: &'static [&'static str],
    regexes: &'static [&'static str],
    nfc: bool,
    ignore_merges: bool,
) -> PreType {
    PreType {
        names,
        splits: Splits::Regexes(regexes),
        nfc,
        ignore_merges,
    }
}

const fn gpt2(names: &'static [&'static str], digits: bool, nfc: bool) -> PreType {
    PreType {
        names,
        splits: Splits::Gpt2 { digits },
        nfc,
        ignore_merges: false,
    }
}

/// Every pre-tokenizer rftx rebuilds, checked against llama.cpp's test vocabularies where it has
/// one (tests/vocab_vectors.rs).
pub(super) const PRE_TYPES: &[PreType] = &[
    // LLAMA3
    regexes(
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        &[LLAMA3],
        false,
        true,
    ),
    regexes(&["dbrx", "smaug-bpe"], &[LLAMA3], false, false),
    // QWEN2 (Qwen's tokenizer.json normalises to NFC)
    regexes(&["qwen2", "deepseek-r1-qwen"], &[QWEN2], true, false),
    regexes(
        &["stablelm2", "hunyuan", "solar-open", "megrez", "kormo", "f2llmv2"],
        &[QWEN2],
        false,
        false,
    ),
    // Qwen3.5 dropped the NFC normaliser: llama.cpp's qwen35 vectors keep `e\u{301}` decomposed.
    regexes(&["qwen35"], &[QWEN35], false, false),
    // STARCODER, REFACT, SMOLLM, CODESHELL, EXAONE, MINERVA, MELLUM2, COMMAND_R: digits, then GPT-2
    gpt2(
        &[
            "smollm",
            "starcoder",
            "refact",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        true,
        false,
    ),
    gpt2(&["command-r"], true, true),
    // GPT2, MPT, OLMO, JAIS, TRILLION, GRANITE_DOCLING. `gpt2` and `default` (also a file with no
    // tokenizer.ggml.pre) are rftx's own earlier names for the GPT-2 split and stay so; llama.cpp
    // knows `gpt2` not, and splits `default` with its own four regexes.
    gpt2(
        &[
            "gpt-2",
            "gpt2",
            "default",
            "phi-2",
            "gigachat",
            "a.x-4.0",
            "mellum",
            "exaone4",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
        ],
        false,
        false,
    ),
    gpt2(&["mpt"], false, true),
    regexes(&["deepseek-llm"], DEEPSEEK_LLM, false, false),
    regexes(&["deepseek-coder"], DEEPSEEK_CODER, false, false),
    regexes(&["falcon"], FALCON, false, false),
];

/// The pre-tokenizer type named `pre`, or the sentence refusing it (naming every supported name).
pub(super) fn find(pre: &str) -> Result<&'static PreType, String> {
    PRE_TYPES.iter().find(|t| t.names.contains(&pre)).ok_or_else(|| {
        let names: Vec<&str> = PRE_TYPES.iter().flat_map(|t| t.names.iter().copied()).collect();
        format!(
            "pre-tokenizer `{pre}` (metadata tokenizer.ggml.pre) is not supported: rftx rebuilds {}; \
             use a GGUF file of a model with one of these, or the model's Hugging Face folder",
            names.join(", ")
        )
    })
}

impl PreType {
    /// The `tokenizers` pre-tokenizer of this type.
    pub(super) fn pre_tokenizer(&self) -> Result<PreTokenizerWrapper, String> {
        match self.splits {
            Splits::Gpt2 { digits } => {
                let byte_level = ByteLevel::new(false, true, true);
                Ok(if digits {
                    Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
                } else {
                    byte_level.into()
                })
            }
            Splits::Regexes(regexes) => {
                let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(regexes.len() + 1);
                for r in regexes {
                    let split = Split::new(
                        SplitPattern::Regex(r.to_string()),
                        SplitDelimiterBehavior::Isolated,
                        false,
                    )
                    .map_err(|e| format!("cannot compile the pre-tokenizer regex `{r}`: {e}"))?;
                    steps.push(split.into());
                }
                steps.push(ByteLevel::new(false, true, false).into());
                Ok(Sequence::new(steps).into())
            }
        }
    }

    /// The normaliser of this type, if any.
    pub(super) fn normalizer(&self) -> Option<NormalizerWrapper> {
        self.nfc.then(|| NFC.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_regex_compiles_and_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for t in PRE_TYPES {
            t.pre_tokenizer().unwrap();
            for n in t.names {
                assert!(seen.insert(*n), "`{n}` is listed twice");
            }
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_supported_ones() {
        let e = find("kimi-k2").err().unwrap();
        assert!(e.contains("pre-tokenizer `kimi-k2`"), "{e}");
        assert!(e.contains("tokenizer.ggml.pre"), "{e}");
        for n in ["llama-bpe", "qwen2", "smollm", "gpt-2", "deepseek-coder"] {
            assert!(e.contains(n), "{e}");
        }
    }
}
