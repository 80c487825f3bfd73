//! Writes a GSM8K-shaped dataset into a Hugging Face hub cache, as `huggingface_hub` lays it out
//! (`datasets--openai--gsm8k`, configs `main` and `socratic`, splits `train` and `test` in
//! Parquet): the README's GSM8K run without a download.
//!
//!     cargo run --release --features testing --example gsm8k_fixture -- /tmp/hub [TRAIN] [TEST]
//!     HF_HUB_CACHE=/tmp/hub rftx run configs/gsm8k.toml
fn main() {
    let mut args = std::env::args().skip(1);
    let Some(cache) = args.next() else {
        eprintln!("usage: gsm8k_fixture CACHE_DIR [TRAIN_ROWS] [TEST_ROWS]");
        std::process::exit(2);
    };
    let mut count = |default: usize| args.next().map_or(default, |n| n.parse().expect("a row count"));
    let (train, test) = (count(20), count(10));
    rftx::testing::write_gsm8k_hub(std::path::Path::new(&cache), train, test).expect("the fixture is written");
    println!("{cache}: openai/gsm8k with {train} train and {test} test questions (configs main, socratic)");
}
