package message

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncateKeepsCharactersWhole(t *testing.T) {
	for _, c := range []struct {
		in string
		n  int
	}{{"short", 10}, {strings.Repeat("x", 5000), 256}, {strings.Repeat("é", 300), 255}, {strings.Repeat("日本", 100), 100}} {
		got := Truncate(c.in, c.n)
		if len(got) > c.n || !utf8.ValidString(got) {
			t.Errorf("truncate(%d bytes, %d) = %d bytes, valid %v", len(c.in), c.n, len(got), utf8.ValidString(got))
		}
		if len(c.in) <= c.n && got != c.in {
			t.Errorf("truncate changed a short string: %q", got)
		}
		if len(c.in) > c.n && !strings.HasSuffix(got, "…") {
			t.Errorf("a cut string is not marked: %q", got[len(got)-5:])
		}
	}
}
