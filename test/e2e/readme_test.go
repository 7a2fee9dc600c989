package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// readmeWalkThrough returns the command lines of README.md's walk-through (the sh block
// that starts with `export KUBECONFIG=$PWD/.data/admin.kubeconfig`), comments dropped.
func readmeWalkThrough(t *testing.T) []string {
	t.Helper()
	for _, cmds := range shBlocks(t, "README.md") {
		if len(cmds) > 0 && cmds[0] == "export KUBECONFIG=$PWD/.data/admin.kubeconfig" {
			return cmds
		}
	}
	t.Fatal("README.md has no walk-through block starting with export KUBECONFIG=$PWD/.data/admin.kubeconfig")
	return nil
}

// tableRows returns the rows of a kubectl table as maps from column header to value
// (columns are cut at the header's positions, so empty cells stay empty).
func tableRows(table string) []map[string]string {
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) < 2 {
		return nil
	}
	header := lines[0]
	var starts []int
	for i := range header {
		if header[i] != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	var rows []map[string]string
	for _, l := range lines[1:] {
		row := map[string]string{}
		for k, s := range starts {
			end := len(l)
			if k+1 < len(starts) && starts[k+1] < end {
				end = starts[k+1]
			}
			if s < end {
				row[strings.TrimSpace(header[s:min(len(header), end)])] = strings.TrimSpace(l[s:end])
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// TestReadmeWalkThrough runs README.md's walk-through as written, as root, against a server
// started as `make run` starts it (fake h100-mig GPUs, data in ./.data, the test engine governed),
// and checks what the block's comments claim. What is the machine's, not the server's, is
// this test's: the gateway socket, the metrics address and the audit log (through
// GPUWARDEN_AUDIT_LOG, the default of --file); bin/ and config/ are the built binary and
// the repository's.
func TestReadmeWalkThrough(t *testing.T) {
	_, err := exec.LookPath("curl")
	testutil.Require(t, err == nil, "curl: %v", err)
	cmds := readmeWalkThrough(t)
	// As root, the gateway's caller and an admin; ./.data is the server's data dir.
	s, sock, dir := gatewayServer(t, "e2e-readme", nil)
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "train-1").Run() })

	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	config, _ := filepath.Abs(filepath.Join("..", "..", "config"))
	for link, target := range map[string]string{"bin/gpuwarden": binary(t), "config": config, ".data": dir} {
		if err := os.Symlink(target, filepath.Join(work, link)); err != nil {
			t.Fatal(err)
		}
	}
	machine := map[string]string{
		"unix:///run/gpuwarden/docker.sock": "unix://" + sock,
		"127.0.0.1:9402":                    fmt.Sprintf("127.0.0.1:%d", s.metricPort),
	}
	for from := range machine {
		if !strings.Contains(strings.Join(cmds, "\n"), from) {
			t.Fatalf("the README's walk-through no longer names %s; this test stands that in for the machine's:\n%s", from, strings.Join(cmds, "\n"))
		}
	}
	env := map[string]string{"PWD": work, "GPUWARDEN_AUDIT_LOG": filepath.Join(dir, "audit", "events.jsonl")}
	environ := func() []string {
		out := os.Environ()
		for k, v := range env {
			out = append(out, k+"="+v)
		}
		return out
	}
	run := func(line string) (string, error) {
		cmd := exec.Command("bash", "-o", "pipefail", "-c", line)
		cmd.Dir, cmd.Env = work, environ()
		out, err := cmd.CombinedOutput()
		return withoutSkewWarning(string(out)), err
	}

	gatewayRow := func(out string) map[string]string {
		for _, r := range tableRows(out) {
			if strings.HasPrefix(r["NAME"], "gateway-") {
				return r
			}
		}
		return nil
	}
	// What each command's comment claims, in the block's order; a command with no claim
	// must succeed. A claim is waited for (a person types the next line a moment later).
	claims := []struct {
		cmd   string
		check func(out string) bool
	}{
		{"kubectl get gq,cpol,ga", func(out string) bool { // alice-train-1: alice, Bound, GPU 0
			for _, table := range strings.Split(out, "\n\n") { // one table a kind
				for _, r := range tableRows(table) {
					if strings.HasSuffix(r["NAME"], "/alice-train-1") {
						return r["USER"] == "alice" && r["PHASE"] == "Bound" && r["DEVICES"] == "0"
					}
				}
			}
			return false
		}},
		{"kubectl get ga", func(out string) bool { // gateway-…: root, Bound, GPU 1, GPU-EQ 1, CONTAINER train-1
			r := gatewayRow(out)
			return r != nil && r["USER"] == "root" && r["PHASE"] == "Bound" && r["DEVICES"] == "1" && r["GPU-EQ"] == "1" && r["CONTAINER"] == "train-1"
		}},
		{"bin/gpuwarden top --once", func(out string) bool { // each GPU and its holder: GPU 0 alice, GPU 1 root's train-1
			var holders []string
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) > 2 && f[0] == "e2e-readme" && (f[1] == "0" || f[1] == "1") {
					holders = append(holders, f[1]+":"+strings.Join(f[2:], " "))
				}
			}
			return len(holders) == 2 && strings.Contains(holders[0], " alice ") && strings.Contains(holders[1], " root train-1 ")
		}},
		{"bin/gpuwarden events --container train-1", func(out string) bool { // gpu.allocate, container.create and start
			return strings.Contains(out, "gpu.allocate") && strings.Contains(out, "container.create") && strings.Contains(out, "container.start")
		}},
		{"kubectl get ga", func(out string) bool { // gateway-…: Released
			r := gatewayRow(out)
			return r != nil && r["PHASE"] == "Released"
		}},
		{"curl -s 127.0.0.1:9402/metrics | grep '^DCGM_FI_DEV_GPU_UTIL'", func(out string) bool {
			return strings.HasPrefix(out, "DCGM_FI_DEV_GPU_UTIL") && strings.Count(out, "DCGM_FI_DEV_GPU_UTIL{") >= 4
		}},
		{"bin/gpuwarden report --since 1d", func(out string) bool { // GPU-hours per user: root
			return regexp.MustCompile(`(?m)^USER\s+ALLOCATED GPU-H`).MatchString(out) && regexp.MustCompile(`(?m)^root\s`).MatchString(out)
		}},
	}
	export := regexp.MustCompile(`^export ([A-Z_]+)=(\S+)$`)
	assign := regexp.MustCompile(`^([a-z_]+)=\$\((.*)\)$`)
	for _, line := range cmds {
		written := line
		for from, to := range machine {
			line = strings.ReplaceAll(line, from, to)
		}
		if m := export.FindStringSubmatch(line); m != nil {
			env[m[1]] = os.Expand(m[2], func(k string) string { return env[k] })
			continue
		}
		if m := assign.FindStringSubmatch(line); m != nil { // id=$(docker run …)
			out, err := run(m[2])
			if err != nil {
				t.Fatalf("%s: %v\n%s", written, err, out)
			}
			env[m[1]] = strings.TrimSpace(out)
			continue
		}
		if len(claims) > 0 && claims[0].cmd == written {
			check := claims[0].check
			claims = claims[1:]
			var out string
			testutil.Eventually(t, 30*time.Second, written+" shows what the README says", func() (bool, string) {
				var err error
				out, err = run(line)
				return err == nil && check(out), out
			})
			t.Logf("$ %s\n%s", written, out)
			continue
		}
		out, err := run(line)
		if err != nil {
			t.Fatalf("%s: %v\n%s", written, err, out)
		}
		t.Logf("$ %s\n%s", written, out)
	}
	for _, c := range claims {
		t.Errorf("the README's walk-through no longer runs %q, whose outcome this test checks", c.cmd)
	}
}
