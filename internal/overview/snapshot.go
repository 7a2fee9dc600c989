// Package overview is what `gpuwarden top` and the status page show: every GPU and MIG
// instance with its readings and holder, the queue, the week's reservations and each user's
// holdings against quota and budget, as one Snapshot. Build is pure (objects, readings and a
// time in, a Snapshot out); Read gathers the objects from the API server and Readings the
// GPUs' readings from a node's metrics, so that neither view asks NVML or Docker itself.
package overview

import (
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Snapshot is the state of the GPUs at one moment.
type Snapshot struct {
	Time time.Time `json:"time"`
	// Node is the node shown; empty for all.
	Node string `json:"node,omitempty"`
	// Devices are the GPUs and their MIG instances, by node and index; a MIG instance follows
	// its GPU.
	Devices []Device `json:"devices"`
	// Queue are the requests waiting for GPUs, by node and place.
	Queue []Waiting `json:"queue"`
	// Unplaced counts pending requests no node has taken into its queue yet.
	Unplaced int `json:"unplaced,omitempty"`
	// Reservations are the bookings with a window in the week from Time, by start.
	Reservations []Booking `json:"reservations"`
	// Users are those holding, waiting or limited, by name.
	Users []User `json:"users"`
	// Readings says where the utilisation, memory, temperature and power come from, and
	// ReadingsError why there are none.
	Readings      string `json:"readings,omitempty"`
	ReadingsError string `json:"readingsError,omitempty"`
}

// Device is a whole GPU or one MIG instance.
type Device struct {
	Node string `json:"node"`
	// GPU is the GPU object's name; Index its NVML index.
	GPU   string `json:"gpu"`
	Index int32  `json:"index"`
	UUID  string `json:"uuid"`
	Model string `json:"model,omitempty"`
	// Profile is a MIG instance's profile (1g.10gb); empty for a whole GPU.
	Profile string `json:"profile,omitempty"`
	// MIG is true for a GPU in MIG mode: its instances follow it and hold its work.
	MIG    bool   `json:"mig,omitempty"`
	Health string `json:"health,omitempty"`
	// The readings; nil where the node's metrics give none (utilisation on a MIG instance).
	UtilizationPercent *float64 `json:"utilizationPercent,omitempty"`
	MemoryUsedBytes    *int64   `json:"memoryUsedBytes,omitempty"`
	MemoryTotalBytes   *int64   `json:"memoryTotalBytes,omitempty"`
	TemperatureC       *float64 `json:"temperatureC,omitempty"`
	PowerWatts         *float64 `json:"powerWatts,omitempty"`
	// Holder is who holds it; nil when free (or, for a MIG GPU, held only through its
	// instances).
	Holder *Holder `json:"holder,omitempty"`
	// ReservedBy names the reservation whose window holds it now, if any: its holder holds
	// it through that reservation, or is to make way for it.
	ReservedBy string `json:"reservedBy,omitempty"`
}

// Holder is a bound allocation as its devices show it.
type Holder struct {
	User       string `json:"user"`
	Allocation string `json:"allocation"`
	Container  string `json:"container,omitempty"`
	// Type is the container type (docker, notebook, devcontainer, …).
	Type string `json:"type,omitempty"`
	// Borrowed is true for GPUs held beyond quota, to be given back when asked for.
	Borrowed bool       `json:"borrowed,omitempty"`
	Since    *time.Time `json:"since,omitempty"`
	// IdleSince is the start of its current idle run; IdleWarnAt and IdleStopAt when the
	// idle rules warn and stop it if it stays idle.
	IdleSince  *time.Time `json:"idleSince,omitempty"`
	IdleWarnAt *time.Time `json:"idleWarnAt,omitempty"`
	IdleStopAt *time.Time `json:"idleStopAt,omitempty"`
	// RuntimeEnd is when its maximum runtime runs out.
	RuntimeEnd *time.Time `json:"runtimeEnd,omitempty"`
	// Displaced says a reservation will stop it, and when.
	DisplacedBy string     `json:"displacedBy,omitempty"`
	DisplacedAt *time.Time `json:"displacedAt,omitempty"`
}

// Waiting is a request in a node's queue.
type Waiting struct {
	Node           string     `json:"node"`
	Position       int32      `json:"position"`
	Name           string     `json:"name"`
	User           string     `json:"user"`
	Request        string     `json:"request"`
	WaitingSince   time.Time  `json:"waitingSince"`
	EstimatedStart *time.Time `json:"estimatedStart,omitempty"`
	LatestStart    *time.Time `json:"latestStart,omitempty"`
	BlockedBy      string     `json:"blockedBy,omitempty"`
	Why            string     `json:"why"`
}

// Booking is one window of a reservation.
type Booking struct {
	Name    string `json:"name"`
	Phase   string `json:"phase"`
	Node    string `json:"node,omitempty"`
	Devices string `json:"devices,omitempty"`
	Request string `json:"request"`
	// For says whom it is for, as people read it; Subjects are those it names.
	For      string                      `json:"for"`
	Subjects []gpuwardenv1alpha1.Subject `json:"subjects,omitempty"`
	Start    time.Time                   `json:"start"`
	End      time.Time                   `json:"end"`
	Weekly   bool                        `json:"weekly,omitempty"`
	// Active is true while the window is on.
	Active   bool   `json:"active,omitempty"`
	Displace string `json:"displace,omitempty"`
}

// User is one user's holdings against their limits.
type User struct {
	Name string `json:"name"`
	// GPUEquivalents are held now; Quota is the limit on them ("" when none applies,
	// "unlimited" when lifted).
	GPUEquivalents float64 `json:"gpuEquivalents"`
	Quota          string  `json:"quota,omitempty"`
	Containers     int     `json:"containers"`
	Borrowed       float64 `json:"borrowed,omitempty"`
	Waiting        int     `json:"waiting,omitempty"`
	// Budget: GPU-hours used of BudgetGPUHours over BudgetWindow, when a budget applies.
	BudgetUsedGPUHours float64 `json:"budgetUsedGPUHours,omitempty"`
	BudgetGPUHours     float64 `json:"budgetGPUHours,omitempty"`
	BudgetWindow       string  `json:"budgetWindow,omitempty"`
}
