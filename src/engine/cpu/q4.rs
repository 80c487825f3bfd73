//! A 4-bit linear layer: Q4_1 weights (a scale and a minimum per block of 32, values 0..15) held
//! at 0.75 bytes per weight, dotted with activations quantised as for [`super::q8`].
//!
//! A weight is `d · q + m`, so a block's dot product with an activation block `xd · x` is
//! `d · xd · Σ q·x + m · xd · Σ x`. The first sum is the integer kernel's: the values of two
//! blocks share a byte (low and high nibble), are unpacked once per weight load, and go to
//! `vpdpbusd` (VNNI) or `vpmaddubsw` + `vpmaddwd` (AVX2) as the unsigned operand, the int8
//! activations as the signed one — exact lane sums either way, so every instruction set gives
//! the same bits. The second term is accumulated over blocks eight at a time. As in the Q8
//! kernel, every output `(row, column)` is one fixed sequence of operations whatever the number
//! of rows: results do not depend on the batch.
//!
//! A Q4_1 matrix of the model file (the default model's layers) is held bit for bit; others are
//! quantised to Q4_1 by candle first.
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;

use super::q8::{apply, blocks_of, hsum8, isa, quantize_rows, tiled, Isa, Q8Linear, Tile, KERNEL_ENV, QK};
#[cfg(target_arch = "x86_64")]
use super::q8::{lane_sums, AVX2, AVX512_VNNI, AVX_VNNI};

/// A `n × k` weight matrix in Q4_1 blocks with f32 scales and minima.
pub struct Q4Linear {
    n: usize,
    k: usize,
    /// Per output row, [`Q4Linear::row_bytes`] bytes: blocks `2p` (low nibbles) and `2p + 1`
    /// (high nibbles) in the 32 bytes of pair `p`, value `i` of a block in byte `i`.
    qs: Vec<u8>,
    /// `n × k/32` scales.
    d: Vec<f32>,
    /// `n × padded` minima, each row padded with zeros to a multiple of 8 blocks.
    m: Vec<f32>,
}

/// One activation row: `k` int8 values, `k / 32` scales, and per block `scale · Σ values`
/// (padded with zeros like [`Q4Linear::m`]).
#[derive(Clone, Copy)]
struct Row<'a> {
    q: &'a [i8],
    d: &'a [f32],
    sums: &'a [f32],
}

impl Q4Linear {
    /// Bytes held per weight: half a byte, an f32 scale and an f32 minimum per block of 32.
    pub const BYTES_PER_WEIGHT: f64 = (QK / 2 + 8) as f64 / QK as f64;

    fn blocks(&self) -> usize {
        self.k / QK
    }

    /// Blocks per row with the minima's padding.
    fn padded(&self) -> usize {
        self.blocks().div_ceil(8) * 8
    }

    fn row_bytes(&self) -> usize {
        self.blocks().div_ceil(2) * QK
    }

    /// From a 2-D quantised tensor (converted to Q4_1 first if it is in another format).
    pub fn from_qtensor(t: &QTensor) -> candle_core::Result<Self> {
        let (n, k, raw) = blocks_of(t, GgmlDType::Q4_1)?;
        // An f16 scale, an f16 minimum, then 16 bytes: value i in the low nibble of byte i,
        // value 16 + i in its high nibble.
        let block_bytes = GgmlDType::Q4_1.type_size();
        let mut lin = Q4Linear {
            n,
            k,
            qs: Vec::new(),
            d: Vec::with_capacity(n * k / QK),
            m: Vec::new(),
        };
        let (nb, padded, row_bytes) = (lin.blocks(), lin.padded(), lin.row_bytes());
        lin.qs = vec![0u8; n * row_bytes];
        lin.m = vec![0f32; n * padded];
        for (i, b) in raw.chunks_exact(block_bytes).enumerate() {
            let (j, blk) = (i / nb, i % nb);
            lin.d.push(half::f16::from_le_bytes([b[0], b[1]]).to_f32());
            lin.m[j * padded + blk] = half::f16::from_le_bytes([b[2], b[3]]).to_f32();
            let dst = &mut lin.qs[j * row_bytes + blk / 2 * QK..][..QK];
            let shift = 4 * (blk % 2);
            for (v, byte) in dst.iter_mut().enumerate() {
                let packed = b[4 + v % 16];
                let q = if v < 16 { packed & 0x0F } else { packed >> 4 };
                *byte |= q << shift;
            }
        }
        Ok(lin)
    }

