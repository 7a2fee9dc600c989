package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/controllers"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// table is what `kubectl get` prints, as the API server's table conversion gives it:
// cells by column name, rows by object name.
type table struct {
	columns []metav1.TableColumnDefinition
	rows    map[string]map[string]string
}

// getTable asks the API server for resource as kubectl get does (-l selector when given).
// labelled is a query that selects by labels.
func labelled(selector string) url.Values { return url.Values{"labelSelector": {selector}} }

func getTable(t *testing.T, cfg *rest.Config, resource string, query url.Values) (table, error) {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u := strings.TrimSuffix(cfg.Host, "/") + "/apis/gpuwarden.io/v1alpha1/" + resource
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		return table{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return table{}, fmt.Errorf("GET %s: %d %s %v", u, resp.StatusCode, body, err)
	}
	var tb metav1.Table
	if err := json.Unmarshal(body, &tb); err != nil {
		return table{}, err
	}
	out := table{columns: tb.ColumnDefinitions, rows: map[string]map[string]string{}}
	for _, r := range tb.Rows {
		cells := map[string]string{}
		for i, c := range r.Cells {
			if c != nil {
				cells[tb.ColumnDefinitions[i].Name] = fmt.Sprint(c)
			}
		}
		out.rows[cells["Name"]] = cells
	}
	return out, nil
}

// defaultColumns are the columns kubectl get shows without -o wide.
func (tb table) defaultColumns() []string {
	var names []string
	for _, c := range tb.columns {
		if c.Priority == 0 {
			names = append(names, c.Name)
		}
	}
	return names
}

