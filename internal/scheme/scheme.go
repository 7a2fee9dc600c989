// Package scheme builds the runtime scheme every gpuwarden client uses.
package scheme

import (
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// New returns a scheme with the built-in, apiextensions and gpuwarden types.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(gpuwardenv1alpha1.AddToScheme(s))
	return s
}

// Kinds are an object of each kind of gv in s (not their lists), in the order of their names.
func Kinds(s *runtime.Scheme, gv schema.GroupVersion) []client.Object {
	var names []string
	for kind := range s.KnownTypes(gv) {
		if !strings.HasSuffix(kind, "List") {
			names = append(names, kind)
		}
	}
	slices.Sort(names)
	var out []client.Object
	for _, kind := range names {
		if obj, err := s.New(gv.WithKind(kind)); err == nil {
			if o, ok := obj.(client.Object); ok {
				out = append(out, o)
			}
		}
	}
	return out
}
