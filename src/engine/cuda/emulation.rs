//! The CUDA kernels themselves, compiled for the host (build.rs: emulate.cpp with host_shim.h,
//! each block's threads run as real threads with real barriers), against their reference: the
//! kernels' indexing, shared memory, barriers and reductions checked without a GPU. Host and
//! reference use the same libm `expf`, so most results are expected bit for bit.
#![cfg_attr(no_kernel_emulation, allow(dead_code, unused_imports))]
use half::f16;

use super::reference::{self, Heads, BLOCK, CACHE_WORDS};

#[cfg(not(no_kernel_emulation))]
extern "C" {
    fn emu_add_rmsnorm_f32(h: *const f32, a: *const f32, w: *const f32, out: *mut f32, rows: i32, d: i32, eps: f32);
    fn emu_add_rmsnorm_f16(h: *const f16, a: *const f16, w: *const f16, out: *mut f16, rows: i32, d: i32, eps: f32);
    fn emu_silu_mul_f32(gu: *const f32, out: *mut f32, rows: i32, ff: i32);
    fn emu_silu_mul_f16(gu: *const f16, out: *mut f16, rows: i32, ff: i32);
}

#[cfg(not(no_kernel_emulation))]
extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn emu_rope_write_f32_f32(
        qkv: *const f32,
        bias: *const f32,
        cos: *const f32,
        sin: *const f32,
        rows_meta: *const u32,
        caches: *const u64,
        q_out: *mut f32,
        rows: i32,
        n_head: i32,
        n_kv: i32,
        hd: i32,
    );
    #[allow(clippy::too_many_arguments)]
    fn emu_rope_write_f16_f16(
        qkv: *const f16,
        bias: *const f16,
        cos: *const f32,
        sin: *const f32,
        rows_meta: *const u32,
        caches: *const u64,
        q_out: *mut f32,
        rows: i32,
        n_head: i32,
        n_kv: i32,
        hd: i32,
    );
}

#[cfg(not(no_kernel_emulation))]
extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn emu_attention_f32_f32(
        q: *const f32,
        meta: *const u32,
        groups: *const u32,
        n_groups: i32,
        caches: *const u64,
        out: *mut f32,
        n_head: i32,
        n_kv: i32,
        hd: i32,
        scale: f32,
        group_heads: i32,
    );
    #[allow(clippy::too_many_arguments)]
    fn emu_attention_f16_f32(
        q: *const f32,
        meta: *const u32,
        groups: *const u32,
        n_groups: i32,
        caches: *const u64,
        out: *mut f32,
        n_head: i32,
        n_kv: i32,
        hd: i32,
        scale: f32,
        group_heads: i32,
    );
    #[allow(clippy::too_many_arguments)]
    fn emu_attention_f16_f16(
        q: *const f32,
        meta: *const u32,
        groups: *const u32,
        n_groups: i32,
        caches: *const u64,
        out: *mut f16,
        n_head: i32,
        n_kv: i32,
        hd: i32,
        scale: f32,
        group_heads: i32,
    );
}

#[cfg(not(no_kernel_emulation))]
extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn emu_sample_rows_f16(
        logits: *const f16,
        u: *const f64,
        tokens: *mut u32,
        bad: *mut u32,
        rows: i32,
        vocab: i32,
        inv_t: f32,
        greedy: i32,
    );
    #[allow(clippy::too_many_arguments)]
    fn emu_sample_rows_f32(
        logits: *const f32,
        u: *const f64,
        tokens: *mut u32,
        bad: *mut u32,
        rows: i32,
        vocab: i32,
        inv_t: f32,
        greedy: i32,
    );
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
    // SAFETY: every buffer holds what the kernel reads and writes for these sizes.
    unsafe {
        emu_add_rmsnorm_f32(
            h.as_ptr(),
            a.as_ptr(),
            w.as_ptr(),
            out.as_mut_ptr(),
            rows as i32,
            d as i32,
            1e-5,
        )
    };
    assert_eq!(out, reference::add_rmsnorm(&h, Some(&a), &w, d, 1e-5));
    unsafe {
        emu_add_rmsnorm_f32(
            h.as_ptr(),
            std::ptr::null(),
            w.as_ptr(),
            out.as_mut_ptr(),
            rows as i32,
            d as i32,
            1e-5,
        )
    };
    assert_eq!(out, reference::add_rmsnorm(&h, None, &w, d, 1e-5));
    let half = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    let (h16, a16, w16) = (half(&h), half(&a), half(&w));
    let mut out16 = vec![f16::ZERO; 2 * rows * d];
    unsafe {
        emu_add_rmsnorm_f16(
            h16.as_ptr(),
            a16.as_ptr(),
            w16.as_ptr(),
            out16.as_mut_ptr(),
            rows as i32,
            d as i32,
            1e-5,
        )
    };
    assert_eq!(out16, reference::add_rmsnorm(&h16, Some(&a16), &w16, d, 1e-5));
    let gu = values(rows * 2 * ff, 4);
    let mut m = vec![0f32; rows * ff];
    unsafe { emu_silu_mul_f32(gu.as_ptr(), m.as_mut_ptr(), rows as i32, ff as i32) };
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

