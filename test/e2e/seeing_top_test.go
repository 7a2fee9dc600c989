package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/overview"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// checkTop runs `gpuwarden top` in a real terminal (a tmux session of 160×50) until its
// screen shows bob's and alice's holders, alice's request first in the queue and the
// booking, and q ends it with status 0; then --once and -o json agree with kubectl, and
// alice gets the same view with her own kubeconfig.
func checkTop(t *testing.T, w *seeing) {
	bin := binary(t)
	tmuxBin := testutil.Tool(t, "tmux")
	// A tmux server of this test's own (-L), which keeps a pane whose program ended, so that
	// its exit status can be read.
	socket := fmt.Sprintf("gw-top-%d-%d", os.Getpid(), time.Now().UnixNano())
	conf := filepath.Join(t.TempDir(), "tmux.conf")
	if err := os.WriteFile(conf, []byte("set-option -g remain-on-exit on\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmux := func(args ...string) (string, error) {
		out, err := exec.Command(tmuxBin, append([]string{"-L", socket, "-f", conf}, args...)...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { _, _ = tmux("kill-server") })
	const session = "top"
	// The pane's shell also writes top's exit status to a file: tmux 3.3a at times never
	// reaps the pane's process (a zombie), and then #{pane_dead_status} stays empty.
	exit := filepath.Join(t.TempDir(), "exit")
	line := strings.Join([]string{shellQuote(bin), "top", "--kubeconfig", shellQuote(w.s.kubeconfig), "--metrics", shellQuote(w.metricsURL),
		"; echo $? >", shellQuote(exit)}, " ")
	if out, err := tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", line); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	var screen string
	testutil.Eventually(t, 60*time.Second, "top's screen shows the holders, the queue and the booking", func() (bool, string) {
		out, err := tmux("capture-pane", "-p", "-t", session)
		if err != nil {
			return false, err.Error() + "\n" + out
		}
		screen = out
		gpus := section(out, "GPUS", "QUEUE")
		ok := count(gpus, w.bob, w.bobContainer) == 7 && count(gpus, w.alice, w.aliceContainer) == 1 &&
			regexp.MustCompile(`(^|\s)1\s+`+regexp.QuoteMeta(w.waitingAllocation)+`(\s|$)`).MatchString(section(out, "QUEUE", "RESERVATIONS")) &&
			strings.Contains(section(out, "RESERVATIONS", "USERS"), w.reservation) && strings.Contains(out, "readings of node e2e-see")
		return ok, out
	})
	t.Logf("gpuwarden top in tmux (160×50):\n%s", screen)
	if out, err := tmux("send-keys", "-t", session, "q"); err != nil {
		t.Fatalf("tmux send-keys q: %v\n%s", err, out)
	}
	testutil.Eventually(t, 15*time.Second, "top ended by q with status 0", func() (bool, string) {
		out, err := tmux("display-message", "-p", "-t", session, "#{pane_dead} #{pane_dead_status}")
		dead, status, _ := strings.Cut(strings.TrimSpace(out), " ")
		code, _ := os.ReadFile(exit)
		return err == nil && dead == "1" && (status == "" || status == "0") && strings.TrimSpace(string(code)) == "0",
			fmt.Sprintf("pane dead, status: %q; top's exit status: %q", out, code)
	})

	// --once and -o json against kubectl.
	top := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"top", "--kubeconfig", w.s.kubeconfig, "--metrics", w.metricsURL}, args...)...).Output()
		if err != nil {
			t.Fatalf("gpuwarden top %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	want := kubectlView(t, w)
	var snap overview.Snapshot
	js := top("-o", "json")
	if err := json.Unmarshal([]byte(js), &snap); err != nil {
		t.Fatalf("top -o json: %v\n%s", err, js)
	}
	if got := jsonView(snap); !slices.Equal(want, got) {
		t.Errorf("top -o json disagrees with kubectl:\nkubectl:\n%s\ntop -o json:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
	for _, d := range snap.Devices {
		if d.UtilizationPercent == nil || d.MemoryTotalBytes == nil {
			t.Errorf("top -o json: GPU %d without its readings from %s: %+v", d.Index, w.metricsURL, d)
		}
	}
	once := top("--once")
	if got := onceView(once); !slices.Equal(want, got) {
		t.Errorf("top --once disagrees with kubectl:\nkubectl:\n%s\ntop --once:\n%s\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"), once)
	}
	if strings.Contains(once, "\x1b") {
		t.Errorf("top --once writes escape codes:\n%q", once)
	}

	// Alice, with her own kubeconfig, sees the same.
	kc := filepath.Join("/home", w.alice, ".kube", "gpuwarden-see")
	t.Cleanup(func() { os.Remove(kc) })
	if out, err := exec.Command("runuser", "-u", w.alice, "--", bin, "kubeconfig", "--gateway-socket", w.sock, "--days", "1", "-o", kc).CombinedOutput(); err != nil {
		t.Fatalf("alice's kubeconfig: %v\n%s", err, out)
	}
	out, err := exec.Command("runuser", "-u", w.alice, "--", bin, "top", "--kubeconfig", kc, "--metrics", w.metricsURL, "--once").CombinedOutput()
	if err != nil {
		t.Fatalf("top --once as %s: %v\n%s", w.alice, err, out)
	}
	if got := onceView(string(out)); !slices.Equal(want, got) {
		t.Errorf("top --once as %s disagrees with kubectl:\nkubectl:\n%s\ntop --once:\n%s", w.alice, strings.Join(want, "\n"), out)
	}
	out, err = exec.Command("runuser", "-u", w.alice, "--", bin, "top", "--kubeconfig", kc, "--metrics", w.metricsURL, "--once", "--user", w.alice).CombinedOutput()
	if err != nil || strings.Contains(section(string(out), "GPUS", "QUEUE"), w.bobContainer) || !strings.Contains(string(out), w.aliceContainer) {
		t.Errorf("top --once --user %s as %s: %v\n%s", w.alice, w.alice, err, out)
	}
}

// The three views are lines to compare: "gpu INDEX USER CONTAINER ALLOCATION" per GPU by
// index, "queue PLACE NAME" per waiting request, "rsv NAME START END" per booking, sorted.

// kubectlView is what kubectl says.
func kubectlView(t *testing.T, w *seeing) []string {
	t.Helper()
	var gpus struct {
		Items []struct {
			Spec struct {
				Index int32 `json:"index"`
			} `json:"spec"`
			Status struct {
				UUID   string `json:"uuid"`
				Holder string `json:"holder"`
			} `json:"status"`
		} `json:"items"`
	}
	var gas struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				User          string `json:"user"`
				ContainerName string `json:"containerName"`
			} `json:"spec"`
			Status struct {
				Phase         string `json:"phase"`
				ContainerName string `json:"containerName"`
				Queue         *struct {
					Position int32 `json:"position"`
				} `json:"queue"`
			} `json:"status"`
		} `json:"items"`
	}
	var rsvs struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Start time.Time `json:"start"`
				End   time.Time `json:"end"`
			} `json:"spec"`
			Status struct {
				Phase string `json:"phase"`
			} `json:"status"`
		} `json:"items"`
	}
	for what, into := range map[string]any{"gpus": &gpus, "ga": &gas, "rsv": &rsvs} {
		if err := json.Unmarshal([]byte(mustKubectl(t, w.s.kubeconfig, "get", what, "-o", "json")), into); err != nil {
			t.Fatalf("kubectl get %s -o json: %v", what, err)
		}
	}
	var out []string
	for _, g := range gpus.Items {
		line := fmt.Sprintf("gpu %d", g.Spec.Index)
		for _, a := range gas.Items {
			if a.Metadata.Name == g.Status.Holder && g.Status.Holder != "" {
				line += " " + strings.Join([]string{a.Spec.User, cmpOr(a.Status.ContainerName, a.Spec.ContainerName), a.Metadata.Name}, " ")
			}
		}
		out = append(out, line)
	}
	for _, a := range gas.Items {
		if a.Status.Phase == "Pending" && a.Status.Queue != nil {
			out = append(out, fmt.Sprintf("queue %d %s", a.Status.Queue.Position, a.Metadata.Name))
		}
	}
	for _, r := range rsvs.Items {
		if r.Status.Phase == "Accepted" || r.Status.Phase == "Active" {
			out = append(out, fmt.Sprintf("rsv %s %s %s", r.Metadata.Name, r.Spec.Start.UTC().Format(time.RFC3339), r.Spec.End.UTC().Format(time.RFC3339)))
		}
	}
	slices.Sort(out)
	if !slices.Contains(out, "queue 1 "+w.waitingAllocation) || len(slices.DeleteFunc(slices.Clone(out), func(l string) bool { return !strings.HasPrefix(l, "gpu ") })) != 8 {
		t.Fatalf("kubectl does not show the fixture:\n%s", strings.Join(out, "\n"))
	}
	return out
}

