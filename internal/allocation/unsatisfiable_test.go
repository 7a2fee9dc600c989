package allocation

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

func TestUnsatisfiable(t *testing.T) {
	node := inventory(2, []int{3, 2, 1, 1}) // GPUs 0, 1 whole; GPU 2 in 3g, 2g, 1g, 1g
	cases := []struct {
		name string
		req  Request
		// want is a part of the reason; "" when the request can be met some day.
		want string
	}{
		{"as many GPUs as there are", Request{User: "a", GPUs: 2}, ""},
		{"more GPUs than the node has", Request{User: "a", GPUs: 3}, "a asked for 3 whole GPUs; gpu01 has 2 whole GPUs"},
		{"a profile some GPU offers", Request{MIGProfile: "2g.20gb"}, ""},
		{"a profile no GPU offers", Request{MIGProfile: "7g.80gb"}, "no GPU on gpu01 offers MIG profile 7g.80gb (offered: 1g.10gb, 2g.20gb, 3g.30gb)"},
		{"a device by UUID", Request{Devices: []string{"GPU-1", "MIG-2-0"}}, ""},
		{"a device by index and by MIG position", Request{Devices: []string{"0", "2:3"}}, ""},
		{"a device that does not exist", Request{Devices: []string{"GPU-9"}}, "no device GPU-9 on gpu01"},
		{"an index past the last GPU", Request{Devices: []string{"5"}}, "no device 5 on gpu01"},
		{"a MIG position past the last instance", Request{Devices: []string{"2:4"}}, "no device 2:4 on gpu01"},
		{"a MIG GPU's index names no whole GPU", Request{Devices: []string{"2"}}, "no device 2 on gpu01"},
		{"the same device twice, by UUID and by index", Request{Devices: []string{"GPU-0", "0"}}, "names the same device more than once (0)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Unsatisfiable(node, c.req, "gpu01")
			if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
				t.Errorf("Unsatisfiable = %q, want %q", got, c.want)
			}
		})
	}
	if got := Unsatisfiable(inventory(2), Request{MIGProfile: "1g.10gb"}, "gpu01"); !strings.Contains(got, "none is in MIG mode") {
		t.Errorf("no MIG at all: %q", got)
	}
}

func TestDecideResolvesIndicesAndRefusesDuplicates(t *testing.T) {
	node := inventory(2, []int{3, 4})
	d := Decide(node, nil, Quota{}, Request{User: "a", Devices: []string{"1", "2:1"}})
	if !d.Placed() {
		t.Fatalf("devices by index not placed: %+v", d)
	}
	if diff := cmp.Diff([]string{"GPU-1", "MIG-2-1"}, uuids(d.Slots)); diff != "" {
		t.Errorf("slots (-want +got):\n%s", diff)
	}
	d = Decide(node, nil, Quota{}, Request{User: "a", Devices: []string{"GPU-1", "1"}})
	if d.Reason != gpuwardenv1alpha1.ReasonUnsatisfiable || !d.Final() {
		t.Errorf("the same device twice: %+v, want a final %s", d, gpuwardenv1alpha1.ReasonUnsatisfiable)
	}
}

func TestQuotaMessageShowsATinyLimit(t *testing.T) {
	q := Quota{GPUEquivalents: limit(1e-9, "GPUQuota tiny")}
	d := Decide(inventory(1), nil, q, Request{User: "a", GPUs: 1})
	if d.Reason != gpuwardenv1alpha1.ReasonQuotaExceeded || !strings.Contains(d.Message, "0/0.000000001 gpu-equivalents") {
		t.Errorf("decision = %+v, want the real limit in the message", d)
	}
	for f, want := range map[float64]string{0: "0", 2: "2", 3.0 / 7: "0.43", 1e-9: "0.000000001", 0.004: "0.004"} {
		if got := num(f); got != want {
			t.Errorf("num(%v) = %q, want %q", f, got, want)
		}
	}
}
