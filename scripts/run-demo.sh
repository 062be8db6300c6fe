#!/usr/bin/env bash
# `make run`: boot the protected guest on the reference hypervisor and run
# the demo workload (O_DIRECT pattern writes and reads on the enforcing
# vhost-user-blk disk, share mode), then show what it cost.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"
json=$PVIOMMU_CACHE/run.json
"$here/tests/refhyp/harness.py" --scenario share --json "$json"
rc=$?
python3 - "$json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    c = r.get("counters") or {}
    hyp, dev = c.get("hyp", {}), c.get("device", {})
    calls = hyp.get("calls", {})
    print(f"# {r['scenario']}: {r['seconds']} s, {dev.get('requests')} disk requests, "
          f"{dev.get('bytes_written')} bytes written, {dev.get('bytes_read')} read by the device")
    print(f"# hypervisor: {hyp.get('exits_hypercall')} hypercall exits "
          f"(SYNC {calls.get('sync')}, SHARE {calls.get('share')}, UNSHARE {calls.get('unshare')}), "
          f"{hyp.get('exits_queue_kick')} queue kicks, {hyp.get('records_consumed')} ring records, "
          f"{hyp.get('invalidations')} invalidations, {hyp.get('violations')} violations")
PY
exit $rc
