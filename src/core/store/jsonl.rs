//! JSON Lines files: the one reader (a run directory's committed prefix on recovery, a shard's
//! records in the merge), the append-only writer, and truncation to a valid prefix.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::base::error::{Error, IoContext, Result};

/// One line as read: its number (from 1), where it starts and ends in the file, and the record
/// or why there is none.
pub struct Line<T> {
    pub number: usize,
    pub start: u64,
    pub end: u64,
    pub record: std::result::Result<T, Bad>,
}

/// Why a line holds no record.
#[derive(Debug)]
pub enum Bad {
    /// The last line of the file has no newline: a write cut short. Its length in bytes.
    Torn(u64),
    /// Not a valid record.
    Invalid(serde_json::Error),
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bad::Torn(n) => write!(f, "a torn last line ({n} bytes without a newline)"),
            Bad::Invalid(e) => e.fmt(f),
        }
    }
}

/// The lines of a JSON Lines file in order, read as they are needed; a file that does not exist
/// reads as empty.
pub struct Reader<T> {
    file: Option<BufReader<File>>,
    path: PathBuf,
    /// The file's length when it was opened.
    pub len: u64,
    number: usize,
    offset: u64,
    buf: Vec<u8>,
    _record: PhantomData<T>,
}

impl<T: DeserializeOwned> Reader<T> {
    pub fn open(path: &Path) -> Result<Self> {
        let (file, len) = match File::open(path) {
            Ok(f) => {
                let len = f.metadata().ctx(|| format!("{}: cannot read", path.display()))?.len();
                (Some(BufReader::new(f)), len)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, 0),
            Err(e) => return Err(Error::io(format!("{}: cannot read", path.display()), e)),
        };
        Ok(Reader {
            file,
            path: path.to_path_buf(),
            len,
            number: 0,
            offset: 0,
            buf: Vec::new(),
            _record: PhantomData,
        })
    }
}

impl<T: DeserializeOwned> Iterator for Reader<T> {
    type Item = Result<Line<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        let file = self.file.as_mut()?;
        self.buf.clear();
        let n = match file.read_until(b'\n', &mut self.buf) {
            Ok(0) => return None,
            Ok(n) => n as u64,
            Err(e) => return Some(Err(Error::io(format!("{}: cannot read", self.path.display()), e))),
        };
        self.number += 1;
        let start = self.offset;
        self.offset += n;
        let record = match self.buf.split_last() {
            Some((b'\n', line)) => serde_json::from_slice(line).map_err(Bad::Invalid),
            _ => Err(Bad::Torn(n)),
        };
        Some(Ok(Line {
            number: self.number,
            start,
            end: self.offset,
            record,
        }))
    }
}

/// The records at the start of a file that are whole, valid and accepted by `accept(i,
/// record)`; the byte length of that prefix; and a note on what follows it, if anything does.
pub fn read_prefix<T: DeserializeOwned>(
    path: &Path,
    accept: impl Fn(usize, &T) -> bool,
) -> Result<(Vec<T>, u64, Option<String>)> {
    let mut reader = Reader::<T>::open(path)?;
    let len = reader.len;
    let mut out = Vec::new();
    for line in &mut reader {
        let line = line?;
        let note = match line.record {
            Ok(r) if accept(out.len(), &r) => {
                out.push(r);
                continue;
            }
            Ok(_) => format!(
                "dropped {} bytes of records after the last committed question",
                len.saturating_sub(line.start)
            ),
            Err(e @ Bad::Torn(_)) => format!("dropped {e}"),
            Err(Bad::Invalid(e)) => format!("dropped an invalid line and everything after it ({e})"),
        };
        return Ok((out, line.start, Some(note)));
    }
    Ok((out, reader.offset, None))
}

/// Calls `f` with every record of a file in turn; a line that is not a whole, valid record, or
/// that `f` refuses (its message), is an error naming the file and the line.
/// `fix` ends the message: what the user should do about it.
pub fn for_each<T: DeserializeOwned>(
    path: &Path,
    fix: &str,
    mut f: impl FnMut(T) -> std::result::Result<(), String>,
) -> Result<()> {
    for line in Reader::<T>::open(path)? {
        let line = line?;
        let checked = line.record.map_err(|e| e.to_string()).and_then(&mut f);
        checked.map_err(|e| Error::Run(format!("{} line {}: {e}; {fix}", path.display(), line.number)))?;
    }
    Ok(())
}

