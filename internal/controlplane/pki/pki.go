// Package pki creates and keeps the embedded control plane's certificates and keys.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// renewBefore renews a leaf certificate on start when it expires sooner than this.
	renewBefore = 30 * 24 * time.Hour
)

// PKI holds the paths of the control plane's certificates and keys in one directory.
type PKI struct {
	// Dir holds the files.
	Dir string
}

func (p PKI) path(name string) string { return filepath.Join(p.Dir, name) }

// CACert is the CA certificate.
func (p PKI) CACert() string { return p.path("ca.crt") }

// CAKey is the CA key.
func (p PKI) CAKey() string { return p.path("ca.key") }

// ServingCert is the API server's serving certificate.
func (p PKI) ServingCert() string { return p.path("apiserver.crt") }

// ServingKey is the API server's serving key.
func (p PKI) ServingKey() string { return p.path("apiserver.key") }

// AdminCert is the admin client certificate (CN=admin, O=system:masters).
func (p PKI) AdminCert() string { return p.path("admin.crt") }

// AdminKey is the admin client key.
func (p PKI) AdminKey() string { return p.path("admin.key") }

// ServiceAccountKey signs and verifies service-account tokens.
func (p PKI) ServiceAccountKey() string { return p.path("sa.key") }

// Ensure creates whatever is missing: a CA, the API server's serving certificate, an admin
// client certificate (CN=admin, O=system:masters) and the service-account signing key.
// Existing files are reused; leaf certificates close to expiry are renewed.
func (p PKI) Ensure(now time.Time, servingIPs []net.IP) error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", p.Dir, err)
	}
	caCert, caKey, err := p.ensureCA(now)
	if err != nil {
		return err
	}
	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "gpuwarden-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: servingIPs,
	}
	if err := p.ensureLeaf(now, p.ServingCert(), p.ServingKey(), serving, caCert, caKey); err != nil {
		return err
	}
	admin := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := p.ensureLeaf(now, p.AdminCert(), p.AdminKey(), admin, caCert, caKey); err != nil {
		return err
	}
	if _, err := os.Stat(p.ServiceAccountKey()); errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("generating service-account key: %w", err)
		}
		return writeKey(p.ServiceAccountKey(), key)
	} else if err != nil {
		return fmt.Errorf("reading service-account key: %w", err)
	}
	return nil
}

func (p PKI) ensureCA(now time.Time) (*x509.Certificate, crypto.Signer, error) {
	cert, key, err := loadPair(p.CACert(), p.CAKey())
	if err == nil {
		return cert, key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "gpuwarden-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := sign(now, caValidity, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(p.CAKey(), caKey); err != nil {
		return nil, nil, err
	}
	if err := writePEM(p.CACert(), "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	cert, err = x509.ParseCertificate(der)
	return cert, caKey, err
}

// ensureLeaf keeps a certificate signed by the CA at certPath, renewing it when it is
// missing, close to expiry, signed by another CA, or lacks an IP SAN that is wanted now.
func (p PKI) ensureLeaf(now time.Time, certPath, keyPath string, tmpl, ca *x509.Certificate, caKey crypto.Signer) error {
	cert, _, err := loadPair(certPath, keyPath)
	switch {
	case err == nil && leafStillGood(now, cert, tmpl, ca):
		return nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating key for %s: %w", certPath, err)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := sign(now, leafValidity, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writePEM(certPath, "CERTIFICATE", der, 0o644)
}

func leafStillGood(now time.Time, cert, want, ca *x509.Certificate) bool {
	if now.Add(renewBefore).After(cert.NotAfter) || cert.CheckSignatureFrom(ca) != nil {
		return false
	}
	for _, ip := range want.IPAddresses {
		found := false
		for _, have := range cert.IPAddresses {
			found = found || have.Equal(ip)
		}
		if !found {
			return false
		}
	}
	return true
}

func sign(now time.Time, validity time.Duration, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(validity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("signing certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return der, nil
}

func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		return nil, nil, fmt.Errorf("%s holds no PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", certPath, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, fmt.Errorf("%s holds no PEM key", keyPath)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", keyPath, err)
	}
	return cert, key, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	data, err := encodeKey(key)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	return WriteFileAtomic(path, data, 0o600)
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	return WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), mode)
}

// WriteFileAtomic writes data to a temporary file beside path and renames it into place,
// so a crash never leaves a half-written file behind.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// MaxClientValidity bounds a client certificate IssueClient signs.
const MaxClientValidity = 365 * 24 * time.Hour

// IssueClient signs a client certificate for user (CN) in groups (O) with the CA, valid for
// validity from now; it returns the certificate and a new key, PEM-encoded. The API server
// takes CN as the user name and each O as a group.
func (p PKI) IssueClient(now time.Time, user string, groups []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 || validity > MaxClientValidity {
		return nil, nil, fmt.Errorf("a client certificate's validity must be more than 0 and at most %s, not %s", MaxClientValidity, validity)
	}
	ca, caKey, err := loadPair(p.CACert(), p.CAKey())
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA (%s): %w", p.Dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating a key for %s: %w", user, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := sign(now, validity, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the key for %s: %w", user, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}
