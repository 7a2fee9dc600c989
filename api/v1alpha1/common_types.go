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
