//! llama.cpp's own tokenizer test vectors against rftx's GGUF tokenizer (issue 32).
//!
//! llama.cpp ships vocabulary-only GGUF files (`models/ggml-vocab-*.gguf`) with test strings
//! (`.gguf.inp`, separated by a line `__ggml_vocab_test__`) and the token ids Hugging Face
//! `tokenizers` gives them (`.gguf.out`, one line per string). Its `tests/test-tokenizer-0.cpp`
//! tokenizes every string with `add_special = false` and `parse_special = false` and wants exactly
//! those ids; so does this test, for every vocabulary whose pre-tokenizer rftx accepts. The
//! others must be refused with a message naming what was found and what is supported.
//! `scripts/fetch-llama-vocab.sh` fetches the files (`.ci/run` sets `RFTX_VOCAB_DIR`).
mod common;

use std::path::{Path, PathBuf};

use rftx::source::GgufTokenizer;

/// Vocabularies with test vectors that rftx must accept (and then tokenize 100 % as expected).
const MUST_ACCEPT: &[&str] = &[
    "command-r",
    "deepseek-coder",
    "deepseek-llm",
    "falcon",
    "gpt-2",
    "llama-bpe",
    "mpt",
    "qwen2",
    "qwen35",
    "refact",
    "starcoder",
];

/// Vocabularies with test vectors that rftx refuses, and what the refusal must say.
const MUST_REFUSE: &[(&str, &str)] = &[
    ("bert-bge", "tokenizer type `bert` is not supported"),
    ("gemma-4", "tokenizer type `gemma4` is not supported"),
    ("llama-spm", "tokenizer type `llama` is not supported"),
    ("phi-3", "tokenizer type `llama` is not supported"),
];

fn vocab_dir() -> Option<PathBuf> {
    match std::env::var_os("RFTX_VOCAB_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            rftx::testing::skip(
                "RFTX_VOCAB_DIR is unset: run RFTX_VOCAB_DIR=$(scripts/fetch-llama-vocab.sh) cargo test --release --test vocab_vectors",
            );
            None
        }
    }
}

/// The test strings and expected ids of `<gguf>.inp` and `<gguf>.out`, read as
/// test-tokenizer-0.cpp reads them.
fn read_vectors(gguf: &Path) -> Vec<(String, Vec<u32>)> {
    let with = |ext: &str| PathBuf::from(format!("{}.{ext}", gguf.display()));
    let inp = std::fs::read_to_string(with("inp")).unwrap();
    let out = std::fs::read_to_string(with("out")).unwrap();
    let sep = "\n__ggml_vocab_test__\n";
    let mut texts: Vec<&str> = inp.split(sep).collect();
    if texts.last() == Some(&"") {
        texts.pop(); // the file ends with a separator
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{}: .inp and .out differ in length",
        gguf.display()
    );
    texts.into_iter().map(String::from).zip(ids).collect()
}

/// Passed and total strings of one vocabulary; the failures are printed.
fn check_vectors(name: &str, tok: &GgufTokenizer, vectors: &[(String, Vec<u32>)]) -> usize {
    let mut passed = 0;
    for (text, want) in vectors {
        let got = tok.encode(text).unwrap();
        if &got == want {
            passed += 1;
        } else {
            eprintln!("{name}: {text:?}\n  want {want:?}\n  got  {got:?}");
        }
    }
    passed
}

fn vocab_name(p: &Path) -> String {
    let f = p.file_name().unwrap().to_string_lossy();
    f.trim_start_matches("ggml-vocab-")
        .trim_end_matches(".gguf")
        .to_string()
}

#[test]
fn llama_cpp_vocab_test_vectors() {
    let Some(dir) = vocab_dir() else { return };
    let mut ggufs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("RFTX_VOCAB_DIR={}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    ggufs.sort();
    assert!(!ggufs.is_empty(), "no ggml-vocab-*.gguf in {}", dir.display());
    let (mut accepted, mut refused, mut failed) = (vec![], vec![], vec![]);
    for gguf in &ggufs {
        let name = vocab_name(gguf);
        let has_vectors = Path::new(&format!("{}.inp", gguf.display())).exists();
        match GgufTokenizer::from_gguf_file(gguf) {
            Ok(tok) if has_vectors => {
                let vectors = read_vectors(gguf);
                let passed = check_vectors(&name, &tok, &vectors);
                println!("{name}: {passed}/{} strings as llama.cpp expects", vectors.len());
                if passed != vectors.len() {
                    failed.push(name.clone());
                }
                accepted.push(name);
            }
            Ok(_) => println!("{name}: accepted (no test vectors)"),
            Err(e) => {
                let e = e.to_string();
                println!("{name}: refused: {e}");
                assert!(e.contains("is not supported"), "{name}: {e}");
                assert!(
                    e.contains(&gguf.display().to_string()),
                    "{name}: the error names the file: {e}"
                );
                if has_vectors {
                    refused.push((name, e));
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "vocabularies with strings not tokenized as llama.cpp expects: {failed:?}"
    );
    for want in MUST_ACCEPT {
        assert!(
            accepted.iter().any(|a| a == want),
            "ggml-vocab-{want}.gguf was not accepted (refused: {refused:?})"
        );
    }
    for (want, needle) in MUST_REFUSE {
        let e = refused.iter().find(|(n, _)| n == want).map(|(_, e)| e);
        assert!(
            e.is_some_and(|e| e.contains(needle)),
            "ggml-vocab-{want}.gguf: want `{needle}`, got {e:?}"
        );
    }
    for (name, e) in &refused {
        assert!(
            MUST_REFUSE.iter().any(|(n, _)| n == name),
            "ggml-vocab-{name}.gguf was refused: {e}"
        );
    }
}

#[test]
fn an_unknown_pre_tokenizer_is_exit_2_naming_it_and_the_supported_ones() {
    let f = common::Fixture::new("");
    common::rewrite_metadata(&f.model, "tokenizer.ggml.pre", "kimi-k2");
    let r = f.run(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for needle in [
        "pre-tokenizer `kimi-k2`",
        "tokenizer.ggml.pre",
        "llama-bpe",
        "qwen2",
        "smollm",
        "tiny.gguf",
    ] {
        assert!(r.stderr.contains(needle), "`{needle}` not in: {}", r.stderr);
    }
    assert!(!f.runs().exists() || std::fs::read_dir(f.runs()).unwrap().next().is_none());
}
