package pki

import (
	"bytes"
	"net"
	"os"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestPKIIsCreatedOnceAndReused(t *testing.T) {
	p := PKI{Dir: t.TempDir() + "/pki"}
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	if err := p.Ensure(now, ips); err != nil {
		t.Fatal(err)
	}
	files := []string{p.CACert(), p.CAKey(), p.ServingCert(), p.ServingKey(), p.AdminCert(), p.AdminKey(), p.ServiceAccountKey()}
	before := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("%s was not created: %v", f, err)
		}
		before[f] = data
	}
	for _, key := range []string{p.CAKey(), p.ServingKey(), p.AdminKey(), p.ServiceAccountKey()} {
		if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", key, fi.Mode().Perm())
		}
	}

	if err := p.Ensure(now.Add(24*time.Hour), ips); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		after, _ := os.ReadFile(f)
		if !bytes.Equal(before[f], after) {
			t.Errorf("%s changed on a second start; it must be reused", f)
		}
	}

	admin, _, err := loadPair(p.AdminCert(), p.AdminKey())
	if err != nil {
		t.Fatal(err)
	}
	if admin.Subject.CommonName != "admin" || len(admin.Subject.Organization) != 1 || admin.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin certificate subject = %v, want CN=admin O=system:masters", admin.Subject)
	}
}

func TestLeafCertificatesAreRenewedBeforeExpiry(t *testing.T) {
	p := PKI{Dir: t.TempDir()}
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	if err := p.Ensure(now, ips); err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(p.CACert())
	serving, _ := os.ReadFile(p.ServingCert())

	later := now.Add(leafValidity - renewBefore + time.Hour)
	if err := p.Ensure(later, ips); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p.ServingCert()); bytes.Equal(got, serving) {
		t.Error("a serving certificate close to expiry was not renewed")
	}
	if got, _ := os.ReadFile(p.CACert()); !bytes.Equal(got, ca) {
		t.Error("the CA was replaced; clients that trust it would break")
	}
	cert, _, err := loadPair(p.ServingCert(), p.ServingKey())
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.After(later.Add(renewBefore)) {
		t.Errorf("renewed certificate expires %s, too soon", cert.NotAfter)
	}
}

func TestServingCertificateGainsNewIPs(t *testing.T) {
	p := PKI{Dir: t.TempDir()}
	if err := p.Ensure(now, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	want := net.ParseIP("10.96.0.1")
	if err := p.Ensure(now, []net.IP{net.ParseIP("127.0.0.1"), want}); err != nil {
		t.Fatal(err)
	}
	cert, _, err := loadPair(p.ServingCert(), p.ServingKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname(want.String()); err != nil {
		t.Errorf("serving certificate does not cover %s: %v", want, err)
	}
}

func TestCorruptCertificateIsReported(t *testing.T) {
	p := PKI{Dir: t.TempDir()}
	if err := os.WriteFile(p.CACert(), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.CAKey(), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Ensure(now, nil); err == nil {
		t.Error("a corrupt CA was silently replaced or accepted; want an error naming it")
	}
}
