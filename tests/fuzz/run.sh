#!/bin/sh
# tests/fuzz/run.sh TARGET [SECONDS]: fuzz a target for real with clang's
# libFuzzer, AddressSanitizer and UBSan (Debian's clang + libclang-rt-14-dev).
#
#   sh tests/fuzz/run.sh wire 300       # the wire layer, connection files, dates
#   sh tests/fuzz/run.sh notebook 300   # the notebook reader + write round trip
#
# Run from a configured tree (config.h). It starts from the target's seed
# corpus and keeps what it finds in a work folder; a crashing input is saved
# as crash-* in the current folder: once fixed, add it to the seed corpus so
# that `make check` (tests/fuzz_*_replay) replays it forever.
set -eu
TARGET=${1:?usage: run.sh wire|notebook [SECONDS]}
SECONDS_=${2:-60}
top=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$top/config.h" ] || { echo "run ./configure first (config.h is needed)" >&2; exit 2; }
CC=${CLANG:-clang}
base="$top/base/util.c $top/base/buf.c $top/base/json.c $top/base/log.c"
case "$TARGET" in
wire) srcs="$top/tests/fuzz/fuzz_wire.c $top/kernel/wire.c $top/kernel/conn.c $base"
      libs="$(pkg-config --libs libzmq libsodium libcjson)"
      seeds="$top/tests/fuzz/corpus_wire" ;;
notebook) srcs="$top/tests/fuzz/fuzz_notebook.c $top/notebooks/nb_format.c $top/notebooks/nb_json.c $base"
      libs="$(pkg-config --libs libsodium libcjson) -lm"
      seeds="$top/tests/notebooks/corpus $top/tests/notebooks/bad" ;;
*) echo "unknown target $TARGET (wire, notebook)" >&2; exit 2 ;;
esac
work=$(mktemp -d /tmp/cellbox-fuzz-$TARGET.XXXXXX)
bin="$work/fuzz_$TARGET"
$CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$top" $(pkg-config --cflags libzmq libsodium libcjson) -o "$bin" $srcs $libs
mkdir -p "$work/corpus"
echo "fuzzing $TARGET for ${SECONDS_}s; corpus in $work/corpus"
CELLBOX_LOG=error "$bin" -max_total_time="$SECONDS_" -max_len=65536 -timeout=10 "$work/corpus" $seeds
