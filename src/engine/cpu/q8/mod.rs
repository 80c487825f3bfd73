//! An int8 linear layer for decoding a few rows at once on x86 CPUs (AVX2 + FMA).
//!
//! Weights are Q8_0 blocks (32 int8 values and one scale) with the scales kept as f32, so the
//! inner loop converts nothing; activations are quantised per row to the same blocks. A tile of
//! four weight rows is loaded once and dotted with every activation row while it sits in L1,
//! and the tiles are spread over candle's thread pool.
//!
//! Every output `(row, column)` is one fixed sequence of operations over the blocks of that row
//! and column, whatever the number of rows: results do not depend on the batch size.
//!
//! The integer part of a block — eight lanes, each the exact sum of four int8 products — is
//! computed by the best instructions the CPU has ([`Isa`]). With VNNI (AVX-VNNI or AVX-512
//! VNNI): one `vpdpbusd` per block, column and row of the stored `w + 128` (unsigned) and `x`,
//! started from `-128 · Σx` (each row's lane sums, computed once per matrix product), so nothing
//! is made absolute in the inner loop. Without: AVX2's `vpmaddubsw` + `vpmaddwd` of `|w|` and
//! `x · sign w` (no 16-bit saturation). Both give the same exact lane sums, hence the same bits,
//! and both take any weight, -128 included (`vpmaddubsw` reads `|w|` unsigned).
//!
//! What the VNNI kernel does besides: the scale products `d_w · d_x` a tile needs are computed
//! ahead, eight at a time, so a block, column and row costs three instructions (`vpdpbusd`, a
//! conversion, an FMA); the rows a tile shares (four on AVX-512, two on AVX-VNNI) are packed
//! block by block into one stream (`vnni::pack_groups`); and the first group of rows prefetches the
//! next tile's weights, which come from memory in a real model. On the Qwen2.5 0.5B file's W15
//! this made the kernel 1.3–1.5× faster than the previous `|x|`/`w · sign x` form
//! (`cargo run --release --example q8_speed`).
//!
//! Where 512-bit instructions run at full width, [`Isa::Avx512Pairs`] (`pairs`) puts two
//! activation rows in each register, each half doing what a 256-bit register does for one row:
//! four instructions per 64 multiply-adds instead of three per 32, the same bits. [`isa`] times
//! it against the 256-bit form once and keeps the faster.
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;

use super::SharedOut;
use crate::engine::device::host;

mod pairs;
mod vnni;
use vnni::pack_groups;
#[cfg(test)]
use vnni::SCALE_CHUNK;

/// Weights per Q8_0 block (candle's `GgmlDType::Q8_0.block_size()`, 32).
pub(crate) const QK: usize = 32;
const _: () = assert!(QK == candle_core::quantized::k_quants::QK8_0);

/// A `n × k` weight matrix in Q8_0 blocks with f32 scales.
pub struct Q8Linear {
    n: usize,
    k: usize,
    /// `n × k` int8 values, row-major, each stored as `w + 128` (its bits with the sign bit
    /// flipped): the unsigned operand `vpdpbusd` takes ([`weight`] gives `w` back).
    qu: Vec<u8>,
    /// `n × k/32` scales, then [`SCALE_PAD`] zeros.
    d: Vec<f32>,
}

/// The instructions the int8 kernel's integer part runs on; all give the same lane sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// `vpmaddubsw` + `vpmaddwd` of `|w|` and `x · sign w` (AVX2).
    Avx2,
    /// `vpdpbusd` with a VEX encoding (AVX-VNNI: Alder Lake, Sapphire Rapids, Zen 5).
    AvxVnni,
    /// `vpdpbusd` on 256-bit registers with an EVEX encoding (AVX-512 VNNI and VL: Ice Lake,
    /// Cascade Lake, Zen 4).
    Avx512Vnni,
    /// `vpdpbusd` on 512-bit registers, two activation rows in each (AVX-512 F and VNNI), the
    /// 256-bit form's lanes in each half; one row alone runs as [`Isa::Avx512Vnni`].
    Avx512Pairs,
}

