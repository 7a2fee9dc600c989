// Package controlplane runs an embedded etcd and kube-apiserver in the gpuwarden process,
// bound to loopback, with its own PKI and an admin kubeconfig, all kept under a data dir.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/gpuwarden/gpuwarden/internal/controlplane/pki"
)

// KubeconfigName is the admin kubeconfig's file name under the data dir.
const KubeconfigName = "admin.kubeconfig"

// PKIDir is the directory of the certificates inside the data dir.
const PKIDir = "pki"

// DefaultPort is the API server's default port.
const DefaultPort = 16443

// readyTimeout bounds how long Start waits for the API server to pass /readyz.
const readyTimeout = 2 * time.Minute

// ErrAlreadyStarted is returned by a second Start in one process: kube-apiserver keeps
// process-global state (feature gates, metrics registries) that cannot be set up twice.
var ErrAlreadyStarted = errors.New("the embedded control plane can be started only once per process")

var started atomic.Bool

// Options configure the embedded control plane.
type Options struct {
	// DataDir holds etcd's data, the PKI and the admin kubeconfig. Created if missing.
	DataDir string
	// Port is the API server's port on 127.0.0.1; 0 picks a free one.
	Port int
	// EventTTL is how long Kubernetes Events are kept; the API server's default (1h) when 0.
	EventTTL time.Duration
}

// ControlPlane is a running embedded etcd and kube-apiserver.
type ControlPlane struct {
	// KubeconfigPath is the admin kubeconfig (mode 0600).
	KubeconfigPath string
	// Port is the port the API server serves on.
	Port int
	// EtcdEndpoint is etcd's client URL (a Unix socket inside the data dir).
	EtcdEndpoint string
	// PKI holds the CA and certificates, in the data dir.
	PKI pki.PKI

	restConfig *rest.Config
	etcd       *embed.Etcd
	lock       *os.File
	cancel     context.CancelFunc
	done       chan struct{}
	err        error
}

// Start starts etcd and the API server and returns once /readyz passes. Stop it with Stop.
func Start(ctx context.Context, o Options) (_ *ControlPlane, retErr error) {
	if o.DataDir == "" {
		return nil, errors.New("a data dir is required")
	}
	if !started.CompareAndSwap(false, true) {
		return nil, ErrAlreadyStarted
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, fmt.Errorf("resolving data dir %q: %w", o.DataDir, err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	// The data dir holds etcd's socket, the CA key and the admin kubeconfig: only
	// gpuwarden's own user may enter it, whatever mode it had before.
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("restricting data dir %s to its owner: %w", dataDir, err)
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{lock: lock, done: make(chan struct{})}
	defer func() {
		if retErr != nil {
			cp.Stop()
		}
	}()

	p := pki.PKI{Dir: filepath.Join(dataDir, PKIDir)}
	cp.PKI = p
	if err := p.Ensure(time.Now(), []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}); err != nil {
		return nil, fmt.Errorf("preparing certificates in %s: %w", p.Dir, err)
	}

	e, etcdURL, err := startEtcd(dataDir)
	if err != nil {
		return nil, err
	}
	cp.etcd = e
	cp.EtcdEndpoint = etcdURL

	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", o.Port))
	if err != nil {
		return nil, fmt.Errorf("listening on 127.0.0.1:%d for the API server: %w", o.Port, err)
	}
	cp.Port = listener.Addr().(*net.TCPAddr).Port

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cp.cancel = cancel
	completed, err := apiServerOptions(runCtx, p, listener, etcdURL, o.EventTTL)
	if err != nil {
		listener.Close()
		close(cp.done)
		return nil, err
	}
	go func() {
		defer close(cp.done)
		cp.err = runAPIServer(runCtx, completed)
	}()

	cp.restConfig = adminRESTConfig(p, cp.Port)
	cp.KubeconfigPath = filepath.Join(dataDir, KubeconfigName)
	if err := writeKubeconfig(cp.KubeconfigPath, cp.restConfig); err != nil {
		return nil, err
	}
	if err := cp.waitReady(ctx); err != nil {
		return nil, err
	}
	return cp, nil
}

// RESTConfig returns a client configuration with admin rights (system:masters).
func (cp *ControlPlane) RESTConfig() *rest.Config { return rest.CopyConfig(cp.restConfig) }

// Done is closed when the API server has stopped, whether asked to or not.
func (cp *ControlPlane) Done() <-chan struct{} { return cp.done }

// Err is why the API server stopped; nil after a clean Stop.
func (cp *ControlPlane) Err() error {
	select {
	case <-cp.done:
		return cp.err
	default:
		return nil
	}
}

// Stop shuts the API server down gracefully, then etcd, and releases the data dir.
func (cp *ControlPlane) Stop() {
	if cp.cancel != nil {
		cp.cancel()
		<-cp.done
	}
	if cp.etcd != nil {
		cp.etcd.Close()
		cp.etcd = nil
	}
	if cp.lock != nil {
		cp.lock.Close()
		cp.lock = nil
	}
}

func (cp *ControlPlane) waitReady(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(cp.restConfig)
	if err != nil {
		return fmt.Errorf("building a client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		_, last = cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-cp.done:
			return fmt.Errorf("the API server stopped before it was ready: %w", cp.err)
		case <-ctx.Done():
			return fmt.Errorf("the API server was not ready after %s: %w", readyTimeout, last)
		case <-tick.C:
		}
	}
}

// lockDataDir takes an exclusive lock so that two servers never share one data dir.
func lockDataDir(dataDir string) (*os.File, error) {
	path := filepath.Join(dataDir, ".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another gpuwarden server: %w", dataDir, err)
	}
	klog.V(2).InfoS("Locked data dir", "path", dataDir)
	return f, nil
}
