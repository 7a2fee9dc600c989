package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// guideImages stands in for the images the user guide runs (no registry is reachable here):
// the test image with a `python` that prints the GPU it sees for -c, runs a script it is
// given that exists and otherwise works for an hour, an `nvidia-smi -L` that lists the
// devices it was given, a /workspace anyone may write, and an image user of its own (as
// jupyter's jovyan), which the gateway replaces with the caller's.
func guideImages(t *testing.T) []string {
	t.Helper()
	names := []string{"pytorch/pytorch", "my-image", "jupyter/base-notebook"}
	dir := t.TempDir()
	files := map[string]string{
		"python": `#!/bin/sh
if [ "$1" = -c ]; then echo "NVIDIA H100 80GB HBM3 ($NVIDIA_VISIBLE_DEVICES)"; exit 0; fi
if [ -f "$1" ]; then exec sh "$@"; fi
exec sleep 3600
`,
		"nvidia-smi": `#!/bin/sh
i=0; for d in $(echo "$NVIDIA_VISIBLE_DEVICES" | tr , ' '); do echo "GPU $i: NVIDIA H100 80GB HBM3 (UUID: $d)"; i=$((i+1)); done
`,
		"Dockerfile": "FROM " + testutil.DockerImage() + `
ENV PATH=/usr/local/bin:/usr/bin:/bin
COPY python nvidia-smi /usr/local/bin/
RUN chmod 755 /usr/local/bin/python /usr/local/bin/nvidia-smi && mkdir -p /workspace && chmod 1777 /workspace
USER 1000
CMD ["python", "notebook.py"]
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"build", "-q"}
	for _, n := range names {
		args = append(args, "-t", n)
	}
	cmd := exec.Command("docker", append(args, dir)...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the user guide's images: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", append([]string{"rmi"}, names...)...).Run() })
	return names
}

// TestUserGuideWalkThrough runs every command of docs/user-guide.md's sh blocks as written,
// in order, as a researcher without root or the docker group: the docker CLI through the
// gateway (DOCKER_HOST, as the login profile sets it), gpuwarden and kubectl with the
// kubeconfig `gpuwarden kubeconfig` writes, on a server with fake h100-mig GPUs. It checks
// what the guide claims of each command that says something, waiting for it as a person
// would type the next line. What the guide leaves to the reader is the test's: the images
// (guideImages), a lab's webhook addresses, the `…` it leaves out (those lines are not
// run), an allocation's NAME (the train container's), removing the first train before the
// second is made, and ending --follow.
func TestUserGuideWalkThrough(t *testing.T) {
	me := "ugdee"
	s, sock, _ := gatewayServer(t, "e2e-guide", []string{me}, "--gateway-bind-wait", "20s")
	guideImages(t)
	removeTheirs := func() { // also what a run cut short left
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=gpuwarden.io/user="+me).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			_ = exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	}
	removeTheirs()
	t.Cleanup(removeTheirs)
	testutil.Eventually(t, 30*time.Second, "the fake GPUs and their MIG slices in the inventory", func() (bool, string) {
		out, _ := kubectl(t, s.kubeconfig, "", "get", "gpu", "-o", `jsonpath={.items[?(@.spec.index==4)].status.migInstances[*].profile}`)
		return strings.Contains(out, "1g.10gb"), out
	})

	home := "/home/" + me
	bin, err := os.MkdirTemp("", "gpuwarden-guide-bin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binary(t), filepath.Join(bin, "gpuwarden")); err != nil {
		t.Fatal(err)
	}
	// The researcher's shell: their login, home and PATH, DOCKER_HOST at the gateway.
	shell := func(line string, limit time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		cmd := exec.CommandContext(ctx, "runuser", "-u", me, "--", "env", "-i",
			"HOME="+home, "USER="+me, "LOGNAME="+me, "PATH="+bin+":/usr/local/bin:/usr/bin:/bin",
			"DOCKER_HOST=unix://"+sock, "bash", "-o", "pipefail", "-c", "cd && "+line)
		// Ctrl-C when the time is up: to the whole process group, as a terminal sends it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			err = context.DeadlineExceeded
		}
		return withoutSkewWarning(string(out)), err
	}
	// A project of theirs, whose train.py says who ran it and writes into the bind mount.
	var uid string
	for _, line := range []string{
		`mkdir -p project && printf '%s\n' 'echo "trained as uid=$(id -u) HOME=$HOME in $PWD"' 'echo done > out.txt' > project/train.py`,
		"gpuwarden kubeconfig -o ~/.kube/config",
		"id -u",
	} {
		out, err := shell(line, time.Minute)
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		uid = strings.TrimSpace(out)
	}

	// What the guide leaves to the reader.
	var trainAllocation string
	placeholder := regexp.MustCompile(`\bNAME\b`)
	allocationOf := func(container string) string {
		out, err := shell("docker inspect --format '{{index .Config.Labels \"gpuwarden.io/allocation\"}}' "+container, time.Minute)
		if err != nil || strings.TrimSpace(out) == "" {
			t.Fatalf("the allocation of %s: %v\n%s", container, err, out)
		}
		return strings.TrimSpace(out)
	}
	gpuLine := regexp.MustCompile(`(?m)^GPU \d: NVIDIA H100 80GB HBM3 \(UUID: MIG-[0-9a-f-]+\)$`)
	claims := []struct {
		cmd   string
		check func(out string) bool
	}{
		{`docker run --rm --gpus 1 pytorch/pytorch python -c 'import torch; print(torch.cuda.get_device_name())'`, func(out string) bool {
			return regexp.MustCompile(`^NVIDIA H100 80GB HBM3 \(GPU-[0-9a-f-]+\)\n$`).MatchString(out) // one GPU, named
		}},
		{`docker run -d --gpus 2 --name train my-image python train.py`, func(string) bool {
			trainAllocation = allocationOf("train")
			out, _ := shell("docker exec train sh -c 'echo $NVIDIA_VISIBLE_DEVICES'", time.Minute)
			return strings.Count(out, "GPU-") == 2
		}},
		{`docker run --rm --gpus '"device=1g.10gb"' pytorch/pytorch nvidia-smi -L`, func(out string) bool { return gpuLine.MatchString(out) }},
		{`docker run --rm --label gpuwarden.io/mig-profile=1g.10gb pytorch/pytorch nvidia-smi -L`, func(out string) bool { return gpuLine.MatchString(out) }},
		{`docker run --rm --gpus 1 -v $HOME:$HOME -w $HOME/project pytorch/pytorch python train.py`, func(out string) bool {
			// As the researcher, HOME their own, and what it wrote is theirs.
			owner, _ := shell("stat -c %u project/out.txt", time.Minute)
			return strings.Contains(out, "trained as uid="+uid+" HOME="+home+" in "+home+"/project") && strings.TrimSpace(owner) == uid
		}},
		{`docker run -d -p 8888:8888 -v $HOME:$HOME jupyter/base-notebook`, func(out string) bool {
			// Its own user replaced by theirs.
			user, _ := shell("docker inspect --format '{{.Config.User}}' "+strings.TrimSpace(out), time.Minute)
			return strings.HasPrefix(strings.TrimSpace(user), uid+":")
		}},
		{`gpuwarden notifications`, func(out string) bool { return strings.Contains(out, "WEBHOOKS") }},
		{`gpuwarden notifications set --no-email --clear-webhooks`, func(out string) bool { return strings.Contains(out, "none") }},
		{`docker exec train touch /workspace/.keep-alive`, func(string) bool {
			out, _ := shell("docker exec train ls -n /workspace/.keep-alive", time.Minute)
			return strings.Contains(out, " "+uid+" ")
		}},
		{`kubectl get ga --field-selector spec.user=$USER,status.phase!=Released`, func(out string) bool {
			for _, r := range tableRows(out) {
				if r["NAME"] == trainAllocation {
					return r["USER"] == me && r["PHASE"] == "Bound" && strings.Count(r["DEVICES"], ",") == 1 && r["CONTAINER"] == "train"
				}
			}
			return false
		}},
		{`kubectl describe ga NAME`, func(out string) bool { return strings.Contains(out, "Bound") }},
		{`kubectl get gpus`, func(out string) bool { return strings.Contains(out, me) }},
		{`kubectl get ga $USER-train`, func(out string) bool {
			rows := tableRows(out)
			return len(rows) == 1 && rows[0]["PHASE"] == "Bound"
		}},
		{`docker run -d --name train --label gpuwarden.io/allocation=$USER-train my-image python train.py`, func(string) bool {
			return allocationOf("train") == me+"-train"
		}},
		{`gpuwarden events --container train`, func(out string) bool {
			return all(out, "container.create", "container.start", me+"-train")
		}},
		{`gpuwarden report --user $USER`, func(out string) bool {
			return regexp.MustCompile(`(?m)^` + me + `\s`).MatchString(out)
		}},
	}

	reads := regexp.MustCompile(`^(kubectl (get|describe) |gpuwarden (events|report) |gpuwarden notifications$)`)
	ran := 0
	for b, block := range shBlocks(t, "docs/user-guide.md") {
		for _, written := range block {
			if strings.Contains(written, "…") {
				t.Logf("not run (the guide leaves part of it out): %s", written)
				continue
			}
			line := placeholder.ReplaceAllString(written, trainAllocation)
			if strings.HasPrefix(written, "docker run -d --name train --label") {
				// The reader's first train is done: a name is one container's.
				if out, err := shell("docker rm -f train", time.Minute); err != nil {
					t.Fatalf("docker rm -f train: %v\n%s", err, out)
				}
			}
			limit := 2 * time.Minute
			if strings.Contains(written, "--follow") {
				limit = 5 * time.Second // Ctrl-C
			}
			if len(claims) > 0 && claims[0].cmd == written {
				check := claims[0].check
				claims = claims[1:]
				out, err := shell(line, limit)
				if err != nil {
					t.Fatalf("block %d: %s: %v\n%s", b+1, written, err, out)
				}
				testutil.Eventually(t, 30*time.Second, written+" does what the user guide says", func() (bool, string) {
					if reads.MatchString(written) { // asked again, as a person would
						out, err = shell(line, limit)
					}
					return err == nil && check(out), out
				})
				t.Logf("$ %s\n%s", written, out)
				ran++
				continue
			}
			out, err := shell(line, limit)
			if errors.Is(err, context.DeadlineExceeded) && strings.Contains(written, "--follow") && strings.Contains(out, "container.create") {
				err = nil
			}
			if err != nil {
				t.Fatalf("block %d: %s: %v\n%s", b+1, written, err, out)
			}
			t.Logf("$ %s\n%s", written, out)
			ran++
		}
	}
	for _, c := range claims {
		t.Errorf("the user guide no longer runs %q, whose outcome this test checks", c.cmd)
	}
	t.Logf("%d commands of the user guide run as written", ran)
}