impl Isa {
    /// The ones this CPU has (AVX2 and FMA are required before any is used).
    pub fn available() -> Vec<Isa> {
        let mut out = vec![Isa::Avx2];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                out.push(Isa::Avx512Vnni);
                if is_x86_feature_detected!("avx512f") {
                    out.push(Isa::Avx512Pairs);
                }
            }
            if is_x86_feature_detected!("avxvnni") {
                out.push(Isa::AvxVnni);
            }
        }
        out
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avx-vnni",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Avx512Pairs => "avx512-pairs",
        }
    }
}

/// Environment variable that picks the kernel's instructions by [`Isa::name`] (for measuring
/// one against another; the results are the same bits). Unset or not available: the fastest
/// ([`isa`]).
pub const KERNEL_ENV: &str = "RFTX_CPU_KERNEL";

/// The instructions the kernel runs on, chosen once: the one [`KERNEL_ENV`] names if the CPU
/// has it; else the best 256-bit form (AVX-VNNI, AVX-512 VNNI, AVX2, in that order) or, where
/// the CPU has it and it is measured faster here, [`Isa::Avx512Pairs`]. All give the same bits,
/// so the choice changes the speed only.
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let available = Isa::available();
        let asked = std::env::var(KERNEL_ENV).ok();
        if let Some(pick) = available.iter().copied().find(|i| asked.as_deref() == Some(i.name())) {
            return pick;
        }
        let narrow = [Isa::AvxVnni, Isa::Avx512Vnni, Isa::Avx2]
            .into_iter()
            .find(|i| available.contains(i))
            .expect("AVX2 at least");
        if available.contains(&Isa::Avx512Pairs) {
            faster(narrow, Isa::Avx512Pairs)
        } else {
            narrow
        }
    })
}

/// Of two instruction sets, the one that multiplies a 512 × 1024 matrix by 12 rows faster: the
/// best of five alternating passes each, after one of each to warm up (a few milliseconds). The
/// 512-bit form is 1.4–1.65× the 256-bit one where 512-bit instructions run at full width, and
/// slower where they are split in two (Zen 4).
fn faster(a: Isa, b: Isa) -> Isa {
    let (n, k, m) = (512, 1024, 12);
    let lin = Q8Linear::random(n, k, 1);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0).collect();
    let mut out = vec![0f32; m * n];
    let mut best = [f64::MAX; 2];
    for pass in 0..6 {
        for (isa, best) in [a, b].into_iter().zip(best.iter_mut()) {
            let start = std::time::Instant::now();
            lin.matmul_with(isa, &x, m, &mut out);
            if pass > 0 {
                *best = best.min(start.elapsed().as_secs_f64());
            }
        }
    }
    if best[1] < best[0] {
        b
    } else {
        a
    }
}

impl Q8Linear {
    /// Bytes held per weight: one int8 value, and an f32 scale per block of 32.
    pub const BYTES_PER_WEIGHT: f64 = (QK + 4) as f64 / QK as f64;

    /// Whether this machine runs the SIMD kernel (AVX2 and FMA).
    pub fn supported() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// From a 2-D quantised tensor (converted to Q8_0 first if it is in another format).
    pub fn from_qtensor(t: &QTensor) -> candle_core::Result<Self> {
        let (n, k, raw) = blocks_of(t, GgmlDType::Q8_0)?;
        let blocks = n * k / QK;
        // One f16 scale, then QK int8 values.
        let block_bytes = GgmlDType::Q8_0.type_size();
        let mut qu = Vec::with_capacity(n * k);
        let mut d = Vec::with_capacity(blocks);
        for b in raw.chunks_exact(block_bytes) {
            d.push(half::f16::from_le_bytes([b[0], b[1]]).to_f32());
            qu.extend(b[2..].iter().map(|&x| x ^ 0x80));
        }
        d.resize(blocks + SCALE_PAD, 0.0);
        Ok(Q8Linear { n, k, qu, d })
    }