func (tb table) names() []string {
	var names []string
	for n := range tb.rows {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// TestKubectlGetAnswersTheEverydayQuestion: `kubectl get gpus` shows who holds each GPU (a
// user once, however many of its slices they hold) and its utilisation; `kubectl get ga`
// shows every device of an allocation, and -l selects by user (a label that always equals
// spec.user) and by phase (live or Released); `kubectl get gq` shows what the quota's users
// hold.
func TestKubectlGetAnswersTheEverydayQuestion(t *testing.T) {
	ctx := context.Background()
	c := allocationTest(t)
	cfg := controlplanetest.Get(t).Config()
	const node = "node-k"
	fake, err := fakegpu.NewForNode("h100-mig", node)
	if err != nil {
		t.Fatal(err)
	}
	startManager(t, controllers.Options{NodeName: node, GPUs: gpu.NewNVML(fake), Groups: resolve.StaticGroups{}})
	waitInventory(t, node, 8)
	if err := c.Create(ctx, testutil.MakeQuota("kg-everyone").Everyone().GPUEquivalents("20").Obj()); err != nil {
		t.Fatal(err)
	}

	for _, a := range []*gpuwardenv1alpha1.GPUAllocation{
		testutil.MakeAllocation("kg-two").User("alice").Node(node).GPUs(2).Obj(),
		testutil.MakeAllocation("kg-slice-a").User("bob").Node(node).MIGProfile("1g.10gb").Obj(),
		testutil.MakeAllocation("kg-slice-b").User("bob").Node(node).MIGProfile("1g.10gb").Obj(),
		// carol's allocation claims to be alice's: the label is put right.
		testutil.MakeAllocation("kg-forged").User("carol").Node(node).GPUs(1).Label(gpuwardenv1alpha1.LabelUser, "alice").Obj(),
	} {
		if err := c.Create(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	byName := map[string]*gpuwardenv1alpha1.GPUAllocation{}
	testutil.Eventually(t, 30*time.Second, "every allocation Bound", func() (bool, string) {
		var list gpuwardenv1alpha1.GPUAllocationList
		if err := c.List(ctx, &list); err != nil {
			return false, err.Error()
		}
		for i := range list.Items {
			a := &list.Items[i]
			byName[a.Name] = a
			if a.Status.Phase != gpuwardenv1alpha1.PhaseBound {
				return false, a.Name + " " + string(a.Status.Phase)
			}
		}
		return len(list.Items) == 4, fmt.Sprint(len(list.Items))
	})

	// kubectl get ga: every device of each allocation.
	devicesOf := func(a *gpuwardenv1alpha1.GPUAllocation) string {
		var parts []string
		for _, d := range a.Status.Devices {
			s := fmt.Sprint(d.Index)
			if d.MIGProfile != "" {
				s += ":" + d.MIGProfile
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ",")
	}
	testutil.Eventually(t, 30*time.Second, "kubectl get ga shows every device", func() (bool, string) {
		tb, err := getTable(t, cfg, "gpuallocations", nil)
		if err != nil {
			return false, err.Error()
		}
		for name, a := range byName {
			if got := tb.rows[name]["Devices"]; got != devicesOf(a) || got == "" {
				return false, fmt.Sprintf("%s: DEVICES %q, want %q", name, got, devicesOf(a))
			}
		}
		return strings.Count(tb.rows["kg-two"]["Devices"], ",") == 1 && strings.HasSuffix(tb.rows["kg-slice-a"]["Devices"], ":1g.10gb"), fmt.Sprint(tb.rows)
	})

	// -l gpuwarden.io/user=alice: alice's allocation only, not carol's that claimed to be.
	selectByUser := func(user, want string) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, "kubectl get ga -l user="+user, func() (bool, string) {
			tb, err := getTable(t, cfg, "gpuallocations", labelled(gpuwardenv1alpha1.LabelUser+"="+user))
			if err != nil {
				return false, err.Error()
			}
			return strings.Join(tb.names(), " ") == want, strings.Join(tb.names(), " ")
		})
	}
	selectByUser("alice", "kg-two")
	selectByUser("carol", "kg-forged")
	selectByUser("bob", "kg-slice-a kg-slice-b")
	// Forging it again later is put right as well.
	forged := byName["kg-forged"].DeepCopy()
	patch := client.MergeFrom(forged.DeepCopy())
	forged.Labels[gpuwardenv1alpha1.LabelUser] = "alice"
	if err := c.Patch(ctx, forged, patch); err != nil {
		t.Fatal(err)
	}
	selectByUser("carol", "kg-forged")
	selectByUser("alice", "kg-two")

	// kubectl get gpus: the holding user, once per GPU however many slices they hold, and
	// the utilisation; the allocation names only with -o wide.
	gpuTable, err := getTable(t, cfg, "gpus", labelled(gpuwardenv1alpha1.LabelNode+"="+node))
	if err != nil {
		t.Fatal(err)
	}
	if cols := gpuTable.defaultColumns(); !slices.Contains(cols, "User") || !slices.Contains(cols, "Util") || slices.Contains(cols, "Holder") {
		t.Errorf("kubectl get gpus columns = %v, want User and Util, Holder only with -o wide", cols)
	}
	wantUsers := map[string]string{}
	for _, a := range byName {
		for _, d := range a.Status.Devices {
			wantUsers[gpu.ObjectName(node, int(d.Index))] = a.Spec.User
		}
	}
	testutil.Eventually(t, 30*time.Second, "kubectl get gpus shows the holding users", func() (bool, string) {
		tb, err := getTable(t, cfg, "gpus", labelled(gpuwardenv1alpha1.LabelNode+"="+node))
		if err != nil {
			return false, err.Error()
		}
		for gpuName, row := range tb.rows {
			if row["User"] != wantUsers[gpuName] {
				return false, fmt.Sprintf("%s: USER %q, want %q", gpuName, row["User"], wantUsers[gpuName])
			}
		}
		return len(tb.rows) == 8, fmt.Sprint(tb.rows)
	})

	// kubectl get gq: what the quota's users hold together (2 + 1 + 2/7).
	used := func(want string) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, "kubectl get gq shows "+want+" used", func() (bool, string) {
			tb, err := getTable(t, cfg, "gpuquotas", nil)
			if err != nil {
				return false, err.Error()
			}
			return tb.rows["kg-everyone"]["Used"] == want, fmt.Sprint(tb.rows["kg-everyone"])
		})
	}
	used("3.29")

	// Released allocations are told apart without scrolling: --field-selector
	// status.phase!=Released (a selectable field; no label to keep in step).
	two := byName["kg-two"].DeepCopy()
	patch = client.MergeFrom(two.DeepCopy())
	two.Annotations = map[string]string{gpuwardenv1alpha1.AnnotationRelease: "done"}
	if err := c.Patch(ctx, two, patch); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "kubectl get ga --field-selector status.phase!=Released hides the released one", func() (bool, string) {
		live, err := getTable(t, cfg, "gpuallocations", url.Values{"fieldSelector": {"status.phase!=" + string(gpuwardenv1alpha1.PhaseReleased)}})
		if err != nil {
			return false, err.Error()
		}
		released, err := getTable(t, cfg, "gpuallocations", url.Values{"fieldSelector": {"status.phase=" + string(gpuwardenv1alpha1.PhaseReleased)}})
		if err != nil {
			return false, err.Error()
		}
		return strings.Join(live.names(), " ") == "kg-forged kg-slice-a kg-slice-b" && strings.Join(released.names(), " ") == "kg-two",
			fmt.Sprintf("live %v, released %v", live.names(), released.names())
	})
	used("1.29")
}
