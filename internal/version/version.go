// Package version holds the gpuwarden version, stamped at build time.
package version

// Set with -ldflags "-X github.com/gpuwarden/gpuwarden/internal/version.Version=…" (and
// Commit, Date) by make build and the release build.
var (
	// Version is the release (v1.2.3), or git describe's name of a build between releases.
	Version = "dev"
	// Commit is the git commit the binary was built from.
	Commit = "unknown"
	// Date is when it was built (RFC 3339, UTC).
	Date = "unknown"
)
