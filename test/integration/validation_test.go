package integration

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
)

var nameSeq atomic.Int64

// object decodes a manifest and gives it a unique name so cases never collide.
func object(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(manifest), &m); err != nil {
		t.Fatalf("bad test manifest: %v\n%s", err, manifest)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetName(fmt.Sprintf("case-%d", nameSeq.Add(1)))
	return u
}

func quota(spec string) string {
	return "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUQuota\nspec:\n" + indent(spec)
}

func policy(spec string) string {
	return "apiVersion: gpuwarden.io/v1alpha1\nkind: ContainerPolicy\nspec:\n" + indent(spec)
}

func allocation(spec string) string {
	return "apiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nspec:\n" + indent(spec)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// TestInvalidManifestsAreRefused applies bad manifests through the real API server and
// checks that each is refused with a message naming the offending field.
func TestInvalidManifestsAreRefused(t *testing.T) {
	c := controlplanetest.Get(t).Client(t)
	everyone := "subjects: [{kind: Everyone}]\n"
	cases := []struct {
		name     string
		manifest string
		// wantField must appear in the error: the path of the offending field.
		wantField string
		// wantText must appear too: what is wrong with it.
		wantText string
	}{
		{"quota with negative gpuEquivalents", quota(everyone + "limits: {gpuEquivalents: \"-1\"}"), "spec.limits.gpuEquivalents", "must not be negative"},
		{"quota with a gpuEquivalents that is not a number", quota(everyone + "limits: {gpuEquivalents: lots}"), "spec.limits.gpuEquivalents", ""},
		{"quota with negative maxGPUsPerContainer", quota(everyone + "limits: {maxGPUsPerContainer: -1}"), "spec.limits.maxGPUsPerContainer", "greater than or equal to 0"},
		{"quota with negative maxContainers", quota(everyone + "limits: {maxContainers: -3}"), "spec.limits.maxContainers", "greater than or equal to 0"},
		{"quota with no subjects", quota("subjects: []\nlimits: {maxContainers: 1}"), "spec.subjects", "at least 1 item"},
		{"quota without subjects at all", quota("limits: {maxContainers: 1}"), "spec.subjects", "Required"},
		{"quota with an unknown subject kind", quota("subjects: [{kind: Robot, name: r2}]"), "spec.subjects[0].kind", "Unsupported value"},
		{"quota with a group subject without a name", quota("subjects: [{kind: Group}]"), "spec.subjects[0]", "name is required"},
		{"quota with a named Everyone subject", quota("subjects: [{kind: Everyone, name: bob}]"), "spec.subjects[0]", "must be empty for kind Everyone"},
		{"quota with Everyone among other subjects", quota("subjects: [{kind: Everyone}, {kind: User, name: bob}]"), "spec.subjects", "Everyone must be the only subject"},
		{"quota with an unknown scope", quota(everyone + "scope: Global"), "spec.scope", "Unsupported value"},
		{"quota with a limit both set and unlimited", quota(everyone + "limits: {gpuEquivalents: \"2\"}\nunlimited: [gpuEquivalents]"), "spec.unlimited", "cannot be both set"},
		{"quota with an unknown unlimited limit", quota(everyone + "unlimited: [memory]"), "spec.unlimited[0]", "Unsupported value"},
		{"quota with a negative precedence", quota(everyone + "precedence: -5"), "spec.precedence", "greater than or equal to 0"},
		{"quota with a user name holding a slash", quota("subjects: [{kind: User, name: ../etc}]"), "spec.subjects[0].name", "should match"},
		{"policy with a malformed idle timeout", policy("idle: {timeout: 30 minutes}"), "spec.idle.timeout", "must be a duration such as 30m, 2h45m or 90s"},
		{"policy with a negative maxRuntime", policy("maxRuntime: -1h"), "spec.maxRuntime", "must be a duration such as 30m, 2h45m or 90s"},
		{"policy with zero cpus", policy("resources: {cpus: \"0\"}"), "spec.resources.cpus", "must be more than 0"},
		{"policy with cpus that are not a quantity", policy("resources: {cpus: many}"), "spec.resources.cpus", ""},
		{"policy with a tiny memory", policy("resources: {memory: 1Ki}"), "spec.resources.memory", "at least 4Mi"},
		{"policy with a default memory over its maximum", policy("resources: {memory: 64Gi, maxMemory: 32Gi}"), "spec.resources.memory", "more than maxMemory"},
		{"policy with default cpus over the maximum", policy("resources: {cpus: \"16\", maxCPUs: \"8\"}"), "spec.resources.cpus", "more than maxCPUs"},
		{"policy with a zero pidsLimit", policy("resources: {pidsLimit: 0}"), "spec.resources.pidsLimit", "greater than or equal to 1"},
		{"policy with a negative shmSize", policy("resources: {shmSize: -1Gi}"), "spec.resources.shmSize", "must be more than 0"},
		{"policy selecting a user name holding a slash", policy("selector: {users: [../etc]}"), "spec.selector.users[0]", "should match"},
		{"policy selecting a user name with a space", policy("selector: {users: [\"alice bob\"]}"), "spec.selector.users[0]", "should match"},
		{"policy selecting an empty user name", policy("selector: {users: [\"\"]}"), "spec.selector.users[0]", ""},
		{"policy selecting a group name with a newline", policy("selector: {groups: [\"a\\nb\"]}"), "spec.selector.groups[0]", "should match"},
		{"policy with a malformed gpuHoldAfterStop", policy("gpuHoldAfterStop: soon"), "spec.gpuHoldAfterStop", "must be a duration such as 30m, 2h45m or 90s"},
		{"policy with an unknown mode", policy("mode: Yolo"), "spec.mode", "Unsupported value"},
		{"policy with a warning fraction above 1", policy("idle: {warnAtFractions: [\"1.5\"]}"), "spec.idle.warnAtFractions[0]", "should match"},
		{"policy with an unknown container type", policy("selector: {containerTypes: [vm]}"), "spec.selector.containerTypes[0]", "Unsupported value"},
		{"policy with GPU utilisation above 100", policy("idle: {gpuUtilizationPercent: 150}"), "spec.idle.gpuUtilizationPercent", "less than or equal to 100"},
		{"policy with zero consecutive samples", policy("idle: {consecutiveSamples: 0}"), "spec.idle.consecutiveSamples", "greater than or equal to 1"},
		{"policy with an expiry that is not a time", policy("expires: tomorrow"), "spec.expires", ""},
		{"policy with idle timeout both set and unlimited", policy("idle: {timeout: 30m}\nunlimited: [idleTimeout]"), "spec.unlimited", "cannot be both set"},
		{"policy with a webhook that is not a URL", policy("notify: {webhookURL: \"not a url\"}"), "spec.notify.webhookURL", "must be an http or https URL"},
		{"policy with a relative keep-alive path", policy("idle: {keepAlive: {path: keep-alive}}"), "spec.idle.keepAlive.path", "should match"},
		{"allocation for zero GPUs", allocation("user: alice\nrequest: {gpus: 0}"), "spec.request.gpus", "greater than or equal to 1"},
		{"allocation for a negative GPU count", allocation("user: alice\nrequest: {gpus: -2}"), "spec.request.gpus", "greater than or equal to 1"},
		{"allocation asking for a count and a MIG profile", allocation("user: alice\nrequest: {gpus: 1, migProfile: 3g.40gb}"), "spec.request", "exactly one of gpus, migProfile or devices"},
		{"allocation asking for a count and devices", allocation("user: alice\nrequest: {gpus: 1, devices: [GPU-1234]}"), "spec.request", "exactly one of gpus, migProfile or devices"},
		{"allocation asking for nothing", allocation("user: alice\nrequest: {}"), "spec.request", "exactly one of gpus, migProfile or devices"},
		{"allocation with a malformed MIG profile", allocation("user: alice\nrequest: {migProfile: big}"), "spec.request.migProfile", "should match"},
		{"allocation with a malformed device", allocation("user: alice\nrequest: {devices: [\"gpu zero\"]}"), "spec.request.devices[0]", "should match"},
		{"allocation without a user", allocation("request: {gpus: 1}"), "spec.user", "Required"},
		{"allocation with an unknown source", allocation("user: alice\nrequest: {gpus: 1}\nsource: Magic"), "spec.source", "Unsupported value"},
		{"allocation with an unknown container type", allocation("user: alice\nrequest: {gpus: 1}\ncontainerType: vm"), "spec.containerType", "Unsupported value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Create(context.Background(), object(t, tc.manifest))
			assertRefused(t, err, tc.wantField, tc.wantText)
		})
	}
}

