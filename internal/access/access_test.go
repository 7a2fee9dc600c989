package access

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite config/rbac/access.yaml")

const manifest = "../../config/rbac/access.yaml"

// TestManifestIsCurrent: config/rbac/access.yaml (which the Helm chart carries) is what
// Install writes to the embedded API server. Regenerate with -update.
func TestManifestIsCurrent(t *testing.T) {
	objs, err := Objects()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("# Generated from internal/access by `go test ./internal/access -run Manifest -update`. DO NOT EDIT.\n")
	b.WriteString("# Users' and admins' rights through the API server, and the policy keeping users to their own GPUAllocations.\n")
	for i, o := range objs[1:] { // the user ClusterRole is config/rbac/user_role.yaml: not repeated here
		if i > 0 {
			b.WriteString("---\n")
		}
		data, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(bytes.ReplaceAll(data, []byte("  creationTimestamp: null\n"), nil))
	}
	if *update {
		if err := os.WriteFile(manifest, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(manifest)
	if err != nil || !bytes.Equal(got, b.Bytes()) {
		t.Errorf("%s is stale (%v): run go test ./internal/access -run Manifest -update", manifest, err)
	}
}
