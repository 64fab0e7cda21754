#!/bin/sh
# Demo: back up a sample tree twice with a change between, list the
# recovery points, mount them and compare a file as it was with how it is
# now, then restore the older point and show it matches.
set -eu
RECALL=${1:-bin/recall}
case $RECALL in /*) ;; *) RECALL=$(pwd)/$RECALL ;; esac
DEMO=$(pwd)/demo
MNT=$DEMO/mnt
# A mount left by an earlier demo that was killed goes first.
if [ -d "$MNT" ]; then "$RECALL" umount --lazy "$MNT" >/dev/null 2>&1 || true; fi
rm -rf "$DEMO"
mkdir -p "$DEMO/sample/docs" "$DEMO/sample/data" "$MNT"
export RECALL_HOME="$DEMO/home"

mounted=
cleanup() {
	if [ -n "$mounted" ]; then "$RECALL" umount --lazy "$MNT" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
{ set +x; } 2>/dev/null

if [ -e /dev/fuse ]; then
	# The main job: every point as a read-only tree, one @GMT directory
	# each (the names Samba's Previous Versions use) and latest.
	set -x
	"$RECALL" mount "$MNT"
	{ set +x; } 2>/dev/null
	mounted=1
	set -x
	ls -l "$MNT/demo/"
	{ set +x; } 2>/dev/null
	OLDDIR=$(cd "$MNT/demo" && ls -d @GMT-* | head -n 1)
	echo "docs/report-1.txt in the older point, $OLDDIR:"
	cat "$MNT/demo/$OLDDIR/docs/report-1.txt"
	echo "docs/report-1.txt in latest, the tree as it is now:"
	cat "$MNT/demo/latest/docs/report-1.txt"
	echo "what changed in docs/ between them:"
	diff -r "$MNT/demo/$OLDDIR/docs" "$MNT/demo/latest/docs" || true
	set -x
	"$RECALL" umount "$MNT"
	{ set +x; } 2>/dev/null
	mounted=
else
	echo "demo: no /dev/fuse here, so no mount: see 'recall mount' in the README"
fi

set -x
OLDER=$("$RECALL" points --source demo --json | sed -n 's/.*"id": "\([0-9a-f]*\)".*/\1/p' | head -n 1)
"$RECALL" restore --source demo "$OLDER" --target "$DEMO/restored"
"$RECALL" verify
diff -r "$DEMO/sample-before" "$DEMO/restored"
{ set +x; } 2>/dev/null
echo "demo: the older point restored into $DEMO/restored matches the tree as it was before the change"
