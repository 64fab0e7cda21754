package golden

import (
	"bytes"
	"testing"
)

func TestLoadParsesDump(t *testing.T) {
	// sample.golden is hex.Dump of the bytes 0x60..0x87: two full lines
	// and a short one, with a '|' (0x7c) and unprintable bytes shown as
	// '.' in the printable column.
	want := make([]byte, 40)
	for i := range want {
		want[i] = byte(i) + 0x60
	}
	if got := Load(t, "sample.golden"); !bytes.Equal(got, want) {
		t.Errorf("Load = %x, want %x", got, want)
	}
}