/// The elements of the array that the top-level member `key` of the JSON object `text` holds,
/// each exactly as written there (a record's bytes, not a parse of them); `None` when there is
/// no such member or `text` is not JSON. Strings are skipped whole: brackets, quotes and
/// keys inside them count for nothing.
pub fn raw_array_elements<'a>(text: &'a str, key: &str) -> Option<Vec<&'a str>> {
    let b = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut last_key: Option<&str> = None;
    // Some while inside the array of `key`; `start`: where its current element began.
    let mut elements: Option<Vec<&str>> = None;
    let mut start: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        let inside = elements.is_some() && depth == 2;
        if inside && start.is_none() && !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b',' | b']') {
            start = Some(i);
        }
        match c {
            b'"' => {
                let close = i + 1 + string_length(&b[i + 1..])?;
                let after = b[close + 1..].iter().find(|c| !c.is_ascii_whitespace());
                if depth == 1 && after == Some(&b':') {
                    last_key = Some(&text[i + 1..close]);
                }
                i = close + 1;
                continue;
            }
            b'[' | b'\x7B' => {
                if depth == 1 && c == b'[' && last_key == Some(key) && elements.is_none() {
                    elements = Some(Vec::new());
                }
                depth += 1;
            }
            b']' | b'\x7D' => {
                depth = depth.checked_sub(1)?;
                if depth == 1 && elements.is_some() {
                    let mut found = elements.take()?;
                    found.extend(start.map(|s| text[s..i].trim_end()));
                    return Some(found);
                }
            }
            b',' if inside => {
                if let Some(s) = start.take() {
                    elements.as_mut()?.push(text[s..i].trim_end());
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Bytes up to the quote that closes a JSON string whose content starts at `b[0]`.
fn string_length(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Cuts a file to its first `len` bytes (durably), if it is longer.
pub fn truncate(path: &Path, len: u64) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    if meta.len() == len {
        return Ok(());
    }
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .ctx(|| format!("{}: cannot open", path.display()))?;
    f.set_len(len).ctx(|| format!("{}: cannot truncate", path.display()))?;
    f.sync_all().ctx(|| format!("{}: cannot sync", path.display()))
}

/// An append-only JSON Lines file. Each line goes out in one `write` call; [`Appender::sync`]
/// makes everything appended so far durable.
pub struct Appender {
    file: File,
    path: PathBuf,
}

impl Appender {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ctx(|| format!("{}: cannot open for appending", path.display()))?;
        Ok(Appender {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        self.append_raw(&line)
    }

    pub fn append_raw(&mut self, line: &[u8]) -> Result<()> {
        self.file
            .write_all(line)
            .ctx(|| format!("{}: cannot append", self.path.display()))
    }

    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .ctx(|| format!("{}: cannot sync", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_array_elements_are_the_bytes_as_written() {
        let line = r#"{"index":3,"question":"a \"samples\":[1,2] [","samples":[{"sample":0,"text":"x],{}\\","n":[1, 2]}, {"sample":1} ,7,"s,"],"after":[9]}"#;
        assert_eq!(
            raw_array_elements(line, "samples").unwrap(),
            [
                r#"{"sample":0,"text":"x],{}\\","n":[1, 2]}"#,
                r#"{"sample":1}"#,
                "7",
                r#""s,""#
            ]
        );
        assert_eq!(raw_array_elements(line, "after").unwrap(), ["9"]);
        assert_eq!(
            raw_array_elements(r#"{"samples":[]}"#, "samples").unwrap(),
            Vec::<&str>::new()
        );
        // A key inside a nested object or a string is not the member.
        assert_eq!(
            raw_array_elements(r#"{"a":{"samples":[1]},"b":"samples"}"#, "samples"),
            None
        );
        assert_eq!(raw_array_elements(r#"{"samples":[1,"#, "samples"), None);
        assert_eq!(raw_array_elements(r#"{"samples":["unclosed]}"#, "samples"), None);
        // What the appender writes of a record reads back as its elements' own serialisation.
        let q = serde_json::json!({"index": 0, "samples": [{"text": "a\nb", "parsed": 0.30000000000000004}, {"text": "]"}]});
        let line = serde_json::to_string(&q).unwrap();
        let want: Vec<String> = q["samples"].as_array().unwrap().iter().map(|s| s.to_string()).collect();
        assert_eq!(raw_array_elements(&line, "samples").unwrap(), want);
    }
}