/// Attention over two caches (one forked from a prompt: 2 rows; one without: 1 row), past a
/// chunk and across the prompt boundary, in groups of 1, 2 and 4 rows: every grouping gives the
/// reference's results (the prompt's rows read once per group change nothing).
#[cfg(not(no_kernel_emulation))]
#[test]
fn attention_is_its_reference_across_chunks_caches_and_the_prompt() {
    let (start, cap, alloc, batch) = (130, 140, 180, 2);
    let c = caches(start, cap, alloc, batch, 300, 150);
    let rows = batch + 1;
    let q = values(rows * S.n_head * S.hd, 11);
    let n_rep = S.n_head / S.n_kv;
    assert_eq!(reference::group_rows(n_rep, S.hd), 4);
    // SAFETY: the table's addresses are the live buffers of `c`, sized for every position read.
    let run = |f16: bool, table: &[u64], group: usize| -> Vec<f32> {
        let groups = super::fused::groups(&[batch, 1], group);
        let mut out = vec![0f32; rows * S.n_head * S.hd];
        let kernel = if f16 {
            emu_attention_f16_f32
        } else {
            emu_attention_f32_f32
        };
        let (n_head, n_kv, hd) = (S.n_head as i32, S.n_kv as i32, S.hd as i32);
        let (n_groups, heads) = ((groups.len() / 4) as i32, (group * n_rep) as i32);
        unsafe {
            kernel(
                q.as_ptr(),
                c.meta.as_ptr(),
                groups.as_ptr(),
                n_groups,
                table.as_ptr(),
                out.as_mut_ptr(),
                n_head,
                n_kv,
                hd,
                0.3,
                heads,
            )
        };
        out
    };
    let want = unsafe { reference::attention::<f32, f32>(&q, &c.meta, &c.table, S, 0.3) };
    for group in [1, 2, 4] {
        let out = run(false, &c.table, group);
        assert!(
            max_diff(&out, &want) <= 1e-6,
            "f32, groups of {group}: {}",
            max_diff(&out, &want)
        );
    }
    // The same caches in f16.
    let half = |v: &Vec<f32>| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    let bufs: Vec<Vec<f16>> = [&c.shared[0], &c.shared[1], &c.own[0], &c.own[1], &c.solo[0], &c.solo[1]]
        .into_iter()
        .map(half)
        .collect();
    let mut table = c.table.clone();
    for (word, buf) in [0, 1, 2, 3, 10, 11].into_iter().zip(&bufs) {
        table[word] = buf.as_ptr() as u64;
    }
    let want = unsafe { reference::attention::<f16, f32>(&q, &c.meta, &table, S, 0.3) };
    for group in [1, 4] {
        let out = run(true, &table, group);
        assert!(
            max_diff(&out, &want) <= 1e-6,
            "f16, groups of {group}: {}",
            max_diff(&out, &want)
        );
    }
}

