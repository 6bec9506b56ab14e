#!/usr/bin/env bash
# The README's holder/user example: the files in examples/ are what the
# README prints (checked here), they build, and they work together.
set -euo pipefail
src=$1 holder=$2 user=$3
for f in holder.c user.c; do
	if ! python3 - "$src/README.md" "$src/examples/$f" <<'PY'
import sys
readme, example = open(sys.argv[1]).read(), open(sys.argv[2]).read()
sys.exit(0 if "```c\n" + example + "```" in readme else 1)
PY
	then
		echo "README.md does not print examples/$f as it is"
		exit 1
	fi
done
dir=$(mktemp -d)
"$holder" "$dir/fruit.sock" 2 >"$dir/holder.out" &
holder_pid=$!
trap 'kill $holder_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
# The socket file exists from bind(); connections succeed from listen().
for _ in $(seq 100); do
	"$user" "$dir/fruit.sock" >"$dir/user.out" 2>/dev/null && break
	sleep 0.05
done
cat "$dir/user.out"
# A second client: the holder looks for "pear" after serving it, by which
# time the first has added it and exited.
"$user" "$dir/fruit.sock" >/dev/null
wait $holder_pid
cat "$dir/holder.out"
grep -qx "user: apple is there" "$dir/user.out"
grep -qx "holder: pear is there" "$dir/holder.out"
echo "1 passed, 0 failed"