    /// One matrix of the rows of `parts` (all `k` wide), in order: every output column is
    /// computed alone, so its outputs are the parts' outputs side by side, bit for bit.
    pub fn stack(parts: &[&Q8Linear]) -> candle_core::Result<Self> {
        let k = parts.first().map_or(0, |p| p.k);
        if parts.iter().any(|p| p.k != k) {
            candle_core::bail!("stacked matrices must share their row length");
        }
        Ok(Q8Linear {
            n: parts.iter().map(|p| p.n).sum(),
            k,
            qu: parts.iter().flat_map(|p| p.qu.iter().copied()).collect(),
            d: parts
                .iter()
                .flat_map(|p| &p.d[..p.n * p.k / QK])
                .copied()
                .chain([0.0; SCALE_PAD])
                .collect(),
        })
    }

    /// A random `n × k` matrix (int8 values and scales drawn from `seed`), for measurements.
    pub fn random(n: usize, k: usize, seed: u64) -> Self {
        let mut rng = crate::base::sampling::Rng::from_seed(seed);
        let qu = (0..n * k)
            .map(|_| ((rng.next_f64() * 254.0 - 127.0) as i8 as u8) ^ 0x80)
            .collect();
        let d = (0..n * k / QK)
            .map(|_| rng.next_f64() as f32 * 1e-2)
            .chain([0.0; SCALE_PAD])
            .collect();
        Q8Linear { n, k, qu, d }
    }

    /// Output features (rows of the matrix).
    pub fn outputs(&self) -> usize {
        self.n
    }

    /// Bytes held: int8 values and f32 scales.
    pub fn storage_bytes(&self) -> usize {
        self.qu.len() + 4 * self.d.len()
    }

    /// Rows `ids` of the matrix, dequantised (`ids.len() × k`): the embedding lookup.
    pub fn rows(&self, ids: &[u32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(ids.len() * self.k);
        for &id in ids {
            let row = id as usize;
            for b in 0..self.k / QK {
                let s = self.d[row * self.k / QK + b];
                out.extend(
                    self.qu[row * self.k + b * QK..][..QK]
                        .iter()
                        .map(|&u| weight(u) as f32 * s),
                );
            }
        }
        out
    }

    /// `x · Wᵀ` for `x` of shape `(…, k)`: returns `(…, n)`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (out, shape) = self.values(x)?;
        Tensor::from_vec(out, shape, x.device())
    }

    /// [`Q8Linear::forward`]'s values (row-major) and shape, without making a tensor of them.
    pub fn values(&self, x: &Tensor) -> candle_core::Result<(Vec<f32>, Vec<usize>)> {
        apply(x, (self.n, self.k), |input, m, out| self.matmul(input, m, out))
    }

