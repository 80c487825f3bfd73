//! `rft.grader = "command"`: the user's own verifier, a long-lived subprocess speaking JSON Lines.
//!
//! rftx writes a batch of requests (a question's samples, or a block of `rftx grade`'s cases),
//! one JSON object a line, `{"completion": …, "reference": …, "row": {…}}`, then reads one
//! response a line for each, in order: `{"correct": bool, "parsed": …, "reason": "…"}`
//! (`parsed` and `reason` optional). The verifier is started once, with the first batch or by
//! [`Verifier::start`], and stops when its standard input closes. Each response must come within
//! `rft.command_timeout_s`; a verifier that exits, hangs or answers anything else is stopped and
//! the grading fails ([`Error::Run`], exit 1) naming the command and what it did. Its standard
//! error is kept, its last lines shown when it fails.
//!
//! Requests are written by a thread of their own and responses read by another, so that a
//! verifier that stops reading cannot block rftx past the timeout.
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::base::error::{Error, Result};
use crate::base::record::Answer;

/// Lines of the verifier's standard error kept for the message of a failure.
const STDERR_LINES: usize = 12;
/// How long a verifier whose input was closed may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// One request: what rftx asks the verifier about one completion.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub completion: &'a str,
    /// The reference answer, as text (a number as it is written: `72`, `0.5`).
    pub reference: &'a str,
    /// The question's row: `index`, `id`, `question`, … (`rftx grade`: the case's line).
    pub row: &'a serde_json::Value,
}

/// One response, as the verifier wrote it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Response {
    pub correct: bool,
    /// What the verifier compared (a string, or a number).
    #[serde(default)]
    pub parsed: Option<Answer>,
    /// Why, in the verifier's words.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The `row` of a request about a question's completion: `{"index": …, "id": …, "question": …}`
/// (`id`: null without `data.id_field`). A run and a regrade of it send the same.
pub fn row(index: usize, id: Option<&str>, question: &str) -> serde_json::Value {
    serde_json::json!({ "index": index, "id": id, "question": question })
}

/// A verifier command and, once started, its process. Shared by clones of the grader that
/// holds it; requests are serialised by its lock.
pub struct Verifier {
    argv: Vec<String>,
    timeout: Duration,
    process: Mutex<Option<Process>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("argv", &self.argv)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A running verifier.
struct Process {
    child: Child,
    /// Batches of request lines for the writer thread; dropped to close the verifier's input.
    input: Option<Sender<Vec<u8>>>,
    /// The verifier's output lines, from the reader thread; disconnected at its end.
    output: Receiver<std::io::Result<String>>,
    /// The last lines of its standard error.
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Requests answered so far.
    answered: usize,
}

impl Verifier {
    /// `argv`: the program and its arguments (not empty); `timeout_s`: the most seconds one
    /// response may take.
    pub fn new(argv: Vec<String>, timeout_s: f64) -> Self {
        Verifier {
            argv,
            timeout: Duration::try_from_secs_f64(timeout_s).unwrap_or(Duration::MAX),
            process: Mutex::new(None),
        }
    }

    /// The command as a shell would show it: `python3 verifier.py`.
    pub fn describe(&self) -> String {
        shlex::try_join(self.argv.iter().map(String::as_str)).unwrap_or_else(|_| format!("{:?}", self.argv))
    }

    /// Starts the verifier unless it runs already; why it cannot be started, if it cannot.
    pub fn start(&self) -> std::result::Result<(), String> {
        let mut process = self.lock();
        if process.is_none() {
            *process = Some(self.spawn()?);
        }
        Ok(())
    }

    /// The verifier's response to each request, in order. Any failure stops the verifier (a
    /// later call starts it again).
    pub fn ask(&self, requests: &[Request]) -> Result<Vec<Response>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut slot = self.lock();
        if slot.is_none() {
            *slot = Some(self.spawn().map_err(|e| Error::Run(format!("rft.command: {e}")))?);
        }
        let process = slot.as_mut().expect("started above");
        let result = self.exchange(process, requests);
        if result.is_err() {
            // Dropping it kills it.
            *slot = None;
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Process>> {
        // A panic while the lock was held left nothing half-done that matters here.
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self) -> std::result::Result<Process, String> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or("rft.command is empty; give the verifier's program and its arguments")?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group: a Ctrl-C at the terminal stops rftx at a safe point, which
        // then closes the verifier's input, rather than killing the verifier mid-question.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|e| {
            format!(
                "rft.command `{}` cannot be started: {e}; give a program on PATH or a path to one, with its arguments",
                self.describe()
            )
        })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (input, requests) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || write_requests(stdin, requests));
        let (lines, output) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let kept = Arc::clone(&tail);
        std::thread::spawn(move || keep_tail(stderr, &kept));
        Ok(Process {
            child,
            input: Some(input),
            output,
            stderr: tail,
            answered: 0,
        })
    }

    /// Writes the batch, then reads a response for each request, each within the timeout.
    fn exchange(&self, p: &mut Process, requests: &[Request]) -> Result<Vec<Response>> {
        let mut batch = Vec::new();
        for r in requests {
            let line = serde_json::json!({ "completion": r.completion, "reference": r.reference, "row": r.row });
            batch.extend_from_slice(line.to_string().as_bytes());
            batch.push(b'\n');
        }
        let sent = p.input.as_ref().is_some_and(|i| i.send(batch).is_ok());
        let mut responses = Vec::with_capacity(requests.len());
        for k in 0..requests.len() {
            let at = format!("request {} of a batch of {}", k + 1, requests.len());
            let line = match p.output.recv_timeout(self.timeout) {
                Ok(Ok(line)) => line,
                Ok(Err(e)) => return Err(self.fail(p, &format!("its output could not be read at {at} ({e})"))),
                Err(RecvTimeoutError::Timeout) => {
                    let what = format!(
                        "gave no answer to {at} within {} s (rft.command_timeout_s); it was stopped",
                        self.timeout.as_secs_f64()
                    );
                    return Err(self.fail(p, &what));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = exit_status(&mut p.child);
                    let unsent = if sent { "" } else { " before it read the batch" };
                    return Err(self.fail(p, &format!("{status}{unsent}, with {at} unanswered")));
                }
            };
            let response = serde_json::from_str::<Response>(line.trim()).map_err(|e| {
                let shown: String = line.chars().take(200).collect();
                self.fail(
                    p,
                    &format!("answered {at} with {shown:?} ({e}); each request needs one line {{\"correct\": true or false, \"parsed\": …, \"reason\": …}}"),
                )
            })?;
            p.answered += 1;
            responses.push(response);
        }
        Ok(responses)
    }

    /// The error of a failed exchange: the command, what it did, its last lines of standard error.
    fn fail(&self, p: &mut Process, what: &str) -> Error {
        let _ = p.child.kill();
        let _ = p.child.wait();
        // The reader of standard error finishes once the process is gone; give it a moment.
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until && Arc::strong_count(&p.stderr) > 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let tail = p
            .stderr
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let stderr = match tail.is_empty() {
            true => String::new(),
            false => format!("; its last lines on standard error:\n  {}\n", tail.join("\n  ")),
        };
        Error::Run(format!(
            "rft.command `{}` {what} (after {} answers){stderr}",
            self.describe(),
            p.answered
        ))
    }
}

