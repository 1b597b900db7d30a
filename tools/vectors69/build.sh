#!/bin/sh
# Build the v6.9 vector driver: extract the kernel pieces into build/vectors69 (ignored),
# then compile.  KTREE overrides the kernel tree (bare git mirror or checkout).
set -eu
cd "$(dirname "$0")/../.."
KTREE=${KTREE:-/work/.mirror/ec-jt+linux-6.9.0/repo}
OUT=build/vectors69
python3 tools/vectors69/extract.py --tree "$KTREE" --out "$OUT"
CFLAGS="-O2 -g -Wall -Wno-unused-function -Wno-unused-variable -fno-strict-aliasing -Itools/vectors69/shim/include -Itools/vectors69/shim -I$OUT/include -I$OUT"
gcc $CFLAGS -c "$OUT/lib/rbtree.c" -o "$OUT/rbtree.o"
gcc $CFLAGS -c tools/vectors69/driver.c -o "$OUT/driver.o"
gcc -o "$OUT/driver" "$OUT/driver.o" "$OUT/rbtree.o"
echo "built $OUT/driver"
