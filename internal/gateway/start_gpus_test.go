package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

func gpuContainer(requests ...container.DeviceRequest) inspected {
	var ct inspected
	ct.ID, ct.Name = "0123456789abcdef", "/nb"
	ct.Config.Labels = map[string]string{gpuwardenv1alpha1.LabelUser: "alice", gpuwardenv1alpha1.LabelAllocation: "gateway-1",
		gpuwardenv1alpha1.LabelContainerType: "devcontainer"}
	ct.HostConfig.DeviceRequests = requests
	return ct
}

// A start of a GPU container asks for its very devices again, for its owner, naming its
// allocation; a refusal answers with the allocator's words and status, like a create.
func TestStartReacquiresTheCreatesDevices(t *testing.T) {
	w := newWorld(t)
	ct := gpuContainer(container.DeviceRequest{Driver: "nvidia", DeviceIDs: []string{"GPU-0", "GPU-1"}, Capabilities: [][]string{{"gpu"}}})
	if err := w.s.checkStartGPUs(context.Background(), w.alice(), ct); err != nil {
		t.Fatalf("a start whose GPUs are held: %v", err)
	}
	if len(w.gpus.reacquired) != 1 {
		t.Fatalf("%d reacquisitions", len(w.gpus.reacquired))
	}
	got := w.gpus.reacquired[0]
	if got.ID != ct.ID || got.Name != "nb" || got.Allocation != "gateway-1" || strings.Join(got.Devices, ",") != "GPU-0,GPU-1" ||
		got.Type != gpuwardenv1alpha1.ContainerTypeDevcontainer {
		t.Errorf("asked %+v", got)
	}

	w.gpus.refuseStart = "container nb cannot start: its GPU GPU-0 is now held by bob's allocation gateway-9; recreate the container with --gpus 2 to get a free GPU"
	err := w.s.checkStartGPUs(context.Background(), w.alice(), ct)
	var rf *refusal
	if !errors.As(err, &rf) || rf.status != http.StatusForbidden || !strings.Contains(rf.msg, "held by bob's allocation") {
		t.Errorf("a start on another's GPU: %v", err)
	}
	w.gpus.unavailable = true
	if err := w.s.checkStartGPUs(context.Background(), w.alice(), ct); !errors.As(err, &rf) || rf.status != http.StatusServiceUnavailable {
		t.Errorf("a start that waited in vain: %v", err)
	}
}

func TestStartWithoutGPUsOrWithoutNamedDevices(t *testing.T) {
	w := newWorld(t)
	if err := w.s.checkStartGPUs(context.Background(), w.alice(), gpuContainer()); err != nil || len(w.gpus.reacquired) != 0 {
		t.Errorf("a container without GPUs: %v, %d reacquisitions", err, len(w.gpus.reacquired))
	}
	for _, ct := range []inspected{
		gpuContainer(container.DeviceRequest{Count: -1, Capabilities: [][]string{{"gpu"}}}),
		gpuContainer(container.DeviceRequest{Driver: "nvidia", Count: 1, Capabilities: [][]string{{"gpu"}}}),
	} {
		var rf *refusal
		if err := w.s.checkStartGPUs(context.Background(), w.alice(), ct); !errors.As(err, &rf) || !strings.Contains(rf.msg, "without naming devices") {
			t.Errorf("%+v: %v", ct.HostConfig.DeviceRequests, err)
		}
	}
	cdi := gpuContainer(container.DeviceRequest{Driver: "cdi", DeviceIDs: []string{"nvidia.com/gpu=GPU-3"}})
	if err := w.s.checkStartGPUs(context.Background(), w.alice(), cdi); err != nil || strings.Join(w.gpus.reacquired[0].Devices, ",") != "GPU-3" {
		t.Errorf("a CDI container: %v %+v", err, w.gpus.reacquired)
	}
	w.s.GPUs = nil
	if err := w.s.checkStartGPUs(context.Background(), w.alice(), cdi); err == nil {
		t.Error("a gateway without GPUs started a GPU container")
	}
}
