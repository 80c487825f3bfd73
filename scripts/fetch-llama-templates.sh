#!/usr/bin/env bash
# Extracts llama.cpp's collection of real chat templates (models/templates/*.jinja, 70 files) out
# of the same PyPI sdist of llama-cpp-python that scripts/fetch-llama-vocab.sh fetches, and prints
# the directory holding them. tests/chat_templates.rs reads the directory from
# RFTX_TEMPLATES_DIR and renders every template as tests/data/chat_templates_expected.jsonl says
# transformers renders it (scripts/chat_template_expected.py wrote that file):
#
#   RFTX_TEMPLATES_DIR=$(scripts/fetch-llama-templates.sh) cargo test --release --test chat_templates
#
# The sdist is fetched, checked against its digest and cached by scripts/fetch-llama-vocab.sh
# (in $LLAMA_VOCAB_CACHE, default ~/.cache/rftx-llama-vocab); the templates (about 1 MB) are
# extracted next to the vocabularies, in <version>-templates.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vocab_dir=$(bash "$here/fetch-llama-vocab.sh")
CACHE=$(dirname "$vocab_dir")
VERSION=$(basename "$vocab_dir")
SDIST=$CACHE/llama_cpp_python-$VERSION.tar.gz
OUT=$CACHE/$VERSION-templates

if [ -f "$OUT/.extracted" ]; then
  echo "$OUT"
  exit 0
fi
if [ ! -f "$SDIST" ]; then
  echo "error: $SDIST is gone (the vocabularies were extracted before); delete $vocab_dir and run again" >&2
  exit 1
fi
rm -rf "$OUT.partial"
mkdir -p "$OUT.partial"
tar -xzf "$SDIST" -C "$OUT.partial" --strip-components=5 --wildcards \
  "llama_cpp_python-$VERSION/vendor/llama.cpp/models/templates/*.jinja"
n=$(find "$OUT.partial" -name '*.jinja' | wc -l)
if [ "$n" -eq 0 ]; then
  echo "error: $SDIST holds no vendor/llama.cpp/models/templates/*.jinja" >&2
  exit 1
fi
touch "$OUT.partial/.extracted"
rm -rf "$OUT"
mv "$OUT.partial" "$OUT"
echo "extracted $n chat templates" >&2
echo "$OUT"
