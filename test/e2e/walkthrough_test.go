package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// shBlocks returns the command lines of every ```sh block of the repository's doc (a path
// from its root), one slice a block: comments dropped, a here-document kept whole with its
// lines up to its end word.
func shBlocks(t *testing.T, doc string) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", doc))
	if err != nil {
		t.Fatal(err)
	}
	comment := regexp.MustCompile(`\s+#\s.*$`)
	heredoc := regexp.MustCompile(`<<-?'?([A-Za-z_]+)'?`)
	var blocks [][]string
	for _, bl := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		var cmds []string
		var open []string // a here-document's lines so far
		var end string
		for _, l := range strings.Split(bl[1], "\n") {
			if open != nil {
				open = append(open, l)
				if strings.TrimSpace(l) == end {
					cmds, open = append(cmds, strings.Join(open, "\n")), nil
				}
				continue
			}
			if l = strings.TrimSpace(comment.ReplaceAllString(l, "")); l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			if m := heredoc.FindStringSubmatch(l); m != nil {
				open, end = []string{l}, m[1]
				continue
			}
			cmds = append(cmds, l)
		}
		if open != nil {
			t.Fatalf("%s: a here-document that does not end with %s:\n%s", doc, end, strings.Join(open, "\n"))
		}
		blocks = append(blocks, cmds)
	}
	return blocks
}
