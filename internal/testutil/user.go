package testutil

import (
	"os/exec"
	"testing"
)

// LinuxUser makes an unprivileged login with a home directory, once per machine.
func LinuxUser(tb testing.TB, name string) {
	tb.Helper()
	if exec.Command("id", name).Run() == nil {
		return
	}
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		tb.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
}
