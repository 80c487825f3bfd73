//! The CUDA kernels themselves, compiled for the host (build.rs: emulate.cpp with host_shim.h,
//! each block's threads run as real threads with real barriers), launched by the same plans
//! ([`super::plan`]) that launch.rs launches on a GPU — here with host addresses — against
//! their reference: the kernels' indexing, shared memory, barriers and reductions, and the
//! plans' argument order, grids and shared sizes, checked without a GPU. Host and reference use
//! the same libm `expf`, so most results are expected bit for bit. The tests at the end perturb
//! plans and tables deliberately and see the check fail.
#![cfg_attr(no_kernel_emulation, allow(dead_code, unused_imports))]
use candle_core::DType;
use half::f16;

use super::plan::{self, Arg, Launch};
use super::reference::{self, Heads, BLOCK, CACHE_WORDS};

/// One argument as emulate.cpp's `EmuArg`.
#[repr(C)]
struct EmuArg {
    kind: i32,
    i: i32,
    f: f32,
    p: u64,
}

#[cfg(not(no_kernel_emulation))]
extern "C" {
    fn emu_launch(
        name: *const std::ffi::c_char,
        gx: u32,
        gy: u32,
        block: u32,
        shared: usize,
        args: *const EmuArg,
        n: i32,
    ) -> i32;
}

/// emu_launch's results (emulate.cpp).
const EMU_UNKNOWN_KERNEL: i32 = 1;
const EMU_ARG_COUNT: i32 = 2;
const EMU_ARG_KIND: i32 = 3;
const EMU_BLOCK: i32 = 4;
const EMU_SHARED: i32 = 5;

/// Runs `plan` on the host: 0, or emu_launch's error.
///
/// # Safety
/// The plan's addresses are live host buffers of the sizes its kernel reads and writes.
#[cfg(not(no_kernel_emulation))]
unsafe fn emulate(plan: &Launch) -> i32 {
    let args: Vec<EmuArg> = plan
        .args
        .iter()
        .map(|a| match *a {
            Arg::Ptr(p) => EmuArg {
                kind: b'P' as i32,
                i: 0,
                f: 0.0,
                p,
            },
            Arg::Int(i) => EmuArg {
                kind: b'I' as i32,
                i,
                f: 0.0,
                p: 0,
            },
            Arg::Float(f) => EmuArg {
                kind: b'F' as i32,
                i: 0,
                f,
                p: 0,
            },
        })
        .collect();
    let name = std::ffi::CString::new(plan.kernel.as_str()).expect("a kernel name without NUL");
    let (gx, gy) = plan.grid;
    emu_launch(
        name.as_ptr(),
        gx,
        gy,
        plan.block,
        plan.shared as usize,
        args.as_ptr(),
        args.len() as i32,
    )
}

/// [`emulate`], which must succeed.
#[cfg(not(no_kernel_emulation))]
unsafe fn run(plan: &Launch) {
    assert_eq!(emulate(plan), 0, "{plan:?}");
}

fn at<T>(v: &[T]) -> u64 {
    v.as_ptr() as u64
}

fn at_mut<T>(v: &mut [T]) -> u64 {
    v.as_mut_ptr() as u64
}

