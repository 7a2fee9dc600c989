// Package crds installs or upgrades gpuwarden's CustomResourceDefinitions and waits until
// the API server has established them.
package crds

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/gpuwarden/gpuwarden/config/crd"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// establishTimeout bounds the wait for the CRDs to be Established.
const establishTimeout = time.Minute

// Load returns the CRDs embedded in the binary.
func Load() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	entries, err := fs.ReadDir(crd.Bases, "bases")
	if err != nil {
		return nil, fmt.Errorf("reading embedded CRDs: %w", err)
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, e := range entries {
		data, err := crd.Bases.ReadFile(path.Join("bases", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading embedded CRD %s: %w", e.Name(), err)
		}
		c := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, c); err != nil {
			return nil, fmt.Errorf("decoding embedded CRD %s: %w", e.Name(), err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Install creates the CRDs, or updates those whose spec differs, then waits until every
// one is Established. When the client may not write CRDs, it checks that they are present
// and established instead, so a controller without that right still starts.
func Install(ctx context.Context, c client.Client) error {
	want, err := Load()
	if err != nil {
		return err
	}
	logger := log.FromContext(ctx)
	for _, crd := range want {
		err := apply(ctx, c, crd)
		switch {
		case apierrors.IsForbidden(err):
			logger.Info("Not allowed to install CRDs; expecting them to be installed already", "crd", crd.Name)
		case err != nil:
			return err
		}
	}
	for _, crd := range want {
		if err := waitEstablished(ctx, c, crd.Name); err != nil {
			return err
		}
	}
	return nil
}

func apply(ctx context.Context, c client.Client, want *apiextensionsv1.CustomResourceDefinition) error {
	have := &apiextensionsv1.CustomResourceDefinition{}
	err := c.Get(ctx, client.ObjectKey{Name: want.Name}, have)
	if apierrors.IsNotFound(err) {
		if err := c.Create(ctx, want.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating CRD %s: %w", want.Name, err)
		}
		log.FromContext(ctx).Info("Installed CRD", "crd", want.Name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading CRD %s: %w", want.Name, err)
	}
	// Compare against the stored spec with the server's defaults applied to ours.
	desired := have.DeepCopy()
	desired.Spec = want.Spec
	desired.Spec.Conversion = have.Spec.Conversion
	if equality.Semantic.DeepEqual(have.Spec.Versions, want.Spec.Versions) &&
		equality.Semantic.DeepEqual(have.Spec.Names, withListKind(want.Spec.Names, have.Spec.Names)) &&
		have.Spec.Scope == want.Spec.Scope {
		return nil
	}
	if err := c.Update(ctx, desired); err != nil {
		return fmt.Errorf("upgrading CRD %s: %w", want.Name, err)
	}
	log.FromContext(ctx).Info("Upgraded CRD", "crd", want.Name)
	return nil
}

// withListKind fills in the names the API server defaults, so a comparison sees only real changes.
func withListKind(want, have apiextensionsv1.CustomResourceDefinitionNames) apiextensionsv1.CustomResourceDefinitionNames {
	if want.ListKind == "" {
		want.ListKind = have.ListKind
	}
	if want.Singular == "" {
		want.Singular = have.Singular
	}
	return want
}

func waitEstablished(ctx context.Context, c client.Client, name string) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, establishTimeout, true, func(ctx context.Context) (bool, error) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if last = c.Get(ctx, client.ObjectKey{Name: name}, crd); last != nil {
			return false, nil
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.NamesAccepted && cond.Status == apiextensionsv1.ConditionFalse {
				return false, fmt.Errorf("CRD %s: names not accepted: %s", name, cond.Message)
			}
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		last = errors.New("not Established yet")
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for CRD %s: %w (last: %v)", name, err, last)
	}
	return nil
}

// InstallWith installs or upgrades the CRDs through cfg and waits until they are Established.
func InstallWith(ctx context.Context, cfg *rest.Config) error {
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return fmt.Errorf("building a client: %w", err)
	}
	return Install(ctx, c)
}

// WaitWatchable waits until a watch of every CRD's resource is served. An API server with
// a watch cache builds a custom resource's cache only when the resource is first asked
// for, and answers watches until it is filled with "429, retry after a second", which
// client-go obeys to the letter: an informer started then syncs a second late. Asking
// here, with no retries and a short poll, lets the informers find the caches filled.
func WaitWatchable(ctx context.Context, cfg *rest.Config) error {
	want, err := Load()
	if err != nil {
		return err
	}
	rc, err := rest.UnversionedRESTClientFor(unversioned(cfg))
	if err != nil {
		return fmt.Errorf("building a REST client: %w", err)
	}
	for _, crd := range want {
		p := path.Join("/apis", crd.Spec.Group, crd.Spec.Versions[0].Name, crd.Spec.Names.Plural)
		var last error
		err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, establishTimeout, true, func(ctx context.Context) (bool, error) {
			w, err := rc.Get().AbsPath(p).Param("watch", "true").Param("limit", "1").
				Param("timeoutSeconds", "1").MaxRetries(0).Watch(ctx)
			if last = err; err != nil {
				return false, nil
			}
			w.Stop()
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("waiting to watch %s: %w (last: %v)", crd.Spec.Names.Plural, err, last)
		}
	}
	return nil
}

// unversioned is cfg with the serializers an unversioned REST client needs.
func unversioned(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	return c
}
