// Command burst sends a burst of GPUAllocations across simulated nodes, all at once, and
// times each until the API server shows it Bound, for `make bench`: one process and one
// watch, so that measuring costs the measured machine little (no kubectl per request or
// per poll).
//
//	burst --kubeconfig K --nodes 20 --per-node 8 --users 40 --prefix b1
//
// It prints a line a reader can follow and one the bench script reads:
//
//	RESULT bound=160 requests=160 seconds=3.21 binds_per_s=49.8 p50=1.73 p99=3.10
//
// With --ledger it sends nothing and prints the ledger's bindings and the size of its
// objects instead (the head, and the largest of the per-node shards):
//
//	LEDGER bindings=160 head_bytes=512 head_changes=2 shard_bytes=1490 shard_bindings=8 shards=20
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "the admin kubeconfig")
	nodes := flag.Int("nodes", 1, "simulated nodes, named node-01 … node-NN")
	perNode := flag.Int("per-node", 8, "requests per node")
	users := flag.Int("users", 40, "users the requests are spread over (user00 …)")
	prefix := flag.String("prefix", "burst", "the allocations' name prefix")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after")
	ledgerOnly := flag.Bool("ledger", false, "print the ledger's bindings and the size of its objects, and send nothing")
	flag.Parse()
	if *ledgerOnly {
		if err := printLedger(*kubeconfig); err != nil {
			fmt.Fprintln(os.Stderr, "burst:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*kubeconfig, *nodes, *perNode, *users, *prefix, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "burst:", err)
		os.Exit(1)
	}
}

func run(kubeconfig string, nodes, perNode, users int, prefix string, timeout time.Duration) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = -1, 0 // every request at once: the burst is what is measured
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	w, err := c.Watch(ctx, &gpuwardenv1alpha1.GPUAllocationList{})
	if err != nil {
		return err
	}

	n := nodes * perNode
	want := map[string]bool{}
	var allocs []*gpuwardenv1alpha1.GPUAllocation
	for i := range n {
		user, node := fmt.Sprintf("user%02d", i%users), fmt.Sprintf("node-%02d", 1+i%nodes)
		a := &gpuwardenv1alpha1.GPUAllocation{
			// Labelled as the gateway labels the allocations it makes.
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%04d", prefix, i),
				Labels: map[string]string{gpuwardenv1alpha1.LabelUser: user, gpuwardenv1alpha1.LabelNode: node}},
			Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: user, NodeName: node, Request: gpuwardenv1alpha1.AllocationRequest{GPUs: ptr.To[int32](1)}},
		}
		allocs = append(allocs, a)
		want[a.Name] = true
	}
	// Read the watch from the start: a watcher that falls behind while the creates go out
	// is closed by the API server's watch cache; it is opened again where it stopped.
	bound, watchErr := make(chan time.Time, n), make(chan error, 1)
	go follow(ctx, c, w, want, bound, watchErr)
	start := time.Now()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for _, a := range allocs {
		wg.Go(func() {
			if err := c.Create(ctx, a); err != nil {
				errs <- fmt.Errorf("creating %s: %w", a.Name, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	created := time.Since(start)

	var latencies []float64
	var last time.Time
	for len(latencies) < n {
		select {
		case at := <-bound:
			last = at
			latencies = append(latencies, last.Sub(start).Seconds())
		case err := <-watchErr:
			return fmt.Errorf("%d of %d Bound: %w", len(latencies), n, err)
		case <-ctx.Done():
			return fmt.Errorf("%d of %d Bound after %s", len(latencies), n, timeout)
		}
	}
	slices.Sort(latencies)
	at := func(q float64) float64 { return latencies[min(len(latencies)-1, int(q*float64(len(latencies))))] }
	took := last.Sub(start).Seconds()
	fmt.Printf("%d requests on %d nodes created in %.2f s, all Bound in %.2f s: %.1f binds/s, from the burst's start p50 %.2f s, p99 %.2f s\n",
		n, nodes, created.Seconds(), took, float64(n)/took, at(0.5), at(0.99))
	fmt.Printf("RESULT bound=%d requests=%d seconds=%.2f binds_per_s=%.1f p50=%.2f p99=%.2f\n", len(latencies), n, took, float64(n)/took, at(0.5), at(0.99))
	return nil
}

// follow sends the time each wanted allocation is first seen Bound, watching again from the
// last version seen whenever the watch ends, until ctx ends.
func follow(ctx context.Context, c client.WithWatch, w watch.Interface, want map[string]bool, bound chan<- time.Time, failed chan<- error) {
	rv := ""
	for {
		for ev := range w.ResultChan() {
			a, isAlloc := ev.Object.(*gpuwardenv1alpha1.GPUAllocation)
			if !isAlloc {
				continue
			}
			rv = a.ResourceVersion
			if ev.Type == watch.Deleted || !want[a.Name] || a.Status.Phase != gpuwardenv1alpha1.PhaseBound {
				continue
			}
			delete(want, a.Name)
			bound <- time.Now()
		}
		w.Stop()
		if ctx.Err() != nil {
			return
		}
		var err error
		if w, err = c.Watch(ctx, &gpuwardenv1alpha1.GPUAllocationList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}}); err != nil {
			failed <- fmt.Errorf("watching again from version %s: %w", rv, err)
			return
		}
	}
}

// printLedger prints the LEDGER line.
func printLedger(kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	ctx := context.Background()
	_, l, _, err := ledger.NewStore(c, c, ledger.DefaultNamespace).Read(ctx, true)
	if err != nil {
		return err
	}
	head := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ledger.DefaultNamespace, Name: ledger.Name}, head); err != nil {
		return err
	}
	var changes struct {
		Changes map[string]json.RawMessage `json:"changes"`
	}
	if d := head.Data[ledger.HeadKey]; d != "" {
		if err := json.Unmarshal([]byte(d), &changes); err != nil {
			return fmt.Errorf("decoding the ledger's head: %w", err)
		}
	}
	var shards corev1.ConfigMapList
	if err := c.List(ctx, &shards, client.InNamespace(ledger.DefaultNamespace), client.MatchingLabels{ledger.ShardLabel: "shard"}); err != nil {
		return err
	}
	largest, largestBindings := 0, 0
	for _, sh := range shards.Items {
		if n := len(sh.Data[ledger.DataKey]); n > largest {
			var doc struct {
				Bindings map[string]json.RawMessage `json:"bindings"`
			}
			if err := json.Unmarshal([]byte(sh.Data[ledger.DataKey]), &doc); err != nil {
				return fmt.Errorf("decoding %s: %w", sh.Name, err)
			}
			largest, largestBindings = n, len(doc.Bindings)
		}
	}
	fmt.Printf("LEDGER bindings=%d head_bytes=%d head_changes=%d shard_bytes=%d shard_bindings=%d shards=%d\n",
		len(l.Bindings), len(head.Data[ledger.HeadKey]), len(changes.Changes), largest, largestBindings, len(shards.Items))
	return nil
}
