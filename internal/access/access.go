// Package access decides who may do what through the API server: the groups users' and
// admins' kubeconfigs carry, the RBAC that grants them, the admission policies that keep a
// user to their own GPUAllocations and GPUReservations and record who booked a reservation,
// and the kubeconfigs themselves.
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

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
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

// ReservationBookerPolicy is the MutatingAdmissionPolicy that records on every
// GPUReservation who booked it (AnnotationBookedBy) and whether they were an admin
// (AnnotationBookedByAdmin), in place of whatever the request carried, and keeps both as they
// were made on every update.
const ReservationBookerPolicy = "gpuwarden-reservation-booker"

// OwnReservationsPolicy is the ValidatingAdmissionPolicy that keeps users to booking GPUs for
// themselves alone, without stopping others' work (displace: Wait), and to deleting their own
// bookings, not an admin's booking for them. It also refuses a user's booking that does not
// name its booker as ReservationBookerPolicy would: on an API server without
// MutatingAdmissionPolicies, a user must set the annotations themselves, and truthfully.
const OwnReservationsPolicy = "gpuwarden-own-reservations"

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
// admission policies with their bindings. The admins' binding to cluster-admin
// (AdminsBinding) is kept by Admins from the host's admin group.
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
		denyBinding(OwnAllocationsPolicy),
		reservationBooker(),
		&admissionregistrationv1.MutatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicyBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: ReservationBookerPolicy},
			Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: ReservationBookerPolicy},
		},
		ownReservations(),
		denyBinding(OwnReservationsPolicy),
	}, nil
}

// denyBinding binds the ValidatingAdmissionPolicy policy to every request it matches,
// refusing those it fails.
func denyBinding(policy string) *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: policy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
}

// requestsFor matches the operations on gpuwarden's resources.
func requestsFor(resources []string, operations ...admissionregistrationv1.OperationType) *admissionregistrationv1.MatchResources {
	return &admissionregistrationv1.MatchResources{
		ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
			RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: operations,
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{gpuwardenv1alpha1.GroupVersion.Group}, APIVersions: []string{"*"}, Resources: resources,
					Scope: ptr.To(admissionregistrationv1.AllScopes),
				},
			},
		}},
	}
}

// usersOnly are the matchConditions of a policy for members of UsersGroup who are not also
// admins. Who is an admin is RBAC's word (AdminsBinding: whoever may create GPUQuotas), not a
// group in a certificate.
func usersOnly() []admissionregistrationv1.MatchCondition {
	return []admissionregistrationv1.MatchCondition{{
		Name:       "gpuwarden-users",
		Expression: fmt.Sprintf("'%s' in request.userInfo.groups && !%s", UsersGroup, adminCheck),
	}}
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
			MatchConstraints: requestsFor([]string{"gpuallocations", "gpuallocations/status"},
				admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete),
			MatchConditions: usersOnly(),
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

// reservationBooker records on a new GPUReservation who booked it: the requester's name
// (AnnotationBookedBy) and whether they may create GPUQuotas (AnnotationBookedByAdmin, "true"
// or "false"), in place of whatever the request carried. An update gets back the values the
// stored object has, and loses any it has not: who booked is fixed when the booking is made.
func reservationBooker() *admissionregistrationv1.MutatingAdmissionPolicy {
	path := `'/metadata/annotations/' + jsonpatch.escapeKey(k)`
	return &admissionregistrationv1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: ReservationBookerPolicy},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			FailurePolicy:    ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: requestsFor([]string{"gpureservations"}, admissionregistrationv1.Create, admissionregistrationv1.Update),
			Variables: []admissionregistrationv1.Variable{{
				Name:       "keys",
				Expression: fmt.Sprintf(`['%s', '%s']`, gpuwardenv1alpha1.AnnotationBookedBy, gpuwardenv1alpha1.AnnotationBookedByAdmin),
			}, {
				// What the object must carry: on creation, the requester; on an update, what
				// the stored object carries (a key it lacks, the object must lack).
				Name: "recorded",
				Expression: fmt.Sprintf(`request.operation == 'CREATE' ? `+
					`{'%s': request.userInfo.username, '%s': %s ? 'true' : 'false'} : `+
					`(has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {})`,
					gpuwardenv1alpha1.AnnotationBookedBy, gpuwardenv1alpha1.AnnotationBookedByAdmin, adminCheck),
			}},
			Mutations: []admissionregistrationv1.Mutation{{
				PatchType: admissionregistrationv1.PatchTypeJSONPatch,
				JSONPatch: &admissionregistrationv1.JSONPatch{
					Expression: `(has(object.metadata.annotations) || !variables.keys.exists(k, k in variables.recorded) ? [] : ` +
						`[JSONPatch{op: 'add', path: '/metadata/annotations', value: {}}]) + ` +
						`variables.keys.filter(k, k in variables.recorded).map(k, ` +
						`JSONPatch{op: 'add', path: ` + path + `, value: variables.recorded[k]}) + ` +
						`variables.keys.filter(k, !(k in variables.recorded) && has(object.metadata.annotations) && k in object.metadata.annotations).map(k, ` +
						`JSONPatch{op: 'remove', path: ` + path + `})`,
				},
			}},
			// Again after any later admission that changed the object, so that none changes
			// the annotations behind it.
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
		},
	}
}

