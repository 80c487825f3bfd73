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
//! computed by the best instructions the CPU has ([`Isa`]): with VNNI (AVX-VNNI or AVX-512
//! VNNI), one `vpdpbusd` of `|x|` and `w · sign x` per block and column (activations are in
//! [-127, 127], so both are exact), else AVX2's `vpmaddubsw` + `vpmaddwd` of `|w|` and
//! `x · sign w` (no 16-bit saturation either). Both give the same lane sums, hence the same
//! bits. A matrix holding a -128 weight (not written by llama.cpp or candle, but possible in a
//! foreign file) always takes the AVX2 kernel.
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;

use super::SharedOut;
use crate::engine::device::host;

/// Weights per Q8_0 block (candle's `GgmlDType::Q8_0.block_size()`, 32).
pub(crate) const QK: usize = 32;
const _: () = assert!(QK == candle_core::quantized::k_quants::QK8_0);

/// A `n × k` weight matrix in Q8_0 blocks with f32 scales.
pub struct Q8Linear {
    n: usize,
    k: usize,
    /// `n × k` int8 values, row-major.
    qs: Vec<i8>,
    /// `n × k/32` scales.
    d: Vec<f32>,
    /// Whether some weight is -128, whose sign cannot be moved onto it ([`Q8Linear::dot4_avx2`]
    /// is used then).
    has_min: bool,
}

/// The instructions the int8 kernel's integer part runs on; all give the same lane sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// `vpmaddubsw` + `vpmaddwd` of `|w|` and `x · sign w` (AVX2; also what a matrix with a -128
    /// weight runs).
    Avx2,
    /// `vpdpbusd` with a VEX encoding (AVX-VNNI: Alder Lake, Sapphire Rapids, Zen 5).
    AvxVnni,
    /// `vpdpbusd` on 256-bit registers with an EVEX encoding (AVX-512 VNNI and VL: Ice Lake,
    /// Cascade Lake, Zen 4).
    Avx512Vnni,
}

impl Isa {
    /// The ones this CPU has (AVX2 and FMA are required before any is used), best last.
    pub fn available() -> Vec<Isa> {
        let mut out = vec![Isa::Avx2];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                out.push(Isa::Avx512Vnni);
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
        }
    }
}

/// Environment variable that picks the kernel's instructions by [`Isa::name`] (for measuring
/// one against another; the results are the same bits). Unset or not available: the best.
pub const KERNEL_ENV: &str = "RFTX_CPU_KERNEL";

