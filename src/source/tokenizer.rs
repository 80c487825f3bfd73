//! The tokenizer: rebuilt from GGUF metadata (there is no tokenizer.json offline for a GGUF
//! file), or loaded from a model folder's `tokenizer.json`.
//!
//! GGUF files of byte-level BPE models (`tokenizer.ggml.model = "gpt2"`) carry the vocabulary,
//! the merges and the token types. We rebuild the Hugging Face pipeline from them: the
//! normaliser and word split of the pre-tokenizer type (`tokenizer.ggml.pre`, see
//! [`super::pre_tokenizer`]: Llama 3's, Qwen2's, SmolLM2's digits and GPT-2 split, …), no prefix
//! space, byte-level BPE, and control tokens (`<|im_start|>`, `<|im_end|>`, …) as single special
//! ids.
use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::{AddedToken, Tokenizer};

use super::pre_tokenizer;

/// GGUF token type of control tokens.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of user-defined tokens (added tokens that are matched in text).
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

pub struct GgufTokenizer {
    inner: Tokenizer,
    /// Tokens that end a completion: the end-of-turn token and end-of-text.
    pub stop_ids: Vec<u32>,
    pub vocab_size: usize,
}

fn md_str<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a str, String> {
    match md.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("metadata {key} is not a string")),
        None => Err(format!("metadata {key} is missing")),
    }
}

fn md_strings(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match md.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("metadata {key} holds a non-string")),
            })
            .collect(),
        _ => Err(format!("metadata {key} is missing or not an array")),
    }
}

fn md_u32(md: &HashMap<String, Value>, key: &str) -> Option<u32> {
    md.get(key).and_then(|v| v.to_u32().ok())
}

impl GgufTokenizer {
    /// The tokenizer of a GGUF file, reading only its header: a vocabulary-only file (no tensors)
    /// will do. Errors name the file.
    pub fn from_gguf_file(path: &std::path::Path) -> crate::base::error::Result<Self> {
        let bad = |m: String| crate::base::error::Error::input(path, m);
        let mut file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open the GGUF file: {e}")))?;
        let content = candle_core::quantized::gguf_file::Content::read(&mut file).map_err(|e| {
            bad(format!(
                "not a readable GGUF file ({e}); is it truncated or of another format?"
            ))
        })?;
        Self::from_gguf_metadata(&content.metadata).map_err(bad)
    }

    /// Builds the tokenizer from a GGUF file's metadata. Errors are plain sentences for the caller
    /// to attach to the file's path.
    pub fn from_gguf_metadata(md: &HashMap<String, Value>) -> Result<Self, String> {
        let model = md_str(md, "tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(format!(
                "tokenizer type `{model}` is not supported: rftx rebuilds byte-level BPE (`gpt2`) tokenizers only"
            ));
        }
        let pre = pre_tokenizer::find(md_str(md, "tokenizer.ggml.pre").unwrap_or("default"))?;
        let tokens = md_strings(md, "tokenizer.ggml.tokens")?;
        let merges = md_strings(md, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };

        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| format!("bad merge `{m}`"))
            })
            .collect::<Result<_, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre.ignore_merges)
            .build()
            .map_err(|e| format!("cannot build the BPE model from the GGUF vocabulary: {e}"))?;

        let mut inner = Tokenizer::new(bpe);
        inner.with_normalizer(pre.normalizer());
        inner.with_pre_tokenizer(Some(pre.pre_tokenizer()?));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .map(|(tok, &t)| AddedToken::from(tok.clone(), t == TOKEN_TYPE_CONTROL))
            .collect();
        inner.add_special_tokens(&specials);

        let mut stop_ids = Vec::new();
        for id in [
            md_u32(md, "tokenizer.ggml.eos_token_id"),
            vocab_id(&tokens, "<|im_end|>"),
            vocab_id(&tokens, "<|endoftext|>"),
        ]
        .into_iter()
        .flatten()
        {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
        Ok(GgufTokenizer {
            inner,
            stop_ids,
            vocab_size: tokens.len(),
        })
    }

    /// Loads a `tokenizer.json`; `eos_ids` come from the model folder's configs. The end-of-turn
    /// and end-of-text tokens stop a completion too, as for a GGUF file.
    pub fn from_file(path: &std::path::Path, eos_ids: &[u32]) -> Result<Self, String> {
        let inner = Tokenizer::from_file(path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        let mut stop_ids = Vec::new();
        let named = ["<|im_end|>", "<|endoftext|>"].map(|t| inner.token_to_id(t));
        for id in eos_ids.iter().copied().map(Some).chain(named).flatten() {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
        let vocab_size = inner.get_vocab_size(true);
        Ok(GgufTokenizer {
            inner,
            stop_ids,
            vocab_size,
        })
    }

    /// The `tokenizer.json` of this tokenizer (for tests that build a model folder).
    pub fn to_json(&self) -> Result<String, String> {
        self.inner.to_string(false).map_err(|e| e.to_string())
    }

    /// Token ids of `text`; special tokens written in the text become their single ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.inner.decode(ids, false).map_err(|e| e.to_string())
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

fn vocab_id(tokens: &[String], t: &str) -> Option<u32> {
    tokens.iter().position(|x| x == t).map(|i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_vocab_round_trips_and_specials_are_single_ids() {
        let tok = crate::testing::tiny_tokenizer();
        let text = "<|im_start|>user\nHow many grams are in 2.5 kg?<|im_end|>\n<|im_start|>assistant\n";
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids[0], tok.token_to_id("<|im_start|>").unwrap());
        assert_eq!(
            ids.iter()
                .filter(|&&i| i == tok.token_to_id("<|im_end|>").unwrap())
                .count(),
            1
        );
        assert_eq!(tok.decode(&ids).unwrap(), text);
        // Digits are split one by one: "2.5" is three tokens.
        let digits = tok.encode("2025").unwrap();
        assert_eq!(digits.len(), 4);
        // No prefix space is added.
        assert_eq!(tok.decode(&tok.encode("hello").unwrap()).unwrap(), "hello");
    }

    #[test]
    fn stop_ids_include_end_of_turn() {
        let tok = crate::testing::tiny_tokenizer();
        assert!(tok.stop_ids.contains(&tok.token_to_id("<|im_end|>").unwrap()));
        assert!(tok.stop_ids.contains(&tok.token_to_id("<|endoftext|>").unwrap()));
    }

    #[test]
    fn unsupported_tokenizers_are_refused() {
        let mut md = crate::testing::tiny_tokenizer_metadata();
        md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        let e = GgufTokenizer::from_gguf_metadata(&md).err().unwrap();
        assert!(e.contains("`llama` is not supported"), "{e}");
        let mut md = crate::testing::tiny_tokenizer_metadata();
        md.insert("tokenizer.ggml.pre".into(), Value::String("kimi-k2".into()));
        let e = GgufTokenizer::from_gguf_metadata(&md).err().unwrap();
        assert!(e.contains("pre-tokenizer `kimi-k2`") && e.contains("qwen2"), "{e}");
    }
}
