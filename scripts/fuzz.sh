#!/bin/sh
# fuzz.sh [SECONDS] - build the libFuzzer targets in tests/fuzz/ with clang-14
# (-fsanitize=fuzzer,address,undefined) and run them for SECONDS in all
# (default 60), split evenly between them. Seeds come from
# tests/fuzz/corpus/<target>/; what the fuzzer adds goes to
# build/fuzz/corpus/<target>/ and crash inputs to build/fuzz/artifacts/.
# Exits non-zero if any target crashes, leaks, times out or fails to build.
#
# Long runs outside CI: FUZZ_RUNS=10000000 runs each target for that many
# executions instead (no time limit); FUZZ_TARGETS="a b" picks targets.
set -eu
cd "$(dirname "$0")/.."

TOTAL=${1:-60}
CC=${FUZZ_CC:-clang-14}
CXX=${FUZZ_CXX:-clang++-14}
OUT=build/fuzz
ALL_TARGETS="fuzz_json_codec fuzz_router fuzz_access fuzz_image fuzz_multipart fuzz_model_config fuzz_inflate fuzz_log_escape fuzz_v2_decode fuzz_v2_batch fuzz_shm fuzz_grpc_decode"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
RUNS=${FUZZ_RUNS:-}
# The modules the targets exercise (and what they link against).
SRCS="dtype shape tensor tensor_json json_numbers strbuf config router model_repo model_config_json access log image preprocess multipart base64 encoding infer_request batch batcher image_batch topk v2_binding v2_json shm_region v2_shm v2_proto"

case "$TOTAL" in
'' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$TOTAL'" >&2; exit 2 ;;
esac
for tool in "$CC" "$CXX"; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "fuzz.sh: $tool not found: apt-get install -y clang-14 libclang-rt-14-dev" >&2
        exit 2
    }
done

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
GEN=build/gen # protobuf-c code from proto/, as the Makefile makes it
COMMON="-g -O1 $SAN -Iinclude -Ishim -Itests/unit -I$GEN"
mkdir -p "$OUT/obj" "$OUT/artifacts"

echo "== building fuzz targets with $CC"
mkdir -p "$GEN"
protoc-c --c_out="$GEN" -Iproto proto/inference.proto
"$CC" -std=c11 $COMMON -fsanitize=fuzzer-no-link -c "$GEN/inference.pb-c.c" -o "$OUT/obj/inference.pb-c.o"
# Library code gets coverage instrumentation but no libFuzzer main.
for s in $SRCS; do
    "$CC" -std=c11 -D_GNU_SOURCE $COMMON -fsanitize=fuzzer-no-link -c "src/$s.c" -o "$OUT/obj/$s.o"
done
"$CXX" -std=c++17 $COMMON -fsanitize=fuzzer-no-link -c shim/numconv.cpp -o "$OUT/obj/numconv.o"
OBJS=""
for s in $SRCS numconv inference.pb-c; do
    OBJS="$OBJS $OUT/obj/$s.o"
done
for t in $TARGETS; do
    # shellcheck disable=SC2086
    "$CXX" $COMMON -fsanitize=fuzzer -x c -std=c11 -D_GNU_SOURCE "tests/fuzz/$t.c" -x none \
        $OBJS -lcjson -lturbojpeg -lpng -lz -lprotobuf-c -lstdc++ -lm -o "$OUT/$t"
done

set -- $TARGETS
PER=$((TOTAL / $#))
[ "$PER" -ge 1 ] || PER=1
failed=""
for t in $TARGETS; do
    corpus="$OUT/corpus/$t"
    mkdir -p "$corpus"
    dict=""
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    limit="-max_total_time=$PER"
    [ -n "$RUNS" ] && limit="-runs=$RUNS"
    echo "== $t ($limit)"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    if ! "$OUT/$t" $limit -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" $dict \
        "$corpus" "tests/fuzz/corpus/$t" >"$OUT/$t.log" 2>&1; then
        failed="$failed $t"
        echo "!! $t failed; last lines of $OUT/$t.log:" >&2
        tail -n 40 "$OUT/$t.log" >&2
    else
        grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$OUT/$t.log" || true
        echo "   $(($(date +%s) - t0)) s"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz.sh: crash found in:$failed (inputs in $OUT/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no crashes in ${TOTAL}s"