    /// One matrix of the rows of `parts` (all `k` wide), in order, as [`Q8Linear::stack`].
    pub fn stack(parts: &[&Q4Linear]) -> candle_core::Result<Self> {
        let k = parts.first().map_or(0, |p| p.k);
        if parts.iter().any(|p| p.k != k) {
            candle_core::bail!("stacked matrices must share their row length");
        }
        Ok(Q4Linear {
            n: parts.iter().map(|p| p.n).sum(),
            k,
            qs: parts.iter().flat_map(|p| p.qs.iter().copied()).collect(),
            d: parts.iter().flat_map(|p| p.d.iter().copied()).collect(),
            m: parts.iter().flat_map(|p| p.m.iter().copied()).collect(),
        })
    }

    /// Output features (rows of the matrix).
    pub fn outputs(&self) -> usize {
        self.n
    }

    /// Bytes held: packed values, f32 scales and minima.
    pub fn storage_bytes(&self) -> usize {
        self.qs.len() + 4 * (self.d.len() + self.m.len())
    }

    /// `x · Wᵀ` for `x` of shape `(…, k)`: returns `(…, n)`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (out, shape) = apply(x, (self.n, self.k), |input, m, out| {
            self.matmul_with(q4_isa(), input, m, out)
        })?;
        Tensor::from_vec(out, shape, x.device())
    }

    /// `out[r][j] = Σ x[r]·w[j]` for `m` rows, on the instructions of `isa` (which the CPU must
    /// have).
    pub fn matmul_with(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) {
        // No 512-bit form of this kernel: its 256-bit AVX-512 one takes that choice.
        let isa = if isa == Isa::Avx512Pairs { Isa::Avx512Vnni } else { isa };
        let (xq, xd) = quantize_rows(x, m, self.k);
        let sums = self.block_sums(&xq, &xd, m);
        let (nb, padded) = (self.blocks(), self.padded());
        let row = |r: usize| Row {
            q: &xq[r * self.k..][..self.k],
            d: &xd[r * nb..][..nb],
            sums: &sums[r * padded..][..padded],
        };
        // Rows sharing each weight load: four where 32 vector registers hold their accumulators.
        let max_rows = if isa == Isa::Avx512Vnni { 4 } else { 2 };
        tiled((self.n, self.k, m), max_rows, out, |j0, cols, r, rows, res| {
            #[cfg(target_arch = "x86_64")]
            if cols == 4 && Q8Linear::supported() {
                let rs = |i: usize| row(r + i.min(rows - 1));
                // SAFETY: AVX2 and FMA were detected, and `isa`'s instructions (the caller's
                // promise); rows hold `k` values, `nb` scales and `padded` sums; the tile's
                // four columns exist.
                unsafe {
                    match (isa, rows) {
                        (Isa::Avx2, 1) => self.tile_avx2::<1>([rs(0)], j0, res),
                        (Isa::Avx2, _) => self.tile_avx2::<2>([rs(0), rs(1)], j0, res),
                        (Isa::AvxVnni, 1) => self.tile_avxvnni::<1>([rs(0)], j0, res),
                        (Isa::AvxVnni, _) => self.tile_avxvnni::<2>([rs(0), rs(1)], j0, res),
                        (Isa::Avx512Vnni, 1) => self.tile_avx512vnni::<1>([rs(0)], j0, res),
                        (Isa::Avx512Vnni, 2) => self.tile_avx512vnni::<2>([rs(0), rs(1)], j0, res),
                        (Isa::Avx512Vnni, 3) => self.tile_avx512vnni::<3>([rs(0), rs(1), rs(2)], j0, res),
                        (Isa::Avx512Vnni | Isa::Avx512Pairs, _) => {
                            self.tile_avx512vnni::<4>([rs(0), rs(1), rs(2), rs(3)], j0, res)
                        }
                    }
                }
                return;
            }
            for (i, res) in res.iter_mut().enumerate().take(rows) {
                for (c, out) in res.iter_mut().enumerate().take(cols) {
                    *out = self.dot_scalar(row(r + i), j0 + c);
                }
            }
        });
    }

    /// Per row and block, `scale · Σ values` (the minima's factor), padded with zeros.
    fn block_sums(&self, xq: &[i8], xd: &[f32], m: usize) -> Vec<f32> {
        let (nb, padded) = (self.blocks(), self.padded());
        let mut sums = vec![0f32; m * padded];
        for r in 0..m {
            for b in 0..nb {
                let s: i32 = xq[(r * nb + b) * QK..][..QK].iter().map(|&v| v as i32).sum();
                sums[r * padded + b] = xd[r * nb + b] * s as f32;
            }
        }
        sums
    }

    /// The reference: the same arithmetic as the SIMD kernels, lane by lane.
    fn dot_scalar(&self, x: Row, j: usize) -> f32 {
        let (nb, padded) = (self.blocks(), self.padded());
        let w = &self.qs[j * self.row_bytes()..][..self.row_bytes()];
        let mut lanes = [0f32; 8];
        for b in 0..nb {
            let pair = &w[b / 2 * QK..][..QK];
            let q = |i: usize| if b % 2 == 0 { pair[i] & 0x0F } else { pair[i] >> 4 } as i32;
            let xb = &x.q[b * QK..][..QK];
            let s = self.d[j * nb + b] * x.d[b];
            for (l, lane) in lanes.iter_mut().enumerate() {
                let sum: i32 = (0..4).map(|i| q(l * 4 + i) * xb[l * 4 + i] as i32).sum();
                *lane = (sum as f32).mul_add(s, *lane);
            }
        }
        let mut mins = [0f32; 8];
        for g in 0..padded / 8 {
            for (l, lane) in mins.iter_mut().enumerate() {
                *lane = self.m[j * padded + g * 8 + l].mul_add(x.sums[g * 8 + l], *lane);
            }
        }
        hsum8(&lanes) + hsum8(&mins)
    }

    /// Four output columns `j0..j0 + 4` of `R` activation rows, every weight load shared by the
    /// rows, with the arithmetic of [`Q4Linear::dot_scalar`] and the lane sums of instructions
    /// `I` ([`lane_sums`]: the weights are at most 15, so AVX2's pair sums stay within 3 810).
    ///
    /// # Safety
    /// AVX2, FMA and the instructions of `I` must be present; each row holds `k` values, `k / 32`
    /// scales and the padded block sums; rows `j0..j0 + 4` of the matrix exist.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile<const I: u8, const R: usize>(&self, rows: [Row; R], j0: usize, res: &mut Tile) {
        use std::arch::x86_64::*;
        let (nb, padded, row_bytes) = (self.blocks(), self.padded(), self.row_bytes());
        let low = _mm256_set1_epi8(0x0F);
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        let load = |q: &[i8], b: usize| _mm256_loadu_si256(q.as_ptr().add(b * QK) as *const __m256i);
        // Block by block, so that only one block of each row sits in registers; the second block
        // of a pair reloads the weights (from L1) for their high nibbles.
        for b in 0..nb {
            let (p, high) = (b / 2, b % 2 == 1);
            let x: [__m256i; R] = std::array::from_fn(|r| load(rows[r].q, b));
            let dx: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(*rows[r].d.get_unchecked(b)));
            #[allow(clippy::needless_range_loop)] // `c` indexes the weights and every row's accumulators
            for c in 0..4 {
                let j = j0 + c;
                let w = _mm256_loadu_si256(self.qs.as_ptr().add(j * row_bytes + p * QK) as *const __m256i);
                let q = _mm256_and_si256(if high { _mm256_srli_epi16(w, 4) } else { w }, low);
                let dw = _mm256_set1_ps(*self.d.get_unchecked(j * nb + b));
                for r in 0..R {
                    let s = _mm256_mul_ps(dw, dx[r]);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lane_sums::<I>(q, x[r])), s, acc[r][c]);
                }
            }
        }
        for r in 0..R {
            for c in 0..4 {
                let mins = self.m.as_ptr().add((j0 + c) * padded);
                let mut macc = _mm256_setzero_ps();
                for g in 0..padded / 8 {
                    let sums = _mm256_loadu_ps(rows[r].sums.as_ptr().add(g * 8));
                    macc = _mm256_fmadd_ps(_mm256_loadu_ps(mins.add(g * 8)), sums, macc);
                }
                let (mut a, mut m) = ([0f32; 8], [0f32; 8]);
                _mm256_storeu_ps(a.as_mut_ptr(), acc[r][c]);
                _mm256_storeu_ps(m.as_mut_ptr(), macc);
                res[r][c] = hsum8(&a) + hsum8(&m);
            }
        }
    }

    /// [`Q4Linear::tile`] on AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_avx2<const R: usize>(&self, rows: [Row; R], j0: usize, res: &mut Tile) {
        self.tile::<AVX2, R>(rows, j0, res)
    }

    /// [`Q4Linear::tile`] on AVX-VNNI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn tile_avxvnni<const R: usize>(&self, rows: [Row; R], j0: usize, res: &mut Tile) {
        self.tile::<AVX_VNNI, R>(rows, j0, res)
    }

    /// [`Q4Linear::tile`] on AVX-512 VNNI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
    unsafe fn tile_avx512vnni<const R: usize>(&self, rows: [Row; R], j0: usize, res: &mut Tile) {
        self.tile::<AVX512_VNNI, R>(rows, j0, res)
    }
}

