#!/usr/bin/env bash
# bench/run.sh - compare recall against restic 0.14 and borg 1.2.
#
# Usage (from anywhere; normally via `make bench`):
#   RECALL=./bin/recall BENCH_DIR=/var/tmp/recall-bench BENCH_SCALE=1 bench/run.sh
#
# Environment:
#   RECALL          recall binary (default ./bin/recall, relative to the caller's cwd)
#   BENCH_DIR       scratch directory for data, repositories, logs (default /var/tmp/recall-bench)
#   BENCH_SCALE     float multiplier for data sizes, the small-file count and the
#                   insertion count (default 1: ~2 GiB set incl. 20,000 small files,
#                   0.44 GiB files set of 12,000 small text files and 4 large ones,
#                   2 GiB single file, 1 GiB file + copy with 100 4 KiB insertions)
#   BENCH_SEED      data set seed (default 1)
#   BENCH_SECTIONS  space separated subset of: restic borg recall recall-enc recall-s2 files
#                   single insert mount mountgo s3 (default: all; s3 runs restic and recall
#                   against a local Ceph gateway, bench/cephup; files is the small-file-heavy
#                   set through restic and recall; recall-s2 needs `backup --compression`; mountgo runs the mount's Go benchmarks in fs/ with
#                   -count BENCH_REPEAT: 100k listing, 1,000 points, random reads)
#   BENCH_REPEAT    run every section N times on fresh repositories and report
#                   the best time / highest peak RSS (default 1; use 3 on a busy machine)
#   BENCH_PAIRS     how many times each round restores the 1 GiB file and reads
#                   it through the mount, in turn (default 3)
#   BENCH_KEEP      1 = keep repositories and restore targets after the run
#   BENCH_COLD      0 = keep the page cache between steps (default 1: every timed
#                   step starts after sync and dropping the page cache; needs root)
#
# Output: a table on stdout, $BENCH_DIR/results.txt, $BENCH_DIR/results.json,
# per-command logs in $BENCH_DIR/logs/. Exit status is 0 even if targets fail
# (the table says PASS/FAIL); non-zero only if the harness itself breaks.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RECALL=${RECALL:-./bin/recall}
BENCH_DIR=${BENCH_DIR:-/var/tmp/recall-bench}
BENCH_SCALE=${BENCH_SCALE:-1}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_SECTIONS=${BENCH_SECTIONS:-restic borg recall recall-enc recall-s2 files single insert mount mountgo s3}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_REPEAT=${BENCH_REPEAT:-1}
[[ $BENCH_REPEAT =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_REPEAT must be a positive integer" >&2; exit 2; }
BENCH_PAIRS=${BENCH_PAIRS:-3}
[[ $BENCH_PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_PAIRS must be a positive integer" >&2; exit 2; }
awk -v s="$BENCH_SCALE" 'BEGIN { exit !(s + 0 > 0) }' || { echo "BENCH_SCALE must be a positive number" >&2; exit 2; }
BENCH_SCALE=$(awk -v s="$BENCH_SCALE" 'BEGIN { print s + 0 }') # canonical form (".5" -> 0.5)

# Make paths absolute: the script cd's around (borg extract needs it).
case $RECALL in /*) ;; */*) RECALL=$PWD/$RECALL ;; *) RECALL=$(command -v "$RECALL" || echo "$PWD/$RECALL") ;; esac
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)

DATA=$BENCH_DIR/data
REPOS=$BENCH_DIR/repos
RESTORE=$BENCH_DIR/restore
WORK=$BENCH_DIR/work
MNT=$BENCH_DIR/mnt
LOGS=$BENCH_DIR/logs
CACHE=$BENCH_DIR/cache

export RESTIC_PASSWORD=recall-bench
export RESTIC_CACHE_DIR=$CACHE/restic
export BORG_PASSPHRASE=recall-bench
export BORG_BASE_DIR=$CACHE/borg
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export RECALL_PASSWORD=recall-bench

T0=$(date +%s)
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
# cpu_ticks: total and stolen CPU ticks so far (/proc/stat). Time the host
# gives to other guests shows up as steal, and makes every figure noisy.
cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9 }' /proc/stat; }
TICKS0=$(cpu_ticks)
PAIRS=() # restore/mount-read time ratios of the 1 GiB file, pair by pair
log() { printf '[bench %4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
has_section() { [[ " $BENCH_SECTIONS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- results
declare -A M   # measurements: key -> number
declare -A RUNS # timed key -> every round's seconds, space separated
declare -A E   # errors: key -> message (key "n/a")
CHECKS_TXT=()  # table lines
CHECKS_JSON=() # json objects
NOTES=()
NFAIL=0
NPASS=0
NNA=0

# calc EXPR: float arithmetic via awk.
calc() { awk "BEGIN { printf \"%.6g\", $1 }"; }
# fmt1 N: one decimal; fmt2 N: two decimals.
fmt1() { awk -v v="$1" 'BEGIN { printf "%.1f", v }'; }
fmt2() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
fmt2s() { local v; for v in "$@"; do fmt2 "$v"; printf ' '; done; } # each with two decimals, space after
mbps() { calc "$1 / $2 / 1000000"; } # bytes secs -> MB/s
have() { [[ -n ${M[$1]+x} ]]; }
setm() { M[$1]=$2; }
# setmin/setmax KEY VALUE: keep the best/worst over BENCH_REPEAT rounds.
setmin() { if ! have "$1" || awk -v a="$2" -v b="${M[$1]}" 'BEGIN { exit !(a < b) }'; then M[$1]=$2; fi; }
setmax() { if ! have "$1" || awk -v a="$2" -v b="${M[$1]}" 'BEGIN { exit !(a > b) }'; then M[$1]=$2; fi; }
fail_key() { E[$1]=$2; } # record why a measurement is missing

# why KEY...: the error of the first missing key ("" if none missing).
why() {
	local k
	for k in "$@"; do
		if ! have "$k"; then
			printf '%s' "${E[$k]:-not measured}"
			return
		fi
	done
}

# json_lists NAME: the members of the associative array NAME (each a
# space-separated list of numbers) as JSON object members, sorted, closing
# the object.
json_lists() {
	local -n lists=$1
	local k first=1
	for k in $(printf '%s\n' "${!lists[@]}" | sort); do
		((first)) || printf ','
		first=0
		printf '\n    %s: [%s]' "$(json_str "$k")" "$(echo ${lists[$k]} | tr ' ' ',')"
	done
	printf '\n  },\n'
}
json_str() {
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\t'/ }
	s=${s//$'\n'/ }
	s=${s//$'\r'/ }
	printf '"%s"' "$s"
}

# check NAME WHAT RATIO OP TARGET [extra]
#   Judges RATIO against TARGET (OP is ">=" or "<="), records it for the JSON
#   and sets V to e.g. "ratio vs restic 4.27 (target >=4) PASS". An empty
#   RATIO is n/a. With "extra" the check is shown but not counted.
V=
check() {
	local name=$1 what=$2 ratio=$3 op=$4 target=$5 extra=${6:-} verdict pass
	if [[ -z $ratio ]]; then
		verdict="n/a"
		pass=null
		[[ -n $extra ]] || NNA=$((NNA + 1))
	elif awk -v r="$ratio" -v t="$target" -v op="$op" 'BEGIN { exit !((op == ">=") ? (r >= t) : (r <= t)) }'; then
		verdict=PASS
		pass=true
		[[ -n $extra ]] || NPASS=$((NPASS + 1))
	else
		verdict=FAIL
		pass=false
		[[ -n $extra ]] || NFAIL=$((NFAIL + 1))
	fi
	[[ -z $extra ]] || verdict="$verdict (info)"
	V="$what $(rstr "$ratio") (target $op$target) $verdict"
	local jname="$name: $what"
	[[ $what != vs* ]] || jname="$name: ratio $what"
	CHECKS_JSON+=("{\"name\":$(json_str "$jname"),\"ratio\":${ratio:-null},\"op\":$(json_str "$op"),\"target\":$target,\"pass\":$pass,\"counted\":$([[ -n $extra ]] && echo false || echo true)}")
}
# row LABEL TEXT: one line of the table.
row() { CHECKS_TXT+=("$(printf '%-21s %s' "$1" "$2")"); }

# ---------------------------------------------------------------- timing
# timed KEY CMD...: run CMD under /usr/bin/time, log output to
# $LOGS/KEY.log, set M[KEY.s] (wall seconds) and M[KEY.rss] (peak RSS KiB).
# On failure records E[KEY.s] and returns 1 (never aborts the script).
# Every timed step starts cold (see cold below): a real backup reads data
# that is not in the page cache, a real restore a repository that is not.
# TIMED_WARM=1 timed ... keeps the cache, for the warm figures given as
# information (the caller warms what it means to).
timed() {
	local key=$1
	shift
	local tf=$LOGS/$key.time lf=$LOGS/$key.log rc=0
	# Either way dirty pages left by earlier steps (restores, repository
	# writes) are flushed first, so their write-back does not land in this
	# measurement. Not timed.
	if [[ ${TIMED_WARM:-0} == 1 ]]; then
		sync
	else
		cold
	fi
	log "  $key: $*$([[ ${TIMED_WARM:-0} == 1 ]] && echo ' (warm)')"
	local g0
	g0=$(gw_ticks)
	/usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" >"$lf" 2>&1 || rc=$?
	if ((rc != 0)); then
		local msg
		msg=$(grep -v '^[[:space:]]*$' "$lf" | tail -n 1 | cut -c1-160)
		E[$key.s]="exit $rc: ${msg:-no output} (see $lf)"
		E[$key.rss]=${E[$key.s]}
		log "  $key FAILED: ${E[$key.s]}"
		return 1
	fi
	local sec rss usr sys
	read -r sec rss usr sys < <(tail -n 1 "$tf")
	# %e has 10 ms resolution; avoid division by zero.
	sec=$(awk -v s="$sec" 'BEGIN { print (s < 0.01) ? 0.01 : s }')
	setmin "$key.s" "$sec"
	# The CPU seconds of the best run: the tool's own (user + system),
	# and the S3 gateway's daemons' while it ran (their work for it).
	if [[ ${M[$key.s]} == "$sec" ]]; then
		M[$key.cpu]=$(awk -v u="$usr" -v s="$sys" 'BEGIN { print u + s }')
		[[ -z $g0 ]] || M[$key.gwcpu]=$(awk -v a="$g0" -v b="$(gw_ticks)" -v hz="$(getconf CLK_TCK)" 'BEGIN { print (b - a) / hz }')
	fi
	setmax "$key.rss" "$rss"
	RUNS[$key]+="$sec "
	log "  $key: ${sec}s, peak RSS ${rss} KiB"
}

# gw_ticks: CPU ticks (user + system) of the S3 gateway's daemons (the
# monitor, the OSD, radosgw) so far, when the s3 section's cluster runs;
# "" otherwise. Read from /proc/PID/stat: fields 14 and 15.
GW_PIDS=()
gw_ticks() {
	((${#GW_PIDS[@]})) || return 0
	local p t=0 f
	for p in "${GW_PIDS[@]}"; do
		f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + ${f% *} + ${f#* }))
	done
	echo "$t"
}

# last_s KEY: wall seconds of the latest successful `timed KEY`.
last_s() { awk 'END { print ($1 < 0.01) ? 0.01 : $1 }' "$LOGS/$1.time"; }

# logged NAME CMD...: run an untimed command with output to $LOGS/NAME.log.
# On failure sets LAST_ERR to "exit N: <last output line> (see log)".
LAST_ERR=
logged() {
	local name=$1 rc=0 msg
	shift
	"$@" >"$LOGS/$name.log" 2>&1 || rc=$?
	((rc)) || return 0
	msg=$(grep -v '^[[:space:]]*$' "$LOGS/$name.log" | tail -n 1 | cut -c1-160)
	LAST_ERR="exit $rc: ${msg:-no output} (see $LOGS/$name.log)"
	return 1
}

# na KEY... MSG: mark keys as not measured with a reason.
na() {
	local msg=${!#} k
	for k in "${@:1:$#-1}"; do
		E[$k]=$msg
	done
}

# restore_check KEY TARGET SRC: untimed correctness check of a restore.
# Finds the restored copy of SRC (tools differ in how they lay out paths)
# by the directory name, and diffs it.
restore_check() {
	local key=$1 target=$2 src=$3 found
	found=$(find "$target" -maxdepth 12 -type d -name "$(basename "$src")" -print -quit 2>/dev/null || true)
	if [[ -z $found ]]; then
		# The tool may have restored the *contents* of SRC into TARGET.
		found=$target
	fi
	if diff -rq "$src" "$found" >"$LOGS/$key.diff" 2>&1; then
		setmin "$key.ok" 1
	else
		setmin "$key.ok" 0
		log "  $key: restored data differs from source! (see $LOGS/$key.diff)"
	fi
	done_target "$target"
}

# Restores go to a file system of their own: a journaled ext4 made afresh
# on a sparse image (RESTORE_IMG) for each run, when loop devices work
# (BENCH_RESTORE_FS=0: a plain directory, with a note in the report). On an
# ext4 without a journal, as some virtual machines' root file systems are,
# the kernel skips every inode freed in the last one to five minutes when it
# creates a file (recently_deleted() in ext4's inode allocator), one
# lookup per freed inode: after a large deletion, anyone's, creating
# 20,000 files took 3.9-6.9 s of kernel time here, against 0.5-1.1 s on a
# journaled ext4. That cost falls on whichever tool restores next, and
# swamps what the tools do. A production restore target has a journal.
BENCH_RESTORE_FS=${BENCH_RESTORE_FS:-1}
RESTORE_IMG=$BENCH_DIR/restore.img
RESTORE_FS=
setup_restore_fs() {
	[[ $BENCH_RESTORE_FS == 1 ]] || { NOTES+=("restore targets: a plain directory (BENCH_RESTORE_FS=0)"); return; }
	umount_restore_fs
	rm -rf "$RESTORE" "$RESTORE_IMG"
	mkdir -p "$RESTORE"
	# Targets are removed after their check (below), so the image holds a
	# few restores at once; with BENCH_KEEP=1 it holds them all.
	local size=$((3 * SET_BYTES + (2 << 30)))
	[[ $BENCH_KEEP != 1 ]] || size=$((12 * SET_BYTES + (4 << 30)))
	if truncate -s "$size" "$RESTORE_IMG" 2>"$LOGS/restorefs.log" &&
		mkfs.ext4 -q -F -E nodiscard "$RESTORE_IMG" >>"$LOGS/restorefs.log" 2>&1 &&
		as_root mount -o loop "$RESTORE_IMG" "$RESTORE" >>"$LOGS/restorefs.log" 2>&1; then
		RESTORE_FS=1
		NOTES+=("restore targets: a fresh journaled ext4 on a sparse loop image (see bench/README.md)")
	else
		rm -f "$RESTORE_IMG"
		NOTES+=("restore targets: a plain directory: the loop-mounted ext4 failed (see $LOGS/restorefs.log)")
	fi
}
umount_restore_fs() {
	if mountpoint -q "$RESTORE" 2>/dev/null; then
		as_root umount "$RESTORE" 2>/dev/null || as_root umount -l "$RESTORE" 2>/dev/null || true
	fi
	[[ $BENCH_KEEP == 1 ]] || rm -f "$RESTORE_IMG"
}
# done_target DIR: a checked restore target, removed at once on the
# restore file system (on a plain directory, only when the run ends: see
# above).
done_target() { [[ -z $RESTORE_FS || $BENCH_KEEP == 1 ]] || rm -rf "$1"; }

# du_b DIR: apparent bytes of a directory tree.
du_b() { du -sb "$1" | awk '{ print $1 }'; }
# tree_bytes DIR: sum of regular file sizes.
tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }'; } # mawk's %d caps at 2^31-1

# warm DIR/FILE: pull data into the page cache, for the warm figures.
warm() { find "$@" -type f -print0 | xargs -0 -r cat >/dev/null; }

# cold: empty the page cache (and the dentry and inode caches) before every
# timed step of every tool alike: backups read the source from disk as a
# nightly backup does, restores and mounts read the repository from disk as
# a restore days after the backup would. Without it a backup's figure is
# the CPU's alone, and a restore's depends on which tool's repository
# happens to be cached (recall writes packs with O_DIRECT, so they never
# are). Needs root; BENCH_COLD=0 turns it off (the report says so).
BENCH_COLD=${BENCH_COLD:-1}
COLD_OK=
[[ $BENCH_COLD != 1 || ! -w /proc/sys/vm/drop_caches ]] || COLD_OK=1
cold() {
	sync
	[[ -z $COLD_OK ]] || echo 3 >/proc/sys/vm/drop_caches
}

rmrf() { [[ $BENCH_KEEP == 1 ]] || rm -rf "$@"; }

# ---------------------------------------------------------------- tools
as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

install_tools() {
	local need=()
	command -v restic >/dev/null || need+=(restic)
	command -v borg >/dev/null || need+=(borgbackup)
	[[ -x /usr/bin/time ]] || need+=(time)
	if has_section mount && ! command -v fusermount >/dev/null && ! command -v fusermount3 >/dev/null; then
		need+=(fuse3)
	fi
	((${#need[@]})) || return 0
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	as_root apt-get install -y "${need[@]}" >"$LOGS/apt.log" 2>&1 ||
		{ as_root apt-get update >>"$LOGS/apt.log" 2>&1 && as_root apt-get install -y "${need[@]}" >>"$LOGS/apt.log" 2>&1; } ||
		die "apt-get install ${need[*]} failed, see $LOGS/apt.log"
}

# recall_state: "" if the recall binary looks usable, else a reason.
RECALL_BROKEN=
check_recall() {
	if [[ ! -e $RECALL ]]; then
		RECALL_BROKEN="binary $RECALL not found"
	elif [[ ! -x $RECALL ]]; then
		RECALL_BROKEN="$RECALL is not executable"
	fi
	# Anything else (a broken subcommand) shows up as a per-step error.
}
recall_version() {
	[[ -z $RECALL_BROKEN ]] || return 0
	{ "$RECALL" version 2>/dev/null || "$RECALL" --version 2>/dev/null || true; } | head -n 1
}
recall() { "$RECALL" "$@"; }

MOUNT_OK=
check_mount() {
	MOUNT_OK=
	has_section mount || { MOUNT_WHY="section not selected"; return; }
	[[ -z $RECALL_BROKEN ]] || { MOUNT_WHY="recall failed: $RECALL_BROKEN"; return; }
	if ! "$RECALL" help mount >/dev/null 2>&1; then
		MOUNT_WHY="recall mount not available (\`recall help mount\` fails)"
		return
	fi
	[[ -e /dev/fuse ]] || { MOUNT_WHY="/dev/fuse missing"; return; }
	MOUNT_OK=1
}

# ---------------------------------------------------------------- data
gen_data() {
	local stamp want
	want="gen=$(sha256sum "$ROOT/bench/gen/main.go" | cut -c1-16) scale=$BENCH_SCALE seed=$BENCH_SEED"
	stamp=$DATA/.stamp
	if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
		log "data set up to date ($want)"
	else
		log "generating data set ($want)"
		(cd "$ROOT" && go build -o "$BENCH_DIR/gen" ./bench/gen) || die "building bench/gen failed"
		rm -rf "$DATA"
		mkdir -p "$DATA"
		"$BENCH_DIR/gen" -out "$DATA" -scale "$BENCH_SCALE" -seed "$BENCH_SEED" >&2 || die "data generation failed"
		printf '%s\n' "$want" >"$stamp"
	fi
	SET=$DATA/set
	SET_BYTES=$(tree_bytes "$SET")
	SET_FILES=$(find "$SET" -type f | wc -l)
	FILES=$DATA/files
	FILES_BYTES=$(tree_bytes "$FILES")
	FILES_FILES=$(find "$FILES" -type f | wc -l)
	setm files_bytes "$FILES_BYTES"
	setm files_files "$FILES_FILES"
	SINGLE=$DATA/single/single.bin
	SINGLE_BYTES=$(stat -c %s "$SINGLE")
	INS_A=$DATA/ins/a/file.bin
	INS_B=$DATA/ins/b/file.bin
	INS_BYTES=$(stat -c %s "$INS_A")
	INS_N=$((($(stat -c %s "$INS_B") - INS_BYTES) / 4096))
	setm set_bytes "$SET_BYTES"
	setm set_files "$SET_FILES"
	setm single_bytes "$SINGLE_BYTES"
	setm file1g_bytes "$INS_BYTES"
	setm insertions "$INS_N"
}

# fresh_target NAME: a restore target never used before in this run.
RSEQ=0
fresh_target() {
	RSEQ=$((RSEQ + 1))
	FRESH=$RESTORE/$1.$RSEQ
}

# ---------------------------------------------------------------- restic
section_restic() {
	# Restore targets: see setup_restore_fs.
	local rt; fresh_target restic; rt=$FRESH
	local repo=$REPOS/restic
	rm -rf "$repo" "$CACHE/restic" "$rt"
	log "restic: init"
	if ! logged restic.init restic -r "$repo" init; then
		na restic.first.s restic.first.rss restic.rebackup.s restic.restore.s restic.warm.s "restic init failed: $LAST_ERR"
		return
	fi
	if timed restic.first restic -r "$repo" backup "$SET"; then
		timed restic.rebackup restic -r "$repo" backup "$SET" || true
		mkdir -p "$rt"
		if timed restic.restore restic -r "$repo" restore latest --target "$rt"; then
			restore_check restic.restore "$rt" "$SET"
		fi
	else
		na restic.rebackup.s restic.restore.s "first backup failed"
	fi
	M[restic.repo_bytes]=$(du_b "$repo")
	# The warm first backup (information, and what the s2 row compares
	# with): a fresh repository, the set in the page cache.
	local wrepo=$REPOS/restic-warm
	rm -rf "$wrepo"
	if logged restic.warm.init restic -r "$wrepo" init; then
		warm "$SET"
		TIMED_WARM=1 timed restic.warm restic -r "$wrepo" backup "$SET" || true
	else
		na restic.warm.s "restic init failed: $LAST_ERR"
	fi
	rm -rf "$wrepo"
	if [[ -n $MOUNT_OK ]]; then
		# Keep the repo for the mount section; one snapshot holding both
		# the set and the 1 GiB file so snapshots/latest has everything.
		log "restic: extra snapshot (set + 1 GiB file) for mount tests"
		local parent
		parent=$(restic -r "$repo" snapshots --json 2>/dev/null | grep -o '"id":"[0-9a-f]*"' | tail -n1 | cut -d'"' -f4 || true)
		logged restic.mountsnap restic -r "$repo" backup ${parent:+--parent "$parent"} "$SET" "$DATA/ins/a" ||
			E[restic.mountsnap]="restic backup for mount failed: $LAST_ERR"
	else
		rmrf "$repo" "$CACHE/restic"
	fi
}

# ---------------------------------------------------------------- borg
section_borg() {
	# Restore targets: see setup_restore_fs.
	local rt; fresh_target borg; rt=$FRESH
	local repo=$REPOS/borg
	rm -rf "$repo" "$CACHE/borg" "$rt"
	log "borg: init -e repokey (default compression lz4)"
	if ! logged borg.init borg init -e repokey "$repo"; then
		na borg.first.s borg.first.rss borg.rebackup.s borg.restore.s "borg init failed: $LAST_ERR"
		return
	fi
	if timed borg.first borg create "$repo::first" "$SET"; then
		timed borg.rebackup borg create "$repo::second" "$SET" || true
		mkdir -p "$rt"
		local archive=second
		have borg.rebackup.s || archive=first
		# borg extract writes into the current directory.
		pushd "$rt" >/dev/null
		local rc=0
		timed borg.restore borg extract "$repo::$archive" || rc=1
		popd >/dev/null
		((rc)) || restore_check borg.restore "$rt" "$SET"
	else
		na borg.rebackup.s borg.restore.s "first backup failed"
	fi
	M[borg.repo_bytes]=$(du_b "$repo")
	rmrf "$repo" "$CACHE/borg"
}

# ---------------------------------------------------------------- recall
section_recall() {
	# Restore targets: see setup_restore_fs.
	local rt; fresh_target recall; rt=$FRESH
	local home=$REPOS/recall keys=(recall.first.s recall.first.rss recall.rebackup.s recall.restore.s recall.warm.s)
	if [[ -n $RECALL_BROKEN ]]; then
		na "${keys[@]}" "recall failed: $RECALL_BROKEN"
		return
	fi
	rm -rf "$home" "$rt"
	log "recall: init (unencrypted default)"
	if ! logged recall.init recall --home "$home" init; then
		na "${keys[@]}" "recall failed: init: $LAST_ERR"
		return
	fi
	if timed recall.first "$RECALL" --home "$home" backup --source set "$SET"; then
		timed recall.rebackup "$RECALL" --home "$home" backup --source set "$SET" || true
		if timed recall.restore "$RECALL" --home "$home" restore --source set latest --target "$rt"; then
			restore_check recall.restore "$rt" "$SET"
		fi
	else
		na recall.rebackup.s recall.restore.s "recall failed: first backup: ${E[recall.first.s]}"
	fi
	M[recall.store_bytes]=$(du_b "$home")
	if [[ -z $MOUNT_OK ]]; then
		rmrf "$home"
	fi
	recall_warm recall.warm set "$SET"
	disk_floor floor.set "$SET" "${M[recall.store_bytes]}"
}

# disk_floor KEY DIR BYTES: the disk's part of a cold first backup, with
# no backup tool: every file of DIR read from an empty page cache (eight
# readers) while BYTES (the size of the store the backup wrote) are
# written beside the stores with O_DIRECT and synced. A first backup of
# data that does not compress must do both, so its cold time cannot be
# below this, however well it overlaps the reads with its CPU work; on a
# disk that reads and writes at once it is about the reading alone. The
# bytes written are random (a disk or host that special-cases zeros would
# make it too low), from a buffer in memory.
disk_floor() {
	local key=$1 dir=$2 bytes=$3
	[[ -n $bytes && $bytes -gt 0 ]] || { log "  $key: no store size to write, skipped"; return 0; }
	local rnd=/dev/shm/recall-bench-floor.rnd out=$REPOS/floor.tmp script=$BENCH_DIR/floor.sh
	head -c $((64 << 20)) /dev/urandom >"$rnd"
	cat >"$script" <<'FLOOR'
# floor.sh DIR OUT RND BYTES (bench/run.sh's disk_floor)
dir=$1 out=$2 rnd=$3 n=$((($4 + (64 << 20) - 1) / (64 << 20)))
(for ((i = 0; i < n; i++)); do dd if="$rnd" of="$out" bs=2M oflag=direct,append conv=notrunc status=none || exit 1; done) &
w=$!
find "$dir" -type f -print0 | xargs -0 -r -P8 -n64 cat >/dev/null
wait "$w" && sync
FLOOR
	timed "$key" bash "$script" "$dir" "$out" "$rnd" "$bytes" || true
	rm -f "$rnd" "$out" "$script"
}

# recall_warm KEY SOURCE DIR: recall's first backup of DIR on a fresh
# store with DIR in the page cache: the warm figure its cold one is held
# against (cold <= 1.2x warm: reading from disk overlapped with the CPU work).
recall_warm() {
	local key=$1 home=$REPOS/recall-warm
	rm -rf "$home"
	if ! logged "$key.init" recall --home "$home" init; then
		na "$key.s" "recall failed: init: $LAST_ERR"
		return
	fi
	warm "$3"
	TIMED_WARM=1 timed "$key" "$RECALL" --home "$home" backup --source "$2" "$3" || true
	rm -rf "$home"
}

# recall_has_s2: whether this recall can back up with the s2 codec.
recall_has_s2() { local h; h=$("$RECALL" backup --help 2>&1) || true; [[ $h == *--compression* ]]; } # not grep -q: under pipefail its early exit fails the pipe

# section_recall_s2: the first backup with --compression s2, warm (the
# codec's target is set warm) and cold (information).
section_recall_s2() {
	local home=$REPOS/recall-s2 keys=(recalls2.warm.s recalls2.first.s) mode
	if [[ -n $RECALL_BROKEN ]]; then
		na "${keys[@]}" "recall failed: $RECALL_BROKEN"
		return
	fi
	if ! recall_has_s2; then
		na "${keys[@]}" "n/a: this recall has no s2 (backup has no --compression)"
		return
	fi
	for mode in warm first; do
		rm -rf "$home"
		if ! logged "recalls2.$mode.init" recall --home "$home" init; then
			na "recalls2.$mode.s" "recall failed: init: $LAST_ERR"
			continue
		fi
		if [[ $mode == warm ]]; then
			warm "$SET"
			TIMED_WARM=1 timed recalls2.warm "$RECALL" --home "$home" backup --compression s2 --source set "$SET" || true
		else
			timed recalls2.first "$RECALL" --home "$home" backup --compression s2 --source set "$SET" || true
		fi
	done
	rm -rf "$home"
}

# section_files: the small-file-heavy set (files/) through restic and
# recall: first backup and restore, cold, and recall's warm first backup.
section_files() {
	local repo=$REPOS/restic-files home=$REPOS/recall-files rt
	rm -rf "$repo" "$home"
	log "files: restic"
	if ! logged files.restic.init restic -r "$repo" init; then
		na files.restic.first.s files.restic.restore.s "restic init failed: $LAST_ERR"
	elif timed files.restic.first restic -r "$repo" backup "$FILES"; then
		fresh_target restic-files; rt=$FRESH
		mkdir -p "$rt"
		if timed files.restic.restore restic -r "$repo" restore latest --target "$rt"; then
			restore_check files.restic.restore "$rt" "$FILES"
		fi
	else
		na files.restic.restore.s "first backup failed"
	fi
	rmrf "$repo"
	local keys=(files.recall.first.s files.recall.first.rss files.recall.restore.s files.recall.warm.s)
	if [[ -n $RECALL_BROKEN ]]; then
		na "${keys[@]}" "recall failed: $RECALL_BROKEN"
		return
	fi
	log "files: recall"
	if ! logged files.recall.init recall --home "$home" init; then
		na "${keys[@]}" "recall failed: init: $LAST_ERR"
		return
	fi
	if timed files.recall.first "$RECALL" --home "$home" backup --source files "$FILES"; then
		fresh_target recall-files; rt=$FRESH
		if timed files.recall.restore "$RECALL" --home "$home" restore --source files latest --target "$rt"; then
			restore_check files.recall.restore "$rt" "$FILES"
		fi
	else
		na files.recall.restore.s "recall failed: first backup: ${E[files.recall.first.s]}"
	fi
	M[files.recall.store_bytes]=$(du_b "$home")
	rmrf "$home"
	recall_warm files.recall.warm files "$FILES"
	disk_floor floor.files "$FILES" "${M[files.recall.store_bytes]}"
}

section_recall_enc() {
	local home=$REPOS/recall-enc
	if [[ -n $RECALL_BROKEN ]]; then
		na recallenc.first.s recallenc.first.rss "recall failed: $RECALL_BROKEN"
		return
	fi
	rm -rf "$home"
	log "recall: init --encrypt"
	if ! logged recallenc.init recall --home "$home" init --encrypt; then
		na recallenc.first.s recallenc.first.rss "recall failed: init --encrypt: $LAST_ERR"
		return
	fi
	timed recallenc.first "$RECALL" --home "$home" backup --source set "$SET" || true
	rmrf "$home"
}

section_single() {
	local home=$REPOS/recall-single
	log "single file: chunker-only baseline (cold, like the recall backup it is compared with)"
	if (cd "$ROOT" && go build -o "$BENCH_DIR/chunkeronly" ./bench/chunkeronly) >"$LOGS/chunkeronly.build.log" 2>&1; then
		local s
		cold
		if s=$("$BENCH_DIR/chunkeronly" "$SINGLE" 2>"$LOGS/chunkeronly.log"); then
			setmin chunker.single.s "$(awk -v s="$s" 'BEGIN { print (s < 0.001) ? 0.001 : s }')"
			log "  chunker-only: ${s}s"
		else
			E[chunker.single.s]="chunkeronly failed (see $LOGS/chunkeronly.log)"
		fi
	else
		E[chunker.single.s]="building bench/chunkeronly failed (see $LOGS/chunkeronly.build.log)"
	fi
	if [[ -n $RECALL_BROKEN ]]; then
		na recall.single.s recall.single.rss "recall failed: $RECALL_BROKEN"
		return
	fi
	rm -rf "$home"
	if ! logged recall.single.init recall --home "$home" init; then
		na recall.single.s recall.single.rss "recall failed: init: $LAST_ERR"
		return
	fi
	timed recall.single "$RECALL" --home "$home" backup --source single "$(dirname "$SINGLE")" || true
	rmrf "$home"
}

section_insert() {
	local home=$REPOS/recall-ins src=$WORK/ins
	if [[ -n $RECALL_BROKEN ]]; then
		na recall.ins.growth "recall failed: $RECALL_BROKEN"
		return
	fi
	rm -rf "$home" "$src"
	mkdir -p "$src"
	if ! logged recall.ins.init recall --home "$home" init; then
		na recall.ins.growth "recall failed: init: $LAST_ERR"
		return
	fi
	# Same source name and path; the file is swapped between backups
	# (hard links: no copy, but a new inode, mtime and size).
	ln -f "$INS_A" "$src/file.bin"
	if ! timed recall.ins1 "$RECALL" --home "$home" backup --source ins "$src"; then
		na recall.ins.growth "recall failed: backup 1: ${E[recall.ins1.s]}"
		return
	fi
	local before after
	before=$(du_b "$home")
	ln -f "$INS_B" "$src/file.bin"
	if ! timed recall.ins2 "$RECALL" --home "$home" backup --source ins "$src"; then
		na recall.ins.growth "recall failed: backup 2: ${E[recall.ins2.s]}"
		return
	fi
	after=$(du_b "$home")
	M[recall.ins.before]=$before
	M[recall.ins.after]=$after
	setmax recall.ins.growth $((after - before))
	log "  store grew by $((after - before)) bytes"
	rm -rf "$src"
	rmrf "$home"
}

# ---------------------------------------------------------------- mount
RESTIC_MOUNT_PID=
cleanup_mounts() {
	if [[ -n $RESTIC_MOUNT_PID ]]; then
		kill -INT "$RESTIC_MOUNT_PID" 2>/dev/null || true
		wait "$RESTIC_MOUNT_PID" 2>/dev/null || true
		RESTIC_MOUNT_PID=
	fi
	local m
	for m in "$MNT/restic" "$MNT/recall"; do
		if mountpoint -q "$m" 2>/dev/null; then
			[[ $m != "$MNT/recall" ]] || "$RECALL" umount "$m" >/dev/null 2>&1 || true
			mountpoint -q "$m" 2>/dev/null && { fusermount -u "$m" 2>/dev/null || fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
		fi
	done
}
trap 'cleanup_mounts; stop_ceph; umount_restore_fs' EXIT
trap 'exit 130' INT TERM

# find_in DIR NAME TYPE: first match of NAME below DIR.
find_in() { find -H "$1" -maxdepth 14 -type "$3" -name "$2" -print -quit 2>/dev/null || true; }

# TAR_WALK DIR: the small-file walk, through the mounts and from the page
# cache alike.
TAR_WALK=(bash -c 'tar cf - -C "$1" . | cat >/dev/null' _)

# mount_read PREFIX FILE: the timed cold first read of FILE through a mount
# (PREFIX.read); fails when FILE is empty (not found) or the read fails.
mount_read() {
	if [[ -z $2 ]]; then
		E[$1.read.s]="1 GiB file not found in mount"
		return 1
	fi
	timed "$1.read" bash -c 'cat "$1" >/dev/null' _ "$2"
}

# mount_tar PREFIX DIR: the timed cold walk of DIR through a mount
# (PREFIX.tar); fails like mount_read.
mount_tar() {
	if [[ -z $2 ]]; then
		E[$1.tar.s]="small files dir not found in mount"
		return 1
	fi
	timed "$1.tar" "${TAR_WALK[@]}" "$2"
}

# mount_reads PREFIX FILE SMALLDIR: the two timed reads through a mount.
mount_reads() {
	mount_read "$1" "$2" || true
	mount_tar "$1" "$3" || true
}

# recall_mount_check LOG WHAT CMD...: untimed; what was read through the
# recall mount must match the source (CMD compares them, output to LOG).
recall_mount_check() {
	local out=$LOGS/$1 what=$2
	shift 2
	if "$@" >"$out" 2>&1; then
		setmin mount.recall.ok 1
	else
		setmin mount.recall.ok 0
		log "  recall mount: $what differs from source! (see $out)"
	fi
}

# host_reference: the same tar as through the mounts, of the source tree in
# the page cache (best of three). It involves no backup tool: how long it
# takes says how fast this machine is at the moment, which steal alone does
# not show (the host's own contention on memory and caches is not steal).
HOSTREF=() # one best-of-three time per round
host_reference() {
	local i best=
	warm "$SET/small"
	for ((i = 0; i < 3; i++)); do
		TIMED_WARM=1 timed host.tar "${TAR_WALK[@]}" "$SET/small" || return 0
		best=$(awk -v a="$(last_s host.tar)" -v b="${best:-1e9}" 'BEGIN { print (a < b) ? a : b }')
	done
	HOSTREF+=("$best")
}

# section_mountgo: the mount's own Go benchmarks (fs/bench_test.go), whose
# targets need no other tool: listing 100k entries < 1 s, `ls` of 1,000
# points < 0.2 s, mount ready < 1 s with 1,000 points, random 4 KiB reads
# median < 2 ms. -count BENCH_REPEAT; the best run is judged, like the
# best round above, and every run is printed.
section_mountgo() {
	if ! command -v go >/dev/null 2>&1 || [[ ! -f $ROOT/fs/bench_test.go ]]; then
		na "${GO_KEYS[@]}" "needs the go tool and the source tree"
		return
	fi
	if ((EUID != 0)); then
		na "${GO_KEYS[@]}" "needs root (the benchmarks mount)"
		return
	fi
	log "=== mountgo: go test ./fs -bench Mount -benchtime 3x -count $BENCH_REPEAT"
	if ! (cd "$ROOT" && go test ./fs -run '^$' -bench Mount -benchtime 3x -count "$BENCH_REPEAT") >"$LOGS/mountgo.log" 2>&1; then
		na "${GO_KEYS[@]}" "go test failed: $(grep -v '^[[:space:]]*$' "$LOGS/mountgo.log" | tail -n 1 | cut -c1-120) (see $LOGS/mountgo.log)"
		return
	fi
	# Lines: name-GOMAXPROCS  N  ns/op  [value unit]...; the table below
	# says which unit of which benchmark goes to which key, scaled by div.
	local name key unit div line
	while read -r name key unit div; do
		while read -r line; do
			[[ -n $line ]] || continue
			GORUNS[$key]+="$line "
			if [[ $key == go.seqread.mbps ]]; then setmax "$key" "$line"; else setmin "$key" "$line"; fi
		done < <(awk -v n="$name" -v u="$unit" -v d="$div" '{ b = $1; sub(/-[0-9]+$/, "", b) } b == n { for (i = 3; i < NF; i++) if ($(i + 1) == u) print $i / d }' "$LOGS/mountgo.log")
		have "$key" || E[$key]="no result (see $LOGS/mountgo.log)"
	done <<-'EOF'
		BenchmarkMountList100k/names go.list100k.s ns/op 1e9
		BenchmarkMountList100k/names+attrs go.list100k.attrs.s ns/op 1e9
		BenchmarkMountListPoints1000 go.points1000.ms ns/op 1e6
		BenchmarkMountReady1000Points go.ready1000.ms ns/op 1e6
		BenchmarkMountRandom4K go.random4k.ms ms-median 1
		BenchmarkMountRandom4K go.random4k.p90.ms ms-p90 1
		BenchmarkMountSequentialRead go.seqread.mbps MB/s 1
	EOF
}
declare -A GORUNS=() # key -> every run's value
GO_KEYS=(go.list100k.s go.list100k.attrs.s go.points1000.ms go.ready1000.ms go.random4k.ms go.random4k.p90.ms go.seqread.mbps)

bench_mount() {
	local keys=(mount.recall.read.s mount.restic.read.s mount.recall.tar.s mount.restic.tar.s recall.restore1g.s)
	if [[ -z $MOUNT_OK ]]; then
		log "mount: skipped: $MOUNT_WHY"
		na "${keys[@]}" "skipped: $MOUNT_WHY"
		return
	fi
	local home=$REPOS/recall repo=$REPOS/restic
	mkdir -p "$MNT/restic" "$MNT/recall"

	# --- restic mount (foreground process; background it and poll).
	if [[ ! -d $repo || -n ${E[restic.mountsnap]:-} ]]; then
		na mount.restic.read.s mount.restic.tar.s "${E[restic.mountsnap]:-restic repo missing}"
	else
		log "mount: restic mount"
		restic -r "$repo" mount "$MNT/restic" >"$LOGS/restic.mount.log" 2>&1 &
		RESTIC_MOUNT_PID=$!
		local i latest=$MNT/restic/snapshots/latest
		for ((i = 0; i < 600; i++)); do
			[[ -d $latest$SET ]] && break
			kill -0 "$RESTIC_MOUNT_PID" 2>/dev/null || break
			sleep 0.2
		done
		if [[ -d $latest$SET ]]; then
			local f=$latest$DATA/ins/a/file.bin s=$latest$SET/small
			[[ -f $f ]] || f=
			[[ -d $s ]] || s=
			mount_reads mount.restic "$f" "$s"
		else
			na mount.restic.read.s mount.restic.tar.s "restic mount did not come up (see $LOGS/restic.mount.log)"
		fi
		cleanup_mounts
	fi
	rmrf "$repo" "$CACHE/restic"

	# --- recall mount (returns when ready, serves in the background).
	if [[ -n ${E[recall.first.s]:-} || ! -d $home ]]; then
		na mount.recall.read.s mount.recall.tar.s recall.restore1g.s "recall failed: no store with the set (${E[recall.first.s]:-missing})"
		return
	fi
	log "mount: recall backup of the 1 GiB file (untimed)"
	local f1g_ok= pairs=0
	if ! logged recall.file1g recall --home "$home" backup --source file1g "$DATA/ins/a"; then
		na mount.recall.read.s recall.restore1g.s "recall failed: backup of 1 GiB file: $LAST_ERR"
	else
		f1g_ok=1
		pairs=$BENCH_PAIRS
	fi
	# The 1 GiB file is restored and read through the mount in turn,
	# BENCH_PAIRS times, each cold and on a fresh mount. On a shared machine
	# the two halves of one pair see about the same neighbours, so the pair
	# ratios say more than two readings minutes apart.
	local pr f s rs ms
	for ((pr = 1; pr <= pairs; pr++)); do
		rs= ms=
		rm -rf "$RESTORE/recall1g"
		if timed recall.restore1g "$RECALL" --home "$home" restore --source file1g latest --target "$RESTORE/recall1g"; then
			rs=$(last_s recall.restore1g)
			restore_check recall.restore1g "$RESTORE/recall1g" "$DATA/ins/a"
		fi
		rm -rf "$RESTORE/recall1g"
		if ! timed recall.mount "$RECALL" --home "$home" mount "$MNT/recall"; then
			na mount.recall.read.s "recall failed: mount: ${E[recall.mount.s]}"
			break
		fi
		f=$(find_in "$MNT/recall/file1g/latest" file.bin f)
		if mount_read mount.recall "$f"; then
			ms=$(last_s mount.recall.read)
		fi
		[[ -z $f ]] || recall_mount_check mount.recall.diff "1 GiB file" cmp "$f" "$INS_A"
		"$RECALL" umount "$MNT/recall" >"$LOGS/recall.umount.log" 2>&1 || log "recall umount failed (see $LOGS/recall.umount.log)"
		cleanup_mounts
		[[ -z $rs || -z $ms ]] || PAIRS+=("$(calc "$rs / $ms")")
	done
	log "mount: recall mount (small files)"
	if timed recall.mount "$RECALL" --home "$home" mount "$MNT/recall"; then
		s=$MNT/recall/set/latest/small
		[[ -d $s ]] || s=$(find_in "$MNT/recall/set/latest" small d)
		mount_tar mount.recall "$s" || true
		[[ -z $s ]] || recall_mount_check mount.recall.smalldiff "small files" diff -rq "$SET/small" "$s"
		"$RECALL" umount "$MNT/recall" >"$LOGS/recall.umount.log" 2>&1 || log "recall umount failed (see $LOGS/recall.umount.log)"
		cleanup_mounts
	else
		na mount.recall.tar.s "recall failed: mount: ${E[recall.mount.s]}"
	fi
	rmrf "$home"
}

# ---------------------------------------------------------------- s3
# section_s3: recall against the S3 gateway of a single-node Ceph cluster
# on loopback (bench/cephup: one monitor, one OSD, one RADOS Gateway), all
# figures of a run from the same cluster: the gateway's own PUT and GET
# throughput (bench/s3speed: 16 MiB objects, S3_CONNS connections, as
# recall's s3 backend makes them), restic's and recall's first backup and
# restore of the set through it, and `recall copy` of a local store of the
# set to a new prefix. It runs once, after the rounds of the other
# sections, with BENCH_REPEAT rounds of its own on fresh buckets, and stops
# the cluster when it ends (the EXIT trap too; and cephup's holder stops it
# when this script dies).
#
# The OSD keeps its objects in bluestore on a sparse file: memstore would
# keep every deleted object in RAM until the gateway's garbage collection
# runs, hours later. Each step's bucket is purged after it (radosgw-admin
# bucket rm --bypass-gc, which frees the space at once), so the file holds
# about one store at a time.
#
# Backup, restore and copy are judged by the bytes they move through the
# gateway (the bucket's size, radosgw-admin bucket stats) per second, against
# the gateway's own PUT and GET figures: recall must saturate the
# backend, not itself. The gateway's figures are warm by nature (loopback,
# and the OSD's own cache, which dropping the page cache does not empty);
# recall's and restic's steps start cold like every timed step.
S3_DIR=$BENCH_DIR/ceph
S3_CONNS=8
S3_UP=
S3_SKIPPED=
S3_BLOCK=0
S3_PUT_RUNS=() # the gateway's PUT MB/s, one per round
S3_GET_RUNS=()
S3_KEYS=(s3.put.mbps s3.get.mbps s3.restic.first.s s3.restic.restore.s s3.recall.first.s s3.recall.first.mbps
	s3.recall.restore.s s3.recall.restore.mbps s3.copy.s s3.copy.mbps)

stop_ceph() {
	[[ -n $S3_UP ]] || return 0
	S3_UP=
	GW_PIDS=()
	"$BENCH_DIR/cephup" stop "$S3_DIR" >>"$LOGS/s3.cephup.log" 2>&1 || log "cephup stop failed (see $LOGS/s3.cephup.log)"
}

# s3_bytes BUCKET: the bytes of the objects in BUCKET ("" if unknown).
s3_bytes() {
	radosgw-admin -c "$CEPH_CONF" bucket stats --bucket "$1" 2>>"$LOGS/s3.admin.log" |
		awk '/"size":/ { gsub(/[^0-9]/, "", $2); print $2; exit }' || true
}
# s3_purge BUCKET: removes BUCKET and its objects, freeing their space now.
s3_purge() {
	radosgw-admin -c "$CEPH_CONF" bucket rm --bucket "$1" --purge-objects --bypass-gc >>"$LOGS/s3.admin.log" 2>&1 || true
}

# s3_mbps KEY BUCKET: KEY.mbps from BUCKET's size and the last KEY time
# (best over the rounds), and KEY.bytes; or why not.
s3_mbps() {
	local key=$1 bytes
	bytes=$(s3_bytes "$2")
	if [[ -z $bytes || $bytes == 0 ]]; then
		E[$key.mbps]="no size for bucket $2 (see $LOGS/s3.admin.log)"
		return
	fi
	setmax "$key.bytes" "$bytes"
	setmax "$key.mbps" "$(mbps "$bytes" "$(last_s "$key")")"
}

section_s3() {
	log "=== s3: building bench/cephup and bench/s3speed"
	if ! (cd "$ROOT" && go build -o "$BENCH_DIR/cephup" ./bench/cephup && go build -o "$BENCH_DIR/s3speed" ./bench/s3speed) >"$LOGS/s3.build.log" 2>&1; then
		na "${S3_KEYS[@]}" "building bench/cephup or bench/s3speed failed (see $LOGS/s3.build.log)"
		return
	fi
	# Room for the largest store (about the set) twice over, sparse.
	S3_BLOCK=$(awk -v b="$SET_BYTES" 'BEGIN { s = 2 * b + 2 * 2^30; if (s < 8 * 2^30) s = 8 * 2^30; printf "%.0f", s }')
	log "s3: starting the cluster (bluestore on a $(fmt1 "$(calc "$S3_BLOCK / 2^30")") GiB sparse file)"
	local out rc=0
	out=$("$BENCH_DIR/cephup" start -size "$S3_BLOCK" -watch $$ "$S3_DIR" 2>"$LOGS/s3.cephup.log") || rc=$?
	if ((rc == 3)); then
		S3_SKIPPED="ceph not installed (make deps)"
		na "${S3_KEYS[@]}" "skipped: $S3_SKIPPED"
		log "s3: skipped: $S3_SKIPPED"
		return
	elif ((rc)); then
		na "${S3_KEYS[@]}" "the cluster did not start: exit $rc (see $LOGS/s3.cephup.log)"
		log "s3: ${E[s3.put.mbps]}"
		return
	fi
	S3_UP=1
	local S3_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY CEPH_CONF CEPH_START_SECONDS
	eval "$out"
	export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
	setm s3.cluster.start.s "$CEPH_START_SECONDS"
	# The daemons of this cluster, for the CPU the gateway spends on each
	# step (gw_ticks).
	local p
	GW_PIDS=()
	for p in $(pgrep -x 'ceph-mon|ceph-osd|radosgw'); do
		tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$CEPH_CONF" && GW_PIDS+=("$p")
	done
	log "s3: gateway $S3_ENDPOINT ready in ${CEPH_START_SECONDS}s"
	NOTES+=("s3: $(ceph-osd --version 2>/dev/null | cut -d' ' -f1-3), one OSD with bluestore on a sparse file (memstore would keep deleted objects in RAM), started in ${CEPH_START_SECONDS}s; gateway figures are warm (loopback, the OSD's own cache), recall's and restic's steps cold")

	# The local store recall copy sends (the set, about 2 GB at scale 1),
	# made once, untimed.
	local src=$REPOS/recall-s3src
	rm -rf "$src"
	if [[ -n $RECALL_BROKEN ]]; then
		E[s3.copy.src]="recall failed: $RECALL_BROKEN"
	elif ! logged s3.copysrc.init recall --home "$src" init || ! logged s3.copysrc.backup recall --home "$src" backup --source set "$SET"; then
		E[s3.copy.src]="recall failed: the local store to copy: $LAST_ERR"
	else
		M[s3.copy.src_bytes]=$(du_b "$src/store")
	fi

	local round
	for ((round = 1; round <= BENCH_REPEAT; round++)); do
		log "=== s3 (round $round/$BENCH_REPEAT)"
		s3_round "$round" "$src"
	done
	rmrf "$src"
	stop_ceph
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
}

# s3_round N SRC: one round of the s3 section, each step on a bucket of
# its own, purged after it.
s3_round() {
	local r=$1 src=$2 url=s3:$S3_ENDPOINT rt k v

	# The gateway's own throughput, untimed by /usr/bin/time: s3speed
	# times its requests itself.
	local b=gateway-r$r
	if logged "s3.speed.$r" "$BENCH_DIR/s3speed" -conns "$S3_CONNS" -n 32 "$url/$b/speed"; then
		while read -r k v; do
			case $k in
			put_mbps | get_mbps)
				[[ $k == put_mbps ]] && S3_PUT_RUNS+=("$v") || S3_GET_RUNS+=("$v")
				setmax "s3.${k%_mbps}.mbps" "$v"
				;;
			esac
		done <"$LOGS/s3.speed.$r.log"
		log "  gateway: PUT ${M[s3.put.mbps]:-?} GET ${M[s3.get.mbps]:-?} MB/s (best so far)"
	else
		have s3.put.mbps || na s3.put.mbps s3.get.mbps "s3speed failed: $LAST_ERR"
	fi
	s3_purge "$b"

	# restic's S3 backend, default settings (5 connections).
	b=restic-r$r
	fresh_target s3-restic; rt=$FRESH
	if ! logged "s3.restic.init.$r" restic -r "$url/$b" init; then
		have s3.restic.first.s || na s3.restic.first.s s3.restic.restore.s "restic init failed: $LAST_ERR"
	elif timed s3.restic.first restic -r "$url/$b" backup "$SET"; then
		M[s3.restic.bytes]=$(s3_bytes "$b")
		mkdir -p "$rt"
		if timed s3.restic.restore restic -r "$url/$b" restore latest --target "$rt"; then
			restore_check s3.restic.restore "$rt" "$SET"
		fi
	else
		have s3.restic.restore.s || na s3.restic.restore.s "first backup failed"
	fi
	rm -rf "$CACHE/restic"
	s3_purge "$b"

	# recall: a local home, the store on the gateway.
	b=recall-r$r
	local home=$REPOS/recall-s3
	rm -rf "$home"
	fresh_target s3-recall; rt=$FRESH
	if [[ -n $RECALL_BROKEN ]]; then
		na s3.recall.first.s s3.recall.first.mbps s3.recall.restore.s s3.recall.restore.mbps "recall failed: $RECALL_BROKEN"
	elif ! logged "s3.recall.init.$r" recall --home "$home" --store "$url/$b/store" init; then
		have s3.recall.first.s || na s3.recall.first.s s3.recall.first.mbps s3.recall.restore.s s3.recall.restore.mbps "recall failed: init --store: $LAST_ERR"
	elif timed s3.recall.first "$RECALL" --home "$home" backup --source set "$SET"; then
		s3_mbps s3.recall.first "$b"
		if timed s3.recall.restore "$RECALL" --home "$home" restore --source set latest --target "$rt"; then
			restore_check s3.recall.restore "$rt" "$SET"
			s3_mbps s3.recall.restore "$b"
		else
			have s3.recall.restore.mbps || E[s3.recall.restore.mbps]=${E[s3.recall.restore.s]}
		fi
	else
		have s3.recall.first.mbps || E[s3.recall.first.mbps]=${E[s3.recall.first.s]}
		have s3.recall.restore.s || na s3.recall.restore.s s3.recall.restore.mbps "recall failed: first backup: ${E[s3.recall.first.s]}"
	fi
	rmrf "$home"
	s3_purge "$b"

	# recall copy of the local store to a new prefix.
	b=copy-r$r
	if [[ -n ${E[s3.copy.src]:-} ]]; then
		have s3.copy.s || na s3.copy.s s3.copy.mbps "${E[s3.copy.src]}"
	else
		# From an empty directory: a recall that takes the s3: location
		# for a relative path leaves it there, not in the caller's.
		local cwd=$WORK/s3copy rc=0
		rm -rf "$cwd"
		mkdir -p "$cwd"
		pushd "$cwd" >/dev/null
		timed s3.copy "$RECALL" copy --from "$src" --to "$url/$b/store" || rc=1
		popd >/dev/null
		if [[ -n $(ls -A "$cwd") ]]; then
			unset 'M[s3.copy.s]' 'M[s3.copy.rss]' 'RUNS[s3.copy]'
			na s3.copy.s s3.copy.mbps "recall copy took $url/$b/store for a local path (see $LOGS/s3.copy.log)"
		elif ((rc == 0)); then
			s3_mbps s3.copy "$b"
		else
			have s3.copy.mbps || E[s3.copy.mbps]=${E[s3.copy.s]}
		fi
		rm -rf "$cwd"
	fi
	s3_purge "$b"
}

# ---------------------------------------------------------------- report
# mbps_str KEY: "812.3 MB/s" of a throughput key, or "n/a (...)".
mbps_str() { if have "$1"; then printf '%s MB/s' "$(fmt1 "${M[$1]}")"; else printf 'n/a (%s)' "$(why "$1")"; fi; }

# s3_str KEY VERB: "sent 90.1 MB/s (the set at 120.3 MB/s)" of a timed
# step KEY that moved KEY.bytes through the gateway, or why not.
s3_str() {
	if have "$1.mbps"; then
		printf '%s %s (the set at %s)' "$2" "$(mbps_str "$1.mbps")" "$(tput_str "$SET_BYTES" "$1.s")"
	elif have "$1.s"; then
		printf 'the set at %s (%s: n/a, %s)' "$(tput_str "$SET_BYTES" "$1.s")" "$2" "$(why "$1.mbps")"
	else
		printf 'n/a (%s)' "$(why "$1.s")"
	fi
}

# cpu_str KEY: "CPU 15.5 s + gateway 14.1 s = 89% of 2 cores" for the
# best run of timed step KEY: how much of the machine the step and the
# gateway's daemons kept busy (near 100%: the machine is the bound, not
# a tool waiting on itself).
cpu_str() {
	if have "$1.cpu" && have "$1.gwcpu" && have "$1.s"; then
		printf 'CPU %s s + gateway %s s = %s%% of %d cores' "$(fmt1 "${M[$1.cpu]}")" "$(fmt1 "${M[$1.gwcpu]}")" \
			"$(awk -v a="${M[$1.cpu]}" -v b="${M[$1.gwcpu]}" -v t="${M[$1.s]}" -v n="$(nproc)" 'BEGIN { printf "%.0f", 100 * (a + b) / (t * n) }')" "$(nproc)"
	else
		printf 'CPU n/a'
	fi
}

# report_s3: the s3 section's rows. Backup, restore and copy are held to
# the gateway's own figures by the bytes they moved through it per second;
# restic's comparison is by time on the same set.
report_s3() {
	local b=$SET_BYTES v1
	if [[ -n $S3_SKIPPED ]]; then
		row "s3 (Ceph gateway)" "skipped: $S3_SKIPPED"
		CHECKS_JSON+=("{\"name\":\"s3\",\"skipped\":$(json_str "$S3_SKIPPED"),\"ratio\":null,\"pass\":null,\"counted\":false}")
		return
	fi
	row "s3 gateway" "PUT $(mbps_str s3.put.mbps)  GET $(mbps_str s3.get.mbps)  ($S3_CONNS connections, 16 MiB objects; warm: cold means nothing for a gateway on loopback)"
	check "S3 first backup" "vs gateway PUT" "$(ratio s3.recall.first.mbps s3.put.mbps)" ">=" 0.8
	v1=$V
	check "S3 first backup" "ratio vs restic" "$(ratio s3.restic.first.s s3.recall.first.s)" ">=" 2
	row "s3 first backup" "recall $(s3_str s3.recall.first sent)  restic $(tput_str "$b" s3.restic.first.s) of the set  $v1  $V$(rounds s3.restic.first s3.recall.first)"
	check "S3 restore" "vs gateway GET" "$(ratio s3.recall.restore.mbps s3.get.mbps)" ">=" 0.8
	v1=$V
	check "S3 restore" "ratio vs restic" "$(ratio s3.restic.restore.s s3.recall.restore.s)" ">=" 2.5
	row "s3 restore" "recall $(s3_str s3.recall.restore read)  restic $(tput_str "$b" s3.restic.restore.s) of the set  $v1  $V$(rounds s3.restic.restore s3.recall.restore)"
	check "S3 copy" "vs gateway PUT" "$(ratio s3.copy.mbps s3.put.mbps)" ">=" 0.8
	local src=
	! have s3.copy.src_bytes || src=" of the $(fmt1 "$(calc "${M[s3.copy.src_bytes]} / 1000000")") MB local store"
	row "s3 copy" "recall copy sent $(mbps_str s3.copy.mbps)$src  $V"
	row "s3 machine" "first backup: recall $(cpu_str s3.recall.first); restic $(cpu_str s3.restic.first)  (info)"
	row "" "restore: recall $(cpu_str s3.recall.restore); restic $(cpu_str s3.restic.restore)"
	row "" "copy: $(cpu_str s3.copy)"
}

# val KEY: the measurement or empty.
val() { printf '%s' "${M[$1]:-}"; }

# tput_str BYTES KEY: "812.3 MB/s" or "n/a (...)".
tput_str() {
	if have "$2"; then
		printf '%s MB/s' "$(fmt1 "$(mbps "$1" "${M[$2]}")")"
	else
		printf 'n/a (%s)' "$(why "$2")"
	fi
}
sec_str() { if have "$1"; then printf '%ss' "$(fmt2 "${M[$1]}")"; else printf 'n/a (%s)' "$(why "$1")"; fi; }
rss_str() { if have "$1"; then printf '%s MiB' "$(fmt1 "$(calc "${M[$1]} / 1024")")"; else printf 'n/a (%s)' "$(why "$1")"; fi; }
# rounds A B: "per round a/b ..." of two timed keys' seconds, round by
# round (information: on a shared machine the best-of figures above may come
# from different rounds; a round's two figures are minutes apart at most).
rounds() {
	local -a a=(${RUNS[$1]:-}) b=(${RUNS[$2]:-})
	local i out=
	((${#a[@]} > 1 && ${#a[@]} == ${#b[@]})) || return 0
	for ((i = 0; i < ${#a[@]}; i++)); do out+="$(fmt2 "$(calc "${a[i]} / ${b[i]}")") "; done
	printf ' (rounds: %s)' "${out% }"
}

# floor_ratio COLD WARM FLOOR: COLD / the larger of WARM and FLOOR (keys),
# or "": how near a cold backup came to what the CPU (warm) and the disk
# (disk_floor) allow, whichever bounds it on this machine.
floor_ratio() {
	if have "$1" && have "$2" && have "$3"; then
		calc "${M[$1]} / (${M[$2]} > ${M[$3]} ? ${M[$2]} : ${M[$3]})"
	fi
}

# ratio A_KEY B_KEY: A/B or "".
ratio() { if have "$1" && have "$2"; then calc "${M[$1]} / ${M[$2]}"; fi; }
rstr() { if [[ -n $1 ]]; then fmt2 "$1"; else printf 'n/a'; fi; }

report() {
	local b=$SET_BYTES fb=$FILES_BYTES r1 r2 v1 d

	# Throughput ratios are inverse time ratios (same bytes). The headline
	# figures are cold (every timed step starts with the page cache
	# emptied); the warm ones are information, except the cold/warm ratio
	# (reading overlapped with the CPU work) and the s2 codec's target,
	# which is set warm.
	check "first backup" "ratio vs restic" "$(ratio restic.first.s recall.first.s)" ">=" 3
	v1=$V
	check "first backup" "vs borg" "$(ratio borg.first.s recall.first.s)" ">=" 2.5
	row "first backup, cold" "recall $(tput_str "$b" recall.first.s)  restic $(tput_str "$b" restic.first.s)  borg $(tput_str "$b" borg.first.s)  $v1$(rounds restic.first recall.first)  $V"
	check "first backup" "recall cold/warm" "$(ratio recall.first.s recall.warm.s)" "<=" 1.2
	row "" "recall warm $(tput_str "$b" recall.warm.s)  $V$(rounds recall.first recall.warm)"
	check "first backup" "recall cold / larger of warm and disk floor" "$(floor_ratio recall.first.s recall.warm.s floor.set.s)" "<=" 1.2 extra
	row "" "disk floor $(sec_str floor.set.s) (read the set while writing its store's bytes, no tool)  $V"
	check "first backup, warm" "ratio vs restic warm" "$(ratio restic.warm.s recall.warm.s)" ">=" 4 extra
	row "first backup, warm" "recall $(tput_str "$b" recall.warm.s)  restic $(tput_str "$b" restic.warm.s)  $V"
	check "first backup, warm, --compression s2" "ratio vs restic warm" "$(ratio restic.warm.s recalls2.warm.s)" ">=" 4
	v1=$V
	check "first backup, cold, --compression s2" "cold vs restic cold" "$(ratio restic.first.s recalls2.first.s)" ">=" 3 extra
	row "first backup, s2" "recall --compression s2 warm $(tput_str "$b" recalls2.warm.s), cold $(tput_str "$b" recalls2.first.s)  $v1$(rounds restic.warm recalls2.warm)  $V"

	check "files set: first backup" "ratio vs restic" "$(ratio files.restic.first.s files.recall.first.s)" ">=" 3
	v1=$V
	check "files set: first backup" "recall cold/warm" "$(ratio files.recall.first.s files.recall.warm.s)" "<=" 1.2
	row "files: 1st backup" "recall $(tput_str "$fb" files.recall.first.s) (warm $(tput_str "$fb" files.recall.warm.s))  restic $(tput_str "$fb" files.restic.first.s)  $v1$(rounds files.restic.first files.recall.first)  $V$(rounds files.recall.first files.recall.warm)"
	check "files set: first backup" "recall cold / larger of warm and disk floor" "$(floor_ratio files.recall.first.s files.recall.warm.s floor.files.s)" "<=" 1.2 extra
	row "" "disk floor $(sec_str floor.files.s) (read the files set while writing its store's bytes, no tool)  $V"
	check "files set: restore" "ratio vs restic" "$(ratio files.restic.restore.s files.recall.restore.s)" ">=" 3
	row "files: restore" "recall $(tput_str "$fb" files.recall.restore.s)  restic $(tput_str "$fb" files.restic.restore.s)  $V$(rounds files.restic.restore files.recall.restore)"

	check "first backup, recall --encrypt" "ratio vs restic" "$(ratio restic.first.s recallenc.first.s)" ">=" 4 extra
	v1=$V
	check "first backup, recall --encrypt" "vs borg" "$(ratio borg.first.s recallenc.first.s)" ">=" 2.5 extra
	row "first backup (enc)" "recall --encrypt $(tput_str "$b" recallenc.first.s)  $v1  $V"

	check "unchanged re-backup" "time ratio vs restic" "$(ratio recall.rebackup.s restic.rebackup.s)" "<=" 0.5
	row "unchanged re-backup" "recall $(sec_str recall.rebackup.s)  restic $(sec_str restic.rebackup.s)  borg $(sec_str borg.rebackup.s)  $V"

	check "restore" "ratio vs restic" "$(ratio restic.restore.s recall.restore.s)" ">=" 3
	row "restore" "recall $(tput_str "$b" recall.restore.s)  restic $(tput_str "$b" restic.restore.s)  borg $(tput_str "$b" borg.restore.s)  $V$(rounds restic.restore recall.restore)"

	check "peak RSS first backup" "ratio vs restic" "$(ratio recall.first.rss restic.first.rss)" "<=" 1
	row "peak RSS 1st backup" "recall $(rss_str recall.first.rss)  restic $(rss_str restic.first.rss)  borg $(rss_str borg.first.rss)  $V"
	check "peak RSS first backup, recall --encrypt" "ratio vs restic" "$(ratio recallenc.first.rss restic.first.rss)" "<=" 1 extra
	row "peak RSS (enc)" "recall --encrypt $(rss_str recallenc.first.rss)  $V"

	d=$(fmt2 "$(calc "$SINGLE_BYTES / 1073741824")")
	check "single ${d} GiB file" "ratio vs chunker-only" "$(ratio chunker.single.s recall.single.s)" ">=" 0.75
	row "single ${d} GiB file" "recall $(tput_str "$SINGLE_BYTES" recall.single.s)  chunker-only $(tput_str "$SINGLE_BYTES" chunker.single.s)  $V"

	if have recall.ins.growth; then
		r1=$(calc "100 * ${M[recall.ins.growth]} / $INS_BYTES")
		d="recall store +$(fmt1 "$(calc "${M[recall.ins.growth]} / 1048576")") MiB after ${INS_N}x4 KiB insertions in a $(fmt1 "$(calc "$INS_BYTES / 1048576")") MiB file ="
	else
		r1=
		d="recall n/a ($(why recall.ins.growth))  growth % of file"
	fi
	check "insertions growth" "$d" "$r1" "<=" 20
	row "insertions growth" "${V/ (target <=20)/% (target <=20%)}"

	report_s3

	if [[ -n $MOUNT_OK ]]; then
		local fb=$INS_BYTES
		check "mount 1 GiB first read" "ratio vs restic mount" "$(ratio mount.restic.read.s mount.recall.read.s)" ">=" 4
		v1=$V
		check "mount 1 GiB first read" "vs recall restore" "$(ratio recall.restore1g.s mount.recall.read.s)" ">=" 0.7
		row "mount 1GiB read" "recall mount $(tput_str "$fb" mount.recall.read.s)  restic mount $(tput_str "$fb" mount.restic.read.s)  recall restore $(tput_str "$fb" recall.restore1g.s)  $v1  $V"
		if ((${#PAIRS[@]})); then
			local med
			med=$(printf '%s\n' "${PAIRS[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
			check "mount 1 GiB first read" "median of ${#PAIRS[@]} restore/mount pairs" "$(fmt2 "$med")" ">=" 0.7 extra
			row "" "pairs, restore time / mount read time: $(fmt2s "${PAIRS[@]}") $V"
		fi
		check "mount small-file tar" "speed ratio vs restic mount" "$(ratio mount.restic.tar.s mount.recall.tar.s)" ">=" 5
		row "mount small-file tar" "recall mount $(sec_str mount.recall.tar.s)  restic mount $(sec_str mount.restic.tar.s)  $V"
	else
		row "mount" "skipped: $MOUNT_WHY"
		CHECKS_JSON+=("{\"name\":\"mount\",\"skipped\":$(json_str "$MOUNT_WHY"),\"ratio\":null,\"pass\":null,\"counted\":false}")
	fi

	# The mount's Go benchmarks: absolute targets, best run judged.
	# runs KEY UNIT: every run's value, or why there is none.
	runs() { if [[ -n ${GORUNS[$1]:-} ]]; then printf '%s%s' "$(fmt2s ${GORUNS[$1]})" "$2"; else printf 'n/a (%s)' "$(why "$1")"; fi; }
	check "listing 100k entries" "seconds, best" "$(val go.list100k.s)" "<=" 1
	row "listing 100k entries" "names $(runs go.list100k.s s)  $V"
	check "listing 100k entries with attributes" "seconds, best" "$(val go.list100k.attrs.s)" "<=" 1 extra
	row "" "names and attributes (ls -l) $(runs go.list100k.attrs.s s)  $V"
	check "ls of 1,000 points" "ms, best" "$(val go.points1000.ms)" "<=" 200
	row "ls 1,000 points" "$(runs go.points1000.ms ms)  $V"
	check "mount ready, 1,000 points" "ms, best" "$(val go.ready1000.ms)" "<=" 1000
	row "mount ready" "with 1,000 points $(runs go.ready1000.ms ms)  $V"
	check "random 4 KiB reads of a 4 GiB file, cold" "median ms, best" "$(val go.random4k.ms)" "<=" 2
	row "random 4 KiB reads" "median $(runs go.random4k.ms ms) (p90 $(runs go.random4k.p90.ms ms))  $V"
	if [[ -n ${GORUNS[go.seqread.mbps]:-} ]]; then
		row "" "first read of the 4 GiB file through a fresh mount (Go benchmark, info): $(for r in ${GORUNS[go.seqread.mbps]}; do printf '%.0f ' "$r"; done)MB/s"
	fi
	if ((${#HOSTREF[@]})); then
		local refbest
		refbest=$(printf '%s
' "${HOSTREF[@]}" | sort -g | head -n 1)
		row "host reference" "tar of set/small from the page cache, no backup tool: $(fmt2s "${HOSTREF[@]}")s (one per round)"
		if have mount.recall.tar.s; then
			row "" "recall mount small-file tar / host reference: $(fmt2 "$(calc "${M[mount.recall.tar.s]} / $refbest")")x (info: the mount's cost over the kernel's own)"
		fi
	fi

	# Correctness of restores (untimed diffs).
	local k v ok=""
	for k in restic.restore borg.restore recall.restore recall.restore1g files.restic.restore files.recall.restore s3.restic.restore s3.recall.restore mount.recall; do
		if have "$k.ok"; then
			v=MISMATCH
			[[ ${M[$k.ok]} != 1 ]] || v=ok
			ok+="$k=$v "
		fi
	done

	local out=$BENCH_DIR/results.txt steal
	steal=$(cpu_ticks | awk -v t0="$TICKS0" 'BEGIN { split(t0, a, " ") } { d = $1 - a[1]; printf "%.1f", (d > 0) ? 100 * ($2 - a[2]) / d : 0 }')
	{
		echo "recall benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host $(hostname)  $(nproc) cores  $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
		echo "versions: recall $(recall_version | grep . || echo '(no version command)')${RECALL_BROKEN:+ (unusable: $RECALL_BROKEN)}; $(restic version 2>/dev/null | cut -d' ' -f1-2); $(borg --version 2>/dev/null)"
		local load1
		load1=$(cut -d' ' -f1 /proc/loadavg)
		# The load at the end is mostly this run's own work; what says
		# the machine was shared is the load before it and the steal.
		echo "machine load (1 min avg) at start $LOAD0, at end $load1 (this run's own work included); CPU time taken by the host (steal) ${steal}%; best of $BENCH_REPEAT round(s)$(awk -v a="$LOAD0" -v s="$steal" -v n="$(nproc)" 'BEGIN { if (a > n / 2 || s > 5) print "  WARNING: machine busy, results are noisy (try more rounds, BENCH_REPEAT, or a quieter time)" }')"
		echo "data: scale $BENCH_SCALE seed $BENCH_SEED; set $(fmt1 "$(calc "$SET_BYTES / 1048576")") MiB in $SET_FILES files; files set $(fmt1 "$(calc "$FILES_BYTES / 1048576")") MiB in $FILES_FILES files; single file $(fmt1 "$(calc "$SINGLE_BYTES / 1048576")") MiB; insertion file $(fmt1 "$(calc "$INS_BYTES / 1048576")") MiB + $INS_N insertions (MB = 10^6 bytes)"
		echo "note: restic (repo v2, zstd auto) and borg (repokey, lz4) encrypt by default; recall's default store is unencrypted,"
		echo "      so 'first backup (enc)' repeats recall's first backup on an 'init --encrypt' store for a like-for-like comparison."
		if [[ -n $COLD_OK ]]; then
			echo "cold: every timed step starts after sync and dropping the page cache; figures marked warm had their data read into it first"
		else
			echo "WARNING: the page cache was not dropped (BENCH_COLD=0 or not root): the figures called cold are not"
		fi
		[[ -z $ok ]] || echo "verification vs source (untimed diff/cmp): $ok"
		for n in "${NOTES[@]}"; do echo "note: $n"; done
		echo
		printf '%s\n' "${CHECKS_TXT[@]}"
		echo
		echo "summary: $NPASS PASS, $NFAIL FAIL, $NNA n/a   (total bench time $(($(date +%s) - T0))s)"
	} | tee "$out"

	local json=$BENCH_DIR/results.json first=1
	{
		printf '{\n  "time": "%s",\n  "scale": %s,\n  "seed": %s,\n  "repeat": %d,\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$BENCH_SCALE" "$(json_str "$BENCH_SEED")" "$BENCH_REPEAT"
		printf '  "host": {"name": %s, "cores": %d, "mem_kib": %d, "load_start": %s, "load_end": %s, "steal_pct": %s},\n' "$(json_str "$(hostname)")" "$(nproc)" \
			"$(awk '/MemTotal/ { print $2 }' /proc/meminfo)" "$LOAD0" "$(cut -d' ' -f1 /proc/loadavg)" "$steal"
		printf '  "mount_restore_pairs": [%s],\n' "$(IFS=,; printf '%s' "${PAIRS[*]}")"
		printf '  "host_reference_tar_s": [%s],\n' "$(IFS=,; printf '%s' "${HOSTREF[*]}")"
		printf '  "s3": {"objectstore": "bluestore", "block_bytes": %s, "connections": %d, "object_bytes": %d, "skipped": %s, "put_mbps_runs": [%s], "get_mbps_runs": [%s]},\n' \
			"$S3_BLOCK" "$S3_CONNS" $((16 << 20)) "$(if [[ -n $S3_SKIPPED ]]; then json_str "$S3_SKIPPED"; else echo null; fi)" \
			"$(IFS=,; printf '%s' "${S3_PUT_RUNS[*]}")" "$(IFS=,; printf '%s' "${S3_GET_RUNS[*]}")"
		printf '  "go_runs": {'
		json_lists GORUNS
		first=1
		printf '  "versions": {"recall": %s, "restic": %s, "borg": %s},\n' \
			"$(json_str "$(recall_version)")" "$(json_str "$(restic version 2>/dev/null || true)")" "$(json_str "$(borg --version 2>/dev/null || true)")"
		printf '  "runs": {'
		json_lists RUNS
		first=1
		printf '  "measurements": {'
		for k in $(printf '%s\n' "${!M[@]}" | sort); do
			((first)) || printf ','
			first=0
			printf '\n    %s: %s' "$(json_str "$k")" "${M[$k]}"
		done
		printf '\n  },\n  "errors": {'
		first=1
		for k in $(printf '%s\n' "${!E[@]}" | sort); do
			((first)) || printf ','
			first=0
			printf '\n    %s: %s' "$(json_str "$k")" "$(json_str "${E[$k]}")"
		done
		printf '\n  },\n  "checks": [\n    '
		local IFS=$'\n'
		printf '%s' "${CHECKS_JSON[*]}" | sed ':a;N;$!ba;s/\n/,\n    /g'
		printf '\n  ],\n  "pass": %d, "fail": %d, "na": %d,\n  "ok": %s\n}\n' "$NPASS" "$NFAIL" "$NNA" "$([[ $NFAIL == 0 && $NNA == 0 ]] && echo true || echo false)"
	} >"$json"
	log "results written to $out and $json"
}

# ---------------------------------------------------------------- main
declare -A SECTION_KEYS=(
	[restic]="restic.first.s restic.first.rss restic.rebackup.s restic.restore.s restic.warm.s"
	[borg]="borg.first.s borg.first.rss borg.rebackup.s borg.restore.s"
	[recall]="recall.first.s recall.first.rss recall.rebackup.s recall.restore.s recall.warm.s"
	[recall-enc]="recallenc.first.s recallenc.first.rss"
	[recall-s2]="recalls2.warm.s recalls2.first.s"
	[files]="files.restic.first.s files.restic.restore.s files.recall.first.s files.recall.first.rss files.recall.restore.s files.recall.warm.s"
	[single]="recall.single.s chunker.single.s"
	[insert]="recall.ins.growth"
)

main() {
	mkdir -p "$REPOS" "$RESTORE" "$WORK" "$MNT" "$LOGS" "$CACHE"
	rm -f "$LOGS"/*
	install_tools
	log "restic: $(restic version | cut -d' ' -f1-2); $(borg --version)"
	restic version | grep -q '^restic 0\.14\.' || NOTES+=("restic is not 0.14: $(restic version | cut -d' ' -f2)")
	borg --version | grep -q '^borg 1\.2\.' || NOTES+=("borg is not 1.2: $(borg --version)")
	check_recall
	if [[ -n $RECALL_BROKEN ]]; then
		log "recall unusable: $RECALL_BROKEN (recall results will be n/a)"
	fi
	check_mount
	gen_data
	log "data: set $SET_BYTES bytes / $SET_FILES files; files set $FILES_BYTES bytes / $FILES_FILES files; single $SINGLE_BYTES; insertion file $INS_BYTES"
	setup_restore_fs

	local s round
	for ((round = 1; round <= BENCH_REPEAT; round++)); do
		for s in restic borg recall recall-enc recall-s2 files single insert; do
			if has_section "$s"; then
				log "=== $s (round $round/$BENCH_REPEAT)"
				"section_${s//-/_}"
			else
				na ${SECTION_KEYS[$s]} "section not selected"
			fi
		done
		log "=== host reference (round $round/$BENCH_REPEAT)"
		host_reference
		log "=== mount (round $round/$BENCH_REPEAT)"
		bench_mount
	done
	if has_section s3; then
		section_s3
	else
		S3_SKIPPED="section not selected"
		na "${S3_KEYS[@]}" "$S3_SKIPPED"
	fi
	if has_section mountgo; then
		section_mountgo
	else
		na "${GO_KEYS[@]}" "section not selected"
	fi
	report
	umount_restore_fs
	rmrf "$RESTORE"
}

main "$@"
