//! Stop requests: SIGINT (Ctrl-C), SIGTERM (schedulers, preemption, `kill`) and SIGUSR1 (Slurm's
//! warning before a time limit, with `--signal=USR1@…`). The first one is recorded and the run
//! stops at its next safe point (between decoding steps, or between questions); a second one
//! ends the process at once with the same exit code. Exit codes follow the shell's convention,
//! 128 + the signal number: 130 for SIGINT, 143 for SIGTERM, 138 for SIGUSR1.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

use super::error::{Error, Result};

/// The signals that stop a run.
pub const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGUSR1];

/// The first stop signal received (0: none).
static REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// Installs the handlers (once, at start-up, by the program). Without them signals keep their
/// default action and nothing here is ever requested.
pub fn install() -> std::io::Result<()> {
    let seen = Arc::new(AtomicBool::new(false));
    for sig in STOP_SIGNALS {
        // Order matters: the conditional shutdown sees `seen` as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&seen))?;
        signal_hook::flag::register(sig, Arc::clone(&seen))?;
        // SAFETY: the action only stores into an atomic, which is async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                let _ = REQUESTED.compare_exchange(0, sig as usize, Ordering::SeqCst, Ordering::SeqCst);
            })?;
        }
    }
    Ok(())
}

/// The stop signal received, if any.
pub fn requested() -> Option<Signal> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(Signal(n as i32)),
    }
}

/// A safe point: `Err(Error::Interrupted)` once a stop signal has arrived.
pub fn check() -> Result<()> {
    match requested() {
        None => Ok(()),
        Some(sig) => Err(Error::Interrupted {
            signal: sig.0,
            message: format!("{} received", sig.name()),
        }),
    }
}

/// A stop signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub i32);

impl Signal {
    pub fn name(self) -> &'static str {
        match self.0 {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            SIGUSR1 => "SIGUSR1",
            _ => "signal",
        }
    }

    /// 128 + the signal number.
    pub fn exit_code(self) -> i32 {
        128 + self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_exit_codes_follow_the_shell() {
        assert_eq!((Signal(SIGINT).name(), Signal(SIGINT).exit_code()), ("SIGINT", 130));
        assert_eq!((Signal(SIGTERM).name(), Signal(SIGTERM).exit_code()), ("SIGTERM", 143));
        assert_eq!(Signal(SIGUSR1).exit_code(), 138);
    }
}