fn half(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

use super::check::random as values;
use super::reference::tests::max_diff;

/// Skips (saying so) where build.rs could not compile the kernels for the host.
#[cfg(no_kernel_emulation)]
#[test]
fn the_cuda_kernels_run_on_the_host() {
    crate::base::util::skip("no C++20 compiler: the CUDA kernels' host emulation was not built");
}

#[cfg(not(no_kernel_emulation))]
#[test]
fn add_rmsnorm_and_silu_mul_are_their_reference() {
    let (rows, d, ff) = (3, 2 * BLOCK + 37, BLOCK + 5);
    let (h, a, w) = (values(rows * d, 1), values(rows * d, 2), values(d, 3));
    let mut out = vec![0f32; 2 * rows * d];
    for with_a in [true, false] {
        let a_at = if with_a { at(&a) } else { 0 };
        let p = plan::add_rmsnorm(DType::F32, [at(&h), a_at, at(&w), at_mut(&mut out)], (rows, d), 1e-5).unwrap();
        // SAFETY: every buffer holds what the kernel reads and writes for these sizes.
        unsafe { run(&p) };
        assert_eq!(out, reference::add_rmsnorm(&h, with_a.then_some(&a[..]), &w, d, 1e-5));
    }
    let (h16, a16, w16) = (half(&h), half(&a), half(&w));
    let mut out16 = vec![f16::ZERO; 2 * rows * d];
    let p = plan::add_rmsnorm(
        DType::F16,
        [at(&h16), at(&a16), at(&w16), at_mut(&mut out16)],
        (rows, d),
        1e-5,
    );
    unsafe { run(&p.unwrap()) };
    assert_eq!(out16, reference::add_rmsnorm(&h16, Some(&a16), &w16, d, 1e-5));
    let gu = values(rows * 2 * ff, 4);
    let mut m = vec![0f32; rows * ff];
    unsafe { run(&plan::silu_mul(DType::F32, [at(&gu), at_mut(&mut m)], (rows, ff)).unwrap()) };
    let want = reference::silu_mul(&gu, ff);
    assert!(max_diff(&m, &want) <= 1e-6, "{}", max_diff(&m, &want));
}

/// Two caches, as a step sees them: cache 0 forked from a prompt of `start` positions (its own
/// rows hold `alloc` positions each), cache 1 a batch-1 cache without a prompt. Returns the
/// buffers (kept alive by the caller), the table with their addresses and the rows table.
struct Caches {
    shared: [Vec<f32>; 2],
    own: [Vec<f32>; 2],
    solo: [Vec<f32>; 2],
    table: Vec<u64>,
    meta: Vec<u32>,
}

const S: Heads = Heads {
    n_head: 6,
    n_kv: 2,
    hd: 8,
};

fn caches(start: usize, cap: usize, alloc: usize, batch: usize, len: usize, solo_len: usize) -> Caches {
    let kv = S.n_kv * S.hd;
    let mut c = Caches {
        shared: [values(cap * kv, 5), values(cap * kv, 6)],
        own: [values(batch * alloc * kv, 7), values(batch * alloc * kv, 8)],
        solo: [values(alloc * kv, 9), values(alloc * kv, 10)],
        table: Vec::new(),
        meta: Vec::new(),
    };
    let addr = |v: &Vec<f32>| v.as_ptr() as u64;
    c.table = vec![
        addr(&c.shared[0]),
        addr(&c.shared[1]),
        addr(&c.own[0]),
        addr(&c.own[1]),
        start as u64,
        cap as u64,
        alloc as u64,
        0,
        0,
        0,
        addr(&c.solo[0]),
        addr(&c.solo[1]),
        0,
        0,
        alloc as u64,
        0,
    ];
    assert_eq!(c.table.len(), 2 * CACHE_WORDS);
    c.meta = (0..batch as u32).flat_map(|b| [0, b, len as u32, 0]).collect();
    c.meta.extend([1, 0, solo_len as u32, 0]);
    c
}

/// Attention of the rows of `c` (2 rows of cache 0, 1 of cache 1) in groups of `group`, as the
/// plan launches it: q (rows, n_head·hd) f32, output in `T`.
#[cfg(not(no_kernel_emulation))]
fn attention_plan<T: Default + Clone>(
    q: &[f32],
    c: &Caches,
    (table, cache): (&[u64], DType),
    group: usize,
) -> (Launch, Vec<T>, Vec<u32>) {
    let groups = super::fused::groups(&[2, 1], group);
    let mut out = vec![T::default(); 3 * S.n_head * S.hd];
    let out_dtype = if std::mem::size_of::<T>() == 2 {
        DType::F16
    } else {
        DType::F32
    };
    let addresses = [at(q), at(&c.meta), at(&groups), at(table), at_mut(&mut out)];
    let p = plan::attention((cache, out_dtype), addresses, groups.len() / 4, S, 0.3).unwrap();
    (p, out, groups)
}

/// The caches of `c` in f16, and the table with their addresses.
fn half_caches(c: &Caches) -> (Vec<Vec<f16>>, Vec<u64>) {
    let mut bufs: Vec<Vec<f16>> = [&c.shared[0], &c.shared[1], &c.own[0], &c.own[1], &c.solo[0], &c.solo[1]]
        .into_iter()
        .map(|v| half(v))
        .collect();
    let mut table = c.table.clone();
    for (word, buf) in [0, 1, 2, 3, 10, 11].into_iter().zip(bufs.iter_mut()) {
        table[word] = at_mut(buf);
    }
    (bufs, table)
}

/// Attention over two caches (one forked from a prompt: 2 rows; one without: 1 row), past a
/// chunk and across the prompt boundary, in groups of 1, 2 and 4 rows: every grouping gives the
/// reference's results (the prompt's rows read once per group change nothing).
#[cfg(not(no_kernel_emulation))]
#[test]
fn attention_is_its_reference_across_chunks_caches_and_the_prompt() {
    let c = caches(130, 140, 180, 2, 300, 150);
    let q = values(3 * S.n_head * S.hd, 11);
    assert_eq!(reference::group_rows(S.n_head / S.n_kv, S.hd), 4);
    // SAFETY: the table's addresses are the live buffers of `c`, sized for every position read.
    let want = unsafe { reference::attention::<f32, f32>(&q, &c.meta, &c.table, S, 0.3) };
    for group in [1, 2, 4] {
        let (p, out, _groups) = attention_plan::<f32>(&q, &c, (&c.table, DType::F32), group);
        unsafe { run(&p) };
        let diff = max_diff(&out, &want);
        assert!(diff <= 1e-6, "f32, groups of {group}: {diff}");
    }
    // The same caches in f16.
    let (_bufs, table) = half_caches(&c);
    let want = unsafe { reference::attention::<f16, f32>(&q, &c.meta, &table, S, 0.3) };
    for group in [1, 4] {
        let (p, out, _groups) = attention_plan::<f32>(&q, &c, (&table, DType::F16), group);
        unsafe { run(&p) };
        let diff = max_diff(&out, &want);
        assert!(diff <= 1e-6, "f16, groups of {group}: {diff}");
    }
}

/// `rope_write`'s inputs for the 3 rows of `caches(…)`: qkv and bias of `width`, cos and sin
/// of 400 positions.
fn rope_inputs() -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = (S.n_head + 2 * S.n_kv) * S.hd;
    let (qkv, bias) = (values(3 * width, 12), values(width, 13));
    (qkv, bias, values(400 * S.hd / 2, 14), values(400 * S.hd / 2, 15))
}

