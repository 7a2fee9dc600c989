// Package explain is the `gpuwarden explain` command: what applies to a user, and why.
package explain

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/options"
	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Options are the flags of `gpuwarden explain user`.
type Options struct {
	Kubeconfig    string
	Groups        []string
	GroupsSet     bool
	ContainerType string
	// Claimed explains the type as one the container's owner claimed by label through the
	// gateway (gpuwarden.io/type-claimed).
	Claimed bool

	groups resolve.Groups
	now    func() time.Time
}

// NewCommand returns `gpuwarden explain`.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Explain what applies to a user, a container or a waiting allocation, and why",
	}
	cmd.AddCommand(newUserCommand(&Options{}), newContainerCommand(), newAllocationCommand())
	return cmd
}

// DefaultServer is where `explain container` asks: the server's /metrics listener.
const DefaultServer = "http://127.0.0.1:9402"

func newContainerCommand() *cobra.Command {
	server := DefaultServer
	cmd := &cobra.Command{
		Use:   "container CONTAINER",
		Short: "Explain a container: its effective policy, its last samples, its idle time, and when it will be warned and stopped (or why never)",
		Example: `  gpuwarden explain container alice-notebook
  gpuwarden explain container 4f2c1a9e --server http://gpu01:9402`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return explainContainer(cmd.Context(), server, args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&server, "server", server, "the node's gpuwarden, at its --metrics-bind-address, that samples the container")
	return cmd
}

func explainContainer(ctx context.Context, server, name string, out io.Writer) error {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--server %q: want http://HOST:PORT, the node's --metrics-bind-address", server)
	}
	u.Path = controllers.ExplainPath
	u.RawQuery = url.Values{"name": {name}}.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking gpuwarden at %s (is it running there? --server names it): %w", server, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", server, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("container %q: %s", name, strings.TrimSpace(string(body)))
	}
	_, err = out.Write(body)
	return err
}

func newUserCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user USER",
		Short: "Print a user's effective GPU quota and container policy, and where each value comes from",
		Example: `  gpuwarden explain user alice
  gpuwarden explain user alice --container-type devcontainer
  gpuwarden explain user newstudent --groups student   # preview before the account exists`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.GroupsSet = cmd.Flags().Changed("groups")
			if err := o.Validate(); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return o.Run(cmd.Context(), c, args[0], cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	options.KubeconfigFlag(fs, &o.Kubeconfig)
	fs.StringSliceVar(&o.Groups, "groups", nil, "the user's groups, instead of looking them up in the host's group database")
	fs.StringVar(&o.ContainerType, "container-type", string(gpuwardenv1alpha1.ContainerTypeDocker), "the container type to explain the policy for")
	fs.BoolVar(&o.Claimed, "claimed", false, "explain the type as claimed by the user's own labels through the gateway (gpuwarden.io/type-claimed): what a devcontainer or compose container they make gets")
	return cmd
}

// Validate checks the flags.
func (o *Options) Validate() error {
	switch gpuwardenv1alpha1.ContainerType(o.ContainerType) {
	case gpuwardenv1alpha1.ContainerTypeManaged, gpuwardenv1alpha1.ContainerTypeDevcontainer, gpuwardenv1alpha1.ContainerTypeCompose,
		gpuwardenv1alpha1.ContainerTypeDocker, gpuwardenv1alpha1.ContainerTypeNotebook, gpuwardenv1alpha1.ContainerTypeAdopted,
		gpuwardenv1alpha1.ContainerTypeUnknown:
		return nil
	}
	return fmt.Errorf("--container-type %q: choose one of managed, devcontainer, compose, docker, notebook, adopted, unknown", o.ContainerType)
}

func (o *Options) client() (client.Client, error) {
	return options.ClientFrom(o.Kubeconfig)
}

