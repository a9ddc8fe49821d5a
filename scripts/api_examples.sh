#!/usr/bin/env bash
# Runs the README's curl examples against a running service and prints each command with
# its real output (long strings and lists shortened), ready to paste into README.md.
#   make serve &   # or: docker compose up -d   (the sidecar examples need `make serve`)
#   scripts/api_examples.sh [API_URL] [SIDECAR_URL]
set -uo pipefail
API=${1:-http://127.0.0.1:8000}
SIDECAR=${2:-http://127.0.0.1:8001}
cd "$(dirname "$0")/../../shared/data/val16_fullres" || exit 1
shorten='import json, sys
def cut(o):
    if isinstance(o, dict): return {k: cut(v) for k, v in o.items()}
    if isinstance(o, list) and len(o) > 6: return [cut(x) for x in o[:3]] + ["..."]
    if isinstance(o, str) and len(o) > 80: return o[:40] + "...(%d chars)" % len(o)
    return o
print(json.dumps(cut(json.load(sys.stdin)), indent=2))'
show() { printf '$ %s\n' "$1"; eval "$1" | python3 -c "$shorten"; echo; }

show "curl -s $API/health"
show "curl -s $API/health/live"
show "curl -s $API/health/ready"
show "curl -s -F file=@PNEUMONIA/person1954_bacteria_4886.jpeg '$API/predict?gradcam=true'"
show "curl -s -F file=@NORMAL/NORMAL2-IM-1430-0001.jpeg '$API/predict?gradcam=false'"
show "curl -s -F files=@NORMAL/NORMAL2-IM-1431-0001.jpeg -F files=@PNEUMONIA/person1950_bacteria_4881.jpeg -F files=@/etc/hostname $API/predict/batch"
show "curl -s -F file=@/etc/hostname $API/predict"
show "curl -s $API/model"
printf '$ curl -s %s/metrics | grep -v "^#" | head\n' "$API"; curl -s "$API/metrics" | grep -v '^#' | head; echo
printf '$ curl -s -o /dev/null -w "%%{http_code} %%{content_type}\\n" %s/\n' "$API"
curl -s -o /dev/null -w "%{http_code} %{content_type}\n" "$API/"; echo
show "curl -s $SIDECAR/health"