#[cfg(not(no_kernel_emulation))]
#[test]
fn rope_write_rotates_q_and_writes_each_rows_k_and_v_at_its_position() {
    let (start, alloc) = (130, 180);
    let c = caches(start, 140, alloc, 2, 300, 150);
    let (qkv, bias, cos, sin) = rope_inputs();
    let before = c.own.clone();
    let mut q = vec![0f32; 3 * S.n_head * S.hd];
    let addresses = [
        at(&qkv),
        at(&bias),
        at(&cos),
        at(&sin),
        at(&c.meta),
        at(&c.table),
        at_mut(&mut q),
    ];
    // SAFETY: the table's addresses are the live buffers of `c`; row positions 299 and 149 lie
    // within their own tensors' allocated positions.
    unsafe { run(&plan::rope_write((DType::F32, DType::F32), addresses, 3, S).unwrap()) };
    let (want_q, k, v) = reference::rope(&qkv, Some(&bias), (&cos, &sin), &[299, 299, 149], S);
    assert_eq!(q, want_q);
    // Row r's K and V of head h at its position: cache 0 rows 0 and 1 at 299 − start, the batch-1
    // cache's row at 149.
    let at = |b: usize, h: usize, p: usize| ((b * S.n_kv + h) * alloc + p) * S.hd;
    let mut expect = before.clone();
    for (r, b) in [0usize, 1].into_iter().enumerate() {
        for h in 0..S.n_kv {
            let o = at(b, h, 299 - start);
            expect[0][o..o + S.hd].copy_from_slice(&k[(r * S.n_kv + h) * S.hd..][..S.hd]);
            expect[1][o..o + S.hd].copy_from_slice(&v[(r * S.n_kv + h) * S.hd..][..S.hd]);
        }
    }
    assert_eq!(c.own, expect, "cache 0: the rows' own positions, nothing else");
    for h in 0..S.n_kv {
        let o = at(0, h, 149);
        assert_eq!(c.solo[0][o..o + S.hd], k[(2 * S.n_kv + h) * S.hd..][..S.hd]);
        assert_eq!(c.solo[1][o..o + S.hd], v[(2 * S.n_kv + h) * S.hd..][..S.hd]);
    }
}

