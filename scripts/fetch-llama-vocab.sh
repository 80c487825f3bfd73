#!/usr/bin/env bash
# Fetches llama.cpp's tokenizer test vocabularies (models/ggml-vocab-*.gguf, vocabulary-only GGUF
# files, with their .gguf.inp test strings and .gguf.out expected token ids) out of the PyPI sdist
# of llama-cpp-python, which vendors llama.cpp, and prints the directory holding them. Nothing is
# built. tests/vocab_vectors.rs reads the directory from RFTX_VOCAB_DIR:
#
#   RFTX_VOCAB_DIR=$(scripts/fetch-llama-vocab.sh) cargo test --release --test vocab_vectors
#
# The sdist (77 MB) is kept in $LLAMA_VOCAB_CACHE (default ~/.cache/rftx-llama-vocab), checked
# against its sha256, and only the vocabulary files (about 75 MB) are extracted next to it.
#
# Why not `pip download --no-binary :all: llama-cpp-python==0.3.36`: pip prepares an sdist's
# metadata before it keeps the file, and llama-cpp-python's build backend (scikit-build-core)
# wants CMake for that. The URL below is the file pip finds for that requirement (`pip download
# -vv` prints it as "Found link"), fetched directly and pinned by its digest.
set -euo pipefail
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
URL=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$VERSION.tar.gz
CACHE=${LLAMA_VOCAB_CACHE:-$HOME/.cache/rftx-llama-vocab}
SDIST=$CACHE/llama_cpp_python-$VERSION.tar.gz
OUT=$CACHE/$VERSION
PY=${PYTHON:-python3}

if [ -f "$OUT/.extracted" ]; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$CACHE"

digest_ok() { [ -f "$SDIST" ] && echo "$SHA256  $SDIST" | sha256sum -c --status; }

if ! digest_ok; then
  echo "fetching llama-cpp-python $VERSION's sdist (77 MB) from PyPI" >&2
  tmp=$(mktemp "$CACHE/download.XXXXXX")
  if command -v curl >/dev/null; then
    fetch() { curl -fsSL --retry 3 -o "$tmp" "$URL"; }
  else
    fetch() { "$PY" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$URL" "$tmp"; }
  fi
  if ! fetch; then
    rm -f "$tmp"
    echo "error: could not download $URL" >&2
    exit 1
  fi
  mv "$tmp" "$SDIST"
  if ! digest_ok; then
    rm -f "$SDIST"
    echo "error: $URL does not have sha256 $SHA256 (deleted); fetch it again" >&2
    exit 1
  fi
fi

rm -rf "$OUT.partial"
mkdir -p "$OUT.partial"
tar -xzf "$SDIST" -C "$OUT.partial" --strip-components=4 --wildcards \
  "llama_cpp_python-$VERSION/vendor/llama.cpp/models/ggml-vocab-*"
n=$(find "$OUT.partial" -name 'ggml-vocab-*.gguf' | wc -l)
if [ "$n" -eq 0 ]; then
  echo "error: $SDIST holds no vendor/llama.cpp/models/ggml-vocab-*.gguf" >&2
  exit 1
fi
touch "$OUT.partial/.extracted"
rm -rf "$OUT"
mv "$OUT.partial" "$OUT"
echo "extracted $n vocabularies" >&2
echo "$OUT"