    /// `out[r][j] = Σ x[r]·w[j]` for `m` rows.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_with(isa(), x, m, out)
    }

    /// [`Q8Linear::matmul`] on the instructions of `isa` (which the CPU must have).
    pub fn matmul_with(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) {
        let (xq, xd) = quantize_rows(x, m, self.k);
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512Pairs && m > 1 && Self::supported() {
            // SAFETY: the CPU has `isa`'s instructions (the caller's promise) and AVX2 and FMA.
            unsafe { self.matmul_pairs(&xq, &xd, m, out) };
            return;
        }
        // One row would fill half of each 512-bit register: it runs on their 256-bit form.
        let isa = if isa == Isa::Avx512Pairs { Isa::Avx512Vnni } else { isa };
        let vnni = isa != Isa::Avx2 && Self::supported();
        // Rows that share each weight load: as many as the registers hold (32 with AVX-512).
        let max_rows = if vnni && isa == Isa::Avx512Vnni { 4 } else { 2 };
        let groups = if vnni {
            pack_groups(&xq, m, self.k, max_rows)
        } else {
            Vec::new()
        };
        let row = |r: usize| (&xq[r * self.k..][..self.k], &xd[r * self.k / QK..][..self.k / QK]);
        tiled((self.n, self.k, m), max_rows, out, |j0, cols, r, rows, res| {
            #[cfg(target_arch = "x86_64")]
            if vnni && cols == 4 {
                // `tiled` starts each group of rows at a multiple of `max_rows`.
                let xb = &groups[r * self.k / QK..][..rows * self.k / QK];
                let ds = |i: usize| &xd[(r + i) * self.k / QK..];
                let first = r == 0;
                // SAFETY: AVX2, FMA and `isa`'s instructions are present (detected; the
                // caller's promise); `xb` holds the group's `k / 32` blocks of `rows` rows, each
                // `ds` its row's scales (and the padding after); the tile's four columns exist.
                unsafe {
                    match (isa, rows) {
                        (Isa::Avx512Vnni, 1) => self.xoff_avx512vnni::<1>(xb, [ds(0)], j0, first, res),
                        (Isa::Avx512Vnni, 2) => self.xoff_avx512vnni::<2>(xb, [ds(0), ds(1)], j0, first, res),
                        (Isa::Avx512Vnni, 3) => self.xoff_avx512vnni::<3>(xb, [ds(0), ds(1), ds(2)], j0, first, res),
                        (Isa::Avx512Vnni, _) => {
                            self.xoff_avx512vnni::<4>(xb, [ds(0), ds(1), ds(2), ds(3)], j0, first, res)
                        }
                        (_, 1) => self.xoff_avxvnni::<1>(xb, [ds(0)], j0, first, res),
                        (_, _) => self.xoff_avxvnni::<2>(xb, [ds(0), ds(1)], j0, first, res),
                    }
                }
                return;
            }
            if rows == 2 {
                self.dot_tile2(row(r), row(r + 1), j0, res);
            } else {
                let (q, d) = row(r);
                self.dot_tile(q, d, j0, cols, &mut res[0]);
            }
        });
    }

    pub(super) fn dot_tile(&self, xq: &[i8], xd: &[f32], j0: usize, cols: usize, res: &mut [f32; 4]) {
        #[cfg(target_arch = "x86_64")]
        if cols == 4 && Self::supported() {
            // SAFETY: AVX2 and FMA were detected, and `isa`'s instructions (the caller's
            // promise); the caller passes one row's `k` values and `k / 32` scales, and
            // `cols == 4` means rows `j0..j0 + 4` exist.
            unsafe { self.dot4_avx2(xq, xd, j0, res) };
            return;
        }
        for (c, out) in res.iter_mut().enumerate().take(cols) {
            *out = self.dot_scalar(xq, xd, j0 + c);
        }
    }

    /// Four output columns of two activation rows on AVX2 (the same arithmetic as
    /// [`Q8Linear::dot_tile`] on each row), into `res[0]` and `res[1]`.
    fn dot_tile2(&self, a: (&[i8], &[f32]), b: (&[i8], &[f32]), j0: usize, res: &mut Tile) {
        #[cfg(target_arch = "x86_64")]
        if Self::supported() {
            // SAFETY: as in `dot_tile`, for both rows; the caller's tile holds rows `j0..j0 + 4`.
            unsafe { self.dot4x2_avx2(a, b, j0, res) };
            return;
        }
        let [ra, rb, ..] = res;
        self.dot_tile(a.0, a.1, j0, 4, ra);
        self.dot_tile(b.0, b.1, j0, 4, rb);
    }

    /// [`Q8Linear::dot4_avx2`] for two activation rows at once: every weight block is loaded
    /// and made absolute once for both; each row's lanes see the very same operations.
    ///
    /// # Safety
    /// As [`Q8Linear::dot4_avx2`], for both rows.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot4x2_avx2(&self, a: (&[i8], &[f32]), b: (&[i8], &[f32]), j0: usize, res: &mut Tile) {
        use std::arch::x86_64::*;
        let nb = self.k / QK;
        let ones = _mm256_set1_epi16(1);
        let flip = _mm256_set1_epi8(i8::MIN);
        let mut acc = [[_mm256_setzero_ps(); 4]; 2];
        let w_base = self.qu.as_ptr().add(j0 * self.k);
        let d_base = self.d.as_ptr().add(j0 * nb);
        for blk in 0..nb {
            let xa = _mm256_loadu_si256(a.0.as_ptr().add(blk * QK) as *const __m256i);
            let xb = _mm256_loadu_si256(b.0.as_ptr().add(blk * QK) as *const __m256i);
            let da = _mm256_set1_ps(*a.1.get_unchecked(blk));
            let db = _mm256_set1_ps(*b.1.get_unchecked(blk));
            #[allow(clippy::needless_range_loop)] // `c` indexes the weights and both rows' accumulators
            for c in 0..4 {
                let w = _mm256_xor_si256(
                    _mm256_loadu_si256(w_base.add(c * self.k + blk * QK) as *const __m256i),
                    flip,
                );
                let wabs = _mm256_sign_epi8(w, w);
                let dw = _mm256_set1_ps(*d_base.add(c * nb + blk));
                let pa = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(xa, w)), ones);
                let pb = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(xb, w)), ones);
                acc[0][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pa), _mm256_mul_ps(dw, da), acc[0][c]);
                acc[1][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pb), _mm256_mul_ps(dw, db), acc[1][c]);
            }
        }
        for (row, out) in acc.iter().zip(res.iter_mut()) {
            for (c, a) in row.iter().enumerate() {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), *a);
                out[c] = hsum8(&lanes);
            }
        }
    }

    /// The reference: the same arithmetic as the SIMD kernel, lane by lane.
    fn dot_scalar(&self, xq: &[i8], xd: &[f32], j: usize) -> f32 {
        let nb = self.k / QK;
        let mut lanes = [0f32; 8];
        for b in 0..nb {
            let w = &self.qu[j * self.k + b * QK..][..QK];
            let x = &xq[b * QK..][..QK];
            let s = self.d[j * nb + b] * xd[b];
            for (l, lane) in lanes.iter_mut().enumerate() {
                let sum: i32 = (0..4).map(|i| weight(w[l * 4 + i]) as i32 * x[l * 4 + i] as i32).sum();
                *lane = (sum as f32).mul_add(s, *lane);
            }
        }
        hsum8(&lanes)
    }

    /// Four output columns `j0..j0 + 4` of one activation row, with the same arithmetic as
    /// [`Q8Linear::dot_scalar`].
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA ([`Q8Linear::supported`]); `xq` must hold `k` values,
    /// `xd` `k / 32` scales, and rows `j0..j0 + 4` must exist. Loads are unchecked.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot4_avx2(&self, xq: &[i8], xd: &[f32], j0: usize, res: &mut [f32; 4]) {
        use std::arch::x86_64::*;
        let nb = self.k / QK;
        let ones = _mm256_set1_epi16(1);
        let flip = _mm256_set1_epi8(i8::MIN);
        let mut acc = [_mm256_setzero_ps(); 4];
        let w_base = self.qu.as_ptr().add(j0 * self.k);
        let d_base = self.d.as_ptr().add(j0 * nb);
        for b in 0..nb {
            let x = _mm256_loadu_si256(xq.as_ptr().add(b * QK) as *const __m256i);
            let dx = *xd.get_unchecked(b);
            for (c, a) in acc.iter_mut().enumerate() {
                let w = _mm256_xor_si256(
                    _mm256_loadu_si256(w_base.add(c * self.k + b * QK) as *const __m256i),
                    flip,
                );
                // |w| · (x · sign w) = w · x, in the unsigned × signed form maddubs takes.
                let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
                let p32 = _mm256_madd_epi16(p16, ones);
                let s = _mm256_set1_ps(*d_base.add(c * nb + b) * dx);
                *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), s, *a);
            }
        }
        for (c, a) in acc.iter().enumerate() {
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), *a);
            res[c] = hsum8(&lanes);
        }
    }
}

