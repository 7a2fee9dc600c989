// Package message bounds the user-supplied text that Events and status messages quote: the
// API refuses a message over 4096 bytes, and an Event whose note is too long is dropped.
package message

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gpuwarden/gpuwarden/internal/docker"
)

const (
	// Max bounds a status or condition message built from user-supplied text; a refused
	// status write must never happen.
	Max = 1024
	// MaxUserText bounds one user-supplied string (a release reason, a container name)
	// quoted in a message.
	MaxUserText = 256
)

// Truncate cuts s to at most n bytes on a character boundary, marking the cut with "…".
func Truncate(s string, n int) string {
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

// ContainerName is a container's name as Events and messages show it: Docker does not
// bound names.
func ContainerName(c docker.Container) string { return Truncate(c.Name, MaxUserText) }

// Duration prints d as people write it, dropping zero minutes and seconds: 8h, 1h30m, 90s.
func Duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Age prints d as kubectl prints ages, to the largest unit or two that matter: 45s, 12m,
// 3h20m, 2d. Negative durations are 0s.
func Age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
