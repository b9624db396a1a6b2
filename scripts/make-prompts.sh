#!/usr/bin/env bash
# Regenerates inputs/prompts/<N>_tokens.txt: deterministic incident-report style English text of
# about N tokens (4 bytes per token, the usual BPE rule of thumb; exact counts need the tokenizer).
# Usage: scripts/make-prompts.sh [outdir]
set -euo pipefail
out=${1:-$(cd "$(dirname "$0")/.." && pwd)/inputs/prompts}
mkdir -p "$out"
for n in 128 256 512 1024 2048 4096 8192 16384 32768 65536; do
    awk -v n="$n" 'BEGIN {
        srand(n);
        split("the storage array|the NVMe namespace|the KV cache tier|the inference gateway|the batch scheduler|the unified memory pool|the prefill worker|the decode worker|the metrics collector|the block manager", subj, "|");
        split("reported rising read latency|dropped below its service level|started evicting hot blocks|queued requests beyond the knee|recovered after a controller reset|showed p99 time to first token doubling|flushed dirty pages to disk|moved blocks from host memory to disk|was throttled by thermal limits|served a burst of cold adapters", verb, "|");
        split("during the nightly batch window|while the fio job ran at queue depth 32|after the context length grew to 4096 tokens|when concurrency passed sixteen users|under a mixed read and write load|while iowait climbed above ten percent|as the tier one cache filled up|shortly after the model server restarted|before the on-call engineer paged storage|with no change to the request rate", when, "|");
        split("Operators captured iostat and the server logs.|The team attached the latency histograms.|No data was lost and retries succeeded.|The dashboard showed the queue depth rising.|Engineers opened a ticket with the vendor.|The runbook asked for a cold and a warm pass.|A rollback was considered and rejected.|The incident review is scheduled for Friday.", note, "|");
        target = n * 4; len = 0; id = 1;
        printf "Incident log (synthetic, %d-token prompt). Summarise the root cause and the storage impact.\n\n", n;
        len += 90;
        while (len < target) {
            s = sprintf("Event %d: %s %s %s. %s\n", id, subj[int(rand()*10)+1], verb[int(rand()*10)+1], when[int(rand()*10)+1], note[int(rand()*8)+1]);
            if (len + length(s) > target) { s = substr(s, 1, target - len); sub(/ [^ ]*$/, "", s); s = s "\n" }
            printf "%s", s; len += length(s); id++;
        }
    }' > "$out/${n}_tokens.txt"
done
# Aliases the old harness used.
for pair in 1k:1024 2k:2048 4k:4096 8k:8192 16k:16384 32k:32768 64k:65536; do
    ln -sf "${pair#*:}_tokens.txt" "$out/${pair%%:*}_tokens.txt"
done
