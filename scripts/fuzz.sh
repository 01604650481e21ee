#!/usr/bin/env bash
# Fuzzes one parser with libFuzzer: builds Fuzz/Driver as a libFuzzer binary (address sanitizer,
# sanitizer coverage, libFuzzer without its main) into .build-fuzz, then runs it on a working
# corpus seeded from Fuzz/Corpora/TARGET. New inputs go to .build-fuzz/corpus/TARGET; crashes,
# hangs (-timeout) and large allocations (-malloc_limit_mb) to .build-fuzz/findings/TARGET.
#
#   scripts/fuzz.sh TARGET [libFuzzer options…]     e.g. scripts/fuzz.sh gguf -runs=1000000
#   TARGET: safetensors gguf tokenizer jinja yaml jsonl request
#
# After a run, merge what is new into the committed corpus (smallest set with the same coverage):
#   DISTILL_FUZZ_TARGET=TARGET .build-fuzz/release/distill-fuzz -merge=1 Fuzz/Corpora/TARGET .build-fuzz/corpus/TARGET
set -euo pipefail
target=${1:?usage: scripts/fuzz.sh TARGET [libFuzzer options…]}
shift
cd "$(dirname "$0")/.."
swiftc=$(readlink -f "$(command -v swiftc)")
runtime=$(ls "$(dirname "$(dirname "$swiftc")")"/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a | head -1)
swift build -c release --build-path .build-fuzz --product distill-fuzz \
  -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table \
  -Xswiftc -DFUZZING -Xlinker "$runtime"
mkdir -p ".build-fuzz/corpus/$target" ".build-fuzz/findings/$target"
DISTILL_FUZZ_TARGET=$target exec .build-fuzz/release/distill-fuzz ".build-fuzz/corpus/$target" "Fuzz/Corpora/$target" \
  -artifact_prefix=".build-fuzz/findings/$target/" -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 -max_len=65536 "$@"
