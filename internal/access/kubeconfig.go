package access

import (
	"context"
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

// MaxValidity bounds any kubeconfig gpuwarden issues (the gateway's and the CLI's): login
// renews them (hack/profile.sh).
const MaxValidity = 30 * 24 * time.Hour

// AdminValidity bounds an admin's kubeconfig. Admin rights are not in the certificate
// (they follow the host's admin group, see Admins), but an admin's is the one to keep short.
const AdminValidity = 24 * time.Hour

// confirmTimeout bounds how long an admin's kubeconfig waits for their binding.
const confirmTimeout = 10 * time.Second

// userName is a login name as the host's user database allows it, and nothing the API
// server would read as more (no ':' as in system:…, no '/').
var userName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$`)

// Issuer writes kubeconfigs for users, signed by the control plane's CA.
type Issuer struct {
	PKI pki.PKI
	// Server is the API server's URL as clients reach it.
	Server string
	Clock  clock.PassiveClock
	// Admins, when set, is asked to bind an admin's name to cluster-admin before their
	// kubeconfig is handed out, if the host's admin group holds them.
	Admins *Admins
}

// Kubeconfig returns a kubeconfig for user: a client certificate naming the user, in
// UsersGroup only, valid for validity (at most MaxValidity; at most AdminValidity when
// admin). An admin's rights come from AdminsBinding while the host's admin group holds
// them, never from the certificate.
func (i Issuer) Kubeconfig(user string, admin bool, validity time.Duration) ([]byte, error) {
	if !userName.MatchString(user) {
		return nil, fmt.Errorf("user %q is not a login name gpuwarden issues kubeconfigs for (letters, digits, _ . @ -; at most 64)", user)
	}
	if validity <= 0 || validity > MaxValidity {
		return nil, fmt.Errorf("a kubeconfig lasts more than 0 and at most %s, not %s", MaxValidity, validity)
	}
	if admin && i.Admins != nil {
		ctx, cancel := context.WithTimeout(context.Background(), confirmTimeout)
		ok, err := i.Admins.Confirm(ctx, user)
		cancel()
		if err != nil {
			// The kubeconfig still serves as a user's; the next pass binds them.
			i.Admins.Log.Error(err, "Binding an admin to cluster-admin at once; the next pass will", "user", user)
		}
		admin = ok || err != nil
	}
	if admin {
		validity = min(validity, AdminValidity)
	}
	cert, key, err := i.PKI.IssueClient(i.Clock.Now(), user, []string{UsersGroup}, validity)
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
