//! The VNNI kernel of [`Q8Linear`]: four output columns of up to four activation rows per call,
//! each block, column and row one `vpdpbusd`, a conversion and an FMA (see the parent module).
use super::{Q8Linear, Tile, AVX512_VNNI, AVX_VNNI, QK};

impl Q8Linear {
    /// Four output columns `j0..j0 + 4` of `R` activation rows, every weight load shared by the
    /// rows, with the arithmetic of [`Q8Linear::dot_scalar`]: per block, column and row the exact
    /// lane sums `-128 · Σx + Σ (w + 128) · x` (one `vpdpbusd` on `I`'s encoding), converted, and
    /// one FMA with the scale product `d_w · d_x`, computed ahead for [`SCALE_CHUNK`] blocks.
    ///
    /// # Safety
    /// AVX2, FMA and the VNNI instructions of `I` must be present; `xb` holds the group's
    /// `k / 32 · R` blocks ([`pack_groups`]) and each `xd` its row's `k / 32` scales and the
    /// padding after them; rows `j0..j0 + 4` exist.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn xoff<const I: u8, const R: usize>(
        &self,
        xb: &[XBlock],
        xd: [&[f32]; R],
        j0: usize,
        first: bool,
        res: &mut Tile,
    ) {
        use std::arch::x86_64::*;
        let nb = self.k / QK;
        let w_base = self.qu.as_ptr().add(j0 * self.k);
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        // Written before it is read, eight products at a time (past a row's last block they
        // read the next row's scales, or the padding, and are never used).
        let mut scale = std::mem::MaybeUninit::<[[[f32; SCALE_CHUNK]; 4]; R]>::uninit();
        let sp = scale.as_mut_ptr() as *mut f32;
        for b0 in (0..nb).step_by(SCALE_CHUNK) {
            let len = SCALE_CHUNK.min(nb - b0);
            for (r, xd) in xd.iter().enumerate() {
                for c in 0..4 {
                    let dw = self.d.as_ptr().add((j0 + c) * nb + b0);
                    let dx = xd.as_ptr().add(b0);
                    let out = sp.add((r * 4 + c) * SCALE_CHUNK);
                    for i in (0..len).step_by(8) {
                        let p = _mm256_mul_ps(_mm256_loadu_ps(dw.add(i)), _mm256_loadu_ps(dx.add(i)));
                        _mm256_storeu_ps(out.add(i), p);
                    }
                }
            }
            for b in 0..len {
                let blk = b0 + b;
                let group = xb.as_ptr().add(blk * R);
                let x: [__m256i; R] =
                    std::array::from_fn(|r| _mm256_loadu_si256((*group.add(r)).x.as_ptr() as *const __m256i));
                let off: [__m256i; R] =
                    std::array::from_fn(|r| _mm256_loadu_si256((*group.add(r)).off.as_ptr() as *const __m256i));
                #[allow(clippy::needless_range_loop)] // `c` indexes the weights and every row's accumulators
                for c in 0..4 {
                    let w = _mm256_loadu_si256(w_base.add(c * self.k + blk * QK) as *const __m256i);
                    if first && blk % 2 == 0 {
                        let next = w_base.wrapping_add(4 * self.k + c * self.k + blk * QK);
                        _mm_prefetch::<{ PF }>(next as *const i8);
                    }
                    for r in 0..R {
                        let p = dpbusd::<I>(off[r], w, x[r]);
                        let s = _mm256_set1_ps(*sp.add((r * 4 + c) * SCALE_CHUNK + b));
                        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[r][c]);
                    }
                }
            }
        }
        for (acc, out) in acc.iter().zip(res.iter_mut()) {
            store4(acc, out);
        }
    }

    /// [`Q8Linear::xoff`] on AVX-VNNI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub(super) unsafe fn xoff_avxvnni<const R: usize>(
        &self,
        xb: &[XBlock],
        xd: [&[f32]; R],
        j0: usize,
        first: bool,
        res: &mut Tile,
    ) {
        self.xoff::<AVX_VNNI, R>(xb, xd, j0, first, res)
    }

    /// [`Q8Linear::xoff`] on AVX-512 VNNI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
    pub(super) unsafe fn xoff_avx512vnni<const R: usize>(
        &self,
        xb: &[XBlock],
        xd: [&[f32]; R],
        j0: usize,
        first: bool,
        res: &mut Tile,
    ) {
        self.xoff::<AVX512_VNNI, R>(xb, xd, j0, first, res)
    }
}

/// One block of one activation row as the VNNI kernel reads it: the 32 quantised values and the
/// eight lanes' start, `-128 · (x[4l] + … + x[4l + 3])`, which takes off what the stored
/// weights' `+ 128` adds.
#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct XBlock {
    x: [i8; QK],
    off: [i32; 8],
}

/// The quantised rows in groups of `max_rows` (the last may be smaller), each group's blocks
/// side by side: block `b` of row `g + i` at `g · k/32 + b · rows + i`, where `rows` is the
/// group's size, so a group's blocks are read in one stream.
pub(super) fn pack_groups(xq: &[i8], m: usize, k: usize, max_rows: usize) -> Vec<XBlock> {
    let nb = k / QK;
    let mut out = Vec::with_capacity(m * nb);
    for g in (0..m).step_by(max_rows) {
        let rows = max_rows.min(m - g);
        for b in 0..nb {
            for r in g..g + rows {
                let x: [i8; QK] = xq[r * k + b * QK..][..QK].try_into().expect("a block");
                out.push(XBlock {
                    x,
                    off: lane_offsets(&x),
                });
            }
        }
    }
    out
}

/// Each lane's start for a block of activations: `-128 · (x[4l] + … + x[4l + 3])`.
pub(super) fn lane_offsets(x: &[i8; QK]) -> [i32; 8] {
    std::array::from_fn(|l| -128 * x[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum::<i32>())
}

/// Blocks whose scale products the VNNI kernel computes at once, on the stack.
pub(super) const SCALE_CHUNK: usize = 32;

/// The cache level the VNNI kernel prefetches the next tile's weights into.
#[cfg(target_arch = "x86_64")]
pub(super) const PF: i32 = std::arch::x86_64::_MM_HINT_T1;

/// `src + Σ u[4l + i] · s[4l + i]` in each of eight lanes (`u` unsigned), by `vpdpbusd` on the
/// encoding `I` names (AVX-VNNI or AVX-512 VNNI).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn dpbusd<const I: u8>(
    src: std::arch::x86_64::__m256i,
    u: std::arch::x86_64::__m256i,
    s: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    match I {
        AVX_VNNI => _mm256_dpbusd_avx_epi32(src, u, s),
        _ => _mm256_dpbusd_epi32(src, u, s),
    }
}

/// The four accumulators' fixed-order lane sums.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn store4(acc: &[std::arch::x86_64::__m256; 4], out: &mut [f32; 4]) {
    use std::arch::x86_64::*;
    // h = (l0 + l4, l1 + l5, l2 + l6, l3 + l7) per accumulator; two rounds of pairwise adds
    // then give hsum8's ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)) for all four.
    let h: [__m128; 4] =
        std::array::from_fn(|c| _mm_add_ps(_mm256_castps256_ps128(acc[c]), _mm256_extractf128_ps::<1>(acc[c])));
    let sums = _mm_hadd_ps(_mm_hadd_ps(h[0], h[1]), _mm_hadd_ps(h[2], h[3]));
    _mm_storeu_ps(out.as_mut_ptr(), sums);
}
