package main

// The dependency direction of recall's packages, top to bottom:
//
//	cmd/recall              the command line: flags, output, exit codes
//	fs                      the mount: reads through engine's read types
//	engine                  backup, restore, verify, points, jobs, locks
//	chunkstore              blobs, packs, index, encryption
//	chunkstore/backend/...  where the files are: local disk, object store, tape
//	internal/...            helpers any layer may use
//
// An import may go down, skipping layers (cmd may name chunkstore's ID),
// never up or sideways. A package may always import the packages below it
// in the tree (cmd/recall its own cmd/recall/x), whatever the rules say. fs may import chunkstore for its ID type and
// error values, which engine does not re-export; that fs only reads is
// enforced by types (engine hands it a reader), not by imports, but it
// must never reach a backend and open storage itself.
//
// A pattern is an import path relative to the module ("engine" is
// github.com/recall-backup/recall/engine), or a full path when its first
// element has a dot ("github.com/hanwen/go-fuse/v2"). "x/..." matches x
// and every package below it; "..." alone matches every package of the
// module. A rule may name packages that do not exist yet: it holds from
// the day they do.
var rules = []rule{
	{
		from: "...",
		deny: []string{"cmd/..."},
		why:  "nothing imports cmd: what the command line does and a server will also need belongs in engine",
	},
	{
		from: "engine/...",
		deny: []string{"fs/..."},
		why:  "engine is below fs: fs reads through engine, and a server runs engine with no mount",
	},
	{
		from: "chunkstore/...",
		deny: []string{"engine/...", "fs/..."},
		why:  "chunkstore is below engine: it stores blobs and knows nothing of trees, points or mounts",
	},
	{
		from: "chunkstore/...",
		deny: []string{"github.com/hanwen/go-fuse/...", "tapefs/..."},
		why:  "chunkstore knows nothing of FUSE or tape: a tape tier is a backend behind chunkstore/backend's interface",
	},
	{
		from:   "chunkstore/backend/...",
		deny:   []string{"chunkstore/..."},
		except: []string{"chunkstore/backend/..."},
		why:    "a backend is below the store: it moves files and knows nothing of blobs, packs or keys",
	},
	{
		from: "fs/...",
		deny: []string{"chunkstore/backend/..."},
		why:  "fs reads through engine's read types and never opens storage itself",
		// The tests build the stores they mount, with whatever it takes.
		codeOnly: true,
	},
	{
		from:   "internal/...",
		deny:   []string{"..."},
		except: []string{"internal/..."},
		why:    "internal packages are helpers below every layer: importing one would tie all their users to it",
	},
	{
		from: "engine",
		deny: []string{"engine/server/..."},
		why:  "the server runs engine's functions, as the command line does: engine never calls back into it",
	},
	{
		from:   "tapefs/...",
		deny:   []string{"..."},
		except: []string{"tapefs/...", "internal/...", "chunkstore/backend"},
		why:    "tapefs is a library of drives, changers and the on-tape format: engine writes points to tape through it, so it knows nothing of stores, points or jobs (it may implement the storage seam, chunkstore/backend)",
	},
	{
		from: "engine/wsb",
		deny: []string{"...", "github.com/..."},
		why:  "engine/wsb reads Windows Server Backup trees through io/fs with the standard library only: ingestion, the shares and bmr versions all use it, and its tests' generator (internal/wsbgen) is test data, never code",
		// The tests generate the trees they read.
		codeOnly: true,
	},
	// No program may depend on internal/cephtest but bench's: bench/cephup
	// starts the cluster make bench measures against. A rule has one from,
	// so this is one per top directory (DESIGN.md fixes them) but bench.
	noCephtest("cmd/..."), noCephtest("engine/..."), noCephtest("chunkstore/..."), noCephtest("fs/..."),
	noCephtest("tapefs/..."), noCephtest("integration/..."), noCephtest("internal/..."),
}

func noCephtest(from string) rule {
	return rule{
		from:     from,
		deny:     []string{"internal/cephtest"},
		why:      "internal/cephtest starts Ceph daemons for tests and make bench: no other program may depend on it",
		codeOnly: true,
	}
}
