package explain

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// samplePolicies are config/samples/containerpolicies.yaml.
func samplePolicies(t *testing.T) []client.Object {
	t.Helper()
	data, err := os.ReadFile("../../../../config/samples/containerpolicies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []client.Object
	for {
		var p gpuwardenv1alpha1.ContainerPolicy
		if err := dec.Decode(&p); err != nil {
			break
		}
		if p.Name != "" {
			out = append(out, &p)
		}
	}
	return out
}

// TestExplainClaimedType: --claimed shows what a devcontainer a user makes through the
// gateway gets (docker's limits and the grant for claimed devcontainers), not what the
// devcontainer policy gives trusted ones.
func TestExplainClaimedType(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(samplePolicies(t)...).Build()
	now := func() time.Time { return time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC) }
	run := func(claimed bool) string {
		t.Helper()
		o := &Options{GroupsSet: true, Groups: []string{"student"}, ContainerType: "devcontainer", Claimed: claimed, now: now}
		var b strings.Builder
		if err := o.Run(context.Background(), c, "sam", &b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	trusted := run(false)
	if !strings.Contains(trusted, "ContainerPolicy devcontainers") || !strings.Contains(trusted, "unlimited") {
		t.Errorf("an unclaimed devcontainer:\n%s", trusted)
	}
	claimed := run(true)
	for _, want := range []string{
		"whose type the user claimed by label (gpuwarden.io/type-claimed=true)",
		"Policies see the container as docker unless they select the claim: ContainerPolicy devcontainers-claimed grants claimed devcontainer containers their limits.",
		"4h0m0s",
	} {
		if !strings.Contains(claimed, want) {
			t.Errorf("a claimed devcontainer lacks %q:\n%s", want, claimed)
		}
	}
	if strings.Contains(claimed, "unlimited") {
		t.Errorf("a claimed devcontainer is unlimited:\n%s", claimed)
	}
}