// jsonView is what top -o json says.
func jsonView(s overview.Snapshot) []string {
	var out []string
	for _, d := range s.Devices {
		line := fmt.Sprintf("gpu %d", d.Index)
		if h := d.Holder; h != nil {
			line += " " + strings.Join([]string{h.User, h.Container, h.Allocation}, " ")
		}
		out = append(out, line)
	}
	for _, q := range s.Queue {
		out = append(out, fmt.Sprintf("queue %d %s", q.Position, q.Name))
	}
	for _, b := range s.Reservations {
		out = append(out, fmt.Sprintf("rsv %s %s %s", b.Name, b.Start.UTC().Format(time.RFC3339), b.End.UTC().Format(time.RFC3339)))
	}
	slices.Sort(out)
	return out
}

// onceView is what top --once says.
func onceView(text string) []string {
	var out []string
	for _, r := range tableRows(section(text, "GPUS", "QUEUE")) {
		line := "gpu " + r["GPU"]
		if r["ALLOCATION"] != "-" {
			line += " " + strings.Join([]string{r["USER"], r["CONTAINER"], r["ALLOCATION"]}, " ")
		}
		out = append(out, line)
	}
	for _, r := range tableRows(section(text, "QUEUE", "RESERVATIONS")) {
		if _, err := strconv.Atoi(r["PLACE"]); err == nil {
			out = append(out, "queue "+r["PLACE"]+" "+r["NAME"])
		}
	}
	for _, r := range tableRows(section(text, "RESERVATIONS", "USERS")) {
		out = append(out, "rsv "+r["NAME"]+" "+r["START"]+" "+r["END"])
	}
	slices.Sort(out)
	return out
}

// section is the table between the line starting with title and the one starting with
// next (its title line left out, and the blank lines).
func section(text, title, next string) string {
	var out []string
	in := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, title):
			in = true
			continue
		case strings.HasPrefix(l, next):
			in = false
		}
		if in && strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// count is how many of text's lines contain every one of words.
func count(text string, words ...string) int {
	n := 0
	for _, l := range strings.Split(text, "\n") {
		if len(lacks(l, words...)) == 0 {
			n++
		}
	}
	return n
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
