package v1alpha1

// Condition types shared by every kind.
const (
	// ConditionAccepted is True when the controller has read the object's spec and
	// found it usable.
	ConditionAccepted = "Accepted"
)

// Reasons shared by every kind.
const (
	// ReasonValid says the spec was read and is in force.
	ReasonValid = "Valid"
	// ReasonInvalidSpec says a stored value cannot be used (for example a duration Go
	// cannot represent, let through by an older CRD): the object is skipped until fixed.
	ReasonInvalidSpec = "InvalidSpec"
)

// ContainerType names how a container came to be. It selects ContainerPolicies.
// +kubebuilder:validation:Enum=managed;devcontainer;compose;docker;notebook;adopted;unknown
type ContainerType string

// Container types.
const (
	ContainerTypeManaged      ContainerType = "managed"
	ContainerTypeDevcontainer ContainerType = "devcontainer"
	ContainerTypeCompose      ContainerType = "compose"
	ContainerTypeDocker       ContainerType = "docker"
	ContainerTypeNotebook     ContainerType = "notebook"
	ContainerTypeAdopted      ContainerType = "adopted"
	ContainerTypeUnknown      ContainerType = "unknown"
)

// Fraction is a decimal number from 0 to 1, written as a string ("0.8").
// +kubebuilder:validation:Pattern=`^(0(\.[0-9]{1,6})?|1(\.0{1,6})?|\.[0-9]{1,6})$`
// +kubebuilder:validation:MaxLength=8
type Fraction string

// Duration is a Go duration string ("30m", "24h", "1h30m", "90s"): up to four parts, each
// a number and a unit (ns, us, µs, ms, s, m, h). Each part is bounded (at most 99999h,
// 9999999m, 999999999s, 999999999999ms/us/ns) so that every value the API server accepts
// fits Go's duration (about 292 years) and is always readable by the controllers. The rule
// is CEL rather than a pattern so that a refusal says what is expected, not a regular
// expression.
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:MaxLength=64
// +kubebuilder:validation:XValidation:rule="self.matches('^(([0-9]{1,5}([.][0-9]{1,9})?h)|([0-9]{1,7}([.][0-9]{1,9})?m)|([0-9]{1,9}([.][0-9]{1,9})?s)|([0-9]{1,12}([.][0-9]{1,9})?(ms|us|µs|ns))){1,4}$')",message="must be a duration such as 30m, 2h45m or 90s: numbers, each followed by a unit (h, m, s, ms, us, ns), at most 99999h"
type Duration string
