// Command gpuwarden governs a shared multi-user GPU server.
package main

import (
	"os"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app"
)

func main() {
	os.Exit(app.Execute())
}
