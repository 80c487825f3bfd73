//! The 512-bit VNNI kernel of [`Q8Linear`] ([`Isa::Avx512Pairs`](super::Isa)): two activation
//! rows share each register, a block's 32 weights loaded once into both halves. Per block,
//! column and pair of rows it runs a `vpdpbusd`, a conversion, a multiplication of the two rows'
//! scales by the weight's and an FMA — four instructions for 64 multiply-adds, where the 256-bit
//! kernel ([`super::vnni`]) runs three for 32. Each half of a register sees exactly the
//! operations the 256-bit kernel's register sees for its row, so the bits are the same.
//!
//! It pays where 512-bit instructions run at full width (Intel's server cores: 1.4–1.65× the
//! 256-bit kernel on an Emerald Rapids core) and not where they are split in two (Zen 4, where
//! a two-column form of it ran at 0.67×): [`super::isa`] measures which is faster.
use super::vnni::{lane_offsets, store4};
use super::{Q8Linear, Tile, QK};

/// Pairs of rows one call of the kernel takes: their accumulators (four columns each) and
/// operands fill 25 of the 32 vector registers.
pub(super) const MAX_PAIRS: usize = 3;

/// One block of a pair of activation rows: both rows' 32 values, both rows' eight lane starts
/// (`-128 · Σ` of each lane's four values, as in [`super::vnni`]) and each row's scale in its
/// half. A missing second row is zeros.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct PairBlock {
    x: [i8; 2 * QK],
    off: [i32; 16],
    dx: [f32; 16],
}

/// The quantised rows in groups of `2 · MAX_PAIRS` rows (the last may be smaller), each group's
/// pairs side by side block by block: block `b` of pair `p` of the group starting at row `g` at
/// `g / 2 · k/32 + b · pairs + p`, where `pairs` is the group's number of pairs.
pub(super) fn pack_pairs(xq: &[i8], xd: &[f32], m: usize, k: usize) -> Vec<PairBlock> {
    let nb = k / QK;
    let zero = PairBlock {
        x: [0; 2 * QK],
        off: [0; 16],
        dx: [0.0; 16],
    };
    let mut out = Vec::with_capacity(m.div_ceil(2) * nb);
    for g in (0..m).step_by(2 * MAX_PAIRS) {
        let pairs = (m - g).div_ceil(2).min(MAX_PAIRS);
        for b in 0..nb {
            for p in 0..pairs {
                let mut blk = zero;
                for h in 0..2 {
                    let r = g + 2 * p + h;
                    if r < m {
                        let x: &[i8; QK] = xq[r * k + b * QK..][..QK].try_into().expect("a block");
                        blk.x[h * QK..][..QK].copy_from_slice(x);
                        blk.off[h * 8..][..8].copy_from_slice(&lane_offsets(x));
                        blk.dx[h * 8..][..8].fill(xd[r * nb + b]);
                    }
                }
                out.push(blk);
            }
        }
    }
    out
}

impl Q8Linear {
    /// `out[r][j] = Σ x[r]·w[j]` for the `m` quantised rows `xq` (scales `xd`), by pairs of rows.
    ///
    /// # Safety
    /// AVX2, FMA, AVX-512 F and AVX-512 VNNI must be present.
    #[cfg(target_arch = "x86_64")]
    pub(super) unsafe fn matmul_pairs(&self, xq: &[i8], xd: &[f32], m: usize, out: &mut [f32]) {
        let nb = self.k / QK;
        let packed = pack_pairs(xq, xd, m, self.k);
        super::tiled((self.n, self.k, m), 2 * MAX_PAIRS, out, |j0, cols, r, rows, res| {
            if cols < 4 {
                let row = r * self.k;
                self.dot_tile(&xq[row..][..self.k], &xd[r * nb..][..nb], j0, cols, &mut res[0]);
                return;
            }
            // `tiled` starts each group of rows at a multiple of `2 · MAX_PAIRS`.
            let pairs = rows.div_ceil(2);
            let group = &packed[r / 2 * nb..][..pairs * nb];
            let first = r == 0;
            // SAFETY: the caller's promise; `group` holds the group's `k / 32` blocks of
            // `pairs` pairs and the tile's four columns exist.
            unsafe {
                match pairs {
                    1 => self.xpairs::<1>(group, j0, first, res),
                    2 => self.xpairs::<2>(group, j0, first, res),
                    _ => self.xpairs::<3>(group, j0, first, res),
                }
            }
        });
    }

    /// Four output columns `j0..j0 + 4` of `P` pairs of rows, with the arithmetic of
    /// [`Q8Linear::dot_scalar`] in each half of each register (see the module).
    ///
    /// # Safety
    /// As [`Q8Linear::matmul_pairs`]; `pb` holds the group's `k / 32 · P` blocks; rows
    /// `j0..j0 + 4` exist.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vnni")]
    unsafe fn xpairs<const P: usize>(&self, pb: &[PairBlock], j0: usize, first: bool, res: &mut Tile) {
        use std::arch::x86_64::*;
        let nb = self.k / QK;
        let w_base = self.qu.as_ptr().add(j0 * self.k);
        let d_base = self.d.as_ptr().add(j0 * nb);
        let mut acc = [[_mm512_setzero_ps(); 4]; P];
        for blk in 0..nb {
            let group = pb.as_ptr().add(blk * P);
            let x: [__m512i; P] = std::array::from_fn(|p| _mm512_load_si512((*group.add(p)).x.as_ptr() as *const _));
            let off: [__m512i; P] =
                std::array::from_fn(|p| _mm512_load_si512((*group.add(p)).off.as_ptr() as *const _));
            let dx: [__m512; P] = std::array::from_fn(|p| _mm512_load_ps((*group.add(p)).dx.as_ptr()));
            #[allow(clippy::needless_range_loop)] // `c` indexes the weights and every pair's accumulators
            for c in 0..4 {
                let at = w_base.add(c * self.k + blk * QK);
                let w = _mm512_broadcast_i64x4(_mm256_loadu_si256(at as *const __m256i));
                if first && blk % 2 == 0 {
                    let next = at.wrapping_add(4 * self.k);
                    _mm_prefetch::<{ super::vnni::PF }>(next as *const i8);
                }
                let dw = _mm512_set1_ps(*d_base.add(c * nb + blk));
                for p in 0..P {
                    let sums = _mm512_dpbusd_epi32(off[p], w, x[p]);
                    // d_x · d_w: the reference's d_w · d_x, bit for bit.
                    let scale = _mm512_mul_ps(dx[p], dw);
                    acc[p][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, acc[p][c]);
                }
            }
        }
        for (p, acc) in acc.iter().enumerate() {
            let lo: [__m256; 4] = std::array::from_fn(|c| _mm512_castps512_ps256(acc[c]));
            let hi: [__m256; 4] =
                std::array::from_fn(|c| _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc[c]))));
            store4(&lo, &mut res[2 * p]);
            store4(&hi, &mut res[2 * p + 1]);
        }
    }
}
