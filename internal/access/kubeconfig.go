package access

import (
	"fmt"
	"os"
	"regexp"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"

	"github.com/gpuwarden/gpuwarden/internal/controlplane/pki"
)

// DefaultValidity is how long a kubeconfig lasts unless asked otherwise: short, since a
// lost one grants its holder's rights until it expires.
const DefaultValidity = 7 * 24 * time.Hour

// userName is a login name as the host's user database allows it, and nothing the API
// server would read as more (no ':' as in system:…, no '/').
var userName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$`)

// Issuer writes kubeconfigs for users, signed by the control plane's CA.
type Issuer struct {
	PKI pki.PKI
	// Server is the API server's URL as clients reach it.
	Server string
	Clock  clock.PassiveClock
}

// Kubeconfig returns a kubeconfig for user, with a client certificate in UsersGroup (and
// AdminsGroup when admin) valid for validity.
func (i Issuer) Kubeconfig(user string, admin bool, validity time.Duration) ([]byte, error) {
	if !userName.MatchString(user) {
		return nil, fmt.Errorf("user %q is not a login name gpuwarden issues kubeconfigs for (letters, digits, _ . @ -; at most 64)", user)
	}
	groups := []string{UsersGroup}
	if admin {
		groups = append(groups, AdminsGroup)
	}
	cert, key, err := i.PKI.IssueClient(i.Clock.Now(), user, groups, validity)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(i.PKI.CACert())
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	const name = "gpuwarden"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: i.Server, CertificateAuthorityData: ca}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	kc.CurrentContext = name
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, fmt.Errorf("encoding the kubeconfig: %w", err)
	}
	return data, nil
}
