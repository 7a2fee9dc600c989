// Package provenance tells allocations gpuwarden made itself (source Adopted or Gateway)
// from look-alikes made by hand: gpuwarden signs what it creates with a key only it and the
// admins can read, and refuses to act on an Adopted or Gateway allocation whose signature
// does not match its spec.
package provenance

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// KeySize is the size of a signing key in bytes.
const KeySize = 32

// NewKey returns a fresh random key, encoded for storage.
func NewKey() (string, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a signing key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// ParseKey decodes a stored key.
func ParseKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != KeySize {
		return nil, errors.New("the stored signing key is not valid")
	}
	return b, nil
}

// signed is what a signature covers: the name and every spec field that decides what is
// given and to whom.
type signed struct {
	Name          string                              `json:"name"`
	User          string                              `json:"user"`
	NodeName      string                              `json:"nodeName"`
	Request       gpuwardenv1alpha1.AllocationRequest `json:"request"`
	ContainerType gpuwardenv1alpha1.ContainerType     `json:"containerType"`
	Source        gpuwardenv1alpha1.AllocationSource  `json:"source"`
	ContainerID   string                              `json:"containerID"`
}

// Sign returns the signature of a's name and spec under key.
func Sign(key []byte, a *gpuwardenv1alpha1.GPUAllocation) string {
	s := a.Spec
	data, _ := json.Marshal(signed{Name: a.Name, User: s.User, NodeName: s.NodeName, Request: s.Request,
		ContainerType: s.ContainerType, Source: s.Source, ContainerID: s.ContainerID})
	mac := hmac.New(sha256.New, key)
	mac.Write(data)
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Verify reports whether a carries a valid signature under key.
func Verify(key []byte, a *gpuwardenv1alpha1.GPUAllocation) bool {
	got := a.Annotations[gpuwardenv1alpha1.AnnotationSignature]
	return got != "" && hmac.Equal([]byte(got), []byte(Sign(key, a)))
}

// NeedsSignature reports whether a's source is one only gpuwarden may set.
func NeedsSignature(a *gpuwardenv1alpha1.GPUAllocation) bool {
	return a.Spec.Source == gpuwardenv1alpha1.SourceAdopted || a.Spec.Source == gpuwardenv1alpha1.SourceGateway
}