/// `sample_rows` over `logits` (rows × 1000) with draws `u`: the tokens and the flags.
#[cfg(not(no_kernel_emulation))]
fn sample<T>(dtype: DType, logits: &[T], u: &[f64], greedy: bool) -> (Vec<u32>, Vec<u32>) {
    let rows = u.len();
    let (mut tokens, mut bad) = (vec![9u32; rows], vec![9u32; rows]);
    let addresses = [at(logits), at(u), at_mut(&mut tokens), at_mut(&mut bad)];
    let p = plan::sample_rows(dtype, addresses, (rows, logits.len() / rows), 1.0 / 0.7, greedy).unwrap();
    // SAFETY: `rows × vocab` logits, `rows` draws, tokens and flags.
    unsafe { run(&p) };
    (tokens, bad)
}

#[cfg(not(no_kernel_emulation))]
#[test]
fn sample_rows_is_its_reference() {
    let (rows, vocab) = (6, 1000);
    let logits: Vec<f32> = values(rows * vocab, 16).iter().map(|x| x * 4.0).collect();
    let mut rng = crate::base::sampling::Rng::from_seed(17);
    let mut u: Vec<f64> = (0..rows).map(|_| rng.next_f64()).collect();
    u[5] = 1.0 - 1e-17;
    let mut bad_logits = logits.clone();
    bad_logits[3 * vocab + 17] = f32::INFINITY;
    for (l, greedy) in [(&logits, false), (&logits, true), (&bad_logits, false)] {
        let (tokens, bad) = sample(DType::F32, l, &u, greedy);
        for r in 0..rows {
            let want = reference::sample_row(&l[r * vocab..][..vocab], u[r], 1.0 / 0.7, greedy);
            assert_eq!(bad[r] == 0, want.is_some(), "row {r}");
            if let Some(t) = want {
                assert_eq!(tokens[r], t, "row {r}, greedy {greedy}");
            }
        }
    }
}

/// The variants a GPU runs by default (f16 activations, f16 cache): `rope_write` (its K/V
/// rounded to f16 in the cache) and `attention` over what it wrote (groups of 4, output rounded
/// to f16), each against its reference.
#[cfg(not(no_kernel_emulation))]
#[test]
fn the_f16_rope_write_and_attention_are_their_reference() {
    let (start, alloc) = (130, 180);
    let c = caches(start, 140, alloc, 2, 300, 150);
    let (bufs, table) = half_caches(&c);
    // rope_write: q in f32, K and V rounded to f16 at each row's position.
    let (qkv, bias, cos, sin) = rope_inputs();
    let (qkv, bias) = (half(&qkv), half(&bias));
    let mut q = vec![0f32; 3 * S.n_head * S.hd];
    let addresses = [
        at(&qkv),
        at(&bias),
        at(&cos),
        at(&sin),
        at(&c.meta),
        at(&table),
        at_mut(&mut q),
    ];
    // SAFETY: the table's addresses are the live f16 buffers of `bufs`, sized for every position.
    unsafe { run(&plan::rope_write((DType::F16, DType::F16), addresses, 3, S).unwrap()) };
    let (want_q, k, v) = reference::rope(&qkv, Some(&bias), (&cos, &sin), &[299, 299, 149], S);
    assert_eq!(q, want_q);
    let o = (S.n_kv * alloc + 299 - start) * S.hd; // row 1 of cache 0, head 0
    assert_eq!(bufs[2][o..o + S.hd], half(&k[S.n_kv * S.hd..][..S.hd])[..]);
    assert_eq!(
        bufs[5][149 * S.hd..150 * S.hd],
        half(&v[2 * S.n_kv * S.hd..][..S.hd])[..]
    );
    // attention over the caches as rope_write left them, in groups of 4, out in f16.
    let (p, out, _groups) = attention_plan::<f16>(&q, &c, (&table, DType::F16), 4);
    unsafe {
        run(&p);
        assert_eq!(out, reference::attention::<f16, f16>(&q, &c.meta, &table, S, 0.3));
    }
}

