// Package release tests the release tooling on scratch git histories.
package release

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type repo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T) *repo {
	r := &repo{t: t, dir: t.TempDir()}
	r.git("init", "-q")
	r.git("config", "user.email", "dev@gpuwarden.test")
	r.git("config", "user.name", "dev")
	return r
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	out, err := exec.Command("git", append([]string{"-C", r.dir}, args...)...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *repo) commit(message string) { r.git("commit", "-q", "--allow-empty", "-m", message) }

// release runs hack/release.sh in the repository; code is its exit status.
func (r *repo) release(args ...string) (out string, code int) {
	r.t.Helper()
	script, err := filepath.Abs("../../hack/release.sh")
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command(script, args...)
	cmd.Dir = r.dir
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return strings.TrimSpace(string(b)), ee.ExitCode()
	} else if err != nil {
		r.t.Fatal(err)
	}
	return strings.TrimSpace(string(b)), 0
}

// TestNextVersionFromConventionalCommits walks a scripted history and checks the version
// hack/release.sh computes after each commit.
func TestNextVersionFromConventionalCommits(t *testing.T) {
	r := newRepo(t)
	for _, step := range []struct {
		commit, tag string // a commit to make, or a tag to set at HEAD
		want        string // the next version; "" when nothing is to be released
	}{
		{commit: "docs: a README", want: ""},
		{commit: "chore: tidy", want: ""},
		{commit: "fix(gateway): a bug", want: "v0.0.1"},
		{commit: "perf: faster", want: "v0.0.1"},
		{commit: "feat(lifecycle): idle reclaim", want: "v0.1.0"},
		{commit: "fix: another", want: "v0.1.0"},
		{tag: "v0.1.0", want: ""},
		{commit: "test: more", want: ""},
		{commit: "fix: after the release", want: "v0.1.1"},
		{tag: "v0.1.1", want: ""},
		{commit: "feat!: a new API", want: "v1.0.0"},
		{tag: "v1.0.0", want: ""},
		{commit: "refactor(api)!: renamed a field", want: "v2.0.0"},
		{tag: "v2.0.0", want: ""},
		{commit: "feat: quotas by group\n\nBREAKING CHANGE: quotas need subjects", want: "v3.0.0"},
		{tag: "v3.0.0", want: ""},
		{commit: "feature: not a conventional type", want: ""},
		{commit: "Fix: capitalised is not fix either", want: ""},
		{commit: "docs: mentions BREAKING CHANGE: in the subject only", want: ""},
		{commit: "feat: two features", want: "v3.1.0"},
		{commit: "fix: and a fix", want: "v3.1.0"},
		{tag: "not-a-version", want: "v3.1.0"},
	} {
		label := step.commit
		if step.tag != "" {
			r.git("tag", step.tag)
			label = "tag " + step.tag
		} else {
			r.commit(step.commit)
		}
		got, code := r.release("next")
		if step.want == "" && (code != 3 || got != "") || step.want != "" && (code != 0 || got != step.want) {
			t.Errorf("after %q: next = %q (exit %d), want %q", label, got, code, step.want)
		}
	}
	log, code := r.release("changelog")
	want := "### Features\n\n- two features (" + r.git("rev-parse", "--short", "HEAD~1") + ")\n\n### Fixes\n\n- and a fix (" + r.git("rev-parse", "--short", "HEAD") + ")"
	if code != 0 || log != want {
		t.Errorf("changelog (exit %d):\n%s\nwant:\n%s", code, log, want)
	}
	if v, code := r.release("tag"); code != 0 || v != "v3.1.0" || r.git("describe", "--tags", "--match", "v*") != "v3.1.0" {
		t.Errorf("tag: %q (exit %d)", v, code)
	}
	if msg := r.git("tag", "-l", "--format=%(contents)", "v3.1.0"); !strings.Contains(msg, "- two features") {
		t.Errorf("the tag's message lacks the changelog:\n%s", msg)
	}
}
