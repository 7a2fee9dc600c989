package ledger

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gpuwarden/gpuwarden/internal/provenance"
)

// SigningKeyField is the ledger object's key holding the key that signs the allocations
// gpuwarden makes itself (source Adopted or Gateway). Only gpuwarden and admins read it.
const SigningKeyField = "signingKey"

// signingKey returns the signing key kept beside the ledger, creating the ledger object or
// the key when missing. r must read the API server itself, not a cache.
func SigningKey(ctx context.Context, r client.Reader, c client.Client, namespace string) ([]byte, error) {
	for range 5 {
		cm := &corev1.ConfigMap{}
		err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: Name}, cm)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading the allocation ledger: %w", err)
		}
		if err == nil && cm.Data[SigningKeyField] != "" {
			return provenance.ParseKey(cm.Data[SigningKeyField])
		}
		key, kerr := provenance.NewKey()
		if kerr != nil {
			return nil, kerr
		}
		if apierrors.IsNotFound(err) {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: Name},
				Data: map[string]string{SigningKeyField: key}}
			err = c.Create(ctx, cm)
		} else {
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[SigningKeyField] = key
			err = c.Update(ctx, cm)
		}
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("storing the signing key: %w", err)
		}
		// Written, or someone else was first: read what is stored now.
	}
	return nil, errors.New("the allocation ledger kept changing while its signing key was stored")
}
