//! CPU kernels: the int8 linear layer ([`q8`]) and decode attention over the KV cache
//! ([`attention`]) — and this machine's limits for them ([`roofline`]) — both spread over candle's thread pool and both computing every row with
//! the same operations whatever the batch size.
pub mod attention;
pub mod q8;
pub mod roofline;

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
