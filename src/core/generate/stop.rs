//! `generation.stop_after_correct`: a question's samples judged as its chunks drain, and the cut
//! after its k-th right one.
use super::*;

/// The verdicts of some of a question's completions (its index, them in sample order), one each.
pub type Judge<'a> = dyn Fn(u64, &[Completion]) -> Result<Vec<bool>> + 'a;

/// `generation.stop_after_correct`: a question ends once `right` of its samples are right. Its
/// samples are the first m in sample order such that `right` of them are right (all of them
/// when fewer are): a function of the samples alone, so the same at every chunk size and batch.
/// Each drained chunk's completions are judged in sample order; those of the chunk past the m-th
/// are dropped and no further chunk starts.
#[derive(Clone, Copy)]
pub struct StopAfter<'a> {
    pub right: usize,
    pub judge: &'a Judge<'a>,
}

/// How a question that reached [`StopAfter::right`] right samples ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// m: the samples kept.
    pub kept: usize,
    /// Samples decoded (chunks started), the dropped ones included.
    pub decoded: usize,
    /// Tokens of the samples decoded past m, dropped.
    pub dropped_tokens: usize,
}

/// The samples `completions` (a question's, in sample order, `from..` just judged as
/// `verdicts`) keep, having seen `right` right ones before `from`: `Some(m)` once `k` are right.
/// Updates `right`.
pub fn cut_at(verdicts: &[bool], from: usize, right: &mut usize, k: usize) -> Option<usize> {
    for (i, &v) in verdicts.iter().enumerate() {
        *right += usize::from(v);
        if v && *right >= k {
            return Some(from + i + 1);
        }
    }
    None
}

impl Generator<'_> {
    /// With [`StopAfter`]: judges the completions `from..` of `slot` (a chunk's, just closed)
    /// and, once enough are right, drops those past the cut and starts no further chunk.
    pub(super) fn cut(&self, slot: &mut Slot, from: usize) -> Result<()> {
        let Some(stop) = self.stop else { return Ok(()) };
        let verdicts = (stop.judge)(slot.job.index, &slot.completions[from..])?;
        if let Some(kept) = cut_at(&verdicts, from, &mut slot.right, stop.right) {
            let dropped = slot.completions.split_off(kept);
            slot.stopped = Some(Stopped {
                kept,
                decoded: slot.next,
                dropped_tokens: dropped.iter().map(|c| c.new_tokens).sum(),
            });
            slot.next = self.params.oversample;
        }
        Ok(())
    }
}
