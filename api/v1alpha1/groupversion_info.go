// Package v1alpha1 contains the gpuwarden.io/v1alpha1 API: GPUQuota, ContainerPolicy,
// GPUAllocation, GPU and NotificationProfile. Every kind is cluster-scoped.
// +kubebuilder:object:generate=true
// +groupName=gpuwarden.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "gpuwarden.io", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this API to a scheme.
	//lint:ignore SA1019 kubebuilder's scaffold for API packages; replacing it is for a later API version.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
