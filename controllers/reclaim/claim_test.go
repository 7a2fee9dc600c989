package reclaim

import (
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// TestExplainSaysTheTypeWasClaimed: explain says which label claimed the type and which
// policies, if any, take the claim at its word.
func TestExplainSaysTheTypeWasClaimed(t *testing.T) {
	l := map[string]string{labels.DevcontainerDir: "/home/alice/p", gpuwardenv1alpha1.LabelContainerType: "devcontainer", gpuwardenv1alpha1.LabelTypeClaimed: "true"}
	var b strings.Builder
	explainClaim(&b, l, resolve.Policy{Matched: []string{"defaults", "docker"}})
	want := "The type devcontainer was claimed by label devcontainer.local_folder on a create through the Docker gateway (gpuwarden.io/type-claimed=true): every policy treats the container as docker, so it gets docker containers' limits.\n"
	if b.String() != want {
		t.Errorf("explain =\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	explainClaim(&b, l, resolve.Policy{Matched: []string{"defaults", "docker", "devcontainers-claimed"}, TrustClaim: []string{"devcontainers-claimed"}})
	if !strings.Contains(b.String(), "ContainerPolicy devcontainers-claimed grants claimed devcontainer containers their limits; every other policy treats it as docker.") {
		t.Errorf("explain with a grant = %s", b.String())
	}
}

// TestPoliciesSeeAClaimedTypeAsDocker: the controllers' policy resolution reads the claim
// from the container's labels.
func TestPoliciesSeeAClaimedTypeAsDocker(t *testing.T) {
	d := func(s string) *gpuwardenv1alpha1.Duration { v := gpuwardenv1alpha1.Duration(s); return &v }
	policies := []gpuwardenv1alpha1.ContainerPolicy{
		{Spec: gpuwardenv1alpha1.ContainerPolicySpec{Selector: gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{"docker"}},
			Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: d("30m")}}},
		{Spec: gpuwardenv1alpha1.ContainerPolicySpec{Selector: gpuwardenv1alpha1.PolicySelector{ContainerTypes: []gpuwardenv1alpha1.ContainerType{"devcontainer"}},
			Precedence: 10, Unlimited: []gpuwardenv1alpha1.PolicyLimitName{"idleTimeout"}}},
	}
	policies[0].Name, policies[1].Name = "docker", "devcontainers"
	p := actions.Policies{Groups: resolve.StaticGroups{}, Clock: clocktesting.NewFakeClock(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))}
	claimed := map[string]string{labels.DevcontainerDir: "/home/alice/p", gpuwardenv1alpha1.LabelContainerType: "devcontainer", gpuwardenv1alpha1.LabelTypeClaimed: "true"}
	got, err := p.Among(t.Context(), policies, "alice", claimed)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.Get("idle.timeout"); v != "30m0s" {
		t.Errorf("a claimed devcontainer's idle.timeout = %v, want docker's 30m0s", v)
	}
	delete(claimed, gpuwardenv1alpha1.LabelTypeClaimed)
	got, _ = p.Among(t.Context(), policies, "alice", claimed)
	if v, _ := got.Get("idle.timeout"); v != resolve.Unlimited {
		t.Errorf("an unclaimed devcontainer's idle.timeout = %v, want unlimited", v)
	}
}
