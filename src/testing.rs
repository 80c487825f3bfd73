//! Fixtures for tests: a tiny random-weight llama model with a real byte-level BPE tokenizer,
//! written as a GGUF file, so that the whole pipeline runs in milliseconds.
use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{gguf_file::Value, GgmlDType, QTensor};
use candle_core::Tensor;

use crate::engine::device::host;

use crate::base::sampling::Rng;
use crate::source::GgufTokenizer;

pub use crate::base::util::{skip, REQUIRE_ALL_ENV};

pub const TINY_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const TINY_MERGES: [(&str, &str); 5] = [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "t"), ("<", "answer")];

/// GPT-2's reversible byte → printable character table.
pub fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs) {
        table[*b as usize] = char::from_u32(c).unwrap();
    }
    table
}

/// Tokens of the tiny vocabulary: specials, the 256 byte tokens, then merge results.
fn tiny_tokens() -> Vec<String> {
    let mut tokens: Vec<String> = TINY_SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend(byte_chars().into_iter().map(String::from));
    tokens.push("answer".into()); // so that the `< answer` merge has both sides in the vocabulary
    for (a, b) in TINY_MERGES {
        let merged = format!("{a}{b}");
        if !tokens.contains(&merged) {
            tokens.push(merged);
        }
    }
    tokens
}

/// GGUF tokenizer metadata of the tiny vocabulary.
pub fn tiny_tokenizer_metadata() -> HashMap<String, Value> {
    let tokens = tiny_tokens();
    let types: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, _)| Value::I32(if i < TINY_SPECIALS.len() { 3 } else { 1 }))
        .collect();
    let mut md = HashMap::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    md.insert("tokenizer.ggml.pre".into(), Value::String("smollm".into()));
    md.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.into_iter().map(Value::String).collect()),
    );
    md.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    md.insert(
        "tokenizer.ggml.merges".into(),
        Value::Array(
            TINY_MERGES
                .iter()
                .map(|(a, b)| Value::String(format!("{a} {b}")))
                .collect(),
        ),
    );
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
    md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
    md.insert(
        "tokenizer.chat_template".into(),
        Value::String(crate::core::prompt::CHATML.into()),
    );
    md
}

pub fn tiny_tokenizer() -> GgufTokenizer {
    GgufTokenizer::from_gguf_metadata(&tiny_tokenizer_metadata()).expect("tiny tokenizer")
}

/// Shape of the tiny model.
pub const TINY_LAYERS: usize = 2;
pub const TINY_EMBD: usize = 64;
pub const TINY_HEADS: usize = 4;
pub const TINY_KV_HEADS: usize = 2;
pub const TINY_FF: usize = 128;

/// Writes a tiny llama GGUF with random f32 weights drawn from `seed`.
pub fn write_tiny_model(path: &Path, seed: u64) -> candle_core::Result<()> {
    write_tiny_model_of(path, seed, "llama")
}

/// [`write_tiny_model`] declaring another `general.architecture` (for refusal tests).
pub fn write_tiny_model_of(path: &Path, seed: u64, architecture: &str) -> candle_core::Result<()> {
    write_tiny(path, seed, architecture, 1.0)
}

/// [`write_tiny_model`] with its final norm's weights all `norm` (infinity: non-finite logits).
pub fn write_tiny_model_with_output_norm(path: &Path, seed: u64, norm: f32) -> candle_core::Result<()> {
    write_tiny(path, seed, "llama", norm)
}