// ownReservations refuses a member of UsersGroup (not also an admin) a GPUReservation for
// anyone but themselves alone or with displace other than Wait (stopping others' work at
// its start is for admins), one that does not name them as its booker (as
// reservationBooker does, where the API server runs it), a change of who booked, and
// deleting one that is not their own or that an admin booked for them.
func ownReservations() *admissionregistrationv1.ValidatingAdmissionPolicy {
	user := `request.userInfo.username`
	booking := `(request.operation == 'DELETE' ? oldObject : object)`
	by, byAdmin := gpuwardenv1alpha1.AnnotationBookedBy, gpuwardenv1alpha1.AnnotationBookedByAdmin
	return &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: OwnReservationsPolicy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: requestsFor([]string{"gpureservations"},
				admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete),
			MatchConditions: usersOnly(),
			Variables: []admissionregistrationv1.Variable{{
				Name:       "subjects",
				Expression: `has(` + booking + `.spec.subjects) ? ` + booking + `.spec.subjects : []`,
			}, {
				Name: "own",
				Expression: `size(variables.subjects) == 1 && variables.subjects[0].kind == 'User' && ` +
					`has(variables.subjects[0].name) && variables.subjects[0].name == ` + user,
			}, {
				// For whom the booking is, in words: "user bob", "group nlp-lab, everyone".
				Name: "forWhom",
				Expression: `size(variables.subjects) == 0 ? 'no one (maintenance)' : ` +
					`variables.subjects.map(s, s.kind == 'Everyone' ? 'everyone' : s.kind.lowerAscii() + ' ' + (has(s.name) ? s.name : '')).join(', ')`,
			}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: `variables.own`,
				MessageExpression: `'user ' + ` + user + ` + (request.operation == 'CREATE' ? ` +
					`' may book only for themselves (spec.subjects: [{kind: User, name: ' + ` + user + ` + '}])' : ` +
					`' may ' + request.operation.lowerAscii() + ' only their own bookings') + ` +
					`'; ' + request.name + ' is for ' + variables.forWhom`,
				Reason: ptr.To(metav1.StatusReasonForbidden),
			}, {
				Expression:        `request.operation != 'CREATE' || !has(object.spec.displace) || object.spec.displace == 'Wait'`,
				MessageExpression: `'user ' + ` + user + ` + " may book only with displace: Wait; Stop (stopping others' work at the start) is for admins"`,
				Reason:            ptr.To(metav1.StatusReasonForbidden),
			}, {
				Expression: `request.operation != 'CREATE' || ` +
					annotation("object", by) + ` == ` + user + ` && ` + annotation("object", byAdmin) + ` == 'false'`,
				MessageExpression: fmt.Sprintf(`'user ' + %[1]s + "'s booking " + request.name + ' must carry the annotations %[2]s: ' + %[1]s + `+
					`' and %[3]s: "false" (the MutatingAdmissionPolicy %[4]s sets them, on an API server that runs it)'`,
					user, by, byAdmin, ReservationBookerPolicy),
				Reason: ptr.To(metav1.StatusReasonForbidden),
			}, {
				Expression: `request.operation != 'UPDATE' || ` +
					annotation("object", by) + ` == ` + annotation("oldObject", by) + ` && ` +
					annotation("object", byAdmin) + ` == ` + annotation("oldObject", byAdmin),
				MessageExpression: fmt.Sprintf(`'user ' + %s + ' may not change the annotations %s and %s of ' + request.name + `+
					`': who booked is recorded when the booking is made'`, user, by, byAdmin),
				Reason: ptr.To(metav1.StatusReasonForbidden),
			}, {
				Expression: `request.operation != 'DELETE' || ` + annotation("oldObject", byAdmin) + ` != 'true'`,
				MessageExpression: `'user ' + ` + user + ` + ' may delete only their own bookings; ' + request.name + ` +
					`' was booked for them by admin ' + ` + annotation("oldObject", by) + ` + ', who may delete it'`,
				Reason: ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
}

// annotation is a CEL expression: the annotation key of obj (object or oldObject), or an
// empty string where it has none.
func annotation(obj, key string) string {
	return fmt.Sprintf(`(has(%[1]s.metadata.annotations) && '%[2]s' in %[1]s.metadata.annotations ? %[1]s.metadata.annotations['%[2]s'] : '')`, obj, key)
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