/// The instructions the kernel runs on, chosen once.
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let available = Isa::available();
        let asked = std::env::var(KERNEL_ENV).ok();
        let pick = available.iter().copied().find(|i| asked.as_deref() == Some(i.name()));
        pick.unwrap_or(*available.last().expect("AVX2 at least"))
    })
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
        let mut qs = Vec::with_capacity(n * k);
        let mut d = Vec::with_capacity(blocks);
        for b in raw.chunks_exact(block_bytes) {
            d.push(half::f16::from_le_bytes([b[0], b[1]]).to_f32());
            qs.extend(b[2..].iter().map(|&x| x as i8));
        }
        let has_min = qs.contains(&i8::MIN);
        Ok(Q8Linear { n, k, qs, d, has_min })
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
            qs: parts.iter().flat_map(|p| p.qs.iter().copied()).collect(),
            d: parts.iter().flat_map(|p| p.d.iter().copied()).collect(),
            has_min: parts.iter().any(|p| p.has_min),
        })
    }

    /// A random `n × k` matrix (int8 values and scales drawn from `seed`), for measurements.
    pub fn random(n: usize, k: usize, seed: u64) -> Self {
        let mut rng = crate::base::sampling::Rng::from_seed(seed);
        let qs = (0..n * k).map(|_| (rng.next_f64() * 254.0 - 127.0) as i8).collect();
        let d = (0..n * k / QK).map(|_| rng.next_f64() as f32 * 1e-2).collect();
        Q8Linear {
            n,
            k,
            qs,
            d,
            has_min: false,
        }
    }

    /// Output features (rows of the matrix).
    pub fn outputs(&self) -> usize {
        self.n
    }

    /// Bytes held: int8 values and f32 scales.
    pub fn storage_bytes(&self) -> usize {
        self.qs.len() + 4 * self.d.len()
    }

    /// Rows `ids` of the matrix, dequantised (`ids.len() × k`): the embedding lookup.
    pub fn rows(&self, ids: &[u32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(ids.len() * self.k);
        for &id in ids {
            let row = id as usize;
            for b in 0..self.k / QK {
                let s = self.d[row * self.k / QK + b];
                out.extend(self.qs[row * self.k + b * QK..][..QK].iter().map(|&q| q as f32 * s));
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
        let row = |r: usize| (&xq[r * self.k..][..self.k], &xd[r * self.k / QK..][..self.k / QK]);
        // Two activation rows at a time share each weight load (four, on AVX-512, measured no
        // faster end to end).
        let vnni = !self.has_min && isa != Isa::Avx2 && Self::supported();
        tiled((self.n, self.k, m), 2, out, |j0, cols, r, rows, res| {
            #[cfg(target_arch = "x86_64")]
            if vnni && cols == 4 {
                let rs = |i: usize| row(r + i.min(rows - 1));
                // SAFETY: AVX2, FMA and `isa`'s instructions are present (detected; the
                // caller's promise); no weight is -128; rows hold `k` values and `k / 32`
                // scales; the tile's four columns exist.
                unsafe {
                    match (isa, rows) {
                        (Isa::Avx512Vnni, 1) => self.xabs_avx512vnni::<1>([rs(0)], j0, res),
                        (Isa::Avx512Vnni, _) => self.xabs_avx512vnni::<2>([rs(0), rs(1)], j0, res),
                        (_, 1) => self.xabs_avxvnni::<1>([rs(0)], j0, res),
                        (_, _) => self.xabs_avxvnni::<2>([rs(0), rs(1)], j0, res),
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

    fn dot_tile(&self, xq: &[i8], xd: &[f32], j0: usize, cols: usize, res: &mut [f32; 4]) {
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
    fn dot_tile2(&self, a: (&[i8], &[f32]), b: (&[i8], &[f32]), j0: usize, res: &mut [[f32; 4]; 4]) {
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
    unsafe fn dot4x2_avx2(&self, a: (&[i8], &[f32]), b: (&[i8], &[f32]), j0: usize, res: &mut [[f32; 4]; 4]) {
        use std::arch::x86_64::*;
        let nb = self.k / QK;
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); 4]; 2];
        let w_base = self.qs.as_ptr().add(j0 * self.k);
        let d_base = self.d.as_ptr().add(j0 * nb);
        for blk in 0..nb {
            let xa = _mm256_loadu_si256(a.0.as_ptr().add(blk * QK) as *const __m256i);
            let xb = _mm256_loadu_si256(b.0.as_ptr().add(blk * QK) as *const __m256i);
            let da = _mm256_set1_ps(*a.1.get_unchecked(blk));
            let db = _mm256_set1_ps(*b.1.get_unchecked(blk));
            #[allow(clippy::needless_range_loop)] // `c` indexes the weights and both rows' accumulators
            for c in 0..4 {
                let w = _mm256_loadu_si256(w_base.add(c * self.k + blk * QK) as *const __m256i);
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

    /// Four output columns `j0..j0 + 4` of `R` activation rows, every weight load shared by the
    /// rows, with the arithmetic of [`Q8Linear::dot_scalar`]: per block and column the lane sums
    /// of `|x| · (w · sign x)` ([`lane_sums`] on `I`'s instructions), then the same float steps
    /// as every other path.
    ///
    /// # Safety
    /// AVX2, FMA and the instructions of `I` must be present; rows as in [`Q8Linear::dot4_avx2`];
    /// no weight is -128.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn xabs<const I: u8, const R: usize>(&self, rows: [Row; R], j0: usize, res: &mut [[f32; 4]; 4]) {
        use std::arch::x86_64::*;
        let nb = self.k / QK;
        let w_base = self.qs.as_ptr().add(j0 * self.k);
        let d_base = self.d.as_ptr().add(j0 * nb);
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        for blk in 0..nb {
            let x: [__m256i; R] =
                std::array::from_fn(|r| _mm256_loadu_si256(rows[r].0.as_ptr().add(blk * QK) as *const __m256i));
            let xabs: [__m256i; R] = std::array::from_fn(|r| _mm256_sign_epi8(x[r], x[r]));
            let dx: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(*rows[r].1.get_unchecked(blk)));
            #[allow(clippy::needless_range_loop)] // `c` indexes the weights and every row's accumulators
            for c in 0..4 {
                let w = _mm256_loadu_si256(w_base.add(c * self.k + blk * QK) as *const __m256i);
                let dw = _mm256_set1_ps(*d_base.add(c * nb + blk));
                for r in 0..R {
                    let p = lane_sums::<I>(xabs[r], _mm256_sign_epi8(w, x[r]));
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, dx[r]), acc[r][c]);
                }
            }
        }
        for (acc, out) in acc.iter().zip(res.iter_mut()) {
            store4(acc, out);
        }
    }

    /// [`Q8Linear::xabs`] on AVX-VNNI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn xabs_avxvnni<const R: usize>(&self, rows: [Row; R], j0: usize, res: &mut [[f32; 4]; 4]) {
        self.xabs::<AVX_VNNI, R>(rows, j0, res)
    }

    /// [`Q8Linear::xabs`] on AVX-512 VNNI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
    unsafe fn xabs_avx512vnni<const R: usize>(&self, rows: [Row; R], j0: usize, res: &mut [[f32; 4]; 4]) {
        self.xabs::<AVX512_VNNI, R>(rows, j0, res)
    }

    /// The reference: the same arithmetic as the SIMD kernel, lane by lane.
    fn dot_scalar(&self, xq: &[i8], xd: &[f32], j: usize) -> f32 {
        let nb = self.k / QK;
        let mut lanes = [0f32; 8];
        for b in 0..nb {
            let w = &self.qs[j * self.k + b * QK..][..QK];
            let x = &xq[b * QK..][..QK];
            let s = self.d[j * nb + b] * xd[b];
            for (l, lane) in lanes.iter_mut().enumerate() {
                let sum: i32 = (0..4).map(|i| w[l * 4 + i] as i32 * x[l * 4 + i] as i32).sum();
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
        let mut acc = [_mm256_setzero_ps(); 4];
        let w_base = self.qs.as_ptr().add(j0 * self.k);
        let d_base = self.d.as_ptr().add(j0 * nb);
        for b in 0..nb {
            let x = _mm256_loadu_si256(xq.as_ptr().add(b * QK) as *const __m256i);
            let dx = *xd.get_unchecked(b);
            for (c, a) in acc.iter_mut().enumerate() {
                let w = _mm256_loadu_si256(w_base.add(c * self.k + b * QK) as *const __m256i);
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

/// Runs `dot(j0, cols, r, rows, res)` for every tile of four output columns `j0..j0 + cols`
/// and activation rows `r..r + rows` (up to `max_rows` share each weight load in a full tile;
/// one at a time in a partial one), and writes `res[i][c]` to `out[(r + i) · n + j0 + c]`.
/// Tiles are spread over candle's thread pool; a matrix of `n × k` against `m` rows too small
/// to be worth waking it runs in the calling thread.
pub(crate) fn tiled(
    (n, k, m): (usize, usize, usize),
    max_rows: usize,
    out: &mut [f32],
    dot: impl Fn(usize, usize, usize, usize, &mut [[f32; 4]; 4]) + Sync,
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
                let mut res = [[0f32; 4]; 4];
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

/// One activation row: `k` int8 values and `k / 32` scales.
type Row<'a> = (&'a [i8], &'a [f32]);

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
        AVX_VNNI => _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s),
        _ => _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s),
    }
}

/// The four accumulators' fixed-order lane sums.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store4(acc: &[std::arch::x86_64::__m256; 4], out: &mut [f32; 4]) {
    for (c, a) in acc.iter().enumerate() {
        let mut lanes = [0f32; 8];
        std::arch::x86_64::_mm256_storeu_ps(lanes.as_mut_ptr(), *a);
        out[c] = hsum8(&lanes);
    }
}

/// Quantises each row to blocks of 32 int8 values with an f32 scale (amax / 127).
pub(crate) fn quantize_rows(x: &[f32], m: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; m * k];
    let mut d = vec![0f32; m * k / QK];
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

    /// Every instruction set this CPU has, and the -128 fallback, give the scalar reference's
    /// bits, for one row and for pairs of rows.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        if !Q8Linear::supported() {
            return;
        }
        let mut rng = Rng::from_seed(21);
        let (n, k, m) = (36, 128, 5);
        let w = Tensor::from_vec(random(n * k, &mut rng), (n, k), &host()).unwrap();
        let mut lin = Q8Linear::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        let x = random(m * k, &mut rng);
        let (xq, xd) = quantize_rows(&x, m, k);
        let isas = Isa::available();
        for min in [false, true] {
            if min {
                lin.qs[5] = i8::MIN;
                lin.has_min = true;
            }
            for &isa in &isas {
                let mut out = vec![0f32; m * n];
                lin.matmul_with(isa, &x, m, &mut out);
                for r in 0..m {
                    for j in 0..n {
                        let s = lin.dot_scalar(&xq[r * k..][..k], &xd[r * k / QK..][..k / QK], j);
                        assert_eq!(
                            s.to_bits(),
                            out[r * n + j].to_bits(),
                            "{isa:?}, -128: {min}, ({r}, {j})"
                        );
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
