// Package tomlmsg words the errors of github.com/BurntSushi/toml for the
// person who wrote the file: the decoder reports a value of the wrong
// type in Go's terms ("TOML value has type int64; destination has type
// string"), which says nothing to someone editing a groups file.
package tomlmsg

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// typeRE matches the decoder's type mismatch (decode.go's badtype).
var typeRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): incompatible types: TOML value has type (\S+); destination has type (\S+)$`)

// Describe returns the line of a value of the wrong type (0 when the
// decoder gave none) and what is wrong with it: "retention takes a quoted
// string, not a whole number". Any other error comes back as it is, with
// line 0.
func Describe(err error) (line int, msg string) {
	m := typeRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, err.Error()
	}
	line, _ = strconv.Atoi(m[1])
	key := m[2]
	if i := strings.LastIndex(key, "."); i >= 0 {
		key = key[i+1:]
	}
	return line, fmt.Sprintf("%s takes %s, not %s", key, kind(m[4]), kind(m[3]))
}

// Message is Describe as one text: "line 3: retention takes ...".
func Message(err error) string {
	line, msg := Describe(err)
	if line > 0 {
		return fmt.Sprintf("line %d: %s", line, msg)
	}
	return msg
}

// kind names a Go type (the decoder's fmtType of the value, or its name
// of the destination's kind) as TOML writes such a value.
func kind(t string) string {
	switch {
	case t == "string":
		return "a quoted string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"), t == "integer":
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"), t == "slice", t == "array":
		return "a list ([...])"
	case strings.HasPrefix(t, "map"), t == "struct", t == "table":
		return "a table"
	case t == "time.Time":
		return "a date and time"
	}
	return t
}
