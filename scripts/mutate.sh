#!/bin/sh
# Mutation check: applies each mutation of scripts/mutations.txt (a
# plausible bug, see the file's head) to a copy of the tree, runs the tests
# it names, and prints which mutations the tests kill and which survive.
# A survivor is a claim no test checks.
#
#   scripts/mutate.sh                  every mutation, its named packages
#   MUTATE_ONLY=name scripts/mutate.sh one mutation (a comma list for several)
#   MUTATE_FULL=1                      go test ./... for each instead
#   MUTATE_DRY=1                       only apply and compile each (checks the list)
#   MUTATE_TIMEOUT=10m                 go test -timeout per mutation
#   MUTATE_FILE=path                   another list
#
# The working tree is never touched: the files git knows (and untracked
# ones it does not ignore, so uncommitted work counts) are copied to a
# temporary directory once, and each mutation is applied there and undone
# after its run. A mutation counts as killed when go test fails; one that
# does not compile is reported "invalid" (fix the mutation). "killed"
# assumes the suite passes unmutated (make test).
#
# Exit status: 0 once the table is printed; 1 when a mutation's "before"
# text is no longer in the code (the list needs updating: the table says
# which) or the list cannot be parsed.
set -eu
GO=${GO:-go}
root=$(cd "$(dirname "$0")/.." && pwd)
list=${MUTATE_FILE:-$root/scripts/mutations.txt}
timeout=${MUTATE_TIMEOUT:-10m}

