package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// durationPaths are every duration field of a ContainerPolicy, as YAML that sets one to %s.
var durationPaths = map[string]string{
	"spec.maxRuntime":                 "maxRuntime: %q",
	"spec.stopGracePeriod":            "stopGracePeriod: %q",
	"spec.gpuHoldAfterStop":           "gpuHoldAfterStop: %q",
	"spec.removeAfterStop":            "removeAfterStop: %q",
	"spec.createdNeverStartedTimeout": "createdNeverStartedTimeout: %q",
	"spec.idle.timeout":               "idle: {timeout: %q}",
	"spec.idle.startupGrace":          "idle: {startupGrace: %q}",
	"spec.idle.keepAlive.maxAge":      "idle: {keepAlive: {path: /workspace/.keep, maxAge: %q}}",
}

// TestEveryDurationFieldRefusesWhatGoCannotRepresent: the API server refuses, with the field
// named, every duration Go's time.Duration cannot hold (or that is not a duration), and
// accepts the everyday ones; what it accepts the controllers can always read.
func TestEveryDurationFieldRefusesWhatGoCannotRepresent(t *testing.T) {
	c := controlplanetest.Get(t).Client(t)
	ctx := context.Background()
	refused := []string{"99999999999h", "2562048h", "100000h", "9223372036854775807ns", "1h1h1h1h1h", "-5m", "30 minutes", "5", "h", ""}
	accepted := []string{"30m", "24h", "1h30m", "1.5h", "90s", "250ms", "99999h", "99999h9999999m999999999s999999999999ms"}
	for path, tmpl := range durationPaths {
		for _, v := range refused {
			t.Run(fmt.Sprintf("%s=%q refused", path, v), func(t *testing.T) {
				u := object(t, policy(fmt.Sprintf(tmpl, v)))
				err := c.Create(ctx, u)
				if err == nil {
					_ = c.Delete(ctx, u)
					t.Fatalf("accepted")
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("the error does not name %s: %v", path, err)
				}
			})
		}
		for _, v := range accepted {
			t.Run(fmt.Sprintf("%s=%q accepted", path, v), func(t *testing.T) {
				u := object(t, policy(fmt.Sprintf(tmpl, v)))
				if err := c.Create(ctx, u); err != nil {
					t.Fatalf("refused: %v", err)
				}
				defer c.Delete(ctx, u)
				var p gpuwardenv1alpha1.ContainerPolicy
				if err := c.Get(ctx, client.ObjectKey{Name: u.GetName()}, &p); err != nil {
					t.Fatalf("reading it back: %v", err)
				}
				if err := resolve.PolicyProblem(&p); err != nil {
					t.Errorf("accepted by the API server but unusable: %v", err)
				}
			})
		}
	}
}

// TestStoredPolicyGoCannotReadIsSkipped: a policy with a duration that overflows Go's, in
// storage from before the CRD refused it, neither stops the informers nor the manager's
// start: it gets Accepted=False naming the field, and every other policy stays in force.
func TestStoredPolicyGoCannotReadIsSkipped(t *testing.T) {
	env := controlplanetest.Get(t)
	c := env.Client(t)
	ctx := context.Background()

	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{env.ControlPlane.EtcdEndpoint}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("connecting to etcd: %v", err)
	}
	defer etcd.Close()
	const bad = "stored-overflow"
	stored := fmt.Sprintf(`{"apiVersion":"gpuwarden.io/v1alpha1","kind":"ContainerPolicy","metadata":{"name":%q,"uid":%q,"generation":1,"creationTimestamp":%q},"spec":{"precedence":0,"maxRuntime":"99999999999h","idle":{"timeout":"30m"}}}`,
		bad, uuid.NewUUID(), time.Now().UTC().Format(time.RFC3339))
	if _, err := etcd.Put(ctx, "/registry/gpuwarden.io/containerpolicies/"+bad, stored); err != nil {
		t.Fatalf("storing the policy: %v", err)
	}
	t.Cleanup(func() { _, _ = etcd.Delete(context.Background(), "/registry/gpuwarden.io/containerpolicies/"+bad) })

	good := testutil.MakePolicy("stored-overflow-neighbour").Users("stored-probe").MaxRuntime(2 * time.Hour).Obj()
	if err := c.Create(ctx, good); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), good) })

	var list gpuwardenv1alpha1.ContainerPolicyList
	if err := c.List(ctx, &list); err != nil {
		t.Fatalf("listing policies with the unreadable one stored: %v", err)
	}
	startManager(t, controllers.Options{NodeName: "durations"})
	condition := func(name string) *metav1.Condition {
		var p gpuwardenv1alpha1.ContainerPolicy
		if c.Get(ctx, client.ObjectKey{Name: name}, &p) != nil {
			return nil
		}
		return meta.FindStatusCondition(p.Status.Conditions, gpuwardenv1alpha1.ConditionAccepted)
	}
	testutil.Eventually(t, 30*time.Second, "the stored policy is marked unusable", func() bool {
		a := condition(bad)
		return a != nil && a.Status == metav1.ConditionFalse && a.Reason == gpuwardenv1alpha1.ReasonInvalidSpec
	})
	if a := condition(bad); !strings.Contains(a.Message, "spec.maxRuntime") || !strings.Contains(a.Message, "99999999999h") {
		t.Errorf("the condition does not say which value is wrong: %q", a.Message)
	}
	testutil.Eventually(t, 30*time.Second, "its neighbour is accepted", func() bool {
		a := condition(good.Name)
		return a != nil && a.Status == metav1.ConditionTrue
	})
	if err := c.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	eff, err := resolve.EffectivePolicy(list.Items, resolve.Container{User: "stored-probe", Type: gpuwardenv1alpha1.ContainerTypeDocker}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := eff.Get("maxRuntime"); v != "2h0m0s" || !strings.Contains(strings.Join(eff.Unusable, ","), bad) {
		t.Errorf("effective maxRuntime = %v (unusable %v), want 2h0m0s from the neighbour and %s skipped", v, eff.Unusable, bad)
	}
}

