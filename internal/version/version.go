// Package version holds the gpuwarden version, stamped at build time.
package version

// Version is set with -ldflags "-X github.com/gpuwarden/gpuwarden/internal/version.Version=…".
var Version = "dev"
