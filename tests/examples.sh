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
trap 'rm -rf "$dir"' EXIT
"$holder" "$dir/fruit.sock" 2 >"$dir/holder.out" &
for _ in $(seq 100); do [ -S "$dir/fruit.sock" ] && break; sleep 0.05; done
# Two clients: the holder looks for "pear" after serving the second, by
# which time the first has added it and exited.
"$user" "$dir/fruit.sock" | tee "$dir/user.out"
"$user" "$dir/fruit.sock" >/dev/null
wait
cat "$dir/holder.out"
grep -qx "user: apple is there" "$dir/user.out"
grep -qx "holder: pear is there" "$dir/holder.out"
echo "1 passed, 0 failed"