// TestWebhookToThisMachineIsNotUsed: a policy whose webhook targets a loopback or
// link-local address says so in condition WebhookAllowed; an outside one is allowed.
func TestWebhookToThisMachineIsNotUsed(t *testing.T) {
	c := controlplanetest.Get(t).Client(t)
	ctx := context.Background()
	startManager(t, controllers.Options{NodeName: "webhooks"})
	for name, tc := range map[string]struct {
		url  string
		want metav1.ConditionStatus
	}{
		"hook-loopback":  {"http://127.0.0.1:9000/hook", metav1.ConditionFalse},
		"hook-localhost": {"http://localhost/hook", metav1.ConditionFalse},
		"hook-metadata":  {"http://169.254.169.254/latest/meta-data", metav1.ConditionFalse},
		"hook-outside":   {"https://203.0.113.7/hook", metav1.ConditionTrue},
	} {
		p := testutil.MakePolicy(name).Users("nobody-"+name).Notify("", tc.url).Obj()
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), p) })
		var cond *metav1.Condition
		testutil.Eventually(t, 30*time.Second, name+" has WebhookAllowed", func() bool {
			var got gpuwardenv1alpha1.ContainerPolicy
			if c.Get(ctx, client.ObjectKey{Name: name}, &got) != nil {
				return false
			}
			cond = meta.FindStatusCondition(got.Status.Conditions, gpuwardenv1alpha1.ConditionWebhookAllowed)
			return cond != nil
		})
		if cond.Status != tc.want || tc.want == metav1.ConditionFalse && !strings.Contains(cond.Message, "--allow-local-webhooks") {
			t.Errorf("%s (%s): %s %s %q", name, tc.url, cond.Status, cond.Reason, cond.Message)
		}
	}
}

// TestAnOverriddenExemptionShowsInTheStatus: through the API server, a policy whose
// exemption a policy of higher precedence cancels says so in its status as soon as that
// policy appears (the CRD keeps status.overriddenExemptions), and again once it is gone.
func TestAnOverriddenExemptionShowsInTheStatus(t *testing.T) {
	c := controlplanetest.Get(t).Client(t)
	ctx := context.Background()
	exempt := testutil.MakePolicy("it-devcontainers").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{Precedence: 20,
		Selector:  gpuwardenv1alpha1.PolicySelector{Users: []string{"it-exempt-bob"}, ContainerTypes: []gpuwardenv1alpha1.ContainerType{gpuwardenv1alpha1.ContainerTypeDevcontainer}},
		Unlimited: []gpuwardenv1alpha1.PolicyLimitName{gpuwardenv1alpha1.PolicyLimitIdleTimeout}}).Obj()
	if err := c.Create(ctx, exempt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), exempt) })
	startManager(t, controllers.Options{NodeName: "exemptions"})
	overriddenBy := func(name string) (*metav1.Condition, bool) {
		var p gpuwardenv1alpha1.ContainerPolicy
		if c.Get(ctx, client.ObjectKeyFromObject(exempt), &p) != nil {
			return nil, false
		}
		found := false
		for _, o := range p.Status.OverriddenExemptions {
			found = found || (o.Policy == name && o.Limit == gpuwardenv1alpha1.PolicyLimitIdleTimeout && o.Value == "2h0m0s")
		}
		return meta.FindStatusCondition(p.Status.Conditions, gpuwardenv1alpha1.ConditionExemptionsInForce), found
	}
	testutil.Eventually(t, 30*time.Second, "the exemption's condition", func() bool { cond, _ := overriddenBy(""); return cond != nil })

	hours := testutil.MakePolicy("it-bob-hours").Users("it-exempt-bob").IdleTimeout(2 * time.Hour).Obj()
	hours.Spec.Precedence = 50
	if err := c.Create(ctx, hours); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the override in the exempting policy's status", func() (bool, string) {
		cond, found := overriddenBy(hours.Name)
		return found && cond != nil && cond.Status == metav1.ConditionFalse && strings.Contains(cond.Message, "ContainerPolicy it-bob-hours (precedence 50)"), fmt.Sprint(cond)
	})
	if err := c.Delete(ctx, hours); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the override gone with the policy", func() bool { _, found := overriddenBy(hours.Name); return !found })
}
