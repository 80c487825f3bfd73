//! CPU kernels: the int8 and 4-bit linear layers ([`q8`], [`q4`]) and decode attention over the
//! KV cache ([`attention`]) — and this machine's limits for them ([`roofline`]) — all spread
//! over candle's thread pool and all computing every row with the same operations whatever the
//! batch size.
pub mod attention;
pub mod q4;
pub mod q8;
pub mod roofline;

/// Runs `f(index, item, scratch)` on every item on candle's thread pool, items split into
/// contiguous ranges, each range with a fresh `S` scratch; in the calling thread when there is
/// one item. Each item is touched by exactly one call, so `f` sees it alone.
pub fn for_each_parallel<T: Send, S: Default>(items: &mut [T], f: impl Fn(usize, &mut T, &mut S) + Sync) {
    if items.len() < 2 {
        let mut scratch = S::default();
        items.iter_mut().enumerate().for_each(|(i, t)| f(i, t, &mut scratch));
        return;
    }
    let (addr, len) = (items.as_mut_ptr() as usize, items.len());
    candle_core::utils::barrier_pool().execute_chunked(len, |range| {
        let mut scratch = S::default();
        for i in range {
            assert!(i < len, "index {i} outside {len}");
            // SAFETY: `execute_chunked` hands out disjoint ranges of `0..len`, so item `i` is
            // borrowed by this call alone, and `items` outlives the pool's work.
            let item = unsafe { &mut *(addr as *mut T).add(i) };
            f(i, item, &mut scratch);
        }
    });
}

/// An `f32` output buffer that the workers of candle's thread pool write in disjoint ranges.
/// The pool's closures must be `Sync`, which a `&mut [f32]` is not: this carries the address.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut {
    addr: usize,
    len: usize,
}

impl SharedOut {
    pub(crate) fn new(out: &mut [f32]) -> Self {
        SharedOut {
            addr: out.as_mut_ptr() as usize,
            len: out.len(),
        }
    }

    /// `len` values from `start`.
    ///
    /// # Safety
    /// The buffer given to [`SharedOut::new`] must outlive the slice and not be used otherwise
    /// meanwhile, and no two slices in use at the same time may overlap.
    pub(crate) unsafe fn slice<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        assert!(start + len <= self.len, "range {start}+{len} outside {}", self.len);
        std::slice::from_raw_parts_mut((self.addr as *mut f32).add(start), len)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_item_is_visited_once_with_its_index() {
        for n in [0, 1, 2, 7, 1000] {
            let mut items: Vec<(usize, usize)> = vec![(0, 0); n];
            super::for_each_parallel(&mut items, |i, item, calls: &mut usize| {
                *calls += 1;
                item.0 += i + 1;
                item.1 += 1;
            });
            assert!(items.iter().enumerate().all(|(i, &(v, c))| v == i + 1 && c == 1), "{n}");
        }
    }
}
