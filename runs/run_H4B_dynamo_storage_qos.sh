#!/usr/bin/env bash
# H4B — storage QoS on Stack B (Dynamo + KVBM, Test Plan §2, §8): the same fio profiles on the KV
# tier-2 device (the config's dynamo.tier2.path): tier-2 fetches compete with fio, so p99 should
# rise with the profile.
#   runs/run_H4B_dynamo_storage_qos.sh --config configs/stackB_h2b.yaml --model L8B
#   runs/run_H4B_dynamo_storage_qos.sh --fio_profile heavy --fio-dir /nvme/kvbm/l8b
#   runs/run_H4B_dynamo_storage_qos.sh --mock --quick
set -euo pipefail
SB_H4=H4B
# shellcheck source=_h4.sh
source "$(dirname "$0")/_h4.sh"
