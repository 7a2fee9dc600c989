package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// abuseCase is one hostile input and what became of it, for the suite's list.
type abuseCase struct{ area, name, outcome string }

// TestAbuse feeds a whole running server hostile input from the outside: manifests of every
// kind through kubectl, requests straight to the gateway socket as an unprivileged user, and
// hostile files to the audit reader. Each must be refused with an error that says why (or
// read around), and the server must stay unharmed; every case and its outcome is listed.
func TestAbuse(t *testing.T) {
	alice := "gwalice"
	s, sock, dir := gatewayServer(t, "e2e-abuse", []string{alice})
	var cases []abuseCase
	add := func(area, name, outcome string) { cases = append(cases, abuseCase{area, name, outcome}) }
	healthy := func(after string) {
		t.Helper()
		if out, err := kubectl(t, s.kubeconfig, "", "get", "gq,cpol,ga,gpus"); err != nil {
			t.Fatalf("after %s the API server does not answer: %v %s", after, err, out)
		}
		select {
		case <-s.exited:
			t.Fatalf("gpuwarden exited after %s", after)
		default:
		}
	}

	// 1. Manifests through kubectl.
	big := strings.Repeat("x", 3<<20)
	meta := func(name string) string { return "metadata: {name: " + name + "}\n" }
	q := "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuota\n"
	p := "apiVersion: gpuwarden.io/v1alpha1\nkind: ContainerPolicy\n"
	a := "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\n"
	g := "apiVersion: gpuwarden.io/v1alpha1\nkind: GPU\n"
	every := "spec: {subjects: [{kind: Everyone}]}\n"
	manifests := []struct{ name, manifest, want string }{
		{"a 3 MiB annotation", q + "metadata: {name: big, annotations: {x: \"" + big + "\"}}\n" + every, "too large"},
		{"gpuEquivalents as a list", q + meta("t1") + "spec: {subjects: [{kind: Everyone}], limits: {gpuEquivalents: [1]}}\n", "gpuEquivalents"},
		{"precedence as a word", q + meta("t2") + "spec: {subjects: [{kind: Everyone}], precedence: high}\n", "precedence"},
		{"subjects as a string", q + meta("t3") + "spec: {subjects: everyone}\n", "subjects"},
		{"a negative quota", q + meta("t4") + "spec: {subjects: [{kind: Everyone}], limits: {gpuEquivalents: \"-4\"}}\n", "gpuEquivalents"},
		{"an unknown field", q + meta("t5") + "spec: {subjects: [{kind: Everyone}], turbo: true}\n", "turbo"},
		{"shell in a name", q + "metadata: {name: \"a;rm -rf /\"}\n" + every, "metadata.name"},
		{"command substitution in a name", q + "metadata: {name: \"$(id)\"}\n" + every, "metadata.name"},
		{"a path in a name", q + "metadata: {name: \"../etc\"}\n" + every, "metadata.name"},
		{"a newline in a label value", q + "metadata: {name: t6, labels: {a: \"x\\ny\"}}\n" + every, "metadata.labels"},
		{"a 300-character label", q + "metadata: {name: t7, labels: {a: \"" + strings.Repeat("y", 300) + "\"}}\n" + every, "metadata.labels"},
		{"shell in a subject user", q + meta("t8") + "spec: {subjects: [{kind: User, name: \"bob; reboot\"}]}\n", "subjects[0].name"},
		{"10000 subjects", q + meta("t9") + "spec: {subjects: [" + strings.Repeat("{kind: User, name: u},", 9999) + "{kind: User, name: u}]}\n", "subjects"},
		{"a right-to-left override in a user", q + meta("t10") + "spec: {subjects: [{kind: User, name: \"alice\u202egnp\"}]}\n", "subjects[0].name"},
		{"null spec", q + meta("t11") + "spec: null\n", "spec"},
		{"a policy duration of a year in hours", p + meta("t12") + "spec: {maxRuntime: 99999999999h}\n", "maxRuntime"},
		{"a policy webhook of javascript:", p + meta("t13") + "spec: {notify: {webhookURL: \"javascript:alert(1)\"}}\n", "webhookURL"},
		{"a policy keep-alive path outside", p + meta("t14") + "spec: {idle: {keepAlive: {path: \"../../etc/shadow\"}}}\n", "keepAlive.path"},
		{"a policy of mode Destroy", p + meta("t15") + "spec: {mode: Destroy}\n", "mode"},
		{"a policy selector type vm", p + meta("t16") + "spec: {selector: {containerTypes: [vm]}}\n", "containerTypes"},
		{"resources cpus of -1", p + meta("t17") + "spec: {resources: {cpus: \"-1\"}}\n", "cpus"},
		{"an allocation for a billion GPUs", a + meta("t18") + "spec: {user: alice, request: {gpus: 1000000000}}\n", "gpus"},
		{"an allocation for no one", a + meta("t19") + "spec: {user: \"\", request: {gpus: 1}}\n", "user"},
		{"an allocation of a device that is a path", a + meta("t20") + "spec: {user: alice, request: {devices: [\"/dev/sda\"]}}\n", "devices"},
		{"an allocation claiming to be the gateway's", a + meta("t21") + "spec: {user: alice, request: {gpus: 1}, source: Gateway}\n", ""},
		{"a GPU object of a user's own", g + meta("t22") + "spec: {nodeName: e2e-abuse, index: 99999}\n", "index"},
		{"the wrong apiVersion", "apiVersion: gpuwarden.io/v9\nkind: GPUQuota\n" + meta("t23") + every, "gpuwarden.io/v9"},
		{"a kind that does not exist", "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuotaa\n" + meta("t24") + every, "GPUQuotaa"},
		{"YAML that does not parse", q + meta("t25") + "spec: {subjects: [\n", "yaml"},
		{"an idle GPU threshold of 150%", p + meta("t26") + "spec: {idle: {gpuUtilizationPercent: 150}}\n", "gpuUtilizationPercent"},
		{"shell in a MIG profile", a + meta("t27") + "spec: {user: alice, request: {migProfile: \"1g.10gb; reboot\"}}\n", "migProfile"},
		{"a quota subject of kind Robot", q + meta("t28") + "spec: {subjects: [{kind: Robot}]}\n", "kind"},
		{"a memory default over its maximum", p + meta("t29") + "spec: {resources: {memory: 2Gi, maxMemory: 1Gi}}\n", "memory"},
		{"a billion-laughs alias bomb", "a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", ""},
	}
	for _, m := range manifests {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", s.kubeconfig, "create", "-f", "-")
		cmd.Stdin = strings.NewReader(m.manifest)
		out, err := cmd.CombinedOutput()
		cancel()
		msg := withoutSkewWarning(string(out))
		switch {
		case m.name == "an allocation claiming to be the gateway's":
			// Accepted by the API server, but the controller rejects it: only what gpuwarden
			// signs is a Gateway allocation.
			if err == nil {
				testutil.Eventually(t, 10*time.Second, m.name+": Rejected", func() (bool, string) {
					phase, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "t21", "-o", "jsonpath={.status.phase}")
					return phase == "Rejected", "phase " + phase
				})
				reason, _ := kubectl(t, s.kubeconfig, "", "get", "ga", "t21", "-o", "jsonpath={.status.reason}: {.status.message}")
				add("manifest", m.name, "stored, then Rejected by the controller: "+reason)
				continue
			}
		case m.want == "" && err != nil:
		case err == nil:
			t.Errorf("%s: accepted:\n%s", m.name, msg)
		case !strings.Contains(strings.ToLower(msg), strings.ToLower(m.want)):
			t.Errorf("%s: refused without naming %s:\n%s", m.name, m.want, msg)
		}
		first := strings.SplitN(strings.TrimSpace(msg), "\n", 2)[0]
		if len(first) > 160 {
			first = first[:160] + "…"
		}
		add("manifest", m.name, "refused: "+first)
	}
	healthy("the hostile manifests")

	// 2. Requests straight to the gateway socket, as an unprivileged user (curl).
	body := filepath.Join("/home", alice, "abuse-body")
	t.Cleanup(func() { os.Remove(body) })
	requests := []struct{ name, method, path, body, want string }{
		{"a privileged create", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Privileged":true}}`, "privileged"},
		{"privileged in lower case", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"privileged":true}}`, "privileged"},
		{"privileged as the last duplicate", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Privileged":false,"Privileged":true}}`, "privileged"},
		{"privileged with an escaped key", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Privil\u0065ged":true}}`, "privileged"},
		{"the host PID namespace", "POST", "/containers/create", `{"Image":"x","HostConfig":{"PidMode":"host"}}`, "PID namespace"},
		{"a bind of /", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Binds":["/:/host"]}}`, "bind mount"},
		{"a bind through ..", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Binds":["/home/gwalice/../../etc:/x"]}}`, "refused"},
		{"a host device", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Devices":[{"PathOnHost":"/dev/mem"}]}}`, "/dev/mem"},
		{"an added capability", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"CapAdd":["ALL"]}}`, "capabilities"},
		{"a body over 1 MiB", "POST", "/v1.41/containers/create", `{"Image":"x","Env":["` + strings.Repeat("A", 1<<20) + `"]}`, "over 1048576 bytes"},
		{"a body that is not JSON", "POST", "/v1.41/containers/create", `{"Image":`, "not valid JSON"},
		{"swarm init", "POST", "/v1.41/swarm/init", `{}`, "admins"},
		{"a plugin install", "POST", "/v1.41/plugins/pull?remote=evil", `{}`, "admins"},
		{"a path with ..", "GET", "/v1.41/containers/x/../../info", ``, "canonical"},
		{"an odd version prefix", "GET", "/v99.99.99/containers/json", ``, "admins"},
		{"an exec on a container that is not hers", "POST", "/v1.41/containers/e2e-abuse-root/exec", `{"Cmd":["id"]}`, "belongs to"},
		{"a build on the host network", "POST", "/v1.41/build?networkmode=host", ``, "network"},
		{"system df", "GET", "/v1.41/system/df", ``, "admins"},
	}
	if out, err := exec.Command("docker", "run", "-d", "--name", "e2e-abuse-root", "gpuwarden-test/busybox:latest", "sleep", "300").CombinedOutput(); err != nil {
		t.Fatalf("a root container: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", "e2e-abuse-root").Run() })
	for _, r := range requests {
		if err := os.WriteFile(body, []byte(r.body), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"-u", alice, "--", "curl", "-s", "--max-time", "30", "--path-as-is", "--unix-socket", sock, "-X", r.method,
			"-H", "Content-Type: application/json", "-w", "\n%{http_code}", "http://gateway" + r.path}
		if r.body != "" {
			args = append(args, "--data-binary", "@"+body)
		}
		out, _ := exec.Command("runuser", args...).CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		code := lines[len(lines)-1]
		if code < "400" || !strings.Contains(string(out), r.want) {
			t.Errorf("gateway %s: %s %s", r.name, code, out)
		}
		add("gateway", r.name, "HTTP "+code+": "+strings.TrimSpace(strings.Join(lines[:len(lines)-1], " ")))
	}
	if out, err := exec.Command("runuser", "-u", alice, "--", "env", "DOCKER_HOST=unix://"+sock, "docker", "ps").CombinedOutput(); err != nil {
		t.Errorf("the gateway after the hostile requests: %v %s", err, out)
	}
	healthy("the hostile requests")

	// 3. Hostile files to the audit reader.
	hostile := filepath.Join(dir, "hostile")
	if err := os.MkdirAll(hostile, 0o755); err != nil {
		t.Fatal(err)
	}
	files := []struct {
		name    string
		content []byte
		special string
	}{
		{"binary garbage", bytes.Repeat([]byte{0, 0xff, 0x13, '\n'}, 1000), ""},
		{"a 2 MiB line", append(bytes.Repeat([]byte("a"), 2<<20), '\n'), ""},
		{"invalid UTF-8 in a user", []byte("{\"timestamp\":\"2026-12-01T00:00:00.000000Z\",\"event_type\":\"gpu.allocate\",\"user\":\"\xff\xfe\",\"event_id\":\"1\"}\n"), ""},
		{"JSON nested 100000 deep", []byte(strings.Repeat("[", 100000) + "\n"), ""},
		{"a number of 10000 digits", []byte("{\"timestamp\":" + strings.Repeat("9", 10000) + "}\n"), ""},
		{"a truncated last line", []byte("{\"timestamp\":\"2026-12-01T00:00:00.000000Z\",\"event_type\":\"gpu.allo"), ""},
		{"a corrupt gzip", []byte("\x1f\x8b\x08\x00garbage"), "gz"},
		{"a FIFO", nil, "fifo"},
		{"a directory", nil, "dir"},
		{"a terminal escape in a user", []byte("{\"timestamp\":\"2026-12-01T00:00:00.000000Z\",\"event_type\":\"gpu.allocate\",\"user\":\"\\u001b]0;pwned\\u0007\",\"event_id\":\"2\"}\n"), ""},
	}
	for i, f := range files {
		path := filepath.Join(hostile, fmt.Sprintf("f%d.jsonl", i))
		switch f.special {
		case "fifo":
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		case "dir":
			_ = os.MkdirAll(path, 0o755)
		case "gz":
			path += ".gz"
			_ = os.WriteFile(path, f.content, 0o644)
		default:
			_ = os.WriteFile(path, f.content, 0o644)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, binary(t), "events", "--file", path, "--limit", "0").CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		outcome := "read, nothing shown"
		switch {
		case timedOut:
			t.Errorf("gpuwarden events on %s hung", f.name)
		case bytes.Contains(out, []byte("panic")) || bytes.Contains(out, []byte("goroutine ")):
			t.Errorf("gpuwarden events on %s crashed:\n%s", f.name, out)
		case bytes.Contains(out, []byte("\x1b]")):
			t.Errorf("gpuwarden events on %s passed a terminal escape through:\n%q", f.name, out)
		case err != nil:
			outcome = "refused: " + strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
		default:
			if l := strings.TrimSpace(string(out)); l != "" {
				outcome = "read: " + strings.SplitN(l, "\n", 2)[0]
			}
		}
		add("audit reader", f.name, outcome)
	}
	healthy("the hostile files")

	var b strings.Builder
	for i, c := range cases {
		fmt.Fprintf(&b, "%3d  %-13s %-45s %s\n", i+1, c.area, c.name, c.outcome)
	}
	t.Logf("%d hostile cases, each refused or read around, the server unharmed:\n%s", len(cases), b.String())
	if len(cases) < 55 {
		t.Errorf("only %d cases", len(cases))
	}
}
