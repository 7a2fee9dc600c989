package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// daemon runs a helper process for the test's length, its output kept.
func daemon(t *testing.T, path string, args ...string) *testutil.SyncBuffer {
	t.Helper()
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(path), out)
		}
	})
	return out
}

// webhookSink records what Alertmanager posts.
type webhookSink struct {
	mu     sync.Mutex
	bodies []string
}

func (w *webhookSink) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.mu.Lock()
	w.bodies = append(w.bodies, string(body))
	w.mu.Unlock()
}

func (w *webhookSink) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.bodies, "\n")
}

// forDurations are the rules' `for:` clauses, shortened in the test's copy of the rules.
var forDurations = regexp.MustCompile(`(?m)^(\s+)for: \S+$`)

// TestAlertsReachAPerson is the "test notification delivered" DS01 never achieved: a REAL
// Prometheus scrapes `gpuwarden server --fake-gpus`, evaluates the shipped rules (a copy
// with short `for:`), and a REAL Alertmanager with the shipped example's routes sends a
// too-hot GPU and an allocated GPU left idle by email (to a local SMTP sink) and to a
// webhook, naming the user and the container.
func TestAlertsReachAPerson(t *testing.T) {
	requireKubectl(t)
	docker := dockerE2E(t)
	prometheus := testutil.Tool(t, "prometheus")
	alertmanager := testutil.Tool(t, "prometheus-alertmanager")
	python := "/usr/bin/python3" // Debian's, which python3-aiosmtpd installs into
	testutil.Require(t, exec.Command(python, "-c", "import aiosmtpd").Run() == nil, "python3-aiosmtpd is not installed (run hack/install-deps.sh)")
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// GPU 1 is far too hot; GPU 0 will be mia's, and idle.
	control := write("gpus.yaml", `devices: {"0": {utilization: 0}, "1": {temperature: 96}}`)
	s := startServer(t, filepath.Join(dir, "server"), "e2e-alerts", "--docker-host", os.Getenv("DOCKER_HOST"),
		"--fake-gpus-control", control, "--sample-interval", "1s")
	container, _ := boundContainer(t, s, docker, "mia", "mia-nb", `apiVersion: gpuwarden.io/v1alpha1
kind: GPUAllocation
metadata: {name: mia-nb}
spec: {user: mia, nodeName: e2e-alerts, request: {devices: ["0"]}}
`)

	// The SMTP sink and the webhook.
	smtpPort, amPort, promPort := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	mail := daemon(t, python, "-u", "-m", "aiosmtpd", "-n", "-l", fmt.Sprintf("127.0.0.1:%d", smtpPort), "-c", "aiosmtpd.handlers.Debugging")
	hook := &webhookSink{}
	hooks := httptest.NewServer(hook)
	t.Cleanup(hooks.Close)

	// Alertmanager with the shipped example, pointed at them, its waits shortened.
	example, err := os.ReadFile(filepath.Join("..", "..", "config", "alertmanager", "alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	password := write("smtp-password", "not-needed-by-the-sink\n")
	am := strings.NewReplacer(
		"smtp.example.org:587", fmt.Sprintf("127.0.0.1:%d", smtpPort),
		"smtp_require_tls: true", "smtp_require_tls: false",
		"/etc/alertmanager/smtp-password", password,
		"https://chat.example.org/hooks/gpuwarden", hooks.URL,
		"group_wait: 5m", "group_wait: 1s", "group_wait: 30s", "group_wait: 1s", "group_interval: 5m", "group_interval: 1s",
	).Replace(string(example))
	daemon(t, alertmanager, "--config.file", write("alertmanager.yml", am), "--storage.path", filepath.Join(dir, "am"),
		"--web.listen-address", fmt.Sprintf("127.0.0.1:%d", amPort), "--cluster.listen-address", "")

	// Prometheus with the shipped rules, `for:` shortened.
	rules, err := os.ReadFile(filepath.Join("..", "..", "config", "prometheus", "gpuwarden-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	rulesPath := write("rules.yml", forDurations.ReplaceAllString(string(rules), "${1}for: 3s"))
	config := write("prometheus.yml", fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
alerting:
  alertmanagers: [{static_configs: [{targets: ["127.0.0.1:%d"]}]}]
scrape_configs:
  - job_name: gpuwarden
    static_configs: [{targets: ["127.0.0.1:%d"]}]
`, rulesPath, amPort, s.metricPort))
	daemon(t, prometheus, "--config.file", config, "--storage.tsdb.path", filepath.Join(dir, "prom"),
		"--web.listen-address", fmt.Sprintf("127.0.0.1:%d", promPort))

	// The alerts fire in Prometheus…
	type alert struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		State       string            `json:"state"`
	}
	firing := func(name string) (alert, bool, string) {
		_, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/api/v1/alerts", promPort))
		var r struct {
			Data struct{ Alerts []alert } `json:"data"`
		}
		_ = json.Unmarshal([]byte(body), &r)
		for _, a := range r.Data.Alerts {
			if a.Labels["alertname"] == name && a.State == "firing" {
				return a, true, body
			}
		}
		return alert{}, false, body
	}
	var idle, hot alert
	testutil.Eventually(t, 90*time.Second, "GPUAllocatedButIdle and GPUTemperatureCritical fire in Prometheus", func() (bool, string) {
		var ok1, ok2 bool
		var body string
		idle, ok1, _ = firing("GPUAllocatedButIdle")
		hot, ok2, body = firing("GPUTemperatureCritical")
		return ok1 && ok2, body
	})
	if idle.Labels["user"] != "mia" || idle.Labels["container"] != container || !strings.Contains(idle.Annotations["description"], container) {
		t.Errorf("the idle-GPU alert must name the user and the container: %+v", idle)
	}
	if hot.Labels["gpu"] != "1" || hot.Labels["severity"] != "critical" || !strings.Contains(hot.Annotations["summary"], "96 °C") {
		t.Errorf("the temperature alert: %+v", hot)
	}
	// …and reach a person: by email and by webhook, naming mia and her container.
	testutil.Eventually(t, 90*time.Second, "both alerts arrive by email", func() (bool, string) {
		text := decoded(mail.String())
		return strings.Contains(text, "GPUAllocatedButIdle") && strings.Contains(text, "GPUTemperatureCritical") &&
			strings.Contains(text, container) && strings.Contains(text, "mia"), text
	})
	testutil.Eventually(t, 30*time.Second, "both alerts arrive at the webhook", func() (bool, string) {
		body := hook.all()
		return strings.Contains(body, `"alertname":"GPUAllocatedButIdle"`) && strings.Contains(body, `"alertname":"GPUTemperatureCritical"`) &&
			strings.Contains(body, `"container":"`+container+`"`) && strings.Contains(body, `"user":"mia"`), body
	})
	if text := decoded(mail.String()); !strings.Contains(text, "[gpuwarden CRITICAL]") {
		t.Errorf("the critical alert's mail is titled by the critical route:\n%s", text)
	}
}

// decoded undoes the encodings of the mails the sink printed: RFC 2047 words in the
// headers ("°C" in a subject) and the quoted-printable bodies.
func decoded(raw string) string {
	if h, err := new(mime.WordDecoder).DecodeHeader(raw); err == nil {
		raw = h
	}
	b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(raw)))
	if err != nil && len(b) == 0 {
		return raw
	}
	return string(b)
}

// smtpSink starts a REAL SMTP server (python3-aiosmtpd, printing every message) on a free
// port of 127.0.0.1, and returns the server flags that send gpuwarden's mail to it, with
// the template {user}@lab.test, and what it received.
func smtpSink(t *testing.T) ([]string, *testutil.SyncBuffer) {
	t.Helper()
	python := "/usr/bin/python3" // Debian's, which python3-aiosmtpd installs into
	testutil.Require(t, exec.Command(python, "-c", "import aiosmtpd").Run() == nil, "python3-aiosmtpd is not installed (run hack/install-deps.sh)")
	port := testutil.FreePort(t)
	mail := daemon(t, python, "-u", "-m", "aiosmtpd", "-n", "-l", fmt.Sprintf("127.0.0.1:%d", port), "-c", "aiosmtpd.handlers.Debugging")
	return []string{"--smtp-server", fmt.Sprintf("127.0.0.1:%d", port), "--smtp-from", "gpuwarden@e2e.test", "--notify-email-template", "{user}@lab.test"}, mail
}
