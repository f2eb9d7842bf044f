# Sourced by the benchmark scripts: the chatbench binary to run ($bin:
# $CHATBENCH when set, for an A/B against another build, else this tree's
# release build), a folder for raw files ($out: $OUT, or a new temporary
# one), and this machine's CPU count ($ncpu).
if [ -n "${CHATBENCH:-}" ]; then
  bin=$CHATBENCH
else
  cargo build --release -p chatbench >/dev/null
  bin=./target/release/chatbench
fi
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
ncpu=$(nproc)
