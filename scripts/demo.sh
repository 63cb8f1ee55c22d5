#!/usr/bin/env bash
# The main job end to end on the embedded default (SQLite): a replay server
# plays Tetragon on loopback with a recorded stream, the agent counts what
# ran, and `query` prints it. Ports: STELLA_DEMO_GRPC (54321), STELLA_DEMO_METRICS (8080);
# the store: STELLA_DEMO_DB (stellaops-runtime.db).
#
# Every step runs, whatever the previous one answered (a "no" from a query is
# an answer, not a failure). The script exits non-zero when the agent failed or
# when the store holds no hot function with a package URL: the demo's promise.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin/stella-runtime
py=.venv/bin/python
stream=tests/fixtures/tetragon/synthetic/stream-a.jsonl.gz
grpc_port=${STELLA_DEMO_GRPC:-54321}
metrics_port=${STELLA_DEMO_METRICS:-8080}
work=$(mktemp -d)
replay=
trap '[[ -n "$replay" ]] && kill "$replay" 2>/dev/null; rm -rf "$work"' EXIT

db=${STELLA_DEMO_DB:-stellaops-runtime.db}
store="sqlite:///$db"
rm -f "$db"
sed -e "s/127.0.0.1:54321/127.0.0.1:$grpc_port/" -e "s/port: 8080/port: $metrics_port/" \
  -e "s|sqlite:///stellaops-runtime.db|$store|" examples/agent-config.yaml > "$work/agent.yaml"

"$bin" tetragon-replay "$stream" --listen "127.0.0.1:$grpc_port" --rate 2000 > "$work/replay.out" &
replay=$!
for _ in $(seq 100); do grep -q "^listening on" "$work/replay.out" 2>/dev/null && break; sleep 0.1; done
echo "== replaying $stream as Tetragon on 127.0.0.1:$grpc_port"

"$bin" agent --config "$work/agent.yaml" --exit-when-idle 3
agent_status=$?
if (( agent_status != 0 )); then
  echo "demo: the agent exited $agent_status" >&2
fi

image=sha256:69dc96bd16b8a1c4ad4c601197ed0136bf4027e0717f3f048b4a268d558539db
echo
echo "== hottest functions of image $image"
"$bin" query hot --image "$image" --limit 10 --store "$store"

echo
echo "== is crc32 (zlib) observed in that image?"
"$bin" query observed --image "$image" --function crc32 --store "$store"
case $? in
  0) echo "-> observed" ;;
  1) echo "-> not observed (the image was under observation)" ;;
  3) echo "-> unknown (no observation covers the question)" ;;
  *) echo "-> the query failed" ;;
esac

echo
echo "== every function of package zlib1g that ran in that image (purl prefix pkg:deb/debian/zlib1g)"
"$bin" query functions --image "$image" --purl pkg:deb/debian/zlib1g --prefix --store "$store" \
  || echo "-> none"

echo
echo "== which recorded libraries this machine could resolve (same build-id as the recording)"
# The stream was recorded on another node: a library's frames resolve to function
# IDs and packages here only where this machine's copy has the recorded build-id.
"$py" - "$db" "$image" <<'EOF'
import sqlite3, sys
from stellaops_runtime.canonical.elflayout import ElfError, file_build_id

db, image = sys.argv[1:3]
con = sqlite3.connect(db)
rows = con.execute(
    "SELECT DISTINCT module, build_id FROM hot_symbols WHERE image_digest = ? "
    "AND evidence_kind = 'loaded' AND build_id != '' ORDER BY module",
    (image,),
).fetchall()
for module, recorded in rows:
    n, with_id, with_purl = con.execute(
        "SELECT COUNT(*), COALESCE(SUM(function_id != ''), 0), COALESCE(SUM(purl != ''), 0) "
        "FROM hot_symbols WHERE image_digest = ? AND module = ? "
        "AND evidence_kind NOT IN ('loaded', 'executed')",
        (image, module),
    ).fetchone()
    stored = f"{n} function rows stored, {with_id} with a function ID, {with_purl} with a purl"
    try:
        with open(module, "rb") as f:
            here = file_build_id(f)[0]
    except (OSError, ElfError) as e:
        print(f"{module}: no readable copy here ({e.__class__.__name__}); {stored}")
        continue
    if here == recorded:
        print(f"{module}: this machine's copy has the recorded build-id {recorded}; {stored}")
    else:
        print(f"{module}: recorded build-id {recorded}, this machine's is {here}; {stored}")
EOF

echo
with_purl=$("$bin" query hot --image "$image" --limit 100 --store "$store" --json 2>/dev/null \
  | "$py" -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin)["hot"] if r["purl"]))' 2>/dev/null)
with_purl=${with_purl:-0}
if (( agent_status != 0 )); then
  exit "$agent_status"
fi
if (( with_purl == 0 )); then
  echo "demo: FAILED: no hot function with a package URL was stored" >&2
  exit 1
fi
echo "demo: OK: $with_purl hot functions with a package URL stored in $db"
