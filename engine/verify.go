package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/recall-backup/recall/chunkstore"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	ReadData bool // read every pack, decrypt, decompress and re-hash every blob
	Log      func(format string, args ...any)
}

// Damage is one file or directory of one point that cannot be restored.
type Damage struct {
	Point  string `json:"point"`
	Source string `json:"source"`
	Path   string `json:"path"`
	Pack   string `json:"pack,omitempty"`
	Error  string `json:"error"`
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Points   int               `json:"points"`
	Trees    int               `json:"trees"`
	Chunks   int               `json:"chunks"`
	Packs    int               `json:"packs_read"`
	BadPacks map[string]string `json:"bad_packs,omitempty"`
	Damage   []Damage          `json:"damage,omitempty"`
}

// ErrVerifyFailed: verify found damage; the report says where.
var ErrVerifyFailed = errors.New("verification failed")

// Verify checks that every point's trees and chunks are reachable and
// indexed and their packs present; with ReadData it also reads back every
// blob of every pack. Damage is reported per point and path, naming the
// pack.
func Verify(ctx context.Context, r *Reader, opts VerifyOptions) (*VerifyReport, error) {
	st := r.st
	rep := &VerifyReport{BadPacks: map[string]string{}}
	badBlobs := map[chunkstore.ID]string{} // blob -> why
	badPack := map[chunkstore.ID]string{}  // whole pack unreadable
	if opts.ReadData {
		var ids []chunkstore.ID
		if err := st.ListPacks(func(id chunkstore.ID, _ int64) error { ids = append(ids, id); return nil }); err != nil {
			return nil, err
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, runtime.GOMAXPROCS(0))
		for _, id := range ids {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				entries, bad, err := st.CheckPack(id)
				mu.Lock()
				defer mu.Unlock()
				rep.Packs++
				if entries == nil && err != nil {
					badPack[id] = err.Error()
					rep.BadPacks[id.String()] = err.Error()
					return
				}
				if err != nil || len(bad) > 0 {
					why := fmt.Sprintf("%d of %d blobs unreadable", len(bad), len(entries))
					if err != nil {
						why = err.Error() + "; " + why
					}
					rep.BadPacks[id.String()] = why
					for _, b := range bad {
						badBlobs[b] = fmt.Sprintf("pack %s: blob %s fails its check", id, b.Short())
					}
				}
			}()
		}
		wg.Wait()
	}

	pts, err := r.Points()
	if err != nil {
		return nil, err
	}
	packExists := map[chunkstore.ID]bool{}
	seenTree := map[chunkstore.ID]bool{}
	seenChunk := map[chunkstore.ID]bool{}
	// chunkProblem reports why a chunk cannot be read, or "".
	chunkProblem := func(id chunkstore.ID) (string, string) {
		pack, ok := st.PackOf(id)
		if !ok {
			return "chunk " + id.Short() + " is not in the index", ""
		}
		if why, bad := badPack[pack]; bad {
			return why, pack.String()
		}
		if why, bad := badBlobs[id]; bad {
			return why, pack.String()
		}
		ex, ok := packExists[pack]
		if !ok {
			ex = st.HasPackFile(pack)
			packExists[pack] = ex
		}
		if !ex {
			return "pack is missing", pack.String()
		}
		return "", ""
	}
	for _, p := range pts {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		rep.Points++
		damage := func(path, pack, why string) {
			rep.Damage = append(rep.Damage, Damage{Point: p.ID.String(), Source: p.Source, Path: path, Pack: pack, Error: why})
		}
		var walk func(id chunkstore.ID, rel string)
		walk = func(id chunkstore.ID, rel string) {
			if why, pack := chunkProblem(id); why != "" {
				damage(rel+"/", pack, "directory: "+why)
				return
			}
			t, err := r.LoadTree(id)
			if err != nil {
				pack, _ := st.PackOf(id)
				damage(rel+"/", pack.String(), "directory: "+err.Error())
				return
			}
			first := !seenTree[id]
			seenTree[id] = true
			if first {
				rep.Trees++
			}
			for _, n := range t.Nodes {
				crel := n.Name
				if rel != "" {
					crel = rel + "/" + n.Name
				}
				switch {
				case n.Type == TypeDir:
					walk(n.Subtree, crel)
				case n.Type.HasContent():
					for _, e := range n.Extents {
						if e.Hole {
							continue
						}
						if !seenChunk[e.ID] {
							seenChunk[e.ID] = true
							rep.Chunks++
						}
						if why, pack := chunkProblem(e.ID); why != "" {
							damage(crel, pack, why)
							break
						}
					}
				}
			}
		}
		walk(p.Tree, "")
	}
	sort.SliceStable(rep.Damage, func(i, j int) bool { return rep.Damage[i].Path < rep.Damage[j].Path })
	if len(rep.Damage) > 0 || len(rep.BadPacks) > 0 {
		return rep, fmt.Errorf("%w: %d damaged packs, %d damaged files", ErrVerifyFailed, len(rep.BadPacks), len(rep.Damage))
	}
	return rep, nil
}
