package controlplane

import (
	"context"
	"fmt"
	"net"
	"time"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	"github.com/gpuwarden/gpuwarden/internal/controlplane/pki"
)

const (
	serviceClusterIPRange = "10.96.0.0/12"
	serviceAccountIssuer  = "https://kubernetes.default.svc"
)

// servedGroupVersions are the built-in API group versions the embedded server serves.
var servedGroupVersions = []string{
	"api/v1",                          // namespaces, events, secrets: kubectl and the controllers
	"rbac.authorization.k8s.io/v1",    // authorisation
	"authentication.k8s.io/v1",        // kubectl auth whoami, token reviews
	"authorization.k8s.io/v1",         // kubectl auth can-i
	"coordination.k8s.io/v1",          // leader-election leases
	"events.k8s.io/v1",                // Events on gpuwarden objects
	"admissionregistration.k8s.io/v1", // the admission plugins watch it
	"networking.k8s.io/v1",            // the service IP allocator (ServiceCIDR)
	"apiextensions.k8s.io/v1",         // the CRDs
	"apiregistration.k8s.io/v1",       // the aggregator
	"discovery.k8s.io/v1",             // the aggregator's service resolver watches EndpointSlices
	// The default admission plugins wait for informers on these before the server is ready
	// (Priority, DefaultStorageClass, RuntimeClass); the bootstrap PriorityClasses live there too.
	"scheduling.k8s.io/v1",
	"storage.k8s.io/v1",
	"node.k8s.io/v1",
}

// uncachedResources are the built-in resources served without a watch cache (size 0).
var uncachedResources = []string{
	"namespaces#0", "events#0", "secrets#0", "serviceaccounts#0", "services#0", "endpoints#0", "pods#0", "nodes#0",
	"persistentvolumes#0", "persistentvolumeclaims#0", "replicationcontrollers#0", "resourcequotas#0", "limitranges#0", "podtemplates#0",
	"roles.rbac.authorization.k8s.io#0", "rolebindings.rbac.authorization.k8s.io#0",
	"clusterroles.rbac.authorization.k8s.io#0", "clusterrolebindings.rbac.authorization.k8s.io#0",
	"leases.coordination.k8s.io#0", "events.events.k8s.io#0",
	"validatingwebhookconfigurations.admissionregistration.k8s.io#0", "mutatingwebhookconfigurations.admissionregistration.k8s.io#0",
	"validatingadmissionpolicies.admissionregistration.k8s.io#0", "validatingadmissionpolicybindings.admissionregistration.k8s.io#0",
	"mutatingadmissionpolicies.admissionregistration.k8s.io#0", "mutatingadmissionpolicybindings.admissionregistration.k8s.io#0",
	"ingresses.networking.k8s.io#0", "ingressclasses.networking.k8s.io#0", "networkpolicies.networking.k8s.io#0",
	"servicecidrs.networking.k8s.io#0", "ipaddresses.networking.k8s.io#0",
	"customresourcedefinitions.apiextensions.k8s.io#0", "apiservices.apiregistration.k8s.io#0", "endpointslices.discovery.k8s.io#0",
	"priorityclasses.scheduling.k8s.io#0", "storageclasses.storage.k8s.io#0", "csidrivers.storage.k8s.io#0", "csinodes.storage.k8s.io#0",
	"csistoragecapacities.storage.k8s.io#0", "volumeattachments.storage.k8s.io#0", "volumeattributesclasses.storage.k8s.io#0",
	"runtimeclasses.node.k8s.io#0",
}

// apiServerOptions returns kube-apiserver's options for serving on listener, storing in
// etcdURL and authenticating with the certificates in p. Authorisation is RBAC.
func apiServerOptions(ctx context.Context, p pki.PKI, listener net.Listener, etcdURL string, eventTTL time.Duration) (options.CompletedOptions, error) {
	s := options.NewServerRunOptions()
	if eventTTL > 0 {
		s.EventTTL = eventTTL
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return options.CompletedOptions{}, fmt.Errorf("setting component globals: %w", err)
	}
	addr := listener.Addr().(*net.TCPAddr)
	s.SecureServing.Listener = listener
	s.SecureServing.BindAddress = addr.IP
	s.SecureServing.BindPort = addr.Port
	s.SecureServing.ServerCert.CertDirectory = p.Dir
	s.SecureServing.ServerCert.CertKey.CertFile = p.ServingCert()
	s.SecureServing.ServerCert.CertKey.KeyFile = p.ServingKey()
	s.GenericServerRunOptions.AdvertiseAddress = net.ParseIP("127.0.0.1")
	// A loopback advertise address needs the endpoint reconciler off.
	s.EndpointReconcilerType = "none"
	s.ServiceClusterIPRanges = serviceClusterIPRange

	s.Authentication.ClientCert.ClientCA = p.CACert()
	s.Authentication.ServiceAccounts.KeyFiles = []string{p.ServiceAccountKey()}
	s.Authentication.ServiceAccounts.Issuers = []string{serviceAccountIssuer}
	s.ServiceAccountSigningKeyFile = p.ServiceAccountKey()
	s.Authorization.Modes = []string{"RBAC"}

	s.Etcd.StorageConfig.Transport.ServerList = []string{etcdURL}
	// The watch cache serves every watch of a resource from one etcd watch, decoding each
	// change once: without it each watcher has its own etcd watch and decodes every change
	// itself (for a custom resource, schema coercion included), which with one controller
	// per node grows the cost of every write with the number of nodes. It is on for
	// gpuwarden's resources (custom resources always follow EnableWatchCache) and the
	// ledger's ConfigMaps, which every node watches; off for the built-in resources nothing
	// watches in numbers, where it would only cost memory.
	s.Etcd.EnableWatchCache = true
	s.Etcd.WatchCacheSizes = uncachedResources
	s.Metrics.AllowListMapping = map[string]string{}

	// Serve only the API groups gpuwarden, kubectl and controller-runtime use: every other
	// built-in group costs start-up time and memory (storage, OpenAPI) for nothing here.
	s.APIEnablement.RuntimeConfig = map[string]string{"api/all": "false"}
	for _, gv := range servedGroupVersions {
		s.APIEnablement.RuntimeConfig[gv] = "true"
	}
	// With one client, priority-and-fairness has nothing to share out; max-in-flight suffices.
	s.Features.EnablePriorityAndFairness = false

	completed, err := s.Complete(ctx)
	if err != nil {
		return options.CompletedOptions{}, fmt.Errorf("completing API server options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return options.CompletedOptions{}, fmt.Errorf("validating API server options: %w", utilerrors.NewAggregate(errs))
	}
	return completed, nil
}

// runAPIServer runs kube-apiserver until ctx is cancelled.
func runAPIServer(ctx context.Context, opts options.CompletedOptions) error {
	return app.Run(ctx, opts)
}
