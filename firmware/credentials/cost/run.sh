#!/bin/sh
# Counts the password verifier's Cortex-M4 instructions in QEMU (mps2-an386) with the
# instruction-count plugin that host-tools/setup.sh builds, and prints the figures with their
# time at the real board's 250 MHz (one instruction per cycle). See src/main.rs.
#   firmware/credentials/cost/run.sh        (HOMEMX_PLUGIN=path overrides the plugin)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
plugin=${HOMEMX_PLUGIN:-$root/target/qemu-plugin/libhomemx_operation_counts.so}
[ -f "$plugin" ] || { echo "no plugin at $plugin: run host-tools/setup.sh (or set HOMEMX_PLUGIN)" >&2; exit 1; }
(cd "$here" && cargo build --release --quiet)
elf=$here/target/thumbv7em-none-eabihf/release/credentials-cost
marks=$(nm "$elf" | awk '/ homemx_instrument_marks$/ { print $1 }')
out=$(mktemp)
trap 'rm -f "$out"' EXIT
timeout 300 qemu-system-arm -M mps2-an386 -display none -monitor none -serial none -semihosting \
    -kernel "$elf" -plugin "$plugin,marks=0x$marks,count=12,out=$out"
awk 'BEGIN { split("1,000 PBKDF2 iterations (Verifier::step(1000))|one verification at DEFAULT_ITERATIONS (10,000)|one step of ITERATIONS_PER_STEP (250)|an unknown user at DEFAULT_ITERATIONS", what, "|") }
     $1 == "end" { printf "%-55s %12d instructions  %8.2f ms at 250 MHz\n", what[$2 + 1], $3, $3 / 250000 }' "$out"
