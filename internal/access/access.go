// Package access decides who may do what through the API server: the groups users' and
// admins' kubeconfigs carry, the RBAC that grants them, the admission policy that keeps a
// user to their own GPUAllocations, and the kubeconfigs themselves.
package access

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/gpuwarden/gpuwarden/config/rbac"
)

// The groups of gpuwarden's kubeconfigs.
const (
	// UsersGroup is the one group a kubeconfig from `gpuwarden kubeconfig` carries, an
	// admin's too: admin rights follow the host's admin group (AdminsBinding).
	UsersGroup = "gpuwarden:users"
	// AdminsGroup was the group of admins' certificates until admin rights followed the
	// host's group: no longer issued, and bound to nothing, so that a certificate that
	// still carries it gives its holder nothing more than a user's rights.
	AdminsGroup = "gpuwarden:admins"
)

// OwnAllocationsPolicy is the ValidatingAdmissionPolicy that keeps users to their own
// GPUAllocations.
const OwnAllocationsPolicy = "gpuwarden-own-allocations"

// EventsNamespace is where the Events of gpuwarden's objects land: they are cluster-scoped,
// and an Event of a cluster-scoped object is kept in the default namespace. Users may read
// the Events there (UserEventsRole), as they may read the objects; the node's Events, which
// name other users' refusals, are in kube-system (NodeEventsNamespace), for admins.
const EventsNamespace = metav1.NamespaceDefault

// NodeEventsNamespace is where gpuwarden puts the Events of the node (the gateway's refusals,
// audit log failures): for admins only, apart from the Events users read.
const NodeEventsNamespace = metav1.NamespaceSystem

// UserEventsRole is the Role that lets users read the Events in EventsNamespace.
const UserEventsRole = "gpuwarden-user-events"

// Objects are what Install writes: the user ClusterRole and its binding to UsersGroup, the
// Role reading the Events of gpuwarden's objects and its binding to UsersGroup, and the
// admission policy with its binding. The admins' binding to cluster-admin (AdminsBinding) is
// kept by Admins from the host's admin group.
func Objects() ([]client.Object, error) {
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(rbac.UserRole, role); err != nil {
		return nil, fmt.Errorf("reading the user ClusterRole: %w", err)
	}
	bind := func(name, role, group string) *rbacv1.ClusterRoleBinding {
		return &rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: group}},
		}
	}
	return []client.Object{
		role,
		bind("gpuwarden-users", role.Name, UsersGroup),
		&rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: metav1.ObjectMeta{Name: UserEventsRole, Namespace: EventsNamespace},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"},
			}},
		},
		&rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: "gpuwarden-users-events", Namespace: EventsNamespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: UserEventsRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: UsersGroup}},
		},
		ownAllocations(),
		&admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: OwnAllocationsPolicy},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        OwnAllocationsPolicy,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			},
		},
	}, nil
}

// ownAllocations refuses a member of UsersGroup (not also an admin) creating, changing or
// deleting a GPUAllocation whose spec.user is someone else. Who is an admin is RBAC's word
// (AdminsBinding: whoever may create GPUQuotas), not a group in a certificate.
func ownAllocations() *admissionregistrationv1.ValidatingAdmissionPolicy {
	subject := `(request.operation == 'DELETE' ? oldObject : object).spec.user`
	return &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: OwnAllocationsPolicy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete},
						Rule: admissionregistrationv1.Rule{
							APIGroups: []string{"gpuwarden.io"}, APIVersions: []string{"*"}, Resources: []string{"gpuallocations", "gpuallocations/status"},
							Scope: ptr.To(admissionregistrationv1.AllScopes),
						},
					},
				}},
			},
			MatchConditions: []admissionregistrationv1.MatchCondition{{
				Name:       "gpuwarden-users",
				Expression: fmt.Sprintf("'%s' in request.userInfo.groups && !%s", UsersGroup, adminCheck),
			}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: subject + ` == request.userInfo.username`,
				MessageExpression: `'user ' + request.userInfo.username + ' may ' + request.operation.lowerAscii() + ` +
					`' only their own GPUAllocations; ' + request.name + ' is for ' + ` + subject,
				Reason: ptr.To(metav1.StatusReasonForbidden),
			}, {
				// Whose container a name or ID is, only the node's engine knows: a user's own
				// allocation names none (the gateway's and the adopted ones do, made by
				// gpuwarden); an update keeps what is there.
				Expression: `request.operation == 'DELETE' || ` + keeps("containerID") + ` && ` + keeps("containerName"),
				MessageExpression: `'user ' + request.userInfo.username + ' may not name a container (spec.containerID, spec.containerName) in GPUAllocation ' + ` +
					`request.name + ': an allocation names only containers of its own user, and only the gateway can tell whose a container is; ' + ` +
					`'get GPUs for a container through the gateway (docker run --gpus N)'`,
				Reason: ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
}

// keeps is a CEL condition: the request sets spec.field only to what the object had.
func keeps(field string) string {
	return fmt.Sprintf(`(!has(object.spec.%[1]s) || request.operation == 'UPDATE' && has(oldObject.spec.%[1]s) && oldObject.spec.%[1]s == object.spec.%[1]s)`, field)
}

// adminCheck is a CEL condition: the requester may create GPUQuotas, which only admins may.
const adminCheck = "authorizer.group('gpuwarden.io').resource('gpuquotas').check('create').allowed()"

// Install creates or updates the objects; fields the objects do not set are left alone.
func Install(ctx context.Context, c client.Client) error {
	objs, err := Objects()
	if err != nil {
		return err
	}
	for _, obj := range objs {
		want := obj.DeepCopyObject().(client.Object)
		err := c.Create(ctx, obj)
		if apierrors.IsNotFound(err) && obj.GetNamespace() != "" {
			// The API server makes the default namespace soon after it starts: perhaps not yet.
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: obj.GetNamespace()}}
			if err = c.Create(ctx, ns); err == nil || apierrors.IsAlreadyExists(err) {
				err = c.Create(ctx, want.DeepCopyObject().(client.Object))
			}
		}
		if apierrors.IsAlreadyExists(err) {
			existing := want.DeepCopyObject().(client.Object)
			if err = c.Get(ctx, client.ObjectKeyFromObject(want), existing); err == nil {
				want.SetResourceVersion(existing.GetResourceVersion())
				err = c.Update(ctx, want)
			}
		}
		if err != nil {
			return fmt.Errorf("installing %s %s: %w", want.GetObjectKind().GroupVersionKind().Kind, want.GetName(), err)
		}
	}
	return nil
}