/// `silu_mul` and `sample_rows` on f16, as a GPU runs them by default.
#[cfg(not(no_kernel_emulation))]
#[test]
fn the_f16_elementwise_and_sampling_kernels_are_their_reference() {
    let rows = 3;
    let gu = half(&values(rows * 2 * 300, 4));
    let mut m = vec![f16::ZERO; rows * 300];
    unsafe { run(&plan::silu_mul(DType::F16, [at(&gu), at_mut(&mut m)], (rows, 300)).unwrap()) };
    assert_eq!(m, reference::silu_mul(&gu, 300));
    let logits = half(&values(rows * 1000, 16).iter().map(|x| x * 4.0).collect::<Vec<_>>());
    let u = [0.1, 0.5, 0.9];
    let (tokens, bad) = sample(DType::F16, &logits, &u, false);
    for r in 0..rows {
        let want = reference::sample_row(&logits[r * 1000..][..1000], u[r], 1.0 / 0.7, false);
        assert_eq!(Some(tokens[r]), want);
        assert_eq!(bad[r], 0);
    }
}

/// The check can fail: the attention over a cache table whose own-positions stride (word 6 of
/// cache 0, its K/V tensors' allocated positions) is one short — every read stays within the
/// buffers — differs from the reference over the true table.
#[cfg(not(no_kernel_emulation))]
#[test]
fn a_cache_table_with_a_wrong_stride_fails_the_check() {
    let c = caches(130, 140, 180, 2, 300, 150);
    let q = values(3 * S.n_head * S.hd, 11);
    let want = unsafe { reference::attention::<f32, f32>(&q, &c.meta, &c.table, S, 0.3) };
    let mut off = c.table.clone();
    off[6] -= 1;
    let (p, out, _groups) = attention_plan::<f32>(&q, &c, (&off, DType::F32), 4);
    unsafe { run(&p) };
    assert!(max_diff(&out, &want) > 1e-3, "{}", max_diff(&out, &want));
}

