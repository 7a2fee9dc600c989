// Package monitoring tests what ships in config/prometheus, config/alertmanager and
// config/grafana: the rules parse and their unit tests pass (promtool), the Alertmanager
// example loads (amtool), the PrometheusRule carries the same groups as the rules file,
// and every metric a rule or a dashboard queries exists in the golden exposition.
package monitoring

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite config/prometheus/prometheusrule.yaml from the rules file")

const (
	root       = "../.."
	rulesFile  = root + "/config/prometheus/gpuwarden-rules.yml"
	ruleTests  = root + "/config/prometheus/tests/gpuwarden-rules.test.yml"
	promRule   = root + "/config/prometheus/prometheusrule.yaml"
	amConfig   = root + "/config/alertmanager/alertmanager.yml"
	dashboards = root + "/config/grafana"
	golden     = root + "/controllers/governance/testdata/metrics.golden.prom"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(testutil.Tool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRulesParseAndTheirUnitTestsPass(t *testing.T) {
	run(t, "promtool", "check", "rules", rulesFile)
	out := run(t, "promtool", "test", "rules", ruleTests)
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}

// Every alert has a unit test, a severity, a summary and a description.
func TestEveryAlertIsTestedAndDescribed(t *testing.T) {
	groups := ruleGroups(t)
	tests, err := os.ReadFile(ruleTests)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
				t.Errorf("alert %s has no promtool unit test", r.Alert)
			}
			if s := r.Labels["severity"]; !slices.Contains([]string{"info", "warning", "critical"}, s) {
				t.Errorf("alert %s: severity %q; want info, warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s needs a summary and a description", r.Alert)
			}
		}
	}
}

func TestAlertmanagerExampleLoads(t *testing.T) {
	run(t, "amtool", "check-config", amConfig)
	data, err := os.ReadFile(amConfig)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "smtp_auth_password:") || strings.Contains(string(data), "auth_password:") {
		t.Error("the SMTP password must be read from a file (smtp_auth_password_file), never written inline")
	}
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type group struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

func ruleGroups(t *testing.T) []group {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []group `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatal(err)
	}
	return f.Groups
}

func TestPrometheusRuleCarriesTheRulesFile(t *testing.T) {
	obj := map[string]any{
		"apiVersion": "monitoring.coreos.com/v1",
		"kind":       "PrometheusRule",
		"metadata": map[string]any{"name": "gpuwarden", "labels": map[string]string{
			"app.kubernetes.io/name": "gpuwarden", "app.kubernetes.io/component": "alerting"}},
		"spec": map[string]any{"groups": ruleGroups(t)},
	}
	body, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	want := "# Generated from gpuwarden-rules.yml by go test ./test/monitoring -run PrometheusRule -update; do not edit.\n" + string(body)
	if *update {
		if err := os.WriteFile(promRule, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(promRule)
	if err != nil || string(got) != want {
		t.Errorf("%s differs from %s (%v): go test ./test/monitoring -run PrometheusRule -update rewrites it", promRule, rulesFile, err)
	}
}

// goldenNames are the metric names of the golden exposition, histograms with their series.
func goldenNames(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
			if f[3] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[f[2]+s] = true
				}
			}
		}
	}
	// Prometheus' own, for every scrape.
	names["up"] = true
	return names
}

var (
	quoted    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|` + "`[^`]*`")
	matchers  = regexp.MustCompile(`\{[^}]*\}`)
	ranges    = regexp.MustCompile(`\[[^\]]*\]`)
	grouping  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	ident     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`)
	keywords  = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	labelVals = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
)

// metricNames are the metrics a PromQL expression selects: identifiers that are neither
// functions, keywords, label names nor inside strings, matchers or ranges.
func metricNames(expr string) []string {
	e := quoted.ReplaceAllString(expr, `""`)
	e = matchers.ReplaceAllString(e, "{}")
	e = ranges.ReplaceAllString(e, "[]")
	e = grouping.ReplaceAllString(e, "")
	var out []string
	for _, m := range ident.FindAllString(e, -1) {
		if strings.HasSuffix(m, "(") {
			continue // a function or an aggregation
		}
		if name := strings.TrimSpace(m); !keywords[strings.ToLower(name)] {
			out = append(out, name)
		}
	}
	return out
}

// grafanaVars are what Grafana fills in before a query runs.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1d", "${datasource}", "", "$instance", ".*", "$user", ".*")

type dashboard struct {
	Title  string `json:"title"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func TestDashboardsAndRulesQueryOnlyMetricsThatExist(t *testing.T) {
	known := goldenNames(t)
	for _, g := range ruleGroups(t) {
		for _, r := range g.Rules {
			if r.Record != "" {
				known[r.Record] = true
			}
		}
	}
	check := func(where, expr string) {
		for _, name := range metricNames(expr) {
			if !known[name] {
				t.Errorf("%s queries %s, which gpuwarden does not export (not in %s): %s", where, name, golden, expr)
			}
		}
	}
	for _, g := range ruleGroups(t) {
		for _, r := range g.Rules {
			check("rule "+r.Alert+r.Record, r.Expr)
		}
	}
	files, err := filepath.Glob(filepath.Join(dashboards, "*.json"))
	if err != nil || len(files) < 3 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	// Every query is parsed by Prometheus' own parser: as a recording rule for promtool.
	var parse bytes.Buffer
	parse.WriteString("groups:\n  - name: dashboards\n    rules:\n")
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, tg := range p.Targets {
				expr := grafanaVars.Replace(tg.Expr)
				check(fmt.Sprintf("%s panel %q", filepath.Base(f), p.Title), expr)
				n++
				q, _ := json.Marshal(expr)
				fmt.Fprintf(&parse, "      - record: dashboard:query:%d\n        expr: %s\n", n, q)
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			q, _ := json.Marshal(v.Query)
			for _, m := range labelVals.FindAllStringSubmatch(string(q), -1) {
				if !known[m[1]] {
					t.Errorf("%s: variable %s lists values of %s, which gpuwarden does not export", filepath.Base(f), v.Name, m[1])
				}
			}
		}
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, parse.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "promtool", "check", "rules", path)
}

// NVIDIA's dashboard (grafana.com 12239) queries these, by gpu and instance, with
// variables label_values(DCGM_FI_DEV_GPU_TEMP, instance|gpu): they must all be there.
func TestNVIDIADashboardSeriesExist(t *testing.T) {
	data, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"} {
		if !regexp.MustCompile(`(?m)^` + name + `\{[^}]*\bgpu="0"`).Match(data) {
			t.Errorf("%s with a gpu label is missing from %s", name, golden)
		}
	}
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (user) (sum_over_time(gpuwarden_user_gpu_equivalents[59m59s:1m])) / 60`:                {"gpuwarden_user_gpu_equivalents"},
		`DCGM_FI_DEV_GPU_UTIL{allocation!="", user=~"a|b"} < 5`:                                        {"DCGM_FI_DEV_GPU_UTIL"},
		`a_metric >= on(user, instance) group_left(x) b_metric or increase(c_total[10m]) > 0 unless d`: {"a_metric", "b_metric", "c_total", "d"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%s) = %v, want %v", expr, got, want)
		}
	}
}