// TestImmutableFieldsAreRefused changes fields that may not change and checks each update is refused.
func TestImmutableFieldsAreRefused(t *testing.T) {
	ctx := context.Background()
	c := controlplanetest.Get(t).Client(t)
	cases := []struct {
		name      string
		manifest  string
		bound     bool
		mutate    func(u *unstructured.Unstructured)
		wantField string
		wantText  string
	}{
		{
			name:      "allocation user",
			manifest:  allocation("user: alice\nrequest: {gpus: 1}"),
			mutate:    func(u *unstructured.Unstructured) { set(t, u, "mallory", "spec", "user") },
			wantField: "spec.user", wantText: "user is immutable",
		},
		{
			name:      "allocation request",
			manifest:  allocation("user: alice\nrequest: {gpus: 1}"),
			mutate:    func(u *unstructured.Unstructured) { set(t, u, int64(4), "spec", "request", "gpus") },
			wantField: "spec.request", wantText: "request is immutable",
		},
		{
			name:      "allocation node once set",
			manifest:  allocation("user: alice\nnodeName: gpu01\nrequest: {gpus: 1}"),
			mutate:    func(u *unstructured.Unstructured) { set(t, u, "gpu02", "spec", "nodeName") },
			wantField: "spec.nodeName", wantText: "nodeName is immutable once set",
		},
		{
			name:      "allocation container name after binding",
			manifest:  allocation("user: alice\nrequest: {gpus: 1}"),
			bound:     true,
			mutate:    func(u *unstructured.Unstructured) { set(t, u, "other", "spec", "containerName") },
			wantField: "spec", wantText: "spec is immutable once the allocation is Bound",
		},
		{
			name:      "GPU identity",
			manifest:  "apiVersion: gpuwarden.io/v1alpha1\nkind: GPU\nspec: {nodeName: gpu01, index: 0}\n",
			mutate:    func(u *unstructured.Unstructured) { set(t, u, int64(3), "spec", "index") },
			wantField: "spec", wantText: "spec is immutable",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := object(t, tc.manifest)
			if err := c.Create(ctx, u); err != nil {
				t.Fatalf("creating the valid object: %v", err)
			}
			if tc.bound {
				set(t, u, "Bound", "status", "phase")
				if err := c.Status().Update(ctx, u); err != nil {
					t.Fatalf("marking it Bound: %v", err)
				}
			}
			tc.mutate(u)
			assertRefused(t, c.Update(ctx, u), tc.wantField, tc.wantText)
		})
	}
}

// TestContainerNameMayBeSetWhilePending shows the immutability rule does not block the
// gateway from recording the container name before the allocation is decided.
func TestContainerNameMayBeSetWhilePending(t *testing.T) {
	ctx := context.Background()
	c := controlplanetest.Get(t).Client(t)
	u := object(t, allocation("user: alice\nrequest: {gpus: 1}"))
	if err := c.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	set(t, u, "train", "spec", "containerName")
	if err := c.Update(ctx, u); err != nil {
		t.Fatalf("setting containerName on a pending allocation: %v", err)
	}
}

func set(t *testing.T, u *unstructured.Unstructured, value any, path ...string) {
	t.Helper()
	if err := unstructured.SetNestedField(u.Object, value, path...); err != nil {
		t.Fatal(err)
	}
}

func assertRefused(t *testing.T, err error, field, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the API server accepted it; want a refusal naming %s", field)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want an Invalid error naming %s, got %T: %v", field, err, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, field) {
		t.Errorf("error does not name the field %q:\n%s", field, msg)
	}
	if text != "" && !strings.Contains(msg, text) {
		t.Errorf("error does not say %q:\n%s", text, msg)
	}
}