/// The shape `(n, k)` and the blocks of a 2-D quantised tensor in `dtype` (converted by candle
/// first if it is in another format), `k` a multiple of 32.
pub(crate) fn blocks_of(t: &QTensor, dtype: GgmlDType) -> candle_core::Result<(usize, usize, Vec<u8>)> {
    let (n, k) = t.shape().dims2()?;
    if k % QK != 0 {
        candle_core::bail!("row length {k} is not a multiple of {QK}");
    }
    let raw = if t.dtype() == dtype {
        t.data()?.into_owned()
    } else {
        QTensor::quantize(&t.dequantize(&host())?, dtype)?.data()?.into_owned()
    };
    if raw.len() != n * k / dtype.block_size() * dtype.type_size() {
        candle_core::bail!("unexpected {dtype:?} storage of {} bytes for {n}×{k}", raw.len());
    }
    Ok((n, k, raw))
}

/// `x · Wᵀ` for `x` of shape `(…, k)` and a `n × k` matrix whose `matmul(x, m, out)` fills
/// `m × n` values: those values and the shape `(…, n)`.
pub(crate) fn apply(
    x: &Tensor,
    (n, k): (usize, usize),
    matmul: impl FnOnce(&[f32], usize, &mut [f32]),
) -> candle_core::Result<(Vec<f32>, Vec<usize>)> {
    let mut shape = x.dims().to_vec();
    let features = *shape.last().unwrap_or(&0);
    if features != k {
        candle_core::bail!("input of {features} features for a {n}×{k} matrix");
    }
    let m = x.elem_count() / k;
    let input = x.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; m * n];
    matmul(&input, m, &mut out);
    *shape.last_mut().expect("one dimension at least") = n;
    Ok((out, shape))
}