// Run prints the explanation for user.
func (o *Options) Run(ctx context.Context, c client.Client, user string, out io.Writer) error {
	if o.now == nil {
		o.now = time.Now
	}
	groups := o.Groups
	source := "given with --groups"
	if !o.GroupsSet {
		lookup := o.groups
		if lookup == nil {
			lookup = resolve.HostGroups{}
		}
		var err error
		if groups, err = lookup.GroupsOf(user); err != nil {
			return err
		}
		source = "from the host's group database"
	}
	var quotas gpuwardenv1alpha1.GPUQuotaList
	if err := c.List(ctx, &quotas); err != nil {
		return fmt.Errorf("listing GPU quotas: %w", err)
	}
	var policies gpuwardenv1alpha1.ContainerPolicyList
	if err := c.List(ctx, &policies); err != nil {
		return fmt.Errorf("listing container policies: %w", err)
	}
	q := resolve.EffectiveQuota(quotas.Items, user, groups, nil)
	container := resolve.Container{User: user, Groups: groups, Type: gpuwardenv1alpha1.ContainerType(o.ContainerType)}
	if o.Claimed {
		container.Claimed = true
		container.Labels = map[string]string{gpuwardenv1alpha1.LabelTypeClaimed: "true"}
	}
	p, err := resolve.EffectivePolicy(policies.Items, container, o.now())
	if err != nil {
		return err
	}

	groupText := strings.Join(groups, ", ")
	if groupText == "" {
		groupText = "none"
	}
	fmt.Fprintf(out, "User %s; groups (%s): %s\n\n", user, source, groupText)
	fmt.Fprintf(out, "GPU quota, merged from %s\n", list("GPUQuota", q.Matched))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  LIMIT\tVALUE\tFROM")
	row(tw, "gpuEquivalents", q.GPUEquivalents, func(v float64) string { return fmt.Sprintf("%g", v) })
	row(tw, "maxGPUsPerContainer", q.MaxGPUsPerContainer, func(v int) string { return fmt.Sprint(v) })
	row(tw, "maxContainers", q.MaxContainers, func(v int) string { return fmt.Sprint(v) })
	row(tw, "allowFullGPU", q.AllowFullGPU, func(v bool) string { return fmt.Sprint(v) })
	row(tw, "priority", q.Priority, func(v int32) string { return fmt.Sprint(v) })
	if q.Borrow.Set { // shown where a quota sets them: most labs have neither
		row(tw, "borrowing.gpuEquivalents", q.Borrow, func(v float64) string { return fmt.Sprintf("%g", v) })
	}
	if q.Budget.Set {
		row(tw, "budget.gpuHours", q.Budget, func(v float64) string { return fmt.Sprintf("%g per %s", v, q.BudgetWindow.Phrase()) })
	}
	tw.Flush()
	if q.Budget.Set && !q.Budget.Unlimited {
		fmt.Fprintf(out, "Budget: %s\n", budgetUse(quotas.Items, q.Budget.From, user))
	}

	if o.Claimed {
		fmt.Fprintf(out, "\nContainer policy for %s containers whose type the user claimed by label (%s=true), merged from %s\n",
			o.ContainerType, gpuwardenv1alpha1.LabelTypeClaimed, list("ContainerPolicy", p.Matched))
		trusted := "no policy grants claimed " + o.ContainerType + " containers more"
		if len(p.TrustClaim) > 0 {
			trusted = list("ContainerPolicy", p.TrustClaim) + " grants claimed " + o.ContainerType + " containers their limits"
		}
		fmt.Fprintf(out, "Policies see the container as %s unless they select the claim: %s.\n", resolve.ClaimedTypeSeenAs, trusted)
		return p.WriteTable(out)
	}
	fmt.Fprintf(out, "\nContainer policy for %s containers, merged from %s\n", o.ContainerType, list("ContainerPolicy", p.Matched))
	return p.WriteTable(out)
}

func row[T any](w io.Writer, name string, l allocation.Limit[T], format func(T) string) {
	switch {
	case !l.Set:
		fmt.Fprintf(w, "  %s\tnot limited\tno quota sets it\n", name)
	case l.Unlimited:
		fmt.Fprintf(w, "  %s\tunlimited\t%s\n", name, l.From)
	default:
		fmt.Fprintf(w, "  %s\t%s\t%s\n", name, format(l.Value), l.From)
	}
}

func list(kind string, names []string) string {
	if len(names) == 0 {
		return "no " + kind + " (nothing applies)"
	}
	return kind + " " + strings.Join(names, ", ")
}

// budgetUse is what the user used of the budget the quota named from sets, as its status
// shows it.
func budgetUse(quotas []gpuwardenv1alpha1.GPUQuota, from, user string) string {
	for _, q := range quotas {
		if "GPUQuota "+q.Name != from {
			continue
		}
		for _, u := range q.Status.Usage {
			if u.User == user && u.Budget != nil {
				s := fmt.Sprintf("%s of %s gpu-hours used in the window (%s)", u.Budget.UsedGPUHours, u.Budget.GPUHours, u.Budget.Window)
				if u.Budget.Told > 0 {
					s += fmt.Sprintf("; told at %d %%", u.Budget.Told)
				}
				return s
			}
		}
	}
	return "no use recorded in its window yet (" + from + " status)"
}
