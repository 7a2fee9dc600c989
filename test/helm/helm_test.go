// Package helm lints the chart and checks what `helm template` renders from it.
package helm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

const chart = "../../charts/gpuwarden"

func helm(t *testing.T) string {
	t.Helper()
	h := os.Getenv("GPUWARDEN_HELM")
	if h == "" {
		h, _ = filepath.Abs("../../bin/helm")
	}
	_, err := os.Stat(h)
	testutil.Require(t, err == nil, "helm is not installed (make helm)")
	return h
}

// render runs helm template with --set values and returns the documents by kind.
func render(t *testing.T, set ...string) map[string][][]byte {
	t.Helper()
	args := []string{"template", "gpuwarden", chart, "--namespace", "gpuwarden-system"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := exec.Command(helm(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(set, " "), err, out)
	}
	docs := map[string][][]byte{}
	for _, d := range bytes.Split(out, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(d, &meta); err != nil {
			t.Fatalf("helm template rendered YAML that does not parse: %v\n%s", err, d)
		}
		if meta.Kind != "" {
			docs[meta.Kind] = append(docs[meta.Kind], d)
		}
	}
	return docs
}

func TestChartLints(t *testing.T) {
	for _, set := range [][]string{nil, {"fakeGPUs=h100x8", "gateway.enabled=false", "metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"}} {
		args := []string{"lint", "--strict", chart}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		if out, err := exec.Command(helm(t), args...).CombinedOutput(); err != nil {
			t.Errorf("helm lint %v: %v\n%s", set, err, out)
		}
	}
}

func daemonSet(t *testing.T, docs map[string][][]byte) (*appsv1.DaemonSet, *corev1.Container) {
	t.Helper()
	if len(docs["DaemonSet"]) != 1 {
		t.Fatalf("%d DaemonSets rendered, want 1", len(docs["DaemonSet"]))
	}
	ds := &appsv1.DaemonSet{}
	if err := yaml.UnmarshalStrict(docs["DaemonSet"][0], ds); err != nil {
		t.Fatalf("the DaemonSet: %v", err)
	}
	return ds, &ds.Spec.Template.Spec.Containers[0]
}

func TestTemplateRendersTheNodeController(t *testing.T) {
	docs := render(t)
	ds, c := daemonSet(t, docs)
	spec := ds.Spec.Template.Spec
	for _, want := range []string{"controller", "--node-name=$(NODE_NAME)", "--install-crds=false", "--docker-host=unix:///host/run/docker.sock",
		"--proc-root=/host/proc", "--audit-log=/var/log/gpuwarden/events.jsonl", "--gateway-socket=/run/gpuwarden/docker.sock", "--gateway-admin-group=gpuwarden-admin"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	if len(c.Env) == 0 || c.Env[0].Name != "NODE_NAME" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME is not the pod's node: %+v", c.Env)
	}
	if spec.NodeSelector["nvidia.com/gpu.present"] != "true" {
		t.Errorf("node selector %v: not the GPU nodes", spec.NodeSelector)
	}
	if spec.RuntimeClassName == nil || *spec.RuntimeClassName != "nvidia" {
		t.Errorf("runtimeClassName %v, want nvidia (NVML through the NVIDIA runtime)", spec.RuntimeClassName)
	}
	paths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			paths[v.Name] = v.HostPath.Path
		}
	}
	for name, want := range map[string]string{"docker-sock": "/var/run/docker.sock", "proc": "/proc", "audit": "/var/log/gpuwarden",
		"gateway": "/run/gpuwarden", "passwd": "/etc/passwd", "group": "/etc/group", "home-0": "/home"} {
		if paths[name] != want {
			t.Errorf("host path %s = %q, want %s", name, paths[name], want)
		}
	}
	for _, m := range c.VolumeMounts {
		if (m.Name == "proc" || m.Name == "passwd" || m.Name == "home-0") && !m.ReadOnly {
			t.Errorf("%s is mounted writable", m.Name)
		}
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.StartupProbe == nil {
		t.Errorf("probes: liveness %+v readiness %+v startup %+v", c.LivenessProbe, c.ReadinessProbe, c.StartupProbe)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Privileged != nil && *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("security context %+v: want unprivileged, no escalation, read-only root, every capability dropped", sc)
	}
	for _, kind := range []string{"ClusterRole", "ClusterRoleBinding", "ServiceAccount", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Service"} {
		if len(docs[kind]) == 0 {
			t.Errorf("no %s rendered", kind)
		}
	}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
		if len(docs[kind]) != 0 {
			t.Errorf("%s rendered though not enabled", kind)
		}
	}
}

func TestTemplateOptions(t *testing.T) {
	docs := render(t, "fakeGPUs=h100x8", "gateway.enabled=false", "nvidia.hostLibraries=/usr/lib/x86_64-linux-gnu",
		"metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true", "gateway.allowMounts={/data}", "allocatorLeaseDuration=7s")
	ds, c := daemonSet(t, docs)
	if !slices.Contains(c.Args, "--fake-gpus=h100x8") || !slices.Contains(c.Args, "--gateway-socket=") || !slices.Contains(c.Args, "--cluster-allocator") ||
		!slices.Contains(c.Args, "--allocator-lease-duration=7s") {
		t.Errorf("args %v: want --fake-gpus=h100x8, the gateway off and the cluster's allocator with a 7s Lease", c.Args)
	}
	if _, each := daemonSet(t, render(t, "clusterAllocator=false")); slices.Contains(each.Args, "--cluster-allocator") {
		t.Errorf("args %v: the cluster's allocator with clusterAllocator=false", each.Args)
	}
	if ds.Spec.Template.Spec.RuntimeClassName != nil {
		t.Errorf("a runtime class with simulated GPUs: %v", *ds.Spec.Template.Spec.RuntimeClassName)
	}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == "passwd" || v.Name == "gateway" {
			t.Errorf("volume %s without the gateway", v.Name)
		}
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "LD_LIBRARY_PATH" && e.Value == "/host/nvidia-lib" }) {
		t.Errorf("env %v: want LD_LIBRARY_PATH at the host libraries", c.Env)
	}
	if len(docs["ServiceMonitor"]) != 1 || len(docs["PrometheusRule"]) != 1 {
		t.Errorf("%d ServiceMonitors, %d PrometheusRules; want one each", len(docs["ServiceMonitor"]), len(docs["PrometheusRule"]))
	}
	if !bytes.Contains(docs["PrometheusRule"][0], []byte("{{ $labels.instance }}")) {
		t.Errorf("the PrometheusRule's annotations were templated by helm:\n%s", docs["PrometheusRule"][0])
	}
}
