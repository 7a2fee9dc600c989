package audit

import (
	"fmt"
	"strings"
	"testing"
)

// TestARefusedCallerIsNotToldTheOwner: the owner of another user's object is in an
// auth.denied record for admins, and not in the record as its caller reads it.
func TestARefusedCallerIsNotToldTheOwner(t *testing.T) {
	e := AuthDeniedOwner("bob", "DELETE /containers/x", Container{ID: "c1"}, "alice", "no such container: x")
	if e.Details["owner"] != "alice" || strings.Contains(fmt.Sprint(e.Details["reason"]), "alice") {
		t.Fatalf("the admins' record: %v", e.Details)
	}
	got := e.ForCaller()
	if _, ok := got.Details["owner"]; ok || got.Details["reason"] != "no such container: x" {
		t.Errorf("bob's view: %v", got.Details)
	}
	if _, ok := e.Details["owner"]; !ok {
		t.Error("ForCaller changed the admins' record")
	}
}