#[cfg(not(no_kernel_emulation))]
#[test]
fn rope_write_rotates_q_and_writes_each_rows_k_and_v_at_its_position() {
    let (start, cap, alloc, batch) = (130, 140, 180, 2);
    let c = caches(start, cap, alloc, batch, 300, 150);
    let rows = batch + 1;
    let width = (S.n_head + 2 * S.n_kv) * S.hd;
    let (qkv, bias) = (values(rows * width, 12), values(width, 13));
    let positions = 400;
    let (cos, sin) = (values(positions * S.hd / 2, 14), values(positions * S.hd / 2, 15));
    let before = c.own.clone();
    let mut q = vec![0f32; rows * S.n_head * S.hd];
    let (n_head, n_kv, hd) = (S.n_head as i32, S.n_kv as i32, S.hd as i32);
    // SAFETY: the table's addresses are the live buffers of `c`; row positions 299 and 149 lie
    // within their own tensors' allocated positions.
    unsafe {
        emu_rope_write_f32_f32(
            qkv.as_ptr(),
            bias.as_ptr(),
            cos.as_ptr(),
            sin.as_ptr(),
            c.meta.as_ptr(),
            c.table.as_ptr(),
            q.as_mut_ptr(),
            rows as i32,
            n_head,
            n_kv,
            hd,
        )
    };
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
    for (l, greedy) in [(&logits, 0), (&logits, 1), (&bad_logits, 0)] {
        let (mut tokens, mut bad) = (vec![9u32; rows], vec![9u32; rows]);
        // SAFETY: `rows × vocab` logits, `rows` draws, tokens and flags.
        unsafe {
            emu_sample_rows_f32(
                l.as_ptr(),
                u.as_ptr(),
                tokens.as_mut_ptr(),
                bad.as_mut_ptr(),
                rows as i32,
                vocab as i32,
                1.0 / 0.7,
                greedy,
            )
        };
        for r in 0..rows {
            let want = reference::sample_row(&l[r * vocab..][..vocab], u[r], 1.0 / 0.7, greedy == 1);
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
    let half = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    let (start, cap, alloc, batch) = (130, 140, 180, 2);
    let c = caches(start, cap, alloc, batch, 300, 150);
    let mut bufs: Vec<Vec<f16>> = [&c.shared[0], &c.shared[1], &c.own[0], &c.own[1], &c.solo[0], &c.solo[1]]
        .into_iter()
        .map(|v| half(v))
        .collect();
    let mut table = c.table.clone();
    for (word, buf) in [0, 1, 2, 3, 10, 11].into_iter().zip(bufs.iter_mut()) {
        table[word] = buf.as_mut_ptr() as u64;
    }
    let rows = batch + 1;
    let (n_head, n_kv, hd) = (S.n_head as i32, S.n_kv as i32, S.hd as i32);
    // rope_write: q in f32, K and V rounded to f16 at each row's position.
    let width = (S.n_head + 2 * S.n_kv) * S.hd;
    let (qkv, bias) = (half(&values(rows * width, 12)), half(&values(width, 13)));
    let (cos, sin) = (values(400 * S.hd / 2, 14), values(400 * S.hd / 2, 15));
    let mut q = vec![0f32; rows * S.n_head * S.hd];
    // SAFETY: the table's addresses are the live f16 buffers of `bufs`, sized for every position.
    unsafe {
        emu_rope_write_f16_f16(
            qkv.as_ptr(),
            bias.as_ptr(),
            cos.as_ptr(),
            sin.as_ptr(),
            c.meta.as_ptr(),
            table.as_ptr(),
            q.as_mut_ptr(),
            rows as i32,
            n_head,
            n_kv,
            hd,
        )
    };
    let (want_q, k, v) = reference::rope(&qkv, Some(&bias), (&cos, &sin), &[299, 299, 149], S);
    assert_eq!(q, want_q);
    let o = (S.n_kv * alloc + 299 - start) * S.hd; // row 1 of cache 0, head 0
    assert_eq!(bufs[2][o..o + S.hd], half(&k[S.n_kv * S.hd..][..S.hd])[..]);
    assert_eq!(
        bufs[5][149 * S.hd..150 * S.hd],
        half(&v[2 * S.n_kv * S.hd..][..S.hd])[..]
    );
    // attention over the caches as rope_write left them, in groups of 4, out in f16.
    let groups = super::fused::groups(&[batch, 1], 4);
    let mut out = vec![f16::ZERO; rows * S.n_head * S.hd];
    let heads = (4 * S.n_head / S.n_kv) as i32;
    unsafe {
        emu_attention_f16_f16(
            q.as_ptr(),
            c.meta.as_ptr(),
            groups.as_ptr(),
            (groups.len() / 4) as i32,
            table.as_ptr(),
            out.as_mut_ptr(),
            n_head,
            n_kv,
            hd,
            0.3,
            heads,
        );
        assert_eq!(out, reference::attention::<f16, f16>(&q, &c.meta, &table, S, 0.3));
    }
}

/// `silu_mul` and `sample_rows` on f16, as a GPU runs them by default.
#[cfg(not(no_kernel_emulation))]
#[test]
fn the_f16_elementwise_and_sampling_kernels_are_their_reference() {
    let half = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    let rows = 3;
    let gu = half(&values(rows * 2 * 300, 4));
    let mut m = vec![f16::ZERO; rows * 300];
    unsafe { emu_silu_mul_f16(gu.as_ptr(), m.as_mut_ptr(), rows as i32, 300) };
    assert_eq!(m, reference::silu_mul(&gu, 300));
    let logits = half(&values(rows * 1000, 16).iter().map(|x| x * 4.0).collect::<Vec<_>>());
    let u = [0.1, 0.5, 0.9];
    let (mut tokens, mut bad) = (vec![0u32; rows], vec![9u32; rows]);
    unsafe {
        emu_sample_rows_f16(
            logits.as_ptr(),
            u.as_ptr(),
            tokens.as_mut_ptr(),
            bad.as_mut_ptr(),
            rows as i32,
            1000,
            1.0 / 0.7,
            0,
        )
    };
    for r in 0..rows {
        assert_eq!(
            Some(tokens[r]),
            reference::sample_row(&logits[r * 1000..][..1000], u[r], 1.0 / 0.7, false)
        );
        assert_eq!(bad[r], 0);
    }
}
