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
#                   2 GiB single file, 1 GiB file + copy with 100 4 KiB insertions)
#   BENCH_SEED      data set seed (default 1)
#   BENCH_SECTIONS  space separated subset of: restic borg recall recall-enc single insert mount
#                   (default: all)
#   BENCH_KEEP      1 = keep repositories and restore targets after the run
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
BENCH_SECTIONS=${BENCH_SECTIONS:-restic borg recall recall-enc single insert mount}
BENCH_KEEP=${BENCH_KEEP:-0}

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
log() { printf '[bench %4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
has_section() { [[ " $BENCH_SECTIONS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- results
declare -A M   # measurements: key -> number
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
mbps() { calc "$1 / $2 / 1000000"; } # bytes secs -> MB/s
have() { [[ -n ${M[$1]+x} ]]; }
setm() { M[$1]=$2; }
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

json_str() {
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\t'/ }
	s=${s//$'\n'/ }
	s=${s//$'\r'/ }
	printf '"%s"' "$s"
}

# check NAME DETAIL RATIO OP TARGET [extra]
#   Records a PASS/FAIL line. RATIO empty => n/a (DETAIL explains why).
#   OP is ">=" or "<=". The "extra" flag keeps it out of the pass count.
check_result() {
	local name=$1 detail=$2 ratio=$3 op=$4 target=$5 extra=${6:-}
	local verdict pass
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
	[[ -z $extra ]] || verdict="$verdict (extra, not counted)"
	CHECKS_TXT+=("$(printf '%-22s %s' "$name" "$detail")  -> $verdict")
	CHECKS_JSON+=("{\"name\":$(json_str "$name"),\"detail\":$(json_str "$detail"),\"ratio\":${ratio:-null},\"op\":$(json_str "$op"),\"target\":$target,\"pass\":$pass,\"extra\":$([[ -n $extra ]] && echo true || echo false)}")
}

# ---------------------------------------------------------------- timing
# timed KEY CMD...: run CMD under /usr/bin/time, log output to
# $LOGS/KEY.log, set M[KEY.s] (wall seconds) and M[KEY.rss] (peak RSS KiB).
# On failure records E[KEY.s] and returns 1 (never aborts the script).
timed() {
	local key=$1
	shift
	local tf=$LOGS/$key.time lf=$LOGS/$key.log rc=0
	log "  $key: $*"
	/usr/bin/time -f '%e %M' -o "$tf" "$@" >"$lf" 2>&1 || rc=$?
	if ((rc != 0)); then
		local msg
		msg=$(grep -v '^[[:space:]]*$' "$lf" | tail -n 1 | cut -c1-160)
		E[$key.s]="exit $rc: ${msg:-no output} (see $lf)"
		E[$key.rss]=${E[$key.s]}
		log "  $key FAILED: ${E[$key.s]}"
		return 1
	fi
	local sec rss
	read -r sec rss < <(tail -n 1 "$tf")
	# %e has 10 ms resolution; avoid division by zero.
	sec=$(awk -v s="$sec" 'BEGIN { print (s < 0.01) ? 0.01 : s }')
	M[$key.s]=$sec
	M[$key.rss]=$rss
	log "  $key: ${sec}s, peak RSS ${rss} KiB"
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
		M[$key.ok]=1
	else
		M[$key.ok]=0
		log "  $key: restored data differs from source! (see $LOGS/$key.diff)"
	fi
}

# du_b DIR: apparent bytes of a directory tree.
du_b() { du -sb "$1" | awk '{ print $1 }'; }
# tree_bytes DIR: sum of regular file sizes.
tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'; }

# warm DIR/FILE: pull data into the page cache (nothing is dropped; this
# just makes sure no tool pays for a cold read the next one does not).
warm() { find "$@" -type f -print0 | xargs -0 -r cat >/dev/null; }

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

# ---------------------------------------------------------------- restic
section_restic() {
	local repo=$REPOS/restic
	rm -rf "$repo" "$CACHE/restic" "$RESTORE/restic"
	warm "$SET"
	log "restic: init"
	if ! restic -r "$repo" init >"$LOGS/restic.init.log" 2>&1; then
		na restic.first.s restic.first.rss restic.rebackup.s restic.restore.s "restic init failed (see $LOGS/restic.init.log)"
		return
	fi
	if timed restic.first restic -r "$repo" backup "$SET"; then
		timed restic.rebackup restic -r "$repo" backup "$SET" || true
		mkdir -p "$RESTORE/restic"
		if timed restic.restore restic -r "$repo" restore latest --target "$RESTORE/restic"; then
			restore_check restic.restore "$RESTORE/restic" "$SET"
		fi
	else
		na restic.rebackup.s restic.restore.s "first backup failed"
	fi
	rm -rf "$RESTORE/restic"
	M[restic.repo_bytes]=$(du_b "$repo")
	if [[ -n $MOUNT_OK ]]; then
		# Keep the repo for the mount section; one snapshot holding both
		# the set and the 1 GiB file so snapshots/latest has everything.
		log "restic: extra snapshot (set + 1 GiB file) for mount tests"
		local parent
		parent=$(restic -r "$repo" snapshots --json 2>/dev/null | grep -o '"id":"[0-9a-f]*"' | tail -n1 | cut -d'"' -f4 || true)
		restic -r "$repo" backup ${parent:+--parent "$parent"} "$SET" "$DATA/ins/a" >"$LOGS/restic.mountsnap.log" 2>&1 ||
			E[restic.mountsnap]="restic backup for mount failed (see $LOGS/restic.mountsnap.log)"
	else
		rmrf "$repo" "$CACHE/restic"
	fi
}

# ---------------------------------------------------------------- borg
section_borg() {
	local repo=$REPOS/borg
	rm -rf "$repo" "$CACHE/borg" "$RESTORE/borg"
	warm "$SET"
	log "borg: init -e repokey (default compression lz4)"
	if ! borg init -e repokey "$repo" >"$LOGS/borg.init.log" 2>&1; then
		na borg.first.s borg.first.rss borg.rebackup.s borg.restore.s "borg init failed (see $LOGS/borg.init.log)"
		return
	fi
	if timed borg.first borg create "$repo::first" "$SET"; then
		timed borg.rebackup borg create "$repo::second" "$SET" || true
		mkdir -p "$RESTORE/borg"
		local archive=second
		have borg.rebackup.s || archive=first
		# borg extract writes into the current directory.
		pushd "$RESTORE/borg" >/dev/null
		local rc=0
		timed borg.restore borg extract "$repo::$archive" || rc=1
		popd >/dev/null
		((rc)) || restore_check borg.restore "$RESTORE/borg" "$SET"
	else
		na borg.rebackup.s borg.restore.s "first backup failed"
	fi
	M[borg.repo_bytes]=$(du_b "$repo")
	rm -rf "$RESTORE/borg"
	rmrf "$repo" "$CACHE/borg"
}

# ---------------------------------------------------------------- recall
section_recall() {
	local home=$REPOS/recall keys=(recall.first.s recall.first.rss recall.rebackup.s recall.restore.s)
	if [[ -n $RECALL_BROKEN ]]; then
		na "${keys[@]}" "recall failed: $RECALL_BROKEN"
		return
	fi
	rm -rf "$home" "$RESTORE/recall"
	warm "$SET"
	log "recall: init (unencrypted default)"
	if ! recall --home "$home" init >"$LOGS/recall.init.log" 2>&1; then
		na "${keys[@]}" "recall failed: init: $(tail -n1 "$LOGS/recall.init.log" | cut -c1-120)"
		return
	fi
	if timed recall.first "$RECALL" --home "$home" backup --source set "$SET"; then
		timed recall.rebackup "$RECALL" --home "$home" backup --source set "$SET" || true
		if timed recall.restore "$RECALL" --home "$home" restore --source set latest --target "$RESTORE/recall"; then
			restore_check recall.restore "$RESTORE/recall" "$SET"
		fi
	else
		na recall.rebackup.s recall.restore.s "recall failed: first backup: ${E[recall.first.s]}"
	fi
	rm -rf "$RESTORE/recall"
	M[recall.store_bytes]=$(du_b "$home")
	if [[ -z $MOUNT_OK ]]; then
		rmrf "$home"
	fi
}

section_recall_enc() {
	local home=$REPOS/recall-enc
	if [[ -n $RECALL_BROKEN ]]; then
		na recallenc.first.s recallenc.first.rss "recall failed: $RECALL_BROKEN"
		return
	fi
	rm -rf "$home"
	warm "$SET"
	log "recall: init --encrypt"
	if ! recall --home "$home" init --encrypt >"$LOGS/recallenc.init.log" 2>&1; then
		na recallenc.first.s recallenc.first.rss "recall failed: init --encrypt: $(tail -n1 "$LOGS/recallenc.init.log" | cut -c1-120)"
		return
	fi
	timed recallenc.first "$RECALL" --home "$home" backup --source set "$SET" || true
	rmrf "$home"
}

section_single() {
	local home=$REPOS/recall-single
	log "single file: chunker-only baseline"
	warm "$SINGLE"
	if (cd "$ROOT" && go build -o "$BENCH_DIR/chunkeronly" ./bench/chunkeronly) >"$LOGS/chunkeronly.build.log" 2>&1; then
		local s
		if s=$("$BENCH_DIR/chunkeronly" "$SINGLE" 2>"$LOGS/chunkeronly.log"); then
			M[chunker.single.s]=$(awk -v s="$s" 'BEGIN { print (s < 0.001) ? 0.001 : s }')
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
	if ! recall --home "$home" init >"$LOGS/recall.single.init.log" 2>&1; then
		na recall.single.s "recall failed: init: $(tail -n1 "$LOGS/recall.single.init.log" | cut -c1-120)"
		return
	fi
	warm "$SINGLE"
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
	if ! recall --home "$home" init >"$LOGS/recall.ins.init.log" 2>&1; then
		na recall.ins.growth "recall failed: init: $(tail -n1 "$LOGS/recall.ins.init.log" | cut -c1-120)"
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
	M[recall.ins.growth]=$((after - before))
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
trap cleanup_mounts EXIT

# find_in DIR NAME TYPE: first match of NAME below DIR.
find_in() { find "$1" -maxdepth 14 -type "$3" -name "$2" -print -quit 2>/dev/null || true; }

# mount_reads PREFIX FILE SMALLDIR: the two timed reads through a mount.
mount_reads() {
	local p=$1 file=$2 small=$3
	if [[ -z $file ]]; then
		E[$p.read.s]="1 GiB file not found in mount"
	else
		timed "$p.read" cat "$file" || true
	fi
	if [[ -z $small ]]; then
		E[$p.tar.s]="small files dir not found in mount"
	else
		timed "$p.tar" bash -c 'tar cf - -C "$1" . | cat >/dev/null' _ "$small" || true
	fi
}

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
	if ! recall --home "$home" backup --source file1g "$DATA/ins/a" >"$LOGS/recall.file1g.log" 2>&1; then
		na mount.recall.read.s recall.restore1g.s "recall failed: backup of 1 GiB file (see $LOGS/recall.file1g.log)"
	else
		rm -rf "$RESTORE/recall1g"
		if timed recall.restore1g "$RECALL" --home "$home" restore --source file1g latest --target "$RESTORE/recall1g"; then
			restore_check recall.restore1g "$RESTORE/recall1g" "$DATA/ins/a"
		fi
		rm -rf "$RESTORE/recall1g"
	fi
	log "mount: recall mount"
	if timed recall.mount "$RECALL" --home "$home" mount "$MNT/recall"; then
		local f s
		f=$(find_in "$MNT/recall/file1g/latest" file.bin f)
		s=$MNT/recall/set/latest/small
		[[ -d $s ]] || s=$(find_in "$MNT/recall/set/latest" small d)
		have recall.restore1g.s || f= # no file1g point
		mount_reads mount.recall "$f" "$s"
		"$RECALL" umount "$MNT/recall" >"$LOGS/recall.umount.log" 2>&1 || log "recall umount failed (see $LOGS/recall.umount.log)"
		cleanup_mounts
	else
		na mount.recall.read.s mount.recall.tar.s "recall failed: mount: ${E[recall.mount.s]}"
	fi
	rmrf "$home"
}

# ---------------------------------------------------------------- report
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
# ratio A_KEY B_KEY: A/B or "".
ratio() { if have "$1" && have "$2"; then calc "${M[$1]} / ${M[$2]}"; fi; }
rstr() { if [[ -n $1 ]]; then fmt2 "$1"; else printf 'n/a'; fi; }

report() {
	local b=$SET_BYTES r1 r2 d

	# First backup: throughput ratio = time ratio inverted.
	r1=$(ratio restic.first.s recall.first.s)
	r2=$(ratio borg.first.s recall.first.s)
	d="recall $(tput_str "$b" recall.first.s)  restic $(tput_str "$b" restic.first.s)  borg $(tput_str "$b" borg.first.s)"
	check_result "first backup" "$d  ratio vs restic $(rstr "$r1") (target >=4)" "$r1" ">=" 4
	check_result "first backup" "ratio vs borg $(rstr "$r2") (target >=2.5)" "$r2" ">=" 2.5

	r1=$(ratio restic.first.s recallenc.first.s)
	r2=$(ratio borg.first.s recallenc.first.s)
	d="recall --encrypt $(tput_str "$b" recallenc.first.s)  ratio vs restic $(rstr "$r1") (target >=4)"
	check_result "first backup (enc)" "$d" "$r1" ">=" 4 extra
	check_result "first backup (enc)" "recall --encrypt ratio vs borg $(rstr "$r2") (target >=2.5)" "$r2" ">=" 2.5 extra

	r1=$(ratio recall.rebackup.s restic.rebackup.s)
	d="recall $(sec_str recall.rebackup.s)  restic $(sec_str restic.rebackup.s)  borg $(sec_str borg.rebackup.s)  time ratio vs restic $(rstr "$r1") (target <=0.5)"
	check_result "unchanged re-backup" "$d" "$r1" "<=" 0.5

	r1=$(ratio restic.restore.s recall.restore.s)
	d="recall $(tput_str "$b" recall.restore.s)  restic $(tput_str "$b" restic.restore.s)  borg $(tput_str "$b" borg.restore.s)  ratio vs restic $(rstr "$r1") (target >=3)"
	check_result "restore" "$d" "$r1" ">=" 3

	r1=$(ratio recall.first.rss restic.first.rss)
	d="recall $(rss_str recall.first.rss)  restic $(rss_str restic.first.rss)  borg $(rss_str borg.first.rss)  ratio vs restic $(rstr "$r1") (target <=1)"
	check_result "peak RSS first backup" "$d" "$r1" "<=" 1
	r1=$(ratio recallenc.first.rss restic.first.rss)
	check_result "peak RSS (enc)" "recall --encrypt $(rss_str recallenc.first.rss)  ratio vs restic $(rstr "$r1") (target <=1)" "$r1" "<=" 1 extra

	r1=$(ratio chunker.single.s recall.single.s)
	d="recall $(tput_str "$SINGLE_BYTES" recall.single.s)  chunker-only $(tput_str "$SINGLE_BYTES" chunker.single.s)  ratio $(rstr "$r1") (target >=0.75)"
	check_result "single $(fmt2 "$(calc "$SINGLE_BYTES / 1073741824")") GiB file" "$d" "$r1" ">=" 0.75

	if have recall.ins.growth; then
		r1=$(calc "100 * ${M[recall.ins.growth]} / $INS_BYTES")
		d="recall store +$(fmt1 "$(calc "${M[recall.ins.growth]} / 1048576")") MiB for ${INS_N}x4 KiB insertions in $(fmt1 "$(calc "$INS_BYTES / 1048576")") MiB = $(fmt1 "$r1")% (target <=20%)"
	else
		r1=
		d="n/a ($(why recall.ins.growth))"
	fi
	check_result "insertions growth" "$d" "$r1" "<=" 20

	if [[ -n $MOUNT_OK ]]; then
		local fb=$INS_BYTES
		r1=$(ratio mount.restic.read.s mount.recall.read.s)
		r2=$(ratio recall.restore1g.s mount.recall.read.s)
		d="recall mount $(tput_str "$fb" mount.recall.read.s)  restic mount $(tput_str "$fb" mount.restic.read.s)  recall restore $(tput_str "$fb" recall.restore1g.s)  ratio vs restic mount $(rstr "$r1") (target >=4)"
		check_result "mount 1GiB first read" "$d" "$r1" ">=" 4
		check_result "mount 1GiB first read" "ratio vs recall restore $(rstr "$r2") (target >=0.7)" "$r2" ">=" 0.7
		r1=$(ratio mount.restic.tar.s mount.recall.tar.s)
		d="recall mount $(sec_str mount.recall.tar.s)  restic mount $(sec_str mount.restic.tar.s)  speed ratio vs restic mount $(rstr "$r1") (target >=5)"
		check_result "mount small-file tar" "$d" "$r1" ">=" 5
	else
		CHECKS_TXT+=("$(printf '%-22s %s' "mount" "skipped: $MOUNT_WHY")")
		CHECKS_JSON+=("{\"name\":\"mount\",\"detail\":$(json_str "skipped: $MOUNT_WHY"),\"ratio\":null,\"op\":\"\",\"target\":null,\"pass\":null,\"extra\":false}")
	fi

	# Correctness of restores (untimed diffs).
	local k v ok=""
	for k in restic.restore borg.restore recall.restore recall.restore1g; do
		if have "$k.ok"; then
			v=MISMATCH
			[[ ${M[$k.ok]} != 1 ]] || v=ok
			ok+="${k%.restore*}${k#*.restore}=$v "
		fi
	done

	local out=$BENCH_DIR/results.txt
	{
		echo "recall benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host $(hostname)  $(nproc) cores  $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
		echo "versions: recall $(recall_version | grep . || echo '(no version command)')${RECALL_BROKEN:+ (unusable: $RECALL_BROKEN)}; $(restic version 2>/dev/null | cut -d' ' -f1-2); $(borg --version 2>/dev/null)"
		echo "data: scale $BENCH_SCALE seed $BENCH_SEED; set $(fmt1 "$(calc "$SET_BYTES / 1048576")") MiB in $SET_FILES files; single file $(fmt1 "$(calc "$SINGLE_BYTES / 1048576")") MiB; insertion file $(fmt1 "$(calc "$INS_BYTES / 1048576")") MiB + $INS_N insertions (MB = 10^6 bytes)"
		echo "note: restic (repo v2, zstd auto) and borg (repokey, lz4) encrypt by default; recall's default store is unencrypted,"
		echo "      so 'first backup (enc)' repeats recall's first backup on an 'init --encrypt' store for a like-for-like comparison."
		[[ -z $ok ]] || echo "restore verification (diff -r vs source): $ok"
		for n in "${NOTES[@]}"; do echo "note: $n"; done
		echo
		printf '%s\n' "${CHECKS_TXT[@]}"
		echo
		echo "summary: $NPASS PASS, $NFAIL FAIL, $NNA n/a   (total bench time $(($(date +%s) - T0))s)"
	} | tee "$out"

	local json=$BENCH_DIR/results.json first=1
	{
		printf '{\n  "time": "%s",\n  "scale": %s,\n  "seed": %s,\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$BENCH_SCALE" "$(json_str "$BENCH_SEED")"
		printf '  "host": {"name": %s, "cores": %d, "mem_kib": %d},\n' "$(json_str "$(hostname)")" "$(nproc)" "$(awk '/MemTotal/ { print $2 }' /proc/meminfo)"
		printf '  "versions": {"recall": %s, "restic": %s, "borg": %s},\n' \
			"$(json_str "$(recall_version)")" "$(json_str "$(restic version 2>/dev/null || true)")" "$(json_str "$(borg --version 2>/dev/null || true)")"
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
	[restic]="restic.first.s restic.first.rss restic.rebackup.s restic.restore.s"
	[borg]="borg.first.s borg.first.rss borg.rebackup.s borg.restore.s"
	[recall]="recall.first.s recall.first.rss recall.rebackup.s recall.restore.s"
	[recall-enc]="recallenc.first.s recallenc.first.rss"
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
	log "data: set $SET_BYTES bytes / $SET_FILES files; single $SINGLE_BYTES; insertion file $INS_BYTES"

	local s
	for s in restic borg recall recall-enc single insert; do
		if has_section "$s"; then
			log "=== $s"
			"section_${s//-/_}"
		else
			na ${SECTION_KEYS[$s]} "section not selected"
		fi
	done
	log "=== mount"
	bench_mount
	report
}

main "$@"
