package integration

import (
	"context"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/config/rbac"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
	"github.com/gpuwarden/gpuwarden/internal/crds"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestCRDInstallIsIdempotentAndUpgrades checks that installing unchanged CRDs writes
// nothing, and that a CRD which differs from the binary's is upgraded.
func TestCRDInstallIsIdempotentAndUpgrades(t *testing.T) {
	ctx := context.Background()
	c := controlplanetest.Get(t).Client(t)
	get := func() *apiextensionsv1.CustomResourceDefinition {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: "gpus.gpuwarden.io"}, crd); err != nil {
			t.Fatal(err)
		}
		return crd
	}
	before := get()
	if err := crds.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	if after := get(); after.ResourceVersion != before.ResourceVersion {
		t.Errorf("installing unchanged CRDs rewrote gpus.gpuwarden.io (resourceVersion %s -> %s)", before.ResourceVersion, after.ResourceVersion)
	}

	// An older gpuwarden installed a CRD without the printer columns.
	old := before.DeepCopy()
	old.Spec.Versions[0].AdditionalPrinterColumns = nil
	if err := c.Update(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := crds.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	if cols := get().Spec.Versions[0].AdditionalPrinterColumns; len(cols) != len(before.Spec.Versions[0].AdditionalPrinterColumns) {
		t.Errorf("the CRD was not upgraded: %d printer columns, want %d", len(cols), len(before.Spec.Versions[0].AdditionalPrinterColumns))
	}
}

// TestCRDInstallWithoutWriteRights lets a controller whose credentials may only read CRDs
// start when the CRDs are already there.
func TestCRDInstallWithoutWriteRights(t *testing.T) {
	ctx := context.Background()
	env := controlplanetest.Get(t)
	admin := env.Client(t)
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "crd-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"apiextensions.k8s.io"},
			Resources: []string{"customresourcedefinitions"}, Verbs: []string{"get", "list", "watch"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "crd-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "crd-reader"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "reader"}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.Delete(ctx, o) })
	}
	// Make one CRD differ so that Install would want to write it.
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := admin.Get(ctx, client.ObjectKey{Name: "gpuquotas.gpuwarden.io"}, crd); err != nil {
		t.Fatal(err)
	}
	crd.Spec.Versions[0].AdditionalPrinterColumns = crd.Spec.Versions[0].AdditionalPrinterColumns[:1]
	if err := admin.Update(ctx, crd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = crds.Install(ctx, admin) })

	cfg := env.Config()
	cfg.Impersonate.UserName = "reader"
	reader, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	if err := crds.Install(ctx, reader); err != nil {
		t.Errorf("Install with read-only rights and CRDs present: %v", err)
	}
}

// TestUserRoleCannotWriteStatuses: the ClusterRole a user's kubeconfig gets lets them read
// everything and create allocations, never write a status (those are the ledger's) nor
// change quotas, policies or GPUs.
func TestUserRoleCannotWriteStatuses(t *testing.T) {
	env := controlplanetest.Get(t)
	admin := env.Client(t)
	ctx := context.Background()
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(rbac.UserRole, role); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{role, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "gpuwarden-user-carol"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "carol"}},
	}} {
		if err := admin.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.Delete(context.Background(), obj) })
	}
	cfg := env.Config()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "carol"}
	carol, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	a := testutil.MakeAllocation("carol-rbac").User("carol").GPUs(1).Obj()
	testutil.Eventually(t, 10*time.Second, "carol may create an allocation", func() bool { return carol.Create(ctx, a) == nil })
	t.Cleanup(func() { _ = admin.Delete(context.Background(), a) })
	var list gpuwardenv1alpha1.GPUQuotaList
	if err := carol.List(ctx, &list); err != nil {
		t.Errorf("carol cannot read quotas: %v", err)
	}
	orig := a.DeepCopy()
	a.Status.Phase = gpuwardenv1alpha1.PhaseBound
	if err := carol.Status().Patch(ctx, a, client.MergeFrom(orig)); !apierrors.IsForbidden(err) {
		t.Errorf("carol writing an allocation's status: %v, want Forbidden", err)
	}
	q := testutil.MakeQuota("carol-own").Users("carol").Obj()
	if err := carol.Create(ctx, q); !apierrors.IsForbidden(err) {
		t.Errorf("carol creating a quota: %v, want Forbidden", err)
	}
}
