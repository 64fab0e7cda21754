package tomlmsg

import (
	"testing"

	"github.com/BurntSushi/toml"
)

func TestDescribe(t *testing.T) {
	var v struct {
		Group []struct {
			Retention string   `toml:"retention"`
			Members   []string `toml:"members"`
			Limit     int      `toml:"limit"`
		} `toml:"group"`
	}
	for _, c := range []struct{ text, want string }{
		{"[[group]]\nretention = 14\n", "line 2: retention takes a quoted string, not a whole number"},
		{"[[group]]\nmembers = \"/srv\"\n", "line 2: members takes a list ([...]), not a quoted string"},
		{"[[group]]\n\nlimit = true\n", "line 3: limit takes a whole number, not true or false"},
	} {
		_, err := toml.Decode(c.text, &v)
		if err == nil {
			t.Fatalf("%q decoded", c.text)
		}
		if got := Message(err); got != c.want {
			t.Errorf("%q: %q (from %q), want %q", c.text, got, err, c.want)
		}
	}
	// Anything else as the decoder said it.
	_, err := toml.Decode("[[group]\n", &v)
	if line, msg := Describe(err); line != 0 || msg != err.Error() {
		t.Errorf("a syntax error: %d, %q; want it as it is", line, msg)
	}
}
