// Package ds01 converts the configuration of DS01 (the bash-and-Python system gpuwarden
// replaces) into GPUQuota and ContainerPolicy manifests: resource-limits.yaml (defaults,
// group tiers, global policies, container types), the group member files, user-overrides.yaml
// and lifecycle-exemptions.yaml. Every key it cannot carry over is named in a warning.
package ds01

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Sources are DS01's files; only Limits is required.
type Sources struct {
	// Limits is resource-limits.yaml.
	Limits string
	// Groups is the directory of <group>.members files; when empty, groups are the host's.
	Groups string
	// Overrides is user-overrides.yaml.
	Overrides string
	// Exemptions is lifecycle-exemptions.yaml.
	Exemptions string
}

// values is one DS01 block of keys (defaults, a group, an override, a container type).
type values map[string]any

// config is what was read.
type config struct {
	defaults     values
	defaultGroup string
	groups       []group // in the file's order: DS01 takes the first group listing a user
	policies     values
	types        map[string]values
	overrides    map[string]values
	exemptions   []exemption
}

type group struct {
	name    string
	members []string // from <group>.members and inline members:, when known
	values  values
}

type exemption struct {
	Username   string   `json:"username"`
	Category   string   `json:"category"`
	ExemptFrom []string `json:"exempt_from"`
	Reason     string   `json:"reason"`
	ApprovedBy string   `json:"approved_by"`
	ApprovedOn any      `json:"approved_on"`
	ExpiresOn  any      `json:"expires_on"`
}

func readYAML(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// read loads the sources; w collects what cannot be carried over.
func read(src Sources, w *warnings) (*config, error) {
	var rl map[string]any
	if err := readYAML(src.Limits, &rl); err != nil {
		return nil, fmt.Errorf("--limits: %w", err)
	}
	if rl == nil {
		return nil, fmt.Errorf("--limits %s: the file is empty", src.Limits)
	}
	c := &config{types: map[string]values{}, overrides: map[string]values{}}
	c.defaults = block(rl["defaults"])
	c.defaultGroup, _ = rl["default_group"].(string)
	c.policies = block(rl["policies"])
	for name, v := range block(rl["container_types"]) {
		c.types[name] = block(v)
	}
	known := map[string]bool{"defaults": true, "default_group": true, "groups": true, "policies": true, "container_types": true, "user_overrides": true}
	for k := range rl {
		if !known[k] {
			w.add(k, "not carried over: %s", notCarriedSection(k))
		}
	}
	// Groups in the file's order.
	order, err := groupOrder(src.Limits)
	if err != nil {
		return nil, err
	}
	groups := block(rl["groups"])
	for _, name := range order {
		g := group{name: name, values: block(groups[name])}
		if m, ok := g.values["members"].([]any); ok {
			for _, u := range m {
				g.members = append(g.members, fmt.Sprint(u))
			}
		}
		delete(g.values, "members")
		if src.Groups != "" {
			members, err := readMembers(filepath.Join(src.Groups, name+".members"))
			if err != nil && !os.IsNotExist(err) {
				return nil, fmt.Errorf("--groups: %w", err)
			}
			g.members = append(g.members, members...)
		}
		c.groups = append(c.groups, g)
	}
	for u, v := range block(rl["user_overrides"]) {
		c.overrides[u] = block(v)
	}
	if src.Overrides != "" {
		var o map[string]any
		if err := readYAML(src.Overrides, &o); err != nil {
			return nil, fmt.Errorf("--overrides: %w", err)
		}
		for u, v := range o { // the file wins over the inline section, as in DS01
			c.overrides[u] = block(v)
		}
	}
	if src.Exemptions != "" {
		var e struct {
			Exemptions []exemption `json:"exemptions"`
		}
		if err := readYAML(src.Exemptions, &e); err != nil {
			return nil, fmt.Errorf("--exemptions: %w", err)
		}
		c.exemptions = e.Exemptions
	}
	return c, nil
}

// groupOrder returns the keys of groups: in the order they appear in the file.
func groupOrder(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "groups:"):
			in = true
		case in && len(line) > 0 && line[0] != ' ' && line[0] != '#':
			in = false
		case in && strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   ") && strings.HasSuffix(trimmed, ":") && !strings.HasPrefix(trimmed, "#"):
			out = append(out, strings.TrimSuffix(trimmed, ":"))
		}
	}
	return out, nil
}

func readMembers(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if u := strings.TrimSpace(line); u != "" {
			out = append(out, u)
		}
	}
	return out, nil
}

func block(v any) values {
	m, _ := v.(map[string]any)
	if m == nil {
		return values{}
	}
	return values(m)
}

// merged is defaults ∪ b: b's keys win.
func merged(defaults, b values) values {
	out := values{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// number reads a YAML number.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

func round(f float64) float64 { return math.Round(f*1e6) / 1e6 }
