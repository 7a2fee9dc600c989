package controllers

import (
	"unicode/utf8"

	"github.com/gpuwarden/gpuwarden/internal/docker"
)

const (
	// maxMessage bounds a status or condition message built from user-supplied text; the
	// API refuses messages over 4096 bytes, and a refused status write must never happen.
	maxMessage = 1024
	// maxUserText bounds one user-supplied string (a release reason, a container name)
	// quoted in a message.
	maxUserText = 256
)

// truncate cuts s to at most n bytes on a character boundary, marking the cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// shownName is a container's name as Events and messages show it: Docker does not bound
// names, and an Event whose note is too long is dropped.
func shownName(c docker.Container) string { return truncate(c.Name, maxUserText) }
