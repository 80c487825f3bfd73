//! `rftx bench --kernels`: rftx's CUDA kernels checked on a GPU against their CPU reference
//! ([`super::reference`]). The elementwise kernels are checked alone on random rows; the
//! rotary/K-V-write and attention kernels inside whole decode steps of the model, f32 weights
//! on both devices: the `fused` step on the GPU against the same step on the CPU (where each
//! kernel is its reference), over two caches of different prompts (one longer than an attention
//! chunk) stepped together, and a row stepped alone against the same row in the batch, bit for
//! bit. On the CPU every difference is zero by construction (the checker's own test).
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::fused;
use super::reference::{self, BLOCK};
use crate::base::error::Result;
use crate::engine::{device, GpuKernels, GpuOptions, Model, WeightFormat, Weights};
use crate::source::{ModelSource, ModelSpec};

/// One kernel (or step) on the device against its reference.
#[derive(Debug, Clone, Serialize)]
pub struct KernelCheck {
    pub name: String,
    /// Largest |device − reference| over the values compared.
    pub max_abs_diff: f32,
    /// Largest |reference| (the scale the difference is read against).
    pub max_abs: f32,
    pub values: usize,
    /// Whether the difference is within what the check allows (f16 rounding, expf's last bits,
    /// cuBLAS's and the CPU's summation orders for whole steps).
    pub ok: bool,
}

fn compare(name: &str, got: &[f32], want: &[f32], tolerance: f32) -> KernelCheck {
    let max_abs = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let max_abs_diff = reference::max_abs_diff(got, want);
    KernelCheck {
        name: name.into(),
        max_abs_diff,
        max_abs,
        values: want.len(),
        ok: got.len() == want.len() && max_abs_diff <= tolerance * max_abs.max(1.0),
    }
}

/// `n` standard normal values drawn from `seed` (the checks' inputs; the emulation tests' too).
pub(super) fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = crate::base::sampling::Rng::from_seed(seed);
    (0..n).map(|_| rng.next_gaussian() as f32).collect()
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// The elementwise kernels on `device` in `dtype` against the reference of the same inputs.
fn elementwise(device: &Device, dtype: DType) -> Result<Vec<KernelCheck>> {
    let (rows, d, ff) = (7, 3 * BLOCK + 5, 2 * BLOCK + 3);
    let on = |v: Vec<f32>, shape: (usize, usize)| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
    };
    let (h, a, w) = (
        on(random(rows * d, 1), (rows, d))?,
        on(random(rows * d, 2), (rows, d))?,
        on(random(d, 3), (1, d))?,
    );
    let w = w.flatten_all()?;
    let (h2, x) = fused::add_rmsnorm(&h, Some(&a), &w, 1e-5)?;
    let got = [host(&h2)?, host(&x)?].concat();
    let (hh, ha, hw) = (host(&h)?, host(&a)?, host(&w)?);
    let tolerance = if dtype == DType::F16 { 2e-3 } else { 1e-5 };
    let want = match dtype {
        DType::F16 => {
            let f = |v: &[f32]| v.iter().map(|&x| half::f16::from_f32(x)).collect::<Vec<_>>();
            let out = reference::add_rmsnorm(&f(&hh), Some(&f(&ha)), &f(&hw), d, 1e-5);
            out.iter().map(|x| x.to_f32()).collect()
        }
        _ => reference::add_rmsnorm(&hh, Some(&ha), &hw, d, 1e-5),
    };
    let mut out = vec![compare(&format!("add_rmsnorm {dtype:?}"), &got, &want, tolerance)];
    let gu = on(random(rows * 2 * ff, 4), (rows, 2 * ff))?;
    let got = host(&fused::silu_mul(&gu)?)?;
    let hgu = host(&gu)?;
    let want: Vec<f32> = match dtype {
        DType::F16 => {
            let g: Vec<half::f16> = hgu.iter().map(|&x| half::f16::from_f32(x)).collect();
            reference::silu_mul(&g, ff).iter().map(|x| x.to_f32()).collect()
        }
        _ => reference::silu_mul(&hgu, ff),
    };
    out.push(compare(&format!("silu_mul {dtype:?}"), &got, &want, tolerance));
    out.push(sampling(device, dtype)?);
    Ok(out)
}

