#!/usr/bin/env bash
# Regenerates the chatpro.privacy.v1 Python modules (messages, gRPC stubs and their
# mypy-protobuf type stubs) into the client package. Deterministic: running it twice
# gives the same files, so CI can check that the committed code matches the protos.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
BIN="$(dirname "$PY")"
OUT=clients/python/src
PKG="$OUT/chatpro/privacy/v1"
rm -f "$PKG"/*_pb2.py "$PKG"/*_pb2.pyi "$PKG"/*_pb2_grpc.py "$PKG"/*_pb2_grpc.pyi
mkdir -p "$PKG"
# protoc-gen-mypy reports each file it writes; show its output only when something fails.
if ! out=$("$PY" -m grpc_tools.protoc -I protos \
  --plugin=protoc-gen-mypy="$BIN/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$BIN/protoc-gen-mypy_grpc" \
  --python_out="$OUT" --grpc_python_out="$OUT" \
  --mypy_out="$OUT" --mypy_grpc_out="$OUT" \
  protos/chatpro/privacy/v1/*.proto 2>&1); then
  echo "$out" >&2
  exit 1
fi
for d in "$OUT/chatpro" "$OUT/chatpro/privacy" "$PKG"; do
  [ -f "$d/__init__.py" ] || echo '"""Generated from protos/ by make proto."""' > "$d/__init__.py"
done
touch "$OUT/chatpro/py.typed"
