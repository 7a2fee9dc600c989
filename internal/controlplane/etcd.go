package controlplane

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gpuwarden/gpuwarden/internal/fatal"
)

// etcdReadyTimeout bounds how long a start waits for etcd (replaying a large WAL can take a while).
const etcdReadyTimeout = 2 * time.Minute

// EtcdSocketName is etcd's client socket under the data dir.
const EtcdSocketName = "etcd.sock"

// maxSocketPath is the longest path a Unix socket may have on Linux (sun_path less its NUL).
const maxSocketPath = 107

// unusedPeerURL is what etcd records as its own peer address. etcd requires one, but a
// single member never dials peers and nothing listens there: gpuwarden's etcd has no peer
// endpoint at all.
var unusedPeerURL = url.URL{Scheme: "http", Host: "127.0.0.1:2380"}

// startEtcd starts a single-member etcd with its data under dataDir/etcd. Its only
// endpoint is a Unix socket inside dataDir (mode 0700): no TCP port, so no other local
// user can reach it, and no port is chosen and raced for. It returns the client URL the
// API server should use.
func startEtcd(dataDir string) (*embed.Etcd, string, error) {
	sock := filepath.Join(dataDir, EtcdSocketName)
	if len(sock) > maxSocketPath {
		return nil, "", fmt.Errorf("the data dir path %s is too long for etcd's socket %s (%d bytes; at most %d): choose a shorter --data-dir",
			dataDir, sock, len(sock), maxSocketPath)
	}
	clientURL := url.URL{Scheme: "unix", Path: sock}

	cfg := embed.NewConfig()
	cfg.Name = "gpuwarden"
	cfg.Dir = filepath.Join(dataDir, "etcd")
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = nil
	cfg.AdvertisePeerUrls = []url.URL{unusedPeerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{filepath.Join(dataDir, "etcd.log")}
	lg, closeLog, err := etcdLogger(cfg.LogOutputs[0])
	if err != nil {
		return nil, "", err
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	// A single member never holds an election against anyone: short ticks make it ready sooner.
	cfg.TickMs = 10
	cfg.ElectionMs = 100

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		closeLog()
		return nil, "", fmt.Errorf("starting etcd in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", fmt.Errorf("etcd failed: %w", err)
	case <-time.After(etcdReadyTimeout):
		e.Close()
		return nil, "", fmt.Errorf("etcd in %s was not ready after %s", cfg.Dir, etcdReadyTimeout)
	}
	return e, clientURL.String(), nil
}

// etcdLogger writes etcd's warnings and errors to path and, when etcd gives up (a full
// disk, a corrupt WAL), its last words to gpuwarden's own log (stderr) as well; the audit
// log is flushed before the process exits.
func etcdLogger(path string) (*zap.Logger, func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening etcd's log: %w", err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewTee(
		zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(f), zapcore.WarnLevel),
		zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), zapcore.DPanicLevel),
	)
	lg := zap.New(core, zap.AddCaller(), zap.WithFatalHook(fatal.ExitHook{}), zap.WithPanicHook(fatal.PanicHook{})).Named("etcd")
	return lg, func() { _ = lg.Sync(); f.Close() }, nil
}
