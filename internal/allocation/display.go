package allocation

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// What `kubectl get` shows of allocations and GPUs: printer columns can only show fields,
// so the allocation controller keeps these summaries (and two labels) in step.

// DevicesSummary is status.devicesSummary of an allocation holding devices: the GPU
// indexes ("0,1"), a MIG slice as index:profile ("4:1g.10gb"), in the order held.
func DevicesSummary(devices []gpuwardenv1alpha1.BoundDevice) string {
	parts := make([]string, 0, len(devices))
	for _, d := range devices {
		s := strconv.Itoa(int(d.Index))
		if d.MIGProfile != "" {
			s += ":" + d.MIGProfile
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// SortedUnique is names sorted, each once, joined with commas: the holders or users of a
// GPU whose slices several allocations (or one allocation several times) hold.
func SortedUnique(names []string) string {
	out := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "" })
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ",")
}

// SyncLabels sets a's user label to its spec.user and removes the phase label an earlier
// version kept (status.phase is a selectable field now); it reports whether they changed.
// A user that is no valid label value removes the label: a label present is always the
// truth, whoever wrote it first.
func SyncLabels(a *gpuwardenv1alpha1.GPUAllocation) bool {
	changed := setLabel(a, gpuwardenv1alpha1.LabelUser, a.Spec.User)
	return setLabel(a, gpuwardenv1alpha1.LabelPhase, "") || changed
}

// LabelsInStep reports whether a's labels already say what SyncLabels would set.
func LabelsInStep(a *gpuwardenv1alpha1.GPUAllocation) bool {
	return !SyncLabels(a.DeepCopy())
}

func setLabel(a *gpuwardenv1alpha1.GPUAllocation, key, value string) bool {
	have, present := a.Labels[key]
	if value == "" || len(validation.IsValidLabelValue(value)) > 0 {
		if !present {
			return false
		}
		delete(a.Labels, key)
		return true
	}
	if present && have == value {
		return false
	}
	if a.Labels == nil {
		a.Labels = map[string]string{}
	}
	a.Labels[key] = value
	return true
}

// RequestSummary is what an allocation or a reservation asks for, for people: "2 GPUs",
// "3g.40gb", "devices 0,1".
func RequestSummary(r gpuwardenv1alpha1.AllocationRequest) string {
	switch {
	case r.MIGProfile != "":
		return r.MIGProfile
	case len(r.Devices) > 0:
		return "devices " + strings.Join(r.Devices, ",")
	case r.GPUs != nil && *r.GPUs == 1:
		return "1 GPU"
	case r.GPUs != nil:
		return fmt.Sprintf("%d GPUs", *r.GPUs)
	}
	return "?"
}
