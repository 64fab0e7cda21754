package main

import (
	"encoding/base64"
	"slices"
	"unicode/utf8"

	"github.com/recall-backup/recall/engine"
)

// A file name is bytes, and JSON holds only UTF-8: encoding/json writes
// U+FFFD for each byte that is not, so a name that is not UTF-8 cannot be
// read back from the string. Every --json field holding a path or a
// name keeps that string, for display, and gets a sibling of its key
// plus "_raw" holding the exact bytes in standard base64, present only
// when the name is not UTF-8 (README, Output for scripts).

// rawName is the _raw field of name: its bytes in base64 when it is not
// UTF-8, else "" (left out by omitempty).
func rawName(name string) string {
	if utf8.ValidString(name) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(name))
}

// rawNames is the _raw field of a list of names: the bytes of each, in
// its order, when one of them is not UTF-8, else nil.
func rawNames(names []string) []string {
	if !slices.ContainsFunc(names, func(n string) bool { return !utf8.ValidString(n) }) {
		return nil
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = base64.StdEncoding.EncodeToString([]byte(n))
	}
	return out
}

// The engine's types that hold a path, with its raw field. Each embeds
// the engine's, so a field added there shows here too.
type (
	pathErrorJSON struct {
		engine.PathError
		PathRaw string `json:"path_raw,omitempty"`
	}
	mountPointJSON struct {
		engine.MountPoint
		PathRaw string `json:"path_raw,omitempty"`
	}
	damageJSON struct {
		engine.Damage
		PathRaw string `json:"path_raw,omitempty"`
	}
)

func pathErrorsJSON(es []engine.PathError) []pathErrorJSON {
	return withRaw(es, func(e engine.PathError) pathErrorJSON { return pathErrorJSON{e, rawName(e.Path)} })
}

func mountPointsJSON(ms []engine.MountPoint) []mountPointJSON {
	return withRaw(ms, func(m engine.MountPoint) mountPointJSON { return mountPointJSON{m, rawName(m.Path)} })
}

func damagesJSON(ds []engine.Damage) []damageJSON {
	return withRaw(ds, func(d engine.Damage) damageJSON { return damageJSON{d, rawName(d.Path)} })
}

// withRaw maps a list to its JSON form; nil stays nil (omitempty).
func withRaw[T, J any](in []T, f func(T) J) []J {
	if in == nil {
		return nil
	}
	out := make([]J, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}
