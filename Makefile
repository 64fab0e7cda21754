# recall — build, demo, tests, benchmarks.
GO      ?= go
BIN     := bin/recall
PREFIX  ?= /usr/local
STATICCHECK_VERSION ?= v0.8.2
# Rounds of make bench; each figure is the best of them (a shared machine
# is noisy: one neighbour's burst decides a single round).
BENCH_REPEAT ?= 3

# Packages the tests need on a fresh Debian machine.
TEST_DEBS := fuse3 samba smbclient attr acl util-linux e2fsprogs fusefat dosfstools ceph-mon ceph-osd radosgw

.PHONY: all build demo test deps lint bench fuzz mutate install clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/recall

# demo: a store under ./demo, two backups of a sample tree with a change
# between, the list of points, the points mounted (a file as it was next to
# how it is now), and a restore of the older one.
demo: build
	scripts/demo.sh $(BIN)

# deps installs what the tests need when it is missing.
deps:
	@missing=""; \
	for c in fusermount3:fuse3 smbd:samba smbclient:smbclient setfattr:attr setfacl:acl losetup:util-linux mkfs.ext4:e2fsprogs qemu-img:qemu-utils mtx:mtx fusefat:fusefat mkfs.vfat:dosfstools ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw; do \
		command -v $${c%%:*} >/dev/null 2>&1 || missing="$$missing $${c#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Each fuzz target runs for FUZZTIME: in make test 5000 inputs (its seeds,
# the crashers kept under testdata/fuzz, and new ones: a few seconds; a
# count, because Go before 1.27 can fail a duration-limited run at its
# end, go.dev/issue/75804), a minute in make fuzz (make fuzz FUZZTIME=10m
# for longer).
FUZZTIME ?= 5000x

test: deps lint
	$(GO) test -count=1 -timeout 30m ./...
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

fuzz: FUZZTIME = 60s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# importcheck: the dependency direction (internal/importcheck/rules.go),
# before vet, which would report an upward import only as a cycle. Tests
# skip only through internal/testskip, which CI turns into failures.
# Tests that need hardware this machine lacks build only with a tag
# (tapehw: a real tape drive), so they are vetted here instead of skipped.
lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	@! grep -rnE '\.Skip(f|Now)?\(' --include='*.go' . | grep -v -e '^\./internal/testskip/' -e 'testskip\.Skip(' || { echo 'skip with testskip.Skip, not t.Skip: CI must fail where a test would not run'; exit 1; }
	$(GO) run ./internal/importcheck -go $(GO)
	$(GO) vet ./...
	$(GO) vet -tags tapehw ./tapefs # the real-drive conformance test stays compiled
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# bench: recall against restic and borg on generated data, and the mount's
# own Go benchmarks (listing, random reads, 1,000 points), each judged
# against its target in one table.
bench: build
	RECALL=$(CURDIR)/$(BIN) BENCH_REPEAT=$(BENCH_REPEAT) bench/run.sh
	$(GO) test ./chunkstore -run '^$$' -bench Chunker -benchtime 10x
	$(GO) test ./chunkstore -run '^$$' -bench IndexScale -benchtime 1x -timeout 60m
	$(GO) test ./chunkstore -run '^$$' -bench RefreshNewPoint -benchtime 20x
	$(GO) test ./chunkstore -run '^$$' -bench SessionFirstWriter -benchtime 20x
	$(GO) test ./engine -run '^$$' -bench 'BenchmarkGC$$' -benchtime 1x
	$(GO) test ./engine -run '^$$' -bench 'BenchmarkTape(Write|Restore)$$' -benchtime 4x

# mutate: applies each plausible bug of scripts/mutations.txt to a copy of
# the tree, runs the tests meant to catch it, and prints which survive.
# Not part of make test: it runs the named packages' tests once per
# mutation. MUTATE_ONLY=name runs one, MUTATE_FULL=1 runs ./... for each.
mutate:
	GO=$(GO) scripts/mutate.sh

# install: the binary, the mount helper, and the systemd unit with its
# sysusers.d (group recall) and tmpfiles.d (/run/recall) entries, where
# systemd looks for them under PREFIX (/usr/local/lib/systemd/system for
# the default). Then: systemd-sysusers; systemd-tmpfiles --create;
# systemctl daemon-reload; systemctl enable --now recall.
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/recall
	install -D -m 0755 scripts/mount.recall $(DESTDIR)/sbin/mount.recall
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|@PREFIX@|$(PREFIX)|g' dist/recall.service >$(DESTDIR)$(UNITDIR)/recall.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/recall.service
	install -D -m 0644 dist/recall.sysusers $(DESTDIR)$(SYSUSERSDIR)/recall.conf
	install -D -m 0644 dist/recall.tmpfiles $(DESTDIR)$(TMPFILESDIR)/recall.conf

clean:
	rm -rf bin demo
