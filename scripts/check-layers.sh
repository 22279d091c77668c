#!/bin/sh
# check-layers.sh - fail when inferd's modules depend on each other in a
# cycle, or against the order of the layers. A module is x.c (or x.cpp) plus
# x.h, in src/, include/, shim/ and tools/; A depends on B when one of A's
# files includes "B.h". One exception: the shim's model runtime interface
# (shim/shim_runtime.h) and its implementations (shim/runtime_*.cpp) are
# internal to the torch_shim module, whose only face to C is torch_shim.h;
# and protobuf-c's headers generated from proto/ (x.pb-c.h) are one module,
# proto, in the base layer.
# tsort finds the cycles; each one is printed with its modules. Then every
# module must be in one layer of LAYERS below, and include only modules of
# its own layer or of a lower rank: two layers of the same rank (the
# transports and the models) may not include each other. Each offending
# include is printed. `make check-layers`.
set -eu
cd "$(dirname "$0")/.."

module_of() { # file or header name without its extension
    case $1 in
    shim_runtime | runtime_*) echo torch_shim ;;
    *.pb-c) echo proto ;; # protobuf-c's code generated from proto/
    *) echo "$1" ;;
    esac
}

edges=$(
    for f in src/*.c include/*.h shim/*.cpp shim/*.h tools/*.c; do
        [ -f "$f" ] || continue
        a=$(basename "$f")
        a=$(module_of "${a%.*}")
        sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)\.h".*/\1/p' "$f" |
            while read -r b; do
                b=$(module_of "$(basename "$b")")
                [ "$a" = "$b" ] || echo "$a $b"
            done
    done | sort -u
)
modules=$(printf '%s\n' "$edges" | tr ' ' '\n' | sort -u | wc -l)
n_edges=$(printf '%s\n' "$edges" | wc -l)
if ! loops=$(printf '%s\n' "$edges" | tsort 2>&1 >/dev/null) || [ -n "$loops" ]; then
    echo "check-layers: modules include each other in a cycle:" >&2
    printf '%s\n' "$loops" | sed 's/^tsort: /  /' >&2
    in_loops=$(printf '%s\n' "$loops" | sed -n 's/^tsort: \([A-Za-z0-9_]*\)$/\1/p' | sort -u)
    echo "the includes between those modules ('A B': A includes B.h):" >&2
    printf '%s\n' "$edges" | while read -r a b; do
        if printf '%s\n' "$in_loops" | grep -qx "$a" && printf '%s\n' "$in_loops" | grep -qx "$b"; then
            echo "  $a $b"
        fi
    done >&2
    exit 1
fi

# rank layer: modules (docs/ARCHITECTURE.md's table, in the same order).
LAYERS='
1 shim: numconv shim_dtype_list torch_shim
2 base: clock strbuf log config version bounds service json_numbers health_probe gpu_stats access encoding redact base64 multipart image topk shm_region shm_cuda proto
3 tensors: dtype shape tensor tensor_json preprocess
4 call: infer_request
5 transports: transport router linger conn_guard http http_reply grpc_front
5 models: model_repo model_config_json metrics batch image_batch v2_shm v2_binding v2_json batcher batch_profile batch_stage worker model registry registry_manager registry_render queue_watch infer_call v2_proto
6 server: server
7 api: api_routes api api_predict api_server api_v2 api_stats api_repository api_shm grpc_reply grpc_shm grpc_service
8 program: main inferd_probe
'
layer_of() { # prints "rank layer" of module $1, nothing when it has none
    printf '%s\n' "$LAYERS" | awk -v m="$1" 'NF > 2 { for (i = 3; i <= NF; i++) if ($i == m) { sub(":", "", $2); print $1, $2; exit } }'
}
bad=$(
    printf '%s\n' "$edges" | tr ' ' '\n' | sort -u | while read -r m; do
        if [ -n "$m" ] && [ -z "$(layer_of "$m")" ]; then
            echo "  $m is in no layer (add it to LAYERS in scripts/check-layers.sh)"
        fi
    done
    printf '%s\n' "$edges" | while read -r a b; do
        la=$(layer_of "$a") lb=$(layer_of "$b")
        if [ -z "$la" ] || [ -z "$lb" ]; then continue; fi
        ra=${la% *} na=${la#* } rb=${lb% *} nb=${lb#* }
        if [ "$na" != "$nb" ] && [ "$rb" -ge "$ra" ]; then
            echo "  $a ($na) includes $b.h ($nb): a layer includes only its own and lower ones"
        fi
    done
)
if [ -n "$bad" ]; then
    echo "check-layers: includes against the layer order:" >&2
    printf '%s\n' "$bad" >&2
    exit 1
fi
n_layers=$(printf '%s\n' "$LAYERS" | grep -c ':')
echo "check-layers: no cycles, every include down the $n_layers layers ($modules modules, $n_edges dependencies)"