/// The check can fail: plans deliberately off — two same-sized address arguments swapped (cos
/// and sin), a count one short (`ff`), a grid one block short — give results other than the
/// reference's, within the buffers.
#[cfg(not(no_kernel_emulation))]
#[test]
fn plans_with_swapped_arguments_wrong_counts_or_a_short_grid_fail_the_check() {
    let c = caches(130, 140, 180, 2, 300, 150);
    let (qkv, bias, cos, sin) = rope_inputs();
    let mut q = vec![0f32; 3 * S.n_head * S.hd];
    let addresses = [
        at(&qkv),
        at(&bias),
        at(&sin),
        at(&cos),
        at(&c.meta),
        at(&c.table),
        at_mut(&mut q),
    ];
    unsafe { run(&plan::rope_write((DType::F32, DType::F32), addresses, 3, S).unwrap()) };
    let (want_q, _, _) = reference::rope(&qkv, Some(&bias), (&cos, &sin), &[299, 299, 149], S);
    assert!(max_diff(&q, &want_q) > 1e-3, "cos and sin swapped");

    let (rows, ff) = (3, 300);
    let gu = values(rows * 2 * ff, 4);
    let mut m = vec![0f32; rows * ff];
    let mut p = plan::silu_mul(DType::F32, [at(&gu), at_mut(&mut m)], (rows, ff)).unwrap();
    p.args[3] = Arg::Int(ff as i32 - 1);
    unsafe { run(&p) };
    assert!(max_diff(&m, &reference::silu_mul(&gu, ff)) > 1e-3, "ff one short");

    let (rows, d) = (3, 200);
    let (h, w) = (values(rows * d, 1), values(d, 3));
    let mut out = vec![f32::NAN; 2 * rows * d];
    let mut p = plan::add_rmsnorm(DType::F32, [at(&h), 0, at(&w), at_mut(&mut out)], (rows, d), 1e-5).unwrap();
    p.grid.0 -= 1;
    unsafe { run(&p) };
    let want = reference::add_rmsnorm(&h, None, &w, d, 1e-5);
    let (last_h, last_x) = ((rows - 1) * d..rows * d, (2 * rows - 1) * d..2 * rows * d);
    assert!(
        out[last_h.clone()]
            .iter()
            .chain(&out[last_x.clone()])
            .all(|x| x.is_nan()),
        "the last row unwritten"
    );
    assert_eq!(out[..last_h.start], want[..last_h.start], "the other rows are right");
}

/// The attention grid one group short leaves the last group's rows unwritten.
#[cfg(not(no_kernel_emulation))]
#[test]
fn an_attention_grid_one_group_short_leaves_rows_unwritten() {
    let c = caches(130, 140, 180, 2, 300, 150);
    let q = values(3 * S.n_head * S.hd, 11);
    let (mut p, mut out, _groups) = attention_plan::<f32>(&q, &c, (&c.table, DType::F32), 1);
    out.fill(f32::NAN);
    p.grid.0 -= 1;
    unsafe { run(&p) };
    let width = S.n_head * S.hd;
    assert!(
        out[2 * width..].iter().all(|x| x.is_nan()),
        "row 2 (the last group) unwritten"
    );
    assert!(out[..2 * width].iter().all(|x| x.is_finite()));
}

/// emu_launch checks a plan against the kernel's signature and the launch's shape: an argument
/// of another kind, one too few, an unknown kernel, a block of other than BLOCK threads, less
/// dynamic shared memory than the kernel uses — each refused, nothing run past its buffers.
#[cfg(not(no_kernel_emulation))]
#[test]
fn plans_that_do_not_match_the_kernels_are_refused() {
    let c = caches(130, 140, 180, 2, 300, 150);
    let q = values(3 * S.n_head * S.hd, 11);
    let (good, _out, _groups) = attention_plan::<f32>(&q, &c, (&c.table, DType::F32), 4);
    let cases: [(fn(&mut Launch), i32); 5] = [
        (|p| p.args[5] = Arg::Float(6.0), EMU_ARG_KIND),
        (|p| p.args[8] = Arg::Int(0), EMU_ARG_KIND),
        (|p| p.args.truncate(8), EMU_ARG_COUNT),
        (|p| p.kernel = "attention_f32_bf16".into(), EMU_UNKNOWN_KERNEL),
        (|p| p.block = 64, EMU_BLOCK),
    ];
    for (perturb, code) in cases {
        let mut p = good.clone();
        perturb(&mut p);
        assert_eq!(unsafe { emulate(&p) }, code, "{p:?}");
    }
    // The largest group here holds 2 rows (cache 0's): 2·n_rep heads of q, scores, and BLOCK
    // reduction slots. One float less than that:
    let heads = 2 * S.n_head / S.n_kv;
    let used = (heads * S.hd + heads * BLOCK + BLOCK) * 4;
    assert!(good.shared as usize >= used);
    let mut p = good.clone();
    p.shared = (used - 4) as u32;
    assert_eq!(unsafe { emulate(&p) }, EMU_SHARED, "shared memory one float short");
    assert_eq!(unsafe { emulate(&good) }, 0);
}