/// Most activation rows a tile of [`tiled`] holds (up to `max_rows` are passed).
pub(crate) const TILE_ROWS: usize = 2 * pairs::MAX_PAIRS;

/// Four output columns of up to [`TILE_ROWS`] rows: `[row][column]`.
pub(crate) type Tile = [[f32; 4]; TILE_ROWS];

/// Runs `dot(j0, cols, r, rows, res)` for every tile of four output columns `j0..j0 + cols`
/// and activation rows `r..r + rows` (up to `max_rows` share each weight load in a full tile;
/// one at a time in a partial one), and writes `res[i][c]` to `out[(r + i) · n + j0 + c]`.
/// Tiles are spread over candle's thread pool; a matrix of `n × k` against `m` rows too small
/// to be worth waking it runs in the calling thread.
pub(crate) fn tiled(
    (n, k, m): (usize, usize, usize),
    max_rows: usize,
    out: &mut [f32],
    dot: impl Fn(usize, usize, usize, usize, &mut Tile) + Sync,
) {
    let tiles = n.div_ceil(4);
    assert!(out.len() >= m * n, "output of {} for {m}×{n}", out.len());
    let shared_out = SharedOut::new(out);
    let work = |range: std::ops::Range<usize>| {
        for tile in range {
            let j0 = tile * 4;
            let cols = (n - j0).min(4);
            let mut r = 0;
            while r < m {
                let rows = if cols == 4 { (m - r).min(max_rows) } else { 1 };
                let mut res = [[0f32; 4]; TILE_ROWS];
                dot(j0, cols, r, rows, &mut res);
                for (i, res) in res.iter().enumerate().take(rows) {
                    // SAFETY: each (r, j) is written by exactly one tile, and `out` (m × n
                    // slots) outlives the pool's work.
                    let dst = unsafe { shared_out.slice((r + i) * n + j0, cols) };
                    dst.copy_from_slice(&res[..cols]);
                }
                r += rows;
            }
        }
    };
    if tiles * m * k < 1 << 15 {
        work(0..tiles);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(tiles, work);
    }
}

/// A fixed-order sum of 8 lanes (the same in the SIMD and scalar paths, and in attention).
pub(crate) fn hsum8(l: &[f32; 8]) -> f32 {
    ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

/// Zeros after the weights' and the activations' scales: the VNNI kernel reads them eight at a
/// time.
const SCALE_PAD: usize = 8;

/// A weight from its stored byte (`w + 128`).
#[inline(always)]
fn weight(u: u8) -> i8 {
    (u ^ 0x80) as i8
}

/// [`lane_sums`]'s instructions, as a constant parameter.
pub(crate) const AVX2: u8 = 0;
pub(crate) const AVX_VNNI: u8 = 1;
pub(crate) const AVX512_VNNI: u8 = 2;

/// Eight lanes, each the sum of four products `u[4l + i] · s[4l + i]` (`u` unsigned), on the
/// instructions `I` names: `vpdpbusd` (VNNI), or AVX2's `vpmaddubsw` + `vpmaddwd`, whose 16-bit
/// pair sums the caller keeps from saturating (`u · s` of two products within ±32767).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn lane_sums<const I: u8>(
    u: std::arch::x86_64::__m256i,
    s: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    match I {
        AVX2 => _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
        _ => vnni::dpbusd::<I>(_mm256_setzero_si256(), u, s),
    }
}

