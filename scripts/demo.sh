#!/bin/sh
# Demo: back up a sample tree twice with a change between, list the
# recovery points, restore the older one and show it matches.
set -eu
RECALL=${1:-bin/recall}
case $RECALL in /*) ;; *) RECALL=$(pwd)/$RECALL ;; esac
DEMO=$(pwd)/demo
rm -rf "$DEMO"
mkdir -p "$DEMO/sample/docs" "$DEMO/sample/data"
export RECALL_HOME="$DEMO/home"

# A sample tree: text, a binary file, a symlink, a hard link.
for i in $(seq 1 50); do echo "report $i: all systems nominal" > "$DEMO/sample/docs/report-$i.txt"; done
head -c 4000000 /dev/urandom > "$DEMO/sample/data/blob.bin"
ln -s docs/report-1.txt "$DEMO/sample/latest-report"
ln "$DEMO/sample/docs/report-2.txt" "$DEMO/sample/data/report-2-link.txt"
cp -a "$DEMO/sample" "$DEMO/sample-before"

set -x
"$RECALL" init
"$RECALL" backup --source demo "$DEMO/sample"
echo "report 1: DISK FULL" > "$DEMO/sample/docs/report-1.txt"
rm "$DEMO/sample/docs/report-3.txt"
"$RECALL" backup --source demo "$DEMO/sample"
"$RECALL" points
OLDER=$("$RECALL" points --source demo --json | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' | head -n 1)
"$RECALL" restore --source demo "$OLDER" --target "$DEMO/restored"
"$RECALL" verify
diff -r "$DEMO/sample-before" "$DEMO/restored"
set +x
echo "demo: the older point restored into $DEMO/restored matches the tree as it was before the change"