impl Drop for Process {
    /// Closes the verifier's input, waits a moment for it to exit, then kills it.
    fn drop(&mut self) {
        self.input = None;
        let until = Instant::now() + EXIT_GRACE;
        while Instant::now() < until {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The writer thread: each batch written and flushed; it stops when the verifier's input is
/// closed (a broken pipe: the verifier is gone, which the reader side reports).
fn write_requests(mut stdin: std::process::ChildStdin, batches: Receiver<Vec<u8>>) {
    for batch in batches {
        if stdin.write_all(&batch).and_then(|()| stdin.flush()).is_err() {
            break;
        }
    }
}

/// The reader of standard error: keeps the last [`STDERR_LINES`] lines.
fn keep_tail(stderr: std::process::ChildStderr, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() == STDERR_LINES {
            t.pop_front();
        }
        t.push_back(line.chars().take(500).collect());
    }
}

/// How a verifier whose output ended went: `exited with exit status: 1`, or still running.
fn exit_status(child: &mut Child) -> String {
    let until = Instant::now() + EXIT_GRACE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return format!("exited ({status})"),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            _ => return "closed its output".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_s: f64) -> Verifier {
        Verifier::new(vec!["sh".into(), "-c".into(), script.into()], timeout_s)
    }

    fn ask(v: &Verifier, n: usize) -> Result<Vec<Response>> {
        let row = serde_json::json!({"index": 0});
        let requests: Vec<Request> = (0..n)
            .map(|_| Request {
                completion: "so 72",
                reference: "72",
                row: &row,
            })
            .collect();
        v.ask(&requests)
    }

    #[test]
    fn answers_come_back_in_order_across_batches() {
        let v = sh(
            r#"i=0; while read -r l; do i=$((i+1)); if [ $((i % 2)) = 0 ]; then echo '{"correct": true, "parsed": "72"}'; else echo '{"correct": false, "reason": "odd"}'; fi; done"#,
            10.0,
        );
        v.start().unwrap();
        let first = ask(&v, 3).unwrap();
        assert_eq!(
            first.iter().map(|r| r.correct).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(first[1].parsed, Some(Answer::Text("72".into())));
        assert_eq!(first[0].reason.as_deref(), Some("odd"));
        let second = ask(&v, 2).unwrap();
        assert_eq!(second.iter().map(|r| r.correct).collect::<Vec<_>>(), [true, false]);
    }

    #[test]
    fn crashes_hangs_and_garbage_are_named() {
        let e = ask(&sh("read -r l; echo 'dying' >&2; exit 3", 10.0), 2).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("rft.command `sh -c") && m.contains("exited") && m.contains("dying"),
            "{m}"
        );
        assert_eq!(e.exit_code(), 1);
        let started = Instant::now();
        let m = ask(&sh("exec sleep 30", 0.3), 1).unwrap_err().to_string();
        assert!(
            m.contains("gave no answer to request 1 of a batch of 1 within 0.3 s"),
            "{m}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let m = ask(&sh("while read -r l; do echo yes; done", 10.0), 1)
            .unwrap_err()
            .to_string();
        assert!(m.contains("answered request 1 of a batch of 1 with \"yes\""), "{m}");
        let m = ask(&sh(r#"while read -r l; do echo '{"parsed": "1"}'; done"#, 10.0), 1)
            .unwrap_err()
            .to_string();
        assert!(m.contains("missing field `correct`"), "{m}");
        let m = Verifier::new(vec!["/nonexistent/verifier".into()], 1.0)
            .start()
            .unwrap_err();
        assert!(m.contains("`/nonexistent/verifier` cannot be started"), "{m}");
    }

    #[test]
    fn a_verifier_that_stops_reading_times_out() {
        // Never reads: the batch stays in the pipe (or the writer blocks), the timeout still holds.
        let v = sh("exec sleep 30", 0.3);
        let row = serde_json::json!(null);
        let long = "x".repeat(1 << 20);
        let requests = [Request {
            completion: &long,
            reference: "1",
            row: &row,
        }];
        assert!(v.ask(&requests).unwrap_err().to_string().contains("gave no answer"));
    }
}
