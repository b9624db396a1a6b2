#!/usr/bin/env bash
# H4A — storage QoS on Stack A (Test Plan §2, §8): p99 at U_work and context 2048 under the fio
# profiles baseline, moderate and heavy on the NVMe device. Stack A keeps its KV in unified memory,
# so p99 should barely move while fio drowns the disk.
#   runs/run_H4A_storage_qos.sh --stack A --model L8B --fio-dir /nvme/scratch
#   runs/run_H4A_storage_qos.sh --mock --quick
set -euo pipefail
SB_H4=H4A
# shellcheck source=_h4.sh
source "$(dirname "$0")/_h4.sh"