fn write_tiny(path: &Path, seed: u64, architecture: &str, output_norm: f32) -> candle_core::Result<()> {
    let mut md = tiny_tokenizer_metadata();
    let vocab = match &md["tokenizer.ggml.tokens"] {
        Value::Array(a) => a.len(),
        _ => unreachable!(),
    };
    for (k, v) in [
        ("general.architecture", Value::String(architecture.into())),
        ("general.name", Value::String("rftx-tiny-test-model".into())),
        ("llama.block_count", Value::U32(TINY_LAYERS as u32)),
        ("llama.context_length", Value::U32(512)),
        ("llama.embedding_length", Value::U32(TINY_EMBD as u32)),
        ("llama.feed_forward_length", Value::U32(TINY_FF as u32)),
        ("llama.attention.head_count", Value::U32(TINY_HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(TINY_KV_HEADS as u32)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        (
            "llama.rope.dimension_count",
            Value::U32((TINY_EMBD / TINY_HEADS) as u32),
        ),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.vocab_size", Value::U32(vocab as u32)),
    ] {
        md.insert(k.to_string(), v);
    }
    let mut rng = Rng::from_seed(seed);
    let mut draw =
        |n: usize, scale: f32| -> Vec<f32> { (0..n).map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale).collect() };
    let matrix = |data: Vec<f32>, rows: usize, cols: usize| -> candle_core::Result<QTensor> {
        QTensor::quantize(&Tensor::from_vec(data, (rows, cols), &host())?, GgmlDType::F32)
    };
    let mut random = |rows: usize, cols: usize, scale: f32| matrix(draw(rows * cols, scale), rows, cols);
    let kv = TINY_KV_HEADS * TINY_EMBD / TINY_HEADS;
    let w = 1.0 / (TINY_EMBD as f32).sqrt();
    let mut tensors: Vec<(String, QTensor)> = vec![("token_embd.weight".into(), random(vocab, TINY_EMBD, 1.0)?)];
    // An untied output layer with small weights keeps the logits flat enough for varied samples;
    // the end-of-turn row is larger, so that sequences also finish early.
    let mut output = random(vocab, TINY_EMBD, 0.05)?
        .dequantize(&host())?
        .flatten_all()?
        .to_vec1::<f32>()?;
    output[2 * TINY_EMBD..3 * TINY_EMBD].iter_mut().for_each(|x| *x *= 3.0);
    tensors.push(("output.weight".into(), matrix(output, vocab, TINY_EMBD)?));
    let ones = |n: usize| QTensor::quantize(&Tensor::ones(n, candle_core::DType::F32, &host())?, GgmlDType::F32);
    let norm = Tensor::full(output_norm, TINY_EMBD, &host())?;
    tensors.push(("output_norm.weight".into(), QTensor::quantize(&norm, GgmlDType::F32)?));
    for i in 0..TINY_LAYERS {
        let p = |n: &str| format!("blk.{i}.{n}.weight");
        tensors.push((p("attn_norm"), ones(TINY_EMBD)?));
        tensors.push((p("ffn_norm"), ones(TINY_EMBD)?));
        tensors.push((p("attn_q"), random(TINY_EMBD, TINY_EMBD, w)?));
        tensors.push((p("attn_k"), random(kv, TINY_EMBD, w)?));
        tensors.push((p("attn_v"), random(kv, TINY_EMBD, w)?));
        tensors.push((p("attn_output"), random(TINY_EMBD, TINY_EMBD, w)?));
        tensors.push((p("ffn_gate"), random(TINY_FF, TINY_EMBD, w)?));
        tensors.push((p("ffn_up"), random(TINY_FF, TINY_EMBD, w)?));
        tensors.push((
            p("ffn_down"),
            random(TINY_EMBD, TINY_FF, 1.0 / (TINY_FF as f32).sqrt())?,
        ));
    }
    let mut md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    md_refs.sort_by_key(|(k, _)| *k); // a deterministic file: the same seed gives the same sha256
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path)?;
    candle_core::quantized::gguf_file::write(&mut f, &md_refs, &t_refs)
}

/// A config file for the tiny model, with `extra` TOML appended.
pub fn tiny_config(dir: &Path, model: &Path, extra: &str) -> std::path::PathBuf {
    let p = dir.join("tiny.toml");
    let text = format!(
        "name = \"tiny\"\nseed = 1\n[model]\npath = {:?}\nweights = \"q8_0\"\n[data]\nlimit = 4\n[generation]\noversample = 5\nchunk_size = 2\nmax_new_tokens = 12\ntemperature = 1.0\n{extra}",
        model.display().to_string()
    );
    std::fs::write(&p, text).expect("write tiny config");
    p
}

/// The checkpoint tensors of a GGUF model: every tensor under its checkpoint name (the inverse
/// of `hf::checkpoint_name`), q/k rows in the half-split layout, plus qwen2 biases if asked for.
fn hf_tensors(
    source: &mut crate::source::ModelSource,
    qwen2_biases: Option<f32>,
) -> crate::Result<std::collections::HashMap<String, Tensor>> {
    let spec = source.spec().clone();
    let mut names = vec!["token_embd.weight".to_string(), "output_norm.weight".into()];
    if source.has_tensor("output.weight") {
        names.push("output.weight".into());
    }
    let per_layer = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "attn_norm",
        "ffn_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    names.extend((0..spec.n_layer).flat_map(|i| per_layer.map(|w| format!("blk.{i}.{w}.weight"))));
    let mut out = std::collections::HashMap::new();
    for g in names {
        let (h, heads) = crate::source::hf::checkpoint_name(&g, &spec).expect("a llama tensor");
        let mut t = source.tensor(&g, &host())?.dequantize(&host())?;
        if let Some(heads) = heads {
            // The inverse of `hf::interleave_rotary_rows`.
            let (rows, cols) = t.dims2()?;
            t = t
                .reshape((heads, rows / heads / 2, 2, cols))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((rows, cols))?;
        }
        out.insert(h, t);
    }
    if let Some(scale) = qwen2_biases {
        let mut rng = Rng::from_seed(5);
        let kv = spec.n_kv_head * spec.head_dim;
        for i in 0..spec.n_layer {
            for (what, n) in [("q_proj", spec.n_embd), ("k_proj", kv), ("v_proj", kv)] {
                let b: Vec<f32> = (0..n).map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale).collect();
                let name = format!("model.layers.{i}.self_attn.{what}.bias");
                out.insert(name, Tensor::from_vec(b, n, &host())?);
            }
        }
    }
    Ok(out)
}

