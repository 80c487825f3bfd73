//! The kept samples in the files trainers load as they are:
//!
//! - `sft_messages.jsonl`: `{"messages": [system, user, assistant]}` per line — TRL's
//!   conversational language-modeling format (SFTTrainer applies the model's chat template);
//! - `sft_prompt_completion.jsonl`: `{"prompt": [system, user], "completion": [assistant]}` —
//!   TRL's conversational prompt-completion format (the loss on the completion only);
//! - `dataset.parquet`: one row per kept sample, flat columns `index`, `id`, `question`,
//!   `answer`, `system`, `user`, `completion` (pandas, polars, `datasets.load_dataset`).
//!
//! The few-shot turns of `prompt.examples` are left out: the trained model answers without them.
use std::sync::Arc;

use parquet::basic::{Compression, ConvertedType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use super::{Dataset, Kept};

use crate::core::store::{PARQUET_FILE, SFT_MESSAGES_FILE, SFT_PROMPT_COMPLETION_FILE};

fn turn(role: &str, content: &str) -> serde_json::Value {
    serde_json::json!({ "role": role, "content": content })
}

fn jsonl(lines: impl Iterator<Item = serde_json::Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut out, &l).expect("JSON values serialise");
        out.push(b'\n');
    }
    out
}

impl Dataset {
    /// Every trainer file with its bytes.
    pub fn trainer_files(&self) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
        Ok(vec![
            (SFT_MESSAGES_FILE, self.sft_messages()),
            (SFT_PROMPT_COMPLETION_FILE, self.sft_prompt_completion()),
            (
                PARQUET_FILE,
                self.parquet()
                    .map_err(|e| format!("cannot write {PARQUET_FILE}: {e}"))?,
            ),
        ])
    }

    pub fn sft_messages(&self) -> Vec<u8> {
        jsonl(self.records().iter().map(|k| {
            serde_json::json!({ "messages": [turn("system", self.system()), turn("user", &k.user), turn("assistant", &k.completion)] })
        }))
    }

    pub fn sft_prompt_completion(&self) -> Vec<u8> {
        jsonl(self.records().iter().map(|k| {
            serde_json::json!({
                "prompt": [turn("system", self.system()), turn("user", &k.user)],
                "completion": [turn("assistant", &k.completion)],
            })
        }))
    }

    /// `dataset.parquet`, one row group, Snappy-compressed.
    pub fn parquet(&self) -> parquet::errors::Result<Vec<u8>> {
        let r = self.records();
        let text = |f: &dyn Fn(&Kept) -> String| r.iter().map(|k| Some(f(k))).collect::<Vec<_>>();
        parquet_table(vec![
            Column::Int("index", r.iter().map(|k| k.index as i64).collect()),
            Column::Text("id", r.iter().map(|k| k.id.clone()).collect(), true),
            Column::Text("question", text(&|k| k.question.clone()), false),
            Column::Text("answer", text(&|k| k.answer.text()), false),
            Column::Text("system", text(&|_| self.system().to_string()), false),
            Column::Text("user", text(&|k| k.user.clone()), false),
            Column::Text("completion", text(&|k| k.completion.clone()), false),
        ])
    }
}

/// A column of a flat Parquet table: 64-bit integers, or UTF-8 strings (optional: nulls allowed).
pub enum Column {
    Int(&'static str, Vec<i64>),
    Text(&'static str, Vec<Option<String>>, bool),
}

/// A flat table as Parquet bytes: one row group, Snappy-compressed.
pub fn parquet_table(columns: Vec<Column>) -> parquet::errors::Result<Vec<u8>> {
    let mut fields = Vec::new();
    for c in &columns {
        let t = match c {
            Column::Int(name, _) => {
                Type::primitive_type_builder(name, Physical::INT64).with_repetition(Repetition::REQUIRED)
            }
            Column::Text(name, _, optional) => Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                .with_repetition(if *optional {
                    Repetition::OPTIONAL
                } else {
                    Repetition::REQUIRED
                })
                .with_converted_type(ConvertedType::UTF8),
        };
        fields.push(Arc::new(t.build()?));
    }
    let schema = Arc::new(Type::group_type_builder("schema").with_fields(fields).build()?);
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, props)?;
    let mut group = writer.next_row_group()?;
    for c in columns {
        let mut col = group.next_column()?.expect("a column per field");
        match c {
            Column::Int(_, values) => {
                col.typed::<Int64Type>().write_batch(&values, None, None)?;
            }
            Column::Text(_, values, optional) => {
                let present: Vec<ByteArray> = values.iter().flatten().map(|v| ByteArray::from(v.as_str())).collect();
                let levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&present, optional.then_some(&levels[..]), None)?;
            }
        }
        col.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::base::record::{Answer, Finish};
    use crate::core::config::RftConfig;
    use crate::core::store::{QuestionRecord, SampleRecord};

    fn dataset() -> Dataset {
        let mut d = Dataset::new(&RftConfig::default(), "Be brief.");
        for (i, id) in [(0, Some("a")), (1, None)] {
            d.add_question(
                &QuestionRecord {
                    index: i,
                    id: id.map(String::from),
                    question: format!("q{i}"),
                    user: (i == 1).then(|| "Question: q1".to_string()),
                    answer: Answer::Text("#### 7".into()),
                    samples: vec![SampleRecord {
                        sample: 0,
                        text: format!("7 <answer>7</answer> {i}"),
                        new_tokens: 3,
                        finish: Finish::Eos,
                        parsed: None,
                        correct: true,
                        reason: None,
                        logprobs: None,
                        logprob_sum: None,
                    }],
                },
                None,
            );
        }
        d
    }

    #[test]
    fn conversational_files_have_trl_shapes() {
        let d = dataset();
        let lines: Vec<serde_json::Value> = String::from_utf8(d.sft_messages())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[1],
            serde_json::json!({"messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Question: q1"},
                {"role": "assistant", "content": "7 <answer>7</answer> 1"}]})
        );
        let pc: serde_json::Value = serde_json::from_str(
            String::from_utf8(d.sft_prompt_completion())
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(pc["prompt"][1], serde_json::json!({"role": "user", "content": "q0"}));
        assert_eq!(
            pc["completion"],
            serde_json::json!([{"role": "assistant", "content": "7 <answer>7</answer> 0"}])
        );
    }

    #[test]
    fn parquet_rows_read_back() {
        let bytes = dataset().parquet().unwrap();
        let file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &file, &bytes).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            ["index", "id", "question", "answer", "system", "user", "completion"]
        );
        let rows: Vec<serde_json::Value> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_json_value())
            .collect();
        assert_eq!(
            rows[0],
            serde_json::json!({"index": 0, "id": "a", "question": "q0", "answer": "#### 7", "system": "Be brief.", "user": "q0", "completion": "7 <answer>7</answer> 0"})
        );
        assert_eq!(rows[1]["id"], serde_json::Value::Null);
    }
}