/// `sample_rows` on `device` against its reference, on the same logits and draws (rows of the
/// default vocabulary's size): the tokens compared as numbers, allowed to differ in one row in
/// a hundred (where `expf`'s last bits move a draw across a boundary); greedy rows exactly.
fn sampling(device: &Device, dtype: DType) -> Result<KernelCheck> {
    let (rows, vocab) = (64, 49_152);
    let logits = Tensor::from_vec(random(rows * vocab, 5), (rows, vocab), device)?
        .affine(4.0, 0.0)?
        .to_dtype(dtype)?;
    let mut rng = crate::base::sampling::Rng::from_seed(6);
    let draws: Vec<f64> = (0..rows).map(|_| rng.next_f64()).collect();
    let host = logits.to_device(&device::host())?;
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for greedy in [false, true] {
        got.extend(fused::sample(&logits, &draws, 1.0 / 0.7, greedy)?.0);
        want.extend(fused::sample(&host, &draws, 1.0 / 0.7, greedy)?.0);
    }
    let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    let greedy_same = got[rows..] == want[rows..];
    Ok(KernelCheck {
        name: format!("sample_rows {dtype:?} (rows differing: {differ})"),
        max_abs_diff: differ as f32,
        max_abs: rows as f32,
        values: 2 * rows,
        ok: greedy_same && differ * 100 <= rows.max(100),
    })
}

/// Logits of a few decode steps of two caches stepped together: (logits per step, and the
/// second cache's row stepped alone at the last step).
fn steps(m: &Model) -> Result<(Vec<Vec<f32>>, Vec<f32>)> {
    let vocab = m.spec.vocab_size as u32;
    let long: Vec<u32> = (0..BLOCK as u32 + 22).map(|i| 1 + (i * 7) % (vocab - 1)).collect();
    let short: Vec<u32> = long[..9].to_vec();
    let (pa, _) = m.prefill(&long, long.len())?;
    let (pb, _) = m.prefill(&short, short.len())?;
    let (mut a, mut b) = (m.fork(&pa, 3, 8)?, m.fork(&pb, 2, 8)?);
    let mut b1 = m.fork(&pb, 1, 8)?;
    let mut out = Vec::new();
    let mut alone = Vec::new();
    for step in 0..4u32 {
        let t = |i: u32| 2 + (step * 5 + i) % (vocab - 2);
        out.push(m.step_many(&mut [&mut a, &mut b], &[t(0), t(1), t(2), t(3), t(4)])?);
        alone = m.step(&mut b1, &[t(4)])?;
    }
    Ok((out, alone))
}

/// The model whose decode steps are compared.
pub enum CheckModel<'a> {
    File(&'a mut ModelSource),
    /// Random weights of this shape, drawn on the host so that both devices get the same.
    Random(ModelSpec),
}

impl CheckModel<'_> {
    /// The model in f32 on `device`, on the fused kernels.
    fn load(&mut self, device: &Device) -> Result<Model> {
        let fused = Some(GpuOptions {
            kernels: GpuKernels::Fused,
            batch_invariant: true,
        });
        match self {
            CheckModel::File(source) => Model::load(source, WeightFormat::F32, device, fused),
            CheckModel::Random(spec) => {
                let mut w = Weights::Random {
                    spec: spec.clone(),
                    seed: 1,
                    host: true,
                };
                Model::build(&mut w, WeightFormat::F32, device, fused)
            }
        }
    }
}

/// Every check on `device`: the elementwise kernels in f32 and f16, then whole fused decode
/// steps of the model against the CPU's.
pub fn run(mut model: CheckModel, device: &Device) -> Result<Vec<KernelCheck>> {
    let mut out = elementwise(device, DType::F32)?;
    out.extend(elementwise(device, DType::F16)?);
    let (on_device, vocab) = {
        let m = model.load(device)?;
        (steps(&m)?, m.spec.vocab_size)
    };
    let on_host = steps(&model.load(&device::host())?)?;
    for (i, (got, want)) in on_device.0.iter().zip(&on_host.0).enumerate() {
        out.push(compare(
            &format!("fused decode step {} (f32, 5 rows, 2 caches)", i + 1),
            got,
            want,
            1e-3,
        ));
    }
    let last = on_device.0.last().map(|l| l[4 * vocab..].to_vec()).unwrap_or_default();
    out.push(KernelCheck {
        ok: last == on_device.1,
        ..compare("a row alone = the row in a batch (bits)", &on_device.1, &last, 0.0)
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the CPU the "device" side is the reference itself: every check passes exactly, so the
    /// checker compares what it says it does.
    #[test]
    fn on_the_cpu_every_check_is_exact() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny.gguf");
        crate::testing::write_tiny_model(&p, 7).unwrap();
        let mut source = ModelSource::open(&p).unwrap();
        let checks = run(CheckModel::File(&mut source), &device::host()).unwrap();
        assert_eq!(checks.len(), 6 + 4 + 1);
        for c in &checks {
            assert!(
                c.ok && c.max_abs_diff == 0.0 && c.values > 0 && c.max_abs > 0.0,
                "{c:?}"
            );
        }
        let bad = compare("x", &[1.0, 2.5], &[1.0, 2.0], 1e-3);
        assert!(!bad.ok && bad.max_abs_diff == 0.5);
        // Random weights drawn on the host: the same model on both sides.
        let spec = source.spec().clone();
        let checks = run(CheckModel::Random(spec), &device::host()).unwrap();
        assert!(checks.iter().all(|c| c.ok && c.max_abs_diff == 0.0), "{checks:?}");
    }
}