/// Writes a Hugging Face model folder holding the weights, tokenizer and chat template of the
/// llama GGUF file `gguf` (as f32, q/k rows back in the checkpoint's half-split rotary layout):
/// what `save_pretrained` of the same model would write. With `qwen2_biases`, a qwen2 folder
/// instead, with q/k/v biases drawn uniformly from ±scale (all zero for 0).
pub fn write_hf_folder(gguf: &Path, dir: &Path, qwen2_biases: Option<f32>) -> crate::Result<()> {
    let mut source = crate::source::ModelSource::open(gguf)?;
    let spec = source.spec().clone();
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io("create the folder", e))?;
    let out = hf_tensors(&mut source, qwen2_biases)?;
    candle_core::safetensors::save(&out, dir.join("model.safetensors"))?;
    let tok = source.tokenizer()?;
    let config = serde_json::json!({
        "architectures": [if qwen2_biases.is_some() { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": if qwen2_biases.is_some() { "qwen2" } else { "llama" },
        "hidden_size": spec.n_embd, "num_attention_heads": spec.n_head, "num_key_value_heads": spec.n_kv_head,
        "num_hidden_layers": spec.n_layer, "intermediate_size": spec.n_ff, "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.context_length, "rope_theta": spec.rope_base, "rms_norm_eps": spec.rms_eps,
        "tie_word_embeddings": !source.has_tensor("output.weight"), "torch_dtype": "float32",
        "eos_token_id": tok.stop_ids[0],
    });
    let template = source.chat_template().unwrap_or_default();
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| crate::Error::io(format!("write {name}"), e))
    };
    write("config.json", serde_json::to_string_pretty(&config).expect("json"))?;
    write("tokenizer.json", tok.to_json().map_err(crate::Error::Run)?)?;
    write(
        "tokenizer_config.json",
        serde_json::json!({ "chat_template": template }).to_string(),
    )?;
    write(
        "generation_config.json",
        serde_json::json!({ "eos_token_id": tok.stop_ids }).to_string(),
    )?;
    Ok(())
}

/// `n` questions shaped like GSM8K's rows: `question`, a short word problem, and `answer`, a
/// worked solution with `<<…>>` calculator notes whose final line is `#### N`.
pub fn gsm8k_rows(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let (a, b) = (6 + (7 * i) % 30, 2 + i % 5);
            match i % 3 {
                0 => (
                    format!("Natalia sold clips to {a} of her friends in April, and then she sold {b} times as many clips in May. How many clips did Natalia sell in May?"),
                    format!("Natalia sold {a}*{b} = <<{a}*{b}={p}>>{p} clips in May.\n#### {p}", p = a * b),
                ),
                1 => (
                    format!("Tom has {a} apples. He buys {b} more apples at the market. How many apples does Tom have now?"),
                    format!("Tom has {a}+{b} = <<{a}+{b}={s}>>{s} apples now.\n#### {s}", s = a + b),
                ),
                _ => (
                    format!("A baker made {a} muffins and sold {b} of them. How many muffins are left?"),
                    format!("The baker has {a}-{b} = <<{a}-{b}={d}>>{d} muffins left.\n#### {d}", d = a - b),
                ),
            }
        })
        .collect()
}

/// Writes `rows` as a GSM8K-shaped Parquet file (columns `question`, `answer`).
pub fn write_gsm8k_parquet(path: &Path, rows: &[(String, String)]) -> crate::Result<()> {
    use crate::core::rft::outputs::{parquet_table, Column};
    let bytes = parquet_table(vec![
        Column::Text("question", rows.iter().map(|r| Some(r.0.clone())).collect(), false),
        Column::Text("answer", rows.iter().map(|r| Some(r.1.clone())).collect(), false),
    ])
    .map_err(|e| crate::Error::Run(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| crate::Error::io(path.display().to_string(), e))
}

/// A Hugging Face hub cache under `cache` holding `openai/gsm8k` as `huggingface_hub` lays it
/// out: configs `main` and `socratic`, splits `train` (`train` rows) and `test` (`test` rows),
/// `refs/main` naming the snapshot.
pub fn write_gsm8k_hub(cache: &Path, train: usize, test: usize) -> crate::Result<()> {
    let commit = "e53f048856ff4f594e959d75785d2c2d37b678ee";
    let repo = cache.join("datasets--openai--gsm8k");
    let io = |p: &Path, e| crate::Error::io(p.display().to_string(), e);
    std::fs::create_dir_all(repo.join("refs")).map_err(|e| io(&repo, e))?;
    std::fs::write(repo.join("refs/main"), commit).map_err(|e| io(&repo, e))?;
    let rows = gsm8k_rows(train + test);
    for config in ["main", "socratic"] {
        let dir = repo.join("snapshots").join(commit).join(config);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        write_gsm8k_parquet(&dir.join("train-00000-of-00001.parquet"), &rows[..train])?;
        write_gsm8k_parquet(&dir.join("test-00000-of-00001.parquet"), &rows[train..])?;
    }
    Ok(())
}