work=$(mktemp -d "${TMPDIR:-/tmp}/recall-mutate.XXXXXX")
tree=$work/tree
logs=$work/logs
mkdir -p "$tree" "$logs"
cleanup() { rm -rf "$tree" "$work/orig" "$work/tool.pl"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# The list's parser and the literal search-and-replace: perl, because sed
# cannot match multi-line literal text and perl is on every Debian system.
cat >"$work/tool.pl" <<'EOF'
use strict;
use warnings;
my ($cmd, $list, $name, $root, $orig) = @ARGV;
open(my $fh, '<', $list) or die "mutate: $list: $!\n";
my @lines = <$fh>;
chomp @lines;
my (@muts, %seen, $m, $e);
my $mode = '';
for my $i (0 .. $#lines) {
	my $l = $lines[$i];
	my $where = "$list:" . ($i + 1);
	if ($mode ne '') {
		if ($mode eq 'before' && $l eq '--- after') { $mode = 'after'; next }
		if ($mode eq 'after' && $l eq '--- end') { $mode = ''; next }
		die "mutate: $where: '$l' out of place\n" if $l =~ /^--- (before|after|end)$/;
		push @{ $e->{$mode} }, $l;
		next;
	}
	next if $l =~ /^\s*(#.*)?$/;
	if ($l =~ /^mutation\s+(\S+)\s*$/) {
		die "mutate: $where: mutation $1 is listed twice\n" if $seen{$1}++;
		$m = { name => $1, edits => [], at => $where };
		push @muts, $m;
		$e = undef;
		next;
	}
	die "mutate: $where: '$l' before the first 'mutation NAME' line\n" unless $m;
	if ($l =~ /^test\s+(.+?)\s*$/) { $m->{test} = $1; next }
	if ($l =~ /^why\s+(.+?)\s*$/) { $m->{why} .= ($m->{why} ? ' ' : '') . $1; next }
	if ($l =~ /^file\s+(\S+)\s*$/) {
		$e = { file => $1, before => [], after => [], open => 1 };
		push @{ $m->{edits} }, $e;
		next;
	}
	if ($l eq '--- before') {
		die "mutate: $where: '--- before' needs a 'file PATH' line first\n" unless $e && $e->{open};
		$e->{open} = 0;
		$mode = 'before';
		next;
	}
	die "mutate: $where: cannot read '$l'\n";
}
die "mutate: $list: ends inside a '--- $mode' section\n" if $mode ne '';
for my $x (@muts) {
	die "mutate: $x->{at}: mutation $x->{name} has no 'test' line\n" unless $x->{test};
	die "mutate: $x->{at}: mutation $x->{name} has no edit\n" unless @{ $x->{edits} };
	for my $y (@{ $x->{edits} }) {
		die "mutate: $x->{at}: mutation $x->{name}: an edit of $y->{file} has no '--- before' text\n" unless @{ $y->{before} };
	}
}
if ($cmd eq 'list') {
	print "$_->{name}\t$_->{test}\n" for @muts;
	exit 0;
}
my ($mut) = grep { $_->{name} eq $name } @muts;
die "mutate: no mutation named $name in $list\n" unless $mut;
if ($cmd eq 'why') {
	print(($mut->{why} // ''), "\n");
	exit 0;
}
die "mutate: unknown command $cmd\n" unless $cmd eq 'apply';
# Every edit is checked before any file is written: a stale mutation
# leaves the tree as it was.
my (%text, @todo);
for my $y (@{ $mut->{edits} }) {
	my $path = "$root/$y->{file}";
	unless (exists $text{$y->{file}}) {
		open(my $in, '<', $path) or die "mutate: $name: $y->{file}: $!\n";
		local $/;
		$text{$y->{file}} = <$in>;
		close $in;
	}
	my $before = join("\n", @{ $y->{before} }) . "\n";
	my $after = @{ $y->{after} } ? join("\n", @{ $y->{after} }) . "\n" : '';
	my ($n, $at, $pos) = (0, -1, 0);
	while ((my $k = index($text{$y->{file}}, $before, $pos)) >= 0) {
		$n++;
		$at = $k;
		$pos = $k + 1;
	}
	if ($n != 1) {
		print STDERR "mutate: $name: $y->{file}: the 'before' text is found $n times, not once:\n$before";
		exit 3;
	}
	substr($text{$y->{file}}, $at, length($before)) = $after;
}
for my $f (keys %text) {
	my $dir = "$orig/$f";
	$dir =~ s{/[^/]*$}{};
	system('mkdir', '-p', $dir) == 0 or die "mutate: mkdir $dir\n";
	system('cp', '-p', "$root/$f", "$orig/$f") == 0 or die "mutate: save $f\n";
	open(my $out, '>', "$root/$f") or die "mutate: $f: $!\n";
	print $out $text{$f};
	close $out or die "mutate: $f: $!\n";
}
EOF
tool() { perl "$work/tool.pl" "$@"; }

mutations=$(tool list "$list") || exit 1
if [ -n "${MUTATE_ONLY:-}" ]; then
	want=$(echo "$MUTATE_ONLY" | tr ',' ' ')
	for w in $want; do
		echo "$mutations" | cut -f1 | grep -qx "$w" || { echo "mutate: no mutation named $w in $list" >&2; exit 1; }
	done
	mutations=$(echo "$mutations" | while IFS='	' read -r n t; do
		for w in $want; do
			if [ "$n" = "$w" ]; then printf '%s\t%s\n' "$n" "$t"; fi
		done
	done)
fi

(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - 2>/dev/null) | tar -C "$tree" -xf -

stale=0
table=$work/table
: >"$table"
count=$(echo "$mutations" | wc -l)
i=0
echo "$mutations" | while IFS='	' read -r name args; do
	i=$((i + 1))
	if [ "${MUTATE_FULL:-}" = 1 ]; then args=./...; fi
	log=$logs/$name.log
	rm -rf "$work/orig"
	start=$(date +%s)
	if ! tool apply "$list" "$name" "$tree" "$work/orig" 2>"$log"; then
		cat "$log" >&2
		printf '%s\t%s\t%s\t%s\n' "$name" stale "'before' text not found (see above)" - >>"$table"
		continue
	fi
	echo "mutate [$i/$count] $name: go test $args" >&2
	if [ "${MUTATE_DRY:-}" = 1 ]; then
		set -- -count=1 -run '^$'
	else
		set -- -count=1 -failfast -timeout "$timeout"
	fi
	# $args is word-split on purpose: it is a list of go test arguments.
	# shellcheck disable=SC2086
	if (cd "$tree" && $GO test "$@" $args) >>"$log" 2>&1; then
		result=survived
		if [ "${MUTATE_DRY:-}" = 1 ]; then result=compiles; fi
		first=-
	elif grep -q '\[build failed\]\|\[setup failed\]' "$log"; then
		result=invalid
		first="does not compile: $(grep -m1 '\.go:[0-9]*:[0-9]*: ' "$log" | sed 's/^[^ ]* //')"
	else
		result=killed
		if grep -q '^panic: test timed out' "$log"; then
			first="timeout in $(grep -m1 -A2 '^running tests:' "$log" | sed -n 2p | awk '{print $1}')"
		else
			# The first failing test, narrowed to its first failing subtest.
			first=$(awk '/--- FAIL: / { for (i = 1; i < NF; i++) if ($i == "FAIL:") n = $(i + 1)
				if (best == "") best = n; else if (index(n, best "/") == 1) best = n }
				END { print best }' "$log")
			[ -n "$first" ] || first="$(grep -m1 '^FAIL	' "$log" | cut -f2) (no test named; see the log)"
		fi
	fi
	cp -a "$work/orig/." "$tree/"
	printf '%s\t%s\t%s\t%ss\n' "$name" "$result" "$first" "$(($(date +%s) - start))" >>"$table"
done

echo
printf '%-28s %-9s %-52s %s\n' MUTATION RESULT "FIRST FAILING TEST" TIME
while IFS='	' read -r name result first took; do
	printf '%-28s %-9s %-52s %s\n' "$name" "$result" "$first" "$took"
	if [ "$result" = stale ]; then stale=1; fi
done <"$table"
killed=$(grep -c '	killed	' "$table" || true)
survived=$(grep -c '	survived	' "$table" || true)
echo
echo "$killed killed, $survived survived of $(wc -l <"$table"); go test output of each in $logs"
exit $stale
