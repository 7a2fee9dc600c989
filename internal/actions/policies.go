package actions

import (
	"context"
	"fmt"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Policies resolve a container's effective ContainerPolicy from its owner and labels.
type Policies struct {
	Client client.Reader
	Groups resolve.Groups
	Clock  clock.PassiveClock
}

// Effective lists the policies and merges those that select the container.
func (p Policies) Effective(ctx context.Context, owner string, l map[string]string) (resolve.Policy, error) {
	var list gpuwardenv1alpha1.ContainerPolicyList
	if err := p.Client.List(ctx, &list); err != nil {
		return resolve.Policy{}, fmt.Errorf("listing container policies: %w", err)
	}
	return p.Among(ctx, list.Items, owner, l)
}

// Among is the container's effective policy among policies, listed once by the caller.
func (p Policies) Among(ctx context.Context, policies []gpuwardenv1alpha1.ContainerPolicy, owner string, l map[string]string) (resolve.Policy, error) {
	var groups []string
	if owner != "" {
		g, err := p.Groups.GroupsOf(owner)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Looking up groups; treating the user as in none", "user", owner)
		}
		groups = g
	}
	return resolve.EffectivePolicy(policies, resolve.Container{User: owner, Groups: groups, Type: labels.ContainerType(l), Labels: l, Claimed: labels.TypeClaimed(l)}, p.Clock.Now())
}
