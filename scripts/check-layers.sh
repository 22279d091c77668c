#!/bin/sh
# check-layers.sh - fail when inferd's modules depend on each other in a
# cycle. A module is x.c (or x.cpp) plus x.h, in src/, include/, shim/ and
# tools/; A depends on B when one of A's files includes "B.h". One exception:
# the shim's model runtime interface (shim/shim_runtime.h) and its
# implementations (shim/runtime_*.cpp) are internal to the torch_shim module,
# whose only face to C is torch_shim.h. tsort finds the cycles; each one is
# printed with its modules. `make check-layers`.
set -eu
cd "$(dirname "$0")/.."

module_of() { # file or header name without its extension
    case $1 in
    shim_runtime | runtime_*) echo torch_shim ;;
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
echo "check-layers: no cycles ($modules modules, $n_edges dependencies)"
