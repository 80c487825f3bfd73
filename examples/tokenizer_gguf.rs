//! Writes a GGUF file that holds a model file's metadata only (tokenizer, chat template,
//! architecture) and no tensors: what `model.init = "random"` needs from a file, small enough to
//! carry where the model is not (the GPU machine of `bench/gpu.sh` and `bench/gpu_memory.sh`).
//!
//! `cargo run --release --example tokenizer_gguf -- IN.gguf OUT.gguf`
use candle_core::quantized::gguf_file;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        return Err("usage: tokenizer_gguf IN.gguf OUT.gguf".into());
    };
    let mut f = std::fs::File::open(input)?;
    let content = gguf_file::Content::read(&mut f)?;
    let mut metadata: Vec<(&str, &gguf_file::Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    metadata.sort_by_key(|(k, _)| *k);
    let mut out = std::fs::File::create(output)?;
    gguf_file::write(&mut out, &metadata, &[])?;
    Ok(())
}
