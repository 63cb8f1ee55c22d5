#!/usr/bin/env bash
# The main job end to end on the embedded default (SQLite): a replay server
# plays Tetragon on loopback with a recorded stream, the agent counts what
# ran, and `query` prints it. Ports: STELLA_DEMO_GRPC (54321), STELLA_DEMO_METRICS (8080).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin/stella-runtime
stream=tests/fixtures/tetragon/synthetic/stream-a.jsonl.gz
grpc_port=${STELLA_DEMO_GRPC:-54321}
metrics_port=${STELLA_DEMO_METRICS:-8080}
work=$(mktemp -d)
trap 'kill "$replay" 2>/dev/null || true; rm -rf "$work"' EXIT

db=stellaops-runtime.db
rm -f "$db"
sed -e "s/127.0.0.1:54321/127.0.0.1:$grpc_port/" -e "s/port: 8080/port: $metrics_port/" \
  examples/agent-config.yaml > "$work/agent.yaml"

"$bin" tetragon-replay "$stream" --listen "127.0.0.1:$grpc_port" --rate 2000 > "$work/replay.out" &
replay=$!
for _ in $(seq 100); do grep -q "^listening on" "$work/replay.out" 2>/dev/null && break; sleep 0.1; done
echo "== replaying $stream as Tetragon on 127.0.0.1:$grpc_port"

"$bin" agent --config "$work/agent.yaml" --exit-when-idle 3
echo
image=sha256:69dc96bd16b8a1c4ad4c601197ed0136bf4027e0717f3f048b4a268d558539db
echo "== hottest functions of image $image"
"$bin" query hot --image "$image" --limit 10 --store "sqlite:///$db"
echo
echo "== is crc32 (zlib) observed in that image?"
"$bin" query observed --image "$image" --function crc32 --store "sqlite:///$db" && echo "-> observed"
echo
echo "== every function of package zlib1g that ran in that image (purl prefix pkg:deb/debian/zlib1g)"
"$bin" query functions --image "$image" --purl pkg:deb/debian/zlib1g --prefix --store "sqlite:///$db" \
  || echo "-> none (this machine's zlib is not the one the stream recorded)"
