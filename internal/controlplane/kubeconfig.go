package controlplane

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gpuwarden/gpuwarden/internal/controlplane/pki"
)

const contextName = "gpuwarden"

func adminRESTConfig(p pki.PKI, port int) *rest.Config {
	return &rest.Config{
		Host: fmt.Sprintf("https://127.0.0.1:%d", port),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   p.CACert(),
			CertFile: p.AdminCert(),
			KeyFile:  p.AdminKey(),
		},
		// The controllers talk to an API server in the same process: do not throttle them.
		QPS:   500,
		Burst: 1000,
	}
}

// writeKubeconfig writes an admin kubeconfig with the certificates embedded, mode 0600.
func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[contextName] = &clientcmdapi.Cluster{
		Server:               cfg.Host,
		CertificateAuthority: cfg.CAFile,
	}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificate: cfg.CertFile,
		ClientKey:         cfg.KeyFile,
	}
	kc.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: "admin"}
	kc.CurrentContext = contextName
	if err := clientcmdapi.FlattenConfig(kc); err != nil {
		return fmt.Errorf("embedding certificates in the kubeconfig: %w", err)
	}
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return fmt.Errorf("encoding the kubeconfig: %w", err)
	}
	return pki.WriteFileAtomic(path, data, 0o600)
}
