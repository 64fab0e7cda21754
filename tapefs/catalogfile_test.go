package tapefs

import (
	"maps"
	"testing"
)

func TestPackIndex(t *testing.T) {
	packs := func(names ...string) []CatalogEntry {
		var es []CatalogEntry
		for _, n := range names {
			es = append(es, CatalogEntry{Name: n})
		}
		return es
	}
	tests := []struct {
		name  string
		files []CatalogFile
		want  map[string]int
	}{
		{"empty", nil, map[string]int{}},
		{"one file", []CatalogFile{{Kind: KindPacks, Entries: packs("a", "b")}}, map[string]int{"a": 0, "b": 0}},
		{"point and catalog files hold no packs",
			[]CatalogFile{{Kind: KindPacks, Entries: packs("a")}, {Kind: KindPoint, Entries: packs("manifest", "point.json")}, {Kind: KindCatalog, Entries: packs("catalog.json")}},
			map[string]int{"a": 0}},
		{"the last copy wins",
			[]CatalogFile{{Kind: KindPacks, Entries: packs("a", "b")}, {Kind: KindPoint, Entries: packs("manifest")}, {Kind: KindPacks, Entries: packs("b", "c")}},
			map[string]int{"a": 0, "b": 2, "c": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &MediaCatalog{Files: tt.files}
			if got := c.PackIndex(); !maps.Equal(got, tt.want) {
				t.Errorf("PackIndex() = %v, want %v", got, tt.want)
			}
		})
	}
}