/// The instructions this kernel runs on: AVX-512 VNNI where the CPU has it (its 32 vector
/// registers hold a tile's accumulators and activations: on a Zen 4, 101–116 GMAC/s against
/// AVX-VNNI's 98–110), else [`isa`]'s choice; [`KERNEL_ENV`] still decides when set.
pub fn q4_isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let wide = Isa::available().contains(&Isa::Avx512Vnni);
        if std::env::var(KERNEL_ENV).is_err() && wide {
            Isa::Avx512Vnni
        } else {
            isa()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::q8::tests::random;
    use super::*;
    use crate::base::sampling::Rng;
    use crate::engine::device::host;

    /// Close to candle's own Q4_1 matmul, and the scalar reference's bits on every instruction
    /// set this CPU has, for odd and even block counts, single rows and pairs, partial tiles.
    #[test]
    fn every_instruction_set_gives_the_reference_bits() {
        let mut rng = Rng::from_seed(17);
        for (n, k, m) in [(38, 96, 5), (20, 576, 3), (9, 32, 1)] {
            let w = Tensor::from_vec(random(n * k, &mut rng), (n, k), &host()).unwrap();
            let qt = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
            let lin = Q4Linear::from_qtensor(&qt).unwrap();
            let x = random(m * k, &mut rng);
            let (xq, xd) = quantize_rows(&x, m, k);
            let sums = lin.block_sums(&xq, &xd, m);
            let nb = k / QK;
            let lin = &lin;
            let reference: Vec<f32> = (0..m)
                .flat_map(|r| {
                    let row = Row {
                        q: &xq[r * k..][..k],
                        d: &xd[r * nb..][..nb],
                        sums: &sums[r * lin.padded()..][..lin.padded()],
                    };
                    (0..n).map(move |j| lin.dot_scalar(row, j)).collect::<Vec<_>>()
                })
                .collect();
            let xt = Tensor::from_vec(x.clone(), (m, k), &host()).unwrap();
            let candle = xt.matmul(&qt.dequantize(&host()).unwrap().t().unwrap()).unwrap();
            for (a, b) in reference
                .iter()
                .zip(candle.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            {
                assert!((a - b).abs() < 0.05 + 0.02 * b.abs(), "{a} vs {b}");
            }
            let isas = if Q8Linear::supported() {
                Isa::available()
            } else {
                vec![Isa::Avx2]
            };
            for isa in isas {
                let mut out = vec![0f32; m * n];
                lin.matmul_with(isa, &x, m, &mut out);
                for (i, (a, b)) in reference.iter().zip(&out).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{isa:?} {n}×{k}, ({}, {})", i / n, i % n);
                }
            }
        }
    }

    /// A Q4_1 matrix is held bit for bit: dequantised, it is candle's dequantisation of it.
    #[test]
    fn holds_a_q4_1_matrix_exactly_and_rows_do_not_depend_on_the_batch() {
        let mut rng = Rng::from_seed(5);
        let (n, k) = (70, 576);
        let w = Tensor::from_vec(random(n * k, &mut rng), (n, k), &host()).unwrap();
        let qt = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let lin = Q4Linear::from_qtensor(&qt).unwrap();
        let deq = qt.dequantize(&host()).unwrap().to_vec2::<f32>().unwrap();
        let (nb, padded, rb) = (lin.blocks(), lin.padded(), lin.row_bytes());
        for (j, row) in deq.iter().enumerate() {
            for (e, &v) in row.iter().enumerate() {
                let (b, i) = (e / QK, e % QK);
                let byte = lin.qs[j * rb + b / 2 * QK + i];
                let q = if b % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                let got = lin.d[j * nb + b] * q as f32 + lin.m[j * padded + b];
                assert_eq!(got, v, "({j}, {e})");
            }
        }
        assert_eq!(lin.storage_bytes() as f64, n as f64 * (rb + 4 * (nb + padded)) as f64);
        let x = random(7 * k, &mut rng);
        let mut all = vec![0f32; 7 * n];
        lin.matmul_with(isa(), &x, 7, &mut all);
        for r in 0..7 {
            let mut one = vec![0f32; n];
            lin.matmul_with(isa(), &x[r * k..(r + 1) * k], 1, &mut one);
            assert_eq!(one, all[r * n..(r + 1) * n]);
        }
    }
}