/// Quantises each row to blocks of 32 int8 values with an f32 scale (amax / 127).
pub(crate) fn quantize_rows(x: &[f32], m: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; m * k];
    // Padded: the VNNI kernel reads scales eight at a time.
    let mut d = vec![0f32; m * k / QK + SCALE_PAD];
    for (bi, (block, qb)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
        let amax = block.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        for (o, &v) in qb.iter_mut().zip(block) {
            *o = (v * inv).round() as i8;
        }
        d[bi] = scale;
    }
    (q, d)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::base::sampling::Rng;

    /// `n` values uniform in [-1, 1).
    pub(in crate::engine::cpu) fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect()
    }

    #[test]
    fn matches_dequantised_reference_and_candle() {
        let mut rng = Rng::from_seed(9);
        let (n, k, m) = (70, 96, 5);
        let w = Tensor::from_vec(random(n * k, &mut rng), (n, k), &host()).unwrap();
        let qt = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let lin = Q8Linear::from_qtensor(&qt).unwrap();
        let x = random(m * k, &mut rng);
        let xt = Tensor::from_vec(x.clone(), (m, k), &host()).unwrap();
        let ours = lin.forward(&xt).unwrap().to_vec2::<f32>().unwrap();
        let reference = xt
            .matmul(&qt.dequantize(&host()).unwrap().t().unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (a, b) in ours.iter().flatten().zip(reference.iter().flatten()) {
            assert!((a - b).abs() < 0.05 + 0.02 * b.abs(), "{a} vs {b}");
        }
        // The scalar reference computes the very same numbers as the SIMD kernel.
        let (xq, xd) = quantize_rows(&x, m, k);
        for (r, row) in ours.iter().enumerate() {
            for (j, got) in row.iter().enumerate() {
                let s = lin.dot_scalar(&xq[r * k..][..k], &xd[r * k / QK..][..k / QK], j);
                assert_eq!(s.to_bits(), got.to_bits(), "({r}, {j})");
            }
        }
    }

    /// Every instruction set this CPU has gives the scalar reference's bits, with and without a
    /// -128 weight, for every number of rows a tile shares (1 to 4, and a last smaller group)
    /// and a row longer than one chunk of scale products, not a multiple of eight blocks.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        if !Q8Linear::supported() {
            return;
        }
        let mut rng = Rng::from_seed(21);
        for (n, k, m) in [(36, 128, 5), (12, QK * (SCALE_CHUNK + 5), 9), (8, 64, 3), (8, 64, 2)] {
            let w = Tensor::from_vec(random(n * k, &mut rng), (n, k), &host()).unwrap();
            let mut lin = Q8Linear::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
            let x = random(m * k, &mut rng);
            let (xq, xd) = quantize_rows(&x, m, k);
            for min in [false, true] {
                if min {
                    lin.qu[5] = 0;
                }
                for isa in Isa::available() {
                    let mut out = vec![0f32; m * n];
                    lin.matmul_with(isa, &x, m, &mut out);
                    for r in 0..m {
                        for j in 0..n {
                            let s = lin.dot_scalar(&xq[r * k..][..k], &xd[r * k / QK..][..k / QK], j);
                            let got = out[r * n + j];
                            assert_eq!(s.to_bits(), got.to_bits(), "{isa:?}, {k}, -128: {min}, ({r}, {j})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rows_are_independent_of_the_batch() {
        let mut rng = Rng::from_seed(3);
        let (n, k) = (1030, 576);
        let w = Tensor::from_vec(random(n * k, &mut rng), (n, k), &host()).unwrap();
        let lin = Q8Linear::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        let x = random(7 * k, &mut rng);
        let mut all = vec![0f32; 7 * n];
        lin.matmul(&x, 7, &mut all);
        for r in 0..7 {
            let mut one = vec![0f32; n];
            lin.matmul(&x[r * k..(r + 1) * k], 1, &mut one);
            assert_eq!(one, all[r * n..(r + 1) * n]);
        }
        let emb = lin.rows(&[3]);
        let deq = QTensor::quantize(&w, GgmlDType::Q8_0)
            .unwrap()
            .dequantize(&host())
            .unwrap();
        assert_eq!(emb, deq.get(3).unwrap().to_vec1::<f32>().unwrap());
    }
}
