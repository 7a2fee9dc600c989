package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// The attack suite of issue 23: two unprivileged local users, gwatk-a (the attacker) and
// gwatk-b (the victim), against one server and the REAL engine. Every case is one row of the
// issue's table (or of ../shared/reference/gateway-fields.md) and checks what became of the
// attack ON THE HOST: a file's owner and mode, /etc/shadow unread, core_pattern unchanged,
// the victim's volume, image, container and network untouched. A refusal must be the
// gateway's own ("gpuwarden: …"); an attack that ran harmlessly passes too, unless the spec
// says the field is refused.

const (
	atkA = "gwatk-a" // the attacker
	atkB = "gwatk-b" // the victim
	// rawProbeEnv makes the test binary, re-run as an unprivileged user, speak raw HTTP on a
	// Unix socket (see runRawProbe).
	rawProbeEnv = "GPUWARDEN_E2E_RAW"
	atkAPI      = "/v1.41"
)

func init() {
	if os.Getenv(rawProbeEnv) != "" {
		spec, _ := io.ReadAll(os.Stdin)
		os.Exit(runRawProbe(string(spec)))
	}
}

// rawSpec is what the raw probe sends: each step's bytes in turn on one connection, and
// what came back after each printed to stdout.
type rawSpec struct {
	Sock  string
	Steps []string
}

// runRawProbe sends each step and reads the answer: until a complete HTTP response (with a
// length or chunked) has come, or nothing more came for a second, or the connection closed.
func runRawProbe(enc string) int {
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		fmt.Println("probe:", err)
		return 2
	}
	var spec rawSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		fmt.Println("probe:", err)
		return 2
	}
	c, err := net.DialTimeout("unix", spec.Sock, 5*time.Second)
	if err != nil {
		fmt.Println("probe: dial:", err)
		return 2
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	for _, step := range spec.Steps {
		if _, err := c.Write([]byte(step)); err != nil {
			fmt.Printf("\n<<write: %v>>\n", err)
			return 0
		}
		var got []byte
		deadline := time.Now().Add(15 * time.Second)
		for {
			_ = c.SetReadDeadline(deadline)
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			os.Stdout.Write(buf[:n])
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				fmt.Printf("\n<<closed: %v>>\n", err)
				return 0
			}
			if completeResponse(got) {
				break
			}
			deadline = time.Now().Add(time.Second)
		}
	}
	return 0
}

// completeResponse tells whether b holds a whole HTTP response with a known end.
func completeResponse(b []byte) bool {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.ContentLength < 0 && len(resp.TransferEncoding) == 0 {
		return false // ends when the connection does (or a spliced stream)
	}
	_, err = io.ReadAll(resp.Body)
	return err == nil
}

// atkEnv is the suite's one server, its two users and what they made.
type atkEnv struct {
	s                  *server
	sock, dir, image   string
	bin                string // the gpuwarden binary
	probe              string // this test binary, where the users may run it
	homeA, homeB       string
	uidA, gidA         int
	uidB, gidB         int
	corePattern        []byte
	worldOnce          sync.Once
	worldErr           error
	bobImage, bobLib   string // image IDs
	shared             string // the admin's shared image ID
	bobCtr             string // bob's container ID
	loadTar            []byte // an image tar whose name is bob's image's
	remoteHits         atomic.Int64
	remotePort         int
	remotePort6        int
	hardNofile, hardML int64
}

func (e *atkEnv) a(args ...string) (string, error) { return as(atkA, e.sock, "", args...) }
func (e *atkEnv) b(args ...string) (string, error) { return as(atkB, e.sock, "", args...) }

// rootDocker talks to the engine itself (DOCKER_HOST), as root.
func rootDocker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// userSh runs a shell script as an unprivileged user (file operations in their home).
func userSh(user, script string) (string, error) {
	out, err := exec.Command("runuser", "-u", user, "--", "sh", "-c", script).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// raw sends steps on one connection to the gateway as user and returns what came back.
func (e *atkEnv) raw(user string, steps ...string) string {
	u, err := user2ids(user)
	if err != nil {
		return "probe: " + err.Error()
	}
	spec, _ := json.Marshal(rawSpec{Sock: e.sock, Steps: steps})
	cmd := exec.Command(e.probe, "-test.run=^$")
	cmd.Env = append(os.Environ(), rawProbeEnv+"=1")
	cmd.Stdin = strings.NewReader(base64.StdEncoding.EncodeToString(spec))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u[0]), Gid: uint32(u[1])}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s\nprobe: %v", out, err)
	}
	return string(out)
}

func user2ids(name string) ([2]int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return [2]int{}, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return [2]int{uid, gid}, nil
}

// httpReq is one HTTP/1.1 request as bytes; extra headers as "Name: value".
func httpReq(method, path, body string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: docker\r\n", method, path)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == http.MethodPost {
		b.WriteString("Content-Type: application/json\r\n")
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

// statusOf is the status code of the first response in a raw answer (0 when none).
func statusOf(resp string) int {
	if !strings.HasPrefix(resp, "HTTP/1.") {
		return 0
	}
	f := strings.Fields(resp)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// rawCreate creates a container as user from a raw JSON body; a refusal is an error.
func (e *atkEnv) rawCreate(user, name, body string) (string, error) {
	resp := e.raw(user, httpReq(http.MethodPost, atkAPI+"/containers/create?name="+name, body))
	if code := statusOf(resp); code != http.StatusCreated {
		return resp, fmt.Errorf("create answered %d", code)
	}
	return resp, nil
}

// createThenStart creates from a raw body and, when created, starts it attached as attacker.
func (e *atkEnv) createThenStart(name, body string) (string, error) {
	out, err := e.rawCreate(atkA, name, body)
	if err != nil {
		return out, err
	}
	started, err := e.a("start", "-a", name)
	return out + "\n" + started, err
}

// inspect reads a field of a container, as root; "" when the container does not exist.
func inspect(name, tmpl string) string {
	out, err := rootDocker("inspect", "-f", tmpl, name)
	if err != nil {
		return ""
	}
	return out
}

// atkCase is one attack: the row it probes, a setup, the attack as the unprivileged user, and
// what of it reached the host or the victim.
type atkCase struct {
	row, name string
	setup     func(t *testing.T, e *atkEnv)
	attack    func(t *testing.T, e *atkEnv) (string, error)
	// refuse: the spec refuses this for a user: the attack must fail with a "gpuwarden:" message.
	refuse bool
	// harm says what of the attack reached the host or the victim ("" when nothing did); for
	// the everyday workloads, what did not work.
	harm func(t *testing.T, e *atkEnv, out string, err error) string
}

// fieldCase is a create the spec refuses: the flags must be refused, and inspect's tmpl on
// the container (if made) must not show bad.
func fieldCase(row, name, ctr string, flags []string, tmpl string, bad func(string) bool) atkCase {
	return atkCase{row: row, name: name, refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a(append(append([]string{"create", "--name", ctr}, flags...), e.image, "true")...)
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if v := inspect(ctr, tmpl); v != "" && bad(v) {
				return fmt.Sprintf("the engine made the container with %s = %s", tmpl, v)
			}
			return ""
		}}
}

func contains(s string) func(string) bool {
	return func(v string) bool { return strings.Contains(v, s) }
}

// The script a container runs to reach the host's /proc/sys: it writes core_pattern's own
// value back (a write that changes nothing, but proves the file writable).
const procSysProbe = `echo PROBE-RAN; grep " /proc/sys " /proc/mounts; cat /proc/sys/kernel/core_pattern > /tmp/cp && cat /tmp/cp > /proc/sys/kernel/core_pattern && echo WROTE-CORE-PATTERN`

func (e *atkEnv) procSysHarm(_ *testing.T, out string) string {
	if now, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); !bytes.Equal(now, e.corePattern) {
		return "the host's kernel.core_pattern changed to " + strings.TrimSpace(string(now))
	}
	if strings.Contains(out, "WROTE-CORE-PATTERN") {
		return "the container wrote the host's /proc/sys/kernel/core_pattern"
	}
	if strings.Contains(out, "PROBE-RAN") && !strings.Contains(out, "/proc/sys proc ro") {
		return "the container's /proc/sys is not mounted read-only (MaskedPaths/ReadonlyPaths reached the engine):\n" + out
	}
	return ""
}

// The script a container runs to read /etc/shadow and write /etc through a mount at /host.
const shadowProbe = `cat /host/etc/shadow >/dev/null 2>&1 && echo READ-SHADOW; touch /host/etc/gwatk-pwned 2>/dev/null && echo WROTE-ETC; true`

func shadowHarm(_ *testing.T, _ *atkEnv, out string, _ error) string {
	if _, err := os.Stat("/etc/gwatk-pwned"); err == nil {
		return "the container wrote /etc/gwatk-pwned on the host"
	}
	if strings.Contains(out, "READ-SHADOW") || strings.Contains(out, "WROTE-ETC") {
		return "the container reached the host's /etc: " + out
	}
	return ""
}

// swapCase creates a container mounting a directory of the attacker's home, replaces the
// directory by a symbolic link to / and starts it.
func swapCase(name, ctr string, mountFlags func(dir string) []string, sub string) atkCase {
	return atkCase{row: "host root filesystem mounted (symlink swap)", name: name,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			dir := filepath.Join(e.homeA, "atk-"+ctr)
			if out, err := userSh(atkA, fmt.Sprintf("rm -rf %[1]s && mkdir -p %[1]s/etc", dir)); err != nil {
				t.Fatalf("making %s: %v %s", dir, err, out)
			}
			src := dir
			if sub != "" {
				src = filepath.Join(dir, sub)
			}
			probe := shadowProbe
			if sub != "" {
				probe = strings.ReplaceAll(shadowProbe, "/host/etc/", "/host/")
			}
			if out, err := e.a(append(append([]string{"create", "--name", ctr}, mountFlags(src)...), e.image, "sh", "-c", probe)...); err != nil {
				t.Fatalf("creating a container mounting %s (allowed: it is in the home): %v %s", src, err, out)
			}
			if out, err := userSh(atkA, fmt.Sprintf("rm -rf %[1]s && ln -s / %[1]s", dir)); err != nil {
				t.Fatalf("swapping %s for a link to /: %v %s", dir, err, out)
			}
			return e.a("start", "-a", ctr)
		},
		harm: shadowHarm}
}

func bindFlags(dir string) []string { return []string{"-v", dir + ":/host"} }
func mountFlags(dir string) []string {
	return []string{"--mount", "type=bind,src=" + dir + ",dst=/host"}
}

// world makes what the cases attack: bob's volume, network, image and container, alice's
// image and container, an admin's shared image, and a tar naming bob's image.
func (e *atkEnv) world(t *testing.T) {
	t.Helper()
	e.worldOnce.Do(func() { e.worldErr = e.makeWorld() })
	if e.worldErr != nil {
		t.Fatalf("the suite's setup failed: %v", e.worldErr)
	}
}

func (e *atkEnv) makeWorld() error {
	must := func(what string, out string, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", what, err, out)
		}
		return nil
	}
	ctx := func(home, name, dockerfile string) (string, error) {
		d := filepath.Join(home, name)
		return userSh(filepath.Base(home), fmt.Sprintf("mkdir -p %s && printf '%%s' '%s' > %s/Dockerfile", d, dockerfile, d))
	}
	if out, err := ctx(e.homeA, "atk-ctx", "FROM "+e.image+"\nRUN echo alice > /alice\n"); err != nil {
		return must("alice's build context", out, err)
	}
	if out, err := e.a("build", "-t", "gwatk-a/app:1", filepath.Join(e.homeA, "atk-ctx")); err != nil {
		return must("alice's docker build", out, err)
	}
	// The tar a load would put onto bob's name: alice's image, renamed in its manifest.
	saved, err := exec.Command("docker", "save", "gwatk-a/app:1").Output()
	if err != nil {
		return must("docker save of alice's image", "", err)
	}
	if e.loadTar, err = renameSaved(saved, "gwatk-a/app", "gwatk-b/app"); err != nil {
		return err
	}
	if out, err := ctx(e.homeB, "atk-ctx", "FROM "+e.image+"\nRUN echo bob-image-secret > /bob-secret\n"); err != nil {
		return must("bob's build context", out, err)
	}
	if out, err := e.b("build", "-t", "gwatk-b/app:1", filepath.Join(e.homeB, "atk-ctx")); err != nil {
		return must("bob's docker build", out, err)
	}
	for _, tag := range []string{"gwatk-b/lib:1", "127.0.0.1:9/gwatk-b/app:1"} {
		if out, err := e.b("tag", "gwatk-b/app:1", tag); err != nil {
			return must("bob's docker tag "+tag, out, err)
		}
	}
	if out, err := rootDocker("tag", e.image, "gwatk-admin/shared:1"); err != nil {
		return must("the admin's tag", out, err)
	}
	e.bobImage = imageID("gwatk-b/app:1")
	e.bobLib = imageID("gwatk-b/lib:1")
	e.shared = imageID("gwatk-admin/shared:1")
	if out, err := e.b("volume", "create", "gwatk-bvol"); err != nil {
		return must("bob's volume", out, err)
	}
	if out, err := rootDocker("run", "--rm", "-v", "gwatk-bvol:/v", e.image, "sh", "-c",
		fmt.Sprintf("echo bob-vol-secret > /v/secret && chown -R %d:%d /v && chmod 600 /v/secret", e.uidB, e.gidB)); err != nil {
		return must("bob's volume's secret", out, err)
	}
	if out, err := e.b("network", "create", "--internal", "gwatk-bnet"); err != nil {
		return must("bob's network", out, err)
	}
	if out, err := e.b("run", "-d", "--name", "gwatk-bctr", "-e", "SECRET=bob-env-secret", "-v", "gwatk-bvol:/bv", "gwatk-b/app:1", "sleep", "3600"); err != nil {
		return must("bob's container", out, err)
	}
	e.bobCtr = inspect("gwatk-bctr", "{{.Id}}")
	if out, err := e.a("run", "-d", "--name", "gwatk-actr", e.image, "sleep", "3600"); err != nil {
		return must("alice's container", out, err)
	}
	return nil
}

func imageID(name string) string {
	out, err := rootDocker("image", "inspect", "-f", "{{.Id}}", name)
	if err != nil {
		return ""
	}
	return out
}

// restore undoes what an earlier case's attack did, so that each case starts from the same
// world: the marker files on the host, bob's volume's secret, bob's and the admin's tags.
func (e *atkEnv) restore() {
	for _, f := range []string{"/etc/gwatk-pwned", "/etc/gwatk-dl", "/etc/gwatk-cm", "/etc/gwatk-cid"} {
		_ = os.RemoveAll(f)
	}
	if e.bobImage == "" {
		return
	}
	if bobVolumeSecret() != "bob-vol-secret\n" {
		if mp, err := rootDocker("volume", "inspect", "-f", "{{.Mountpoint}}", "gwatk-bvol"); err == nil {
			_ = os.WriteFile(filepath.Join(mp, "secret"), []byte("bob-vol-secret\n"), 0o600)
		}
	}
	for name, id := range map[string]string{"gwatk-b/app:1": e.bobImage, "gwatk-b/lib:1": e.bobLib, "gwatk-admin/shared:1": e.shared} {
		if imageID(name) != id {
			_, _ = rootDocker("tag", id, name)
		}
	}
}

func bobVolumeSecret() string {
	mp, err := rootDocker("volume", "inspect", "-f", "{{.Mountpoint}}", "gwatk-bvol")
	if err != nil {
		return ""
	}
	b, _ := os.ReadFile(filepath.Join(mp, "secret"))
	return string(b)
}

// renameSaved rewrites the names in a `docker save` tar (manifest.json, repositories).
func renameSaved(saved []byte, from, to string) ([]byte, error) {
	tr := tar.NewReader(bytes.NewReader(saved))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the saved image: %w", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		if h.Name == "manifest.json" || h.Name == "repositories" || h.Name == "index.json" {
			data = bytes.ReplaceAll(data, []byte(from), []byte(to))
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// tinyTar is a root filesystem of one file, for docker import.
func tinyTar() string {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{Name: "trojan", Mode: 0o755, Size: 6, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("trojan"))
	_ = tw.Close()
	return b.String()
}

// atkCleanup removes what the suite made (also what a killed run left).
func atkCleanup(e *atkEnv) {
	for _, f := range []string{"label=gpuwarden.io/user=" + atkA, "label=gpuwarden.io/user=" + atkB, "name=gwatk-"} {
		if ids, _ := rootDocker("ps", "-aq", "--filter", f); ids != "" {
			_, _ = rootDocker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
		}
	}
	if vols, _ := rootDocker("volume", "ls", "-q", "--filter", "name=gwatk-"); vols != "" {
		_, _ = rootDocker(append([]string{"volume", "rm", "-f"}, strings.Fields(vols)...)...)
	}
	if nets, _ := rootDocker("network", "ls", "-q", "--filter", "name=gwatk-"); nets != "" {
		_, _ = rootDocker(append([]string{"network", "rm"}, strings.Fields(nets)...)...)
	}
	if imgs, _ := rootDocker("images", "--format", "{{.Repository}}:{{.Tag}}"); imgs != "" {
		for _, im := range strings.Fields(imgs) {
			if strings.Contains(im, "gwatk-") {
				_, _ = rootDocker("rmi", "-f", im)
			}
		}
	}
	for _, f := range []string{"/etc/gwatk-pwned", "/etc/gwatk-dl", "/etc/gwatk-cm", "/etc/gwatk-cid"} {
		_ = os.RemoveAll(f)
	}
	for _, h := range []string{"/home/" + atkA, "/home/" + atkB} {
		matches, _ := filepath.Glob(filepath.Join(h, "atk-*"))
		for _, m := range matches {
			_ = os.RemoveAll(m)
		}
	}
	if e != nil && len(e.corePattern) > 0 {
		if now, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); !bytes.Equal(now, e.corePattern) {
			_ = os.WriteFile("/proc/sys/kernel/core_pattern", e.corePattern, 0o644)
		}
	}
}

// shortestUniquePrefix is the shortest prefix of id no other container's ID starts with.
func shortestUniquePrefix(id string) string {
	all, _ := rootDocker("ps", "-aq", "--no-trunc")
	for n := 1; n < len(id); n++ {
		unique := true
		for _, o := range strings.Fields(all) {
			if o != id && strings.HasPrefix(o, id[:n]) {
				unique = false
				break
			}
		}
		if unique {
			return id[:n]
		}
	}
	return id
}

// TestGatewayAttacks is issue 23's attack table, row by row and with its variants, against
// one server as two unprivileged users, and the everyday workloads that must keep working.
func TestGatewayAttacks(t *testing.T) {
	start := time.Now()
	s, sock, dir := gatewayServer(t, "e2e-gwatk", []string{atkA, atkB})
	e := &atkEnv{s: s, sock: sock, dir: dir, image: testutil.DockerImage(), bin: binary(t),
		homeA: "/home/" + atkA, homeB: "/home/" + atkB}
	for _, u := range []struct {
		name     string
		uid, gid *int
	}{{atkA, &e.uidA, &e.gidA}, {atkB, &e.uidB, &e.gidB}} {
		ids, err := user2ids(u.name)
		if err != nil {
			t.Fatal(err)
		}
		*u.uid, *u.gid = ids[0], ids[1]
	}
	e.corePattern, _ = os.ReadFile("/proc/sys/kernel/core_pattern")
	atkCleanup(e)
	t.Cleanup(func() { atkCleanup(e) })
	probeDir, err := os.MkdirTemp("", "gwatk-probe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(probeDir) })
	_ = os.Chmod(probeDir, 0o755)
	e.probe = copyTestBinary(t, probeDir)
	if out, err := userSh(atkA, "ulimit -Hn; ulimit -Hl"); err == nil {
		f := strings.Fields(out)
		if len(f) == 2 {
			e.hardNofile, _ = strconv.ParseInt(f[0], 10, 64)
			e.hardML, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	// Bob's secret in his home, readable by him alone.
	if err := os.WriteFile(filepath.Join(e.homeB, "atk-secret"), []byte("bob-home-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chown(filepath.Join(e.homeB, "atk-secret"), e.uidB, e.gidB)
	// A web server on loopback the engine must not be made to fetch from.
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			e.remoteHits.Add(1)
			_, _ = w.Write([]byte("GWATK-LOOPBACK-SECRET\n"))
		})}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { srv.Close() })
		if strings.HasPrefix(addr, "127.") {
			e.remotePort = l.Addr().(*net.TCPAddr).Port
		} else {
			e.remotePort6 = l.Addr().(*net.TCPAddr).Port
		}
	}
	if _, err := kubectl(t, s.kubeconfig, `apiVersion: gpuwarden.io/v1alpha1
kind: GPUQuota
metadata: {name: gwatk-users}
spec:
  subjects: [{kind: User, name: gwatk-a}, {kind: User, name: gwatk-b}]
  limits: {gpuEquivalents: "2", maxGPUsPerContainer: 1}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}

	cases := attackCases()
	type result struct {
		row, name, outcome string
		ok                 bool
	}
	var results []result
	for i, c := range cases {
		name := fmt.Sprintf("%03d %s", i+1, c.name)
		var outcome string
		ok := t.Run(name, func(t *testing.T) {
			e.world(t)
			e.restore()
			if c.setup != nil {
				c.setup(t, e)
			}
			out, err := c.attack(t, e)
			outcome = summary(out, err)
			if c.harm != nil {
				if h := c.harm(t, e, out, err); h != "" {
					t.Errorf("HARM (%s): %s\nthe attack's output: %s", c.row, clip(h), clip(out))
				}
			}
			if c.refuse {
				switch {
				case err == nil:
					t.Errorf("accepted; the spec refuses it (%s)\n%s", c.row, clip(out))
				case !strings.Contains(out, "gpuwarden:"):
					t.Errorf("failed, but not refused by the gateway with a \"gpuwarden:\" message (%s):\n%s", c.row, clip(out))
				}
			}
		})
		results = append(results, result{c.row, name, outcome, ok})
	}
	var b strings.Builder
	passed := 0
	for _, r := range results {
		v := "FAIL"
		if r.ok {
			v, passed = "PASS", passed+1
		}
		fmt.Fprintf(&b, "%s  %-70s  [%s]  %s\n", v, r.name, r.row, r.outcome)
	}
	t.Logf("%d attack and everyday cases, %d passed, in %s:\n%s", len(results), passed, time.Since(start).Round(time.Second), b.String())
	if len(cases) < 50 {
		t.Errorf("only %d cases; the issue asks for at least 50", len(cases))
	}
}

// clip shortens an output for a log (a docker save is megabytes of tar).
func clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 1500 {
		return s[:1500] + fmt.Sprintf("… (%d bytes in all)", len(s))
	}
	return s
}

// summary is an attack's outcome in one line.
func summary(out string, err error) string {
	line := ""
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "HTTP/1.1 ") || strings.HasPrefix(l, "Content-") || strings.HasPrefix(l, "Api-Version") ||
			strings.HasPrefix(l, "Date:") || strings.HasPrefix(l, "Docker-") || strings.HasPrefix(l, "Ostype") || strings.HasPrefix(l, "Server:") {
			continue
		}
		line = l
		break
	}
	line = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, line)
	if len(line) > 150 {
		line = line[:150] + "…"
	}
	if err != nil {
		return "refused/failed: " + line
	}
	return "ran: " + line
}

// attackCases is the table.
func attackCases() []atkCase {
	const (
		rProc    = "host /proc/sys writable"
		rSwap    = "host root filesystem mounted"
		rRoot    = "setuid-root binary on the host (container root is host root)"
		rRaw     = "raw engine access (Upgrade)"
		rBody    = "a body the gateway did not check (CVE-2024-41110 style)"
		rVol     = "another user's named volume"
		rEnv     = "another user's container environment"
		rImg     = "a trojan in another user's image"
		rNet     = "another user's internal network"
		rAlloc   = "another user's container stopped (Manual GPUAllocation)"
		rLeak    = "smaller leaks"
		rField   = "HostConfig allow-list (gateway-fields.md)"
		rMount   = "bind mounts (gateway-fields.md)"
		rEveryDy = "everyday workload (must work)"
	)
	var cs []atkCase
	add := func(c ...atkCase) { cs = append(cs, c...) }
	n := 0
	ctr := func() string { n++; return fmt.Sprintf("gwatk-c%03d", n) }

	// First: the API server's event recorder lets only the first refusals of a burst through.
	add(atkCase{row: rLeak, name: "control characters in a request path reach Kubernetes Events raw",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			resp := e.raw(atkA, httpReq(http.MethodGet, atkAPI+"/containers/gwatkesc%1b%5d0%3bpwned%07x/json", ""))
			return resp, errors.New("refused")
		},
		harm: func(t *testing.T, e *atkEnv, out string, _ error) string {
			var msgs string
			testutil.Eventually(t, 30*time.Second, "an AccessDenied Event naming gwatkesc", func() (bool, string) {
				msgs, _ = kubectl(t, e.s.kubeconfig, "", "get", "events", "-A", "-o", `jsonpath={range .items[*]}{.message}{"\n"}{end}`)
				return strings.Contains(msgs, "gwatkesc"), msgs
			})
			for _, l := range strings.Split(msgs, "\n") {
				if strings.Contains(l, "gwatkesc") && strings.ContainsAny(l, "\x1b\x07") {
					return fmt.Sprintf("an Event message holds raw control characters: %q", l)
				}
			}
			return ""
		}})

	// --- /proc/sys: MaskedPaths and ReadonlyPaths.
	add(atkCase{row: rProc, name: "security-opt systempaths=unconfined, then write core_pattern",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "--security-opt", "systempaths=unconfined", e.image, "sh", "-c", procSysProbe)
		},
		harm: func(t *testing.T, e *atkEnv, out string, _ error) string { return e.procSysHarm(t, out) }})
	for _, v := range []struct{ name, hc string }{
		{"raw create with empty MaskedPaths and ReadonlyPaths, then write core_pattern", `"MaskedPaths":[],"ReadonlyPaths":[]`},
		{"raw create with case-variant duplicate keys maskedpaths/readonlypaths emptied last", `"MaskedPaths":["/proc/kcore"],"ReadonlyPaths":["/proc/sys"],"maskedpaths":[],"readonlypaths":[]`},
		{"raw create with ReadonlyPaths emptied through a \\u-escaped key", `"R\u0065adonlyPaths":[],"MaskedPaths":[]`},
	} {
		name := ctr()
		add(atkCase{row: rProc, name: v.name,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				cmd, _ := json.Marshal([]string{"sh", "-c", procSysProbe})
				return e.createThenStart(name, fmt.Sprintf(`{"Image":%q,"Cmd":%s,"HostConfig":{%s}}`, e.image, cmd, v.hc))
			},
			harm: func(t *testing.T, e *atkEnv, out string, _ error) string { return e.procSysHarm(t, out) }})
	}
	{
		name := ctr()
		add(atkCase{row: rProc, name: "raw create with Sysctls kernel.core_pattern (the CLI refuses it itself)", refuse: true,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.createThenStart(name, fmt.Sprintf(`{"Image":%q,"Cmd":["true"],"HostConfig":{"Sysctls":{"kernel.core_pattern":"|/tmp/gwatk"}}}`, e.image))
			},
			harm: func(t *testing.T, e *atkEnv, out string, _ error) string { return e.procSysHarm(t, out) }})
	}
	add(fieldCase(rField, "sysctl kernel.shm_rmid_forced (not a net.* sysctl)", ctr(), []string{"--sysctl", "kernel.shm_rmid_forced=1"}, "{{json .HostConfig.Sysctls}}", contains("kernel.")))

	// --- Bind mounts re-resolved when used.
	add(swapCase("-v ~/d:/host, ~/d swapped for a link to / before start", ctr(), bindFlags, ""))
	add(swapCase("--mount type=bind ~/d, ~/d swapped for a link to / before start", ctr(), mountFlags, ""))
	add(swapCase("-v ~/d/etc:/host, ~/d swapped for a link to / (a middle component)", ctr(), bindFlags, "etc"))
	{
		name := ctr()
		add(atkCase{row: rSwap, name: "-v ~/d:/host started fine, ~/d swapped for a link to /, then docker restart",
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				dir := filepath.Join(e.homeA, "atk-"+name)
				if out, err := userSh(atkA, "mkdir -p "+dir); err != nil {
					t.Fatalf("%v %s", err, out)
				}
				if out, err := e.a("create", "--name", name, "-v", dir+":/host", e.image, "sh", "-c", shadowProbe); err != nil {
					t.Fatalf("creating a container mounting %s: %v %s", dir, err, out)
				}
				if out, err := e.a("start", "-a", name); err != nil {
					t.Fatalf("the first start (nothing swapped yet): %v %s", err, out)
				}
				if out, err := userSh(atkA, fmt.Sprintf("rm -rf %[1]s && ln -s / %[1]s", dir)); err != nil {
					t.Fatalf("swapping: %v %s", err, out)
				}
				out, err := e.a("restart", name)
				if err != nil {
					return out, err
				}
				_, _ = e.a("wait", name)
				logs, _ := rootDocker("logs", name)
				return out + "\n" + logs, nil
			},
			harm: shadowHarm})
	}
	{
		name := ctr()
		add(atkCase{row: rMount, name: "-v ~/link where link dangles to /etc/gwatk-dl (the engine makes missing sources)",
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				if out, err := userSh(atkA, "ln -sfn /etc/gwatk-dl "+e.homeA+"/atk-dl"); err != nil {
					t.Fatalf("%v %s", err, out)
				}
				return e.a("run", "--rm", "--name", name, "-v", e.homeA+"/atk-dl:/x", e.image, "true")
			},
			harm: func(t *testing.T, e *atkEnv, out string, _ error) string {
				if _, err := os.Lstat("/etc/gwatk-dl"); err == nil {
					return "the engine made /etc/gwatk-dl on the host"
				}
				return ""
			}})
	}
	{
		name := ctr()
		add(atkCase{row: rMount, name: "raw Mounts bind with BindOptions.CreateMountpoint through a dangling link", refuse: true,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				if out, err := userSh(atkA, "ln -sfn /etc/gwatk-cm "+e.homeA+"/atk-cm"); err != nil {
					t.Fatalf("%v %s", err, out)
				}
				return e.createThenStart(name, fmt.Sprintf(`{"Image":%q,"Cmd":["true"],"HostConfig":{"Mounts":[{"Type":"bind","Source":%q,"Target":"/x","BindOptions":{"CreateMountpoint":true}}]}}`, e.image, e.homeA+"/atk-cm"))
			},
			harm: func(t *testing.T, e *atkEnv, out string, _ error) string {
				if _, err := os.Lstat("/etc/gwatk-cm"); err == nil {
					return "the engine made /etc/gwatk-cm on the host"
				}
				return ""
			}})
	}
	add(fieldCase(rMount, "--mount bind with bind-propagation=rshared", ctr(), []string{"--mount", "type=bind,src=/home/" + atkA + ",dst=/h,bind-propagation=rshared"}, "{{json .HostConfig.Mounts}}", contains("rshared")))
	add(fieldCase(rMount, "-v ~:/h:rshared (propagation through Binds)", ctr(), []string{"-v", "/home/" + atkA + ":/h:rshared"}, "{{json .HostConfig.Binds}}", contains("rshared")))
	for _, v := range []struct{ name, flag, val string }{
		{"-v /:/host", "-v", "/:/host"},
		{"--mount type=bind,src=/etc", "--mount", "type=bind,src=/etc,dst=/host/etc"},
		{"-v bob's home", "-v", "/home/" + atkB + ":/host"},
		{"-v ~/../gwatk-b (a path through ..)", "-v", "/home/" + atkA + "/../" + atkB + ":/host"},
	} {
		add(atkCase{row: rMount, name: v.name, refuse: true,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.a("run", "--rm", v.flag, v.val, e.image, "sh", "-c", shadowProbe+"; cat /host/atk-secret 2>/dev/null")
			},
			harm: func(t *testing.T, e *atkEnv, out string, err error) string {
				if strings.Contains(out, "bob-home-secret") {
					return "the container read bob's home"
				}
				return shadowHarm(t, e, out, err)
			}})
	}
	add(atkCase{row: rMount, name: "-v ~/link where link → /etc (resolved at create)", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			if out, err := userSh(atkA, "ln -sfn /etc "+e.homeA+"/atk-etclink"); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			return e.a("run", "--rm", "-v", e.homeA+"/atk-etclink:/host/etc", e.image, "sh", "-c", shadowProbe)
		},
		harm: shadowHarm})

	// --- Container root is host root.
	add(atkCase{row: rRoot, name: "chown 0 + chmod 4755 of a shell through the home bind",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "-v", e.homeA+":/h", e.image, "sh", "-c", "cp /bin/busybox /h/atk-suid && chown 0:0 /h/atk-suid && chmod 4755 /h/atk-suid")
		},
		harm: func(t *testing.T, e *atkEnv, out string, _ error) string {
			fi, err := os.Stat(filepath.Join(e.homeA, "atk-suid"))
			if err != nil {
				return ""
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid == 0 && fi.Mode()&os.ModeSetuid != 0 {
				return "~/atk-suid is owned by root and setuid: `~/atk-suid sh -p` is a root shell"
			}
			if st.Uid == 0 {
				return "the container made a root-owned file in the home"
			}
			return ""
		}})
	uidIs0 := func(t *testing.T, e *atkEnv, out string, _ error) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.TrimSpace(l) == "0" {
				return "the process ran as uid 0 (host root, the engine does not remap): " + out
			}
		}
		return ""
	}
	add(atkCase{row: rRoot, name: "the image's default user root: id -u is the caller's uid",
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("run", "--rm", e.image, "id", "-u") },
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if h := uidIs0(t, e, out, err); h != "" {
				return h
			}
			if err == nil && strings.TrimSpace(out) != strconv.Itoa(e.uidA) {
				return "id -u in the container = " + out + ", want the caller's " + strconv.Itoa(e.uidA)
			}
			return ""
		}})
	add(atkCase{row: rRoot, name: "--user 0 without a remapping engine",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "-u", "0", e.image, "id", "-u")
		},
		harm: uidIs0})
	add(atkCase{row: rRoot, name: "--user 0:0",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "-u", "0:0", e.image, "id", "-u")
		},
		harm: uidIs0})
	add(atkCase{row: rRoot, name: "--group-add 42 (shadow, a group the caller is not in)",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "--group-add", "42", e.image, "id", "-G")
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if err == nil && (strings.Contains(" "+out+" ", " 42 ") || strings.Contains(" "+out+" ", " 0 ")) {
				return "the container has groups the caller lacks: " + out
			}
			return ""
		}})
	add(atkCase{row: rRoot, name: "exec --user 0 in one's own container",
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("exec", "-u", "0", "gwatk-actr", "id", "-u") },
		harm:   uidIs0})
	add(atkCase{row: rRoot, name: "exec (default user) in one's own container runs as the caller",
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("exec", "gwatk-actr", "id", "-u") },
		harm:   uidIs0})
	add(atkCase{row: rRoot, name: "exec --privileged", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("exec", "--privileged", "gwatk-actr", "sh", "-c", "grep CapEff /proc/self/status")
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if err == nil && (strings.Contains(out, "0000003fffffffff") || strings.Contains(out, "000001ffffffffff")) {
				return "a privileged exec ran with every capability: " + out
			}
			return ""
		}})
	{
		var once sync.Once
		var buildErr error
		add(atkCase{row: rRoot, name: "a setuid-root binary in one's own image (no-new-privileges)",
			setup: func(t *testing.T, e *atkEnv) {
				once.Do(func() {
					d := filepath.Join(e.homeA, "atk-suidctx")
					out, err := userSh(atkA, fmt.Sprintf("mkdir -p %s && printf 'FROM %s\\nRUN mkdir /sb && cp /bin/busybox /sb/busybox && chmod 4755 /sb/busybox\\n' > %s/Dockerfile", d, e.image, d))
					if err == nil {
						out, err = e.a("build", "-t", "gwatk-a/suid:1", d)
					}
					if err != nil {
						buildErr = fmt.Errorf("%v %s", err, out)
					}
				})
				if buildErr != nil {
					t.Fatalf("building an image with a setuid binary (a user may build): %v", buildErr)
				}
			},
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.a("run", "--rm", "gwatk-a/suid:1", "sh", "-c", "grep NoNewPrivs /proc/self/status; /sb/busybox id -u")
			},
			harm: func(t *testing.T, e *atkEnv, out string, err error) string {
				if strings.Contains(out, "NoNewPrivs:\t0") {
					return "no-new-privileges is off: a setuid binary in the image climbs back to root"
				}
				return uidIs0(t, e, out, err)
			}})
	}
	add(atkCase{row: rRoot, name: "--security-opt no-new-privileges=false",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "--security-opt", "no-new-privileges=false", e.image, "grep", "NoNewPrivs", "/proc/self/status")
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if err == nil && strings.Contains(out, "NoNewPrivs:\t0") {
				return "no-new-privileges is off in the container"
			}
			return ""
		}})
	add(fieldCase(rRoot, "--privileged", ctr(), []string{"--privileged"}, "{{.HostConfig.Privileged}}", contains("true")))
	add(fieldCase(rRoot, "--cap-add SYS_ADMIN", ctr(), []string{"--cap-add", "SYS_ADMIN"}, "{{json .HostConfig.CapAdd}}", contains("SYS_ADMIN")))
	add(fieldCase(rRoot, "--cap-add all (lower case)", ctr(), []string{"--cap-add", "all"}, "{{json .HostConfig.CapAdd}}", func(v string) bool { return v != "null" && v != "[]" }))
	add(fieldCase(rRoot, "--device /dev/vda (the host's disk)", ctr(), []string{"--device", "/dev/vda"}, "{{json .HostConfig.Devices}}", contains("vda")))
	add(fieldCase(rRoot, "--device /dev/mem", ctr(), []string{"--device", "/dev/mem"}, "{{json .HostConfig.Devices}}", contains("mem")))
	add(fieldCase(rRoot, "--device-cgroup-rule 'b *:* rwm'", ctr(), []string{"--device-cgroup-rule", "b *:* rwm"}, "{{json .HostConfig.DeviceCgroupRules}}", contains("rwm")))
	add(fieldCase(rField, "--cgroup-parent", ctr(), []string{"--cgroup-parent", "/gwatk"}, "{{.HostConfig.CgroupParent}}", contains("gwatk")))
	for _, ns := range []struct{ flag, field string }{
		{"--pid", "PidMode"}, {"--ipc", "IpcMode"}, {"--uts", "UTSMode"}, {"--userns", "UsernsMode"}, {"--cgroupns", "CgroupnsMode"}, {"--network", "NetworkMode"},
	} {
		add(fieldCase(rRoot, ns.flag+" host", ctr(), []string{ns.flag, "host"}, "{{.HostConfig."+ns.field+"}}", func(v string) bool { return v == "host" }))
	}
	for _, o := range []string{"seccomp=unconfined", "apparmor=unconfined", "label=disable"} {
		add(fieldCase(rRoot, "--security-opt "+o, ctr(), []string{"--security-opt", o}, "{{json .HostConfig.SecurityOpt}}", contains(strings.SplitN(o, "=", 2)[1])))
	}
	{
		name := ctr()
		add(atkCase{row: rRoot, name: "--security-opt seccomp=<a custom profile allowing every syscall>", refuse: true,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				p := filepath.Join(e.homeA, "atk-seccomp.json")
				if out, err := userSh(atkA, `echo '{"defaultAction":"SCMP_ACT_ALLOW"}' > `+p); err != nil {
					t.Fatalf("%v %s", err, out)
				}
				return e.a("create", "--name", name, "--security-opt", "seccomp="+p, e.image, "true")
			},
			harm: func(t *testing.T, e *atkEnv, out string, err error) string {
				if v := inspect(name, "{{json .HostConfig.SecurityOpt}}"); strings.Contains(v, "SCMP_ACT_ALLOW") {
					return "the engine took the custom seccomp profile: " + v
				}
				return ""
			}})
	}
	add(fieldCase(rField, "--oom-score-adj -1000", ctr(), []string{"--oom-score-adj", "-1000"}, "{{.HostConfig.OomScoreAdj}}", func(v string) bool { return strings.HasPrefix(v, "-") }))
	add(fieldCase(rField, "--oom-kill-disable", ctr(), []string{"--oom-kill-disable"}, "{{.HostConfig.OomKillDisable}}", contains("true")))
	{
		name := ctr()
		add(atkCase{row: rField, name: "--ulimit memlock=-1:-1 (over the caller's hard limit)",
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.a("create", "--name", name, "--ulimit", "memlock=-1:-1", e.image, "true")
			},
			harm: func(t *testing.T, e *atkEnv, out string, err error) string {
				if v := inspect(name, "{{json .HostConfig.Ulimits}}"); strings.Contains(v, `"Hard":-1`) {
					return "the engine took memlock unlimited (the caller's hard limit is " + strconv.FormatInt(e.hardML, 10) + " KiB): " + v
				}
				return ""
			}})
	}
	{
		name := ctr()
		add(atkCase{row: rField, name: "--ulimit nofile=1048576 (over the caller's hard limit)",
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.a("create", "--name", name, "--ulimit", "nofile=1048576:1048576", e.image, "true")
			},
			harm: func(t *testing.T, e *atkEnv, out string, err error) string {
				if e.hardNofile < 1048576 && strings.Contains(inspect(name, "{{json .HostConfig.Ulimits}}"), `"Hard":1048576`) {
					return fmt.Sprintf("the engine took nofile 1048576, over the caller's hard limit %d", e.hardNofile)
				}
				return ""
			}})
	}
	add(fieldCase(rField, "--cpu-shares 262144", ctr(), []string{"--cpu-shares", "262144"}, "{{.HostConfig.CPUShares}}", func(v string) bool { return v == "262144" }))
	add(fieldCase(rField, "--cpu-rt-runtime 950000 (real-time scheduling)", ctr(), []string{"--cpu-rt-runtime", "950000"}, "{{.HostConfig.CPURealtimeRuntime}}", func(v string) bool { return v != "0" }))
	{
		name := ctr()
		add(atkCase{row: rField, name: "--pids-limit -1 (unlimited)",
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.a("create", "--name", name, "--pids-limit", "-1", e.image, "true")
			},
			harm: func(t *testing.T, e *atkEnv, out string, err error) string {
				if v := inspect(name, "{{.HostConfig.PidsLimit}}"); v != "" && (v == "-1" || v == "0" || v == "<nil>") {
					return "the container has no pids limit: " + v
				}
				return ""
			}})
	}
	add(fieldCase(rField, "--log-driver syslog to an address", ctr(), []string{"--log-driver", "syslog", "--log-opt", "syslog-address=udp://127.0.0.1:514"}, "{{.HostConfig.LogConfig.Type}}", contains("syslog")))
	add(fieldCase(rField, "--log-driver gelf to an address", ctr(), []string{"--log-driver", "gelf", "--log-opt", "gelf-address=udp://127.0.0.1:12201"}, "{{.HostConfig.LogConfig.Type}}", contains("gelf")))
	add(fieldCase(rField, "--volume-driver", ctr(), []string{"--volume-driver", "gwatkplugin", "-v", "gwatk-drv:/x"}, "{{.HostConfig.VolumeDriver}}", contains("gwatk")))
	add(fieldCase(rField, "-p 80:80 (a host port below 1024)", ctr(), []string{"-p", "80:80"}, "{{json .HostConfig.PortBindings}}", contains(`"HostPort":"80"`)))
	{
		name := ctr()
		add(atkCase{row: rField, name: "-p 18080:80 published on every address (policy default 127.0.0.1)",
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.a("create", "--name", name, "-p", "18080:80", e.image, "true")
			},
			harm: func(t *testing.T, e *atkEnv, out string, err error) string {
				if v := inspect(name, "{{json .HostConfig.PortBindings}}"); strings.Contains(v, `"HostIp":""`) || strings.Contains(v, `"HostIp":"0.0.0.0"`) {
					return "the port is published on every address: " + v
				}
				return ""
			}})
	}
	for _, v := range []struct{ name, hc, tmpl, bad string }{
		{"raw create with ContainerIDFile /etc/gwatk-cid", `"ContainerIDFile":"/etc/gwatk-cid"`, "{{.HostConfig.ContainerIDFile}}", "gwatk-cid"},
		{"raw create with an unknown HostConfig field", `"GwatkTurbo":true`, "", ""},
		{"raw create with Windows-only CpuCount", `"CpuCount":4`, "{{.HostConfig.CPUCount}}", "4"},
		{"raw create with NetworkingConfig DriverOpts", ``, "", ""},
	} {
		name := ctr()
		body := `{"Image":%q,"Cmd":["true"],"HostConfig":{` + v.hc + `}}`
		if v.hc == "" {
			body = `{"Image":%q,"Cmd":["true"],"NetworkingConfig":{"EndpointsConfig":{"bridge":{"DriverOpts":{"com.docker.network.endpoint.sysctls":"net.ipv4.conf.all.forwarding=1"}}}}}`
		}
		add(atkCase{row: rField, name: v.name, refuse: true,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.rawCreate(atkA, name, fmt.Sprintf(body, e.image))
			},
			harm: func(t *testing.T, e *atkEnv, out string, err error) string {
				if _, err := os.Stat("/etc/gwatk-cid"); err == nil {
					return "a file was written at /etc/gwatk-cid"
				}
				if v.tmpl != "" && strings.Contains(inspect(name, v.tmpl), v.bad) {
					return "the field reached the engine"
				}
				return ""
			}})
	}

	// --- Updates, volume and network creates, docker cp: the same bounds as a create.
	add(atkCase{row: rField, name: "docker update --cpu-shares 262144 of one's own container",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("update", "--cpu-shares", "262144", "gwatk-actr")
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if v := inspect("gwatk-actr", "{{.HostConfig.CPUShares}}"); v == "262144" {
				return "the update took CPU shares 262144"
			}
			return ""
		}})
	add(atkCase{row: rField, name: "docker update of bob's container", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("update", "--memory", "8m", "--memory-swap", "16m", "gwatk-bctr")
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if v := inspect("gwatk-bctr", "{{.HostConfig.Memory}}"); v == "8388608" {
				return "bob's container was squeezed to 8 MiB"
			}
			return ""
		}})
	add(atkCase{row: rMount, name: "docker volume create with o=bind,device=/etc, then mount it", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			if out, err := e.a("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", "device=/etc", "gwatk-etcvol"); err != nil {
				return out, err
			}
			return e.a("run", "--rm", "-v", "gwatk-etcvol:/host/etc", e.image, "sh", "-c", shadowProbe)
		},
		harm: shadowHarm})
	add(atkCase{row: rMount, name: "--mount type=volume of a new volume with volume-opt o=bind,device=/etc", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "--mount", "type=volume,src=gwatk-etcvol2,dst=/host/etc,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/etc", e.image, "sh", "-c", shadowProbe)
		},
		harm: shadowHarm})
	add(atkCase{row: rNet, name: "docker network create -d macvlan (reaches host interfaces)", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("network", "create", "-d", "macvlan", "gwatk-mac")
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if _, err := rootDocker("network", "inspect", "gwatk-mac"); err == nil {
				return "a macvlan network was made"
			}
			return ""
		}})
	add(atkCase{row: rRoot, name: "docker cp - of a tar holding a setuid-root file into one's own container's home bind",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			if out, err := e.a("run", "-d", "--name", "gwatk-cpc", "-v", e.homeA+":/h", e.image, "sleep", "600"); err != nil {
				t.Fatalf("a container with the home bind: %v %s", err, out)
			}
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			_ = tw.WriteHeader(&tar.Header{Name: "atk-cpsuid", Mode: 0o4755, Uid: 0, Gid: 0, Size: 2, Typeflag: tar.TypeReg})
			_, _ = tw.Write([]byte("x\n"))
			_ = tw.Close()
			return as(atkA, e.sock, b.String(), "cp", "-", "gwatk-cpc:/h")
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if fi, err := os.Stat(filepath.Join(e.homeA, "atk-cpsuid")); err == nil && fi.Sys().(*syscall.Stat_t).Uid == 0 {
				return fmt.Sprintf("docker cp made a root-owned file (mode %v) in the home", fi.Mode())
			}
			return ""
		}})

	// --- Upgrade: only attach and exec start become raw streams.
	spliced := func(t *testing.T, e *atkEnv, out string, _ error) string {
		if strings.Contains(out, "gwatk-bctr") || strings.Contains(out, `"Names":["/gwatk-b`) {
			return "the second request on the connection reached the engine unchecked: it lists bob's container"
		}
		return ""
	}
	for _, v := range []struct{ name, path, headers string }{
		{"Upgrade: tcp on GET /images/NAME/get, then a raw request on the same connection", atkAPI + "/images/gwatk-a/app:1/get", "Connection: Upgrade|Upgrade: tcp"},
		{"Upgrade: h2c on GET /images/NAME/get, then a raw request", atkAPI + "/images/gwatk-a/app:1/get", "Connection: Upgrade, HTTP2-Settings|Upgrade: h2c|HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA"},
		{"Upgrade: TCP (upper case) on GET /images/get?names=, then a raw request", atkAPI + "/images/get?names=gwatk-a/app:1", "connection: upgrade|upgrade: TCP"},
		{"Upgrade: tcp on GET /info (a chunked answer), then a raw request", atkAPI + "/info", "Connection: Upgrade|Upgrade: tcp"},
		{"Upgrade: tcp on GET /images/json, then a raw request", atkAPI + "/images/json", "Connection: Upgrade|Upgrade: tcp"},
		{"Upgrade: tcp on GET /_ping (a sized answer), then a raw request", atkAPI + "/_ping", "Connection: Upgrade|Upgrade: tcp"},
		{"Upgrade: tcp without Connection: Upgrade on GET /version, then a raw request", atkAPI + "/version", "Upgrade: tcp"},
	} {
		add(atkCase{row: rRaw, name: v.name,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.raw(atkA, httpReq(http.MethodGet, v.path, "", strings.Split(v.headers, "|")...),
					httpReq(http.MethodGet, atkAPI+"/containers/json?all=1", "")), nil
			},
			harm: spliced})
	}
	for _, v := range []struct{ name, path string }{
		{"Upgrade: tcp on logs of one's own container (a multiplexed stream), then a raw request", atkAPI + "/containers/gwatk-actr/logs?stdout=1&stderr=1"},
		{"Upgrade: tcp on GET /events, then a raw request", atkAPI + "/events?until=" + "1"},
	} {
		add(atkCase{row: rRaw, name: v.name,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.raw(atkA, httpReq(http.MethodGet, v.path, "", "Connection: Upgrade", "Upgrade: tcp"),
					httpReq(http.MethodGet, atkAPI+"/containers/json?all=1", "")), nil
			},
			harm: spliced})
	}
	add(atkCase{row: rRaw, name: "Upgrade: tcp on a create, then a raw request",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.raw(atkA, httpReq(http.MethodPost, atkAPI+"/containers/create?name=gwatk-upc", fmt.Sprintf(`{"Image":%q,"Cmd":["true"]}`, e.image), "Connection: Upgrade", "Upgrade: tcp"),
				httpReq(http.MethodGet, atkAPI+"/containers/json?all=1", "")), nil
		},
		harm: spliced})
	add(atkCase{row: rRaw, name: "Upgrade: tcp on attach of one's own container, then a raw request after it ends",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			if out, err := e.a("run", "-d", "--name", "gwatk-upa", e.image, "sh", "-c", "sleep 2; echo attached"); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			return e.raw(atkA, httpReq(http.MethodPost, atkAPI+"/containers/gwatk-upa/attach?stream=1&stdout=1&logs=1", "", "Connection: Upgrade", "Upgrade: tcp"),
				httpReq(http.MethodGet, atkAPI+"/containers/json?all=1", "")), nil
		},
		harm: spliced})

	// --- Bodies the gateway must read whole and forward as checked.
	privileged := func(name string) func(*testing.T, *atkEnv, string, error) string {
		return func(t *testing.T, e *atkEnv, out string, _ error) string {
			if v := inspect(name, "{{.HostConfig.Privileged}} {{.HostConfig.PidMode}} {{json .HostConfig.Binds}}"); strings.Contains(v, "true") || strings.Contains(v, "host") || strings.Contains(v, `"/:`) {
				return "the engine made " + name + " with " + v
			}
			return ""
		}
	}
	add(atkCase{row: rBody, name: "Content-Length: 0 with a privileged create body after it", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			body := fmt.Sprintf(`{"Image":%q,"HostConfig":{"Privileged":true}}`, e.image)
			resp := e.raw(atkA, "POST "+atkAPI+"/containers/create?name=gwatk-cl0 HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"+body)
			if statusOf(resp) == http.StatusCreated {
				return resp, nil
			}
			return resp, errors.New("refused")
		},
		harm: privileged("gwatk-cl0")})
	add(atkCase{row: rBody, name: "a chunked privileged create body", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			body := fmt.Sprintf(`{"Image":%q,"HostConfig":{"Privileged":true}}`, e.image)
			resp := e.raw(atkA, fmt.Sprintf("POST %s/containers/create?name=gwatk-chk HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", atkAPI, len(body), body))
			if statusOf(resp) == http.StatusCreated {
				return resp, nil
			}
			return resp, errors.New("refused")
		},
		harm: privileged("gwatk-chk")})
	add(atkCase{row: rBody, name: "a privileged create body over 1 MiB", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.rawCreate(atkA, "gwatk-big", fmt.Sprintf(`{"Image":%q,"Env":["X=%s"],"HostConfig":{"Privileged":true}}`, e.image, strings.Repeat("A", 1<<20)))
		},
		harm: privileged("gwatk-big")})
	add(atkCase{row: rBody, name: "duplicate Binds keys, / last", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.rawCreate(atkA, "gwatk-dup", fmt.Sprintf(`{"Image":%q,"HostConfig":{"Binds":["/home/gwatk-a:/h"],"binds":["/:/host"]}}`, e.image))
		},
		harm: privileged("gwatk-dup")})
	add(atkCase{row: rBody, name: "PidMode host through a \\u-escaped key", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.rawCreate(atkA, "gwatk-esc", fmt.Sprintf(`{"Image":%q,"HostConfig":{"Pid\u004dode":"host"}}`, e.image))
		},
		harm: privileged("gwatk-esc")})

	// --- Another user's named volume.
	volHarm := func(t *testing.T, e *atkEnv, out string, _ error) string {
		if strings.Contains(out, "bob-vol-secret") {
			return "bob's volume was read"
		}
		if s := bobVolumeSecret(); s != "bob-vol-secret\n" {
			return fmt.Sprintf("bob's volume was written: secret is now %q", s)
		}
		return ""
	}
	steal := "cat /x/secret; echo alice-was-here >> /x/secret"
	for _, v := range []struct{ name, flag, val string }{
		{"-v bobvol:/x", "-v", "gwatk-bvol:/x"},
		{"--mount type=volume,src=bobvol", "--mount", "type=volume,src=gwatk-bvol,dst=/x"},
		{"--mount type=volume,src=bobvol,volume-nocopy", "--mount", "type=volume,src=gwatk-bvol,dst=/x,volume-nocopy"},
		{"--volumes-from bob's container", "--volumes-from", "gwatk-bctr"},
	} {
		add(atkCase{row: rVol, name: v.name, refuse: true,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				s := steal
				if v.flag == "--volumes-from" {
					s = strings.ReplaceAll(steal, "/x/", "/bv/")
				}
				return e.a("run", "--rm", v.flag, v.val, e.image, "sh", "-c", s)
			},
			harm: volHarm})
	}
	add(atkCase{row: rVol, name: "raw create with Mounts type volume of bob's volume", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			cmd, _ := json.Marshal([]string{"sh", "-c", steal})
			return e.createThenStart("gwatk-rvol", fmt.Sprintf(`{"Image":%q,"Cmd":%s,"HostConfig":{"Mounts":[{"Type":"volume","Source":"gwatk-bvol","Target":"/x"}]}}`, e.image, cmd))
		},
		harm: volHarm})
	add(atkCase{row: rVol, name: "docker volume rm of bob's volume", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("volume", "rm", "gwatk-bvol") },
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if _, err := rootDocker("volume", "inspect", "gwatk-bvol"); err != nil {
				return "bob's volume is gone"
			}
			return ""
		}})

	// --- Another user's container: environment, namespaces.
	envHarm := func(t *testing.T, e *atkEnv, out string, _ error) string {
		if strings.Contains(out, "bob-env-secret") {
			return "bob's container's environment reached the attacker"
		}
		return ""
	}
	add(atkCase{row: rEnv, name: "--link bob's container", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "--link", "gwatk-bctr:b", e.image, "env")
		},
		harm: envHarm})
	add(atkCase{row: rEnv, name: "raw create with NetworkingConfig EndpointsConfig Links to bob's container", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.createThenStart("gwatk-rlnk", fmt.Sprintf(`{"Image":%q,"Cmd":["env"],"NetworkingConfig":{"EndpointsConfig":{"bridge":{"Links":["gwatk-bctr:b"]}}}}`, e.image))
		},
		harm: envHarm})
	add(atkCase{row: rEnv, name: "raw create with HostConfig.Links to bob's container (lower-case key)", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.createThenStart("gwatk-rlnk2", fmt.Sprintf(`{"Image":%q,"Cmd":["env"],"HostConfig":{"links":["gwatk-bctr:b"]}}`, e.image))
		},
		harm: envHarm})
	for _, ns := range []string{"--pid", "--ipc", "--network"} {
		add(atkCase{row: rEnv, name: ns + " container:bob's", refuse: true,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.a("run", "--rm", ns, "container:gwatk-bctr", e.image, "sh", "-c", "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep SECRET")
			},
			harm: envHarm})
	}
	add(atkCase{row: rEnv, name: "docker exec in bob's container", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("exec", "gwatk-bctr", "env") },
		harm:   envHarm})

	// --- Another user's network.
	netHarm := func(name string) func(*testing.T, *atkEnv, string, error) string {
		return func(t *testing.T, e *atkEnv, out string, _ error) string {
			if v := inspect(name, "{{json .NetworkSettings.Networks}}"); strings.Contains(v, "gwatk-bnet") {
				return name + " is on bob's network"
			}
			return ""
		}
	}
	add(atkCase{row: rNet, name: "--network bob's internal network at create", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("create", "--name", "gwatk-nt1", "--network", "gwatk-bnet", e.image, "true")
		},
		harm: netHarm("gwatk-nt1")})
	add(atkCase{row: rNet, name: "raw create with NetworkingConfig EndpointsConfig of bob's network", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.rawCreate(atkA, "gwatk-nt2", fmt.Sprintf(`{"Image":%q,"Cmd":["true"],"NetworkingConfig":{"EndpointsConfig":{"gwatk-bnet":{}}}}`, e.image))
		},
		harm: netHarm("gwatk-nt2")})
	add(atkCase{row: rNet, name: "docker network connect bob's network to one's own container", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("network", "connect", "gwatk-bnet", "gwatk-actr")
		},
		harm: netHarm("gwatk-actr")})

	// --- Images: names others own or use.
	idIs := func(name string, want func(*atkEnv) string) func(*testing.T, *atkEnv, string, error) string {
		return func(t *testing.T, e *atkEnv, out string, _ error) string {
			if got := imageID(name); got != want(e) {
				return fmt.Sprintf("%s is now %q, was %q", name, got, want(e))
			}
			return ""
		}
	}
	bobApp := func(e *atkEnv) string { return e.bobImage }
	add(atkCase{row: rImg, name: "docker tag mine onto bob's image name", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("tag", "gwatk-a/app:1", "gwatk-b/app:1") },
		harm:   idIs("gwatk-b/app:1", bobApp)})
	add(atkCase{row: rImg, name: "docker build -t onto bob's image name", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("build", "-t", "gwatk-b/app:1", filepath.Join(e.homeA, "atk-ctx"))
		},
		harm: idIs("gwatk-b/app:1", bobApp)})
	add(atkCase{row: rImg, name: "docker import onto bob's image name", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return as(atkA, e.sock, tinyTar(), "import", "-", "gwatk-b/app:1")
		},
		harm: idIs("gwatk-b/app:1", bobApp)})
	add(atkCase{row: rImg, name: "docker load of a tar naming bob's image", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return as(atkA, e.sock, string(e.loadTar), "load") },
		harm:   idIs("gwatk-b/app:1", bobApp)})
	add(atkCase{row: rImg, name: "docker rmi of bob's image tag", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("rmi", "gwatk-b/lib:1") },
		harm:   idIs("gwatk-b/lib:1", func(e *atkEnv) string { return e.bobLib })})
	add(atkCase{row: rImg, name: "docker save of bob's image", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("save", "gwatk-b/app:1") },
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if strings.Contains(out, "bob-image-secret") {
				return "the attacker got bob's image's contents"
			}
			return ""
		}})
	add(atkCase{row: rImg, name: "docker push of bob's image", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("push", "127.0.0.1:9/gwatk-b/app:1") },
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if strings.Contains(out, "The push refers to") {
				return "the engine started pushing bob's image"
			}
			return ""
		}})
	add(atkCase{row: rImg, name: "docker pull onto bob's image name", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("pull", "127.0.0.1:9/gwatk-b/app:1") },
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if got := imageID("127.0.0.1:9/gwatk-b/app:1"); got != e.bobImage {
				return "bob's name now points at " + got
			}
			return ""
		}})
	add(atkCase{row: rImg, name: "docker rmi -f of bob's image", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("rmi", "-f", "gwatk-b/lib:1") },
		harm:   idIs("gwatk-b/lib:1", func(e *atkEnv) string { return e.bobLib })})
	add(atkCase{row: rImg, name: "docker tag mine onto the admin's shared image name", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("tag", "gwatk-a/app:1", "gwatk-admin/shared:1")
		},
		harm: idIs("gwatk-admin/shared:1", func(e *atkEnv) string { return e.shared })})
	add(atkCase{row: rImg, name: "docker rmi of the admin's shared image", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("rmi", "gwatk-admin/shared:1") },
		harm:   idIs("gwatk-admin/shared:1", func(e *atkEnv) string { return e.shared })})
	add(atkCase{row: rImg, name: "docker commit of bob's container", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("commit", "gwatk-bctr", "gwatk-a/stolen:1") },
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if imageID("gwatk-a/stolen:1") != "" {
				return "bob's container was committed into the attacker's image"
			}
			return ""
		}})
	add(atkCase{row: rImg, name: "docker commit of one's own container onto bob's image name", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) { return e.a("commit", "gwatk-actr", "gwatk-b/app:1") },
		harm:   idIs("gwatk-b/app:1", bobApp)})

	// --- Builds.
	remoteHarm := func(t *testing.T, e *atkEnv, out string, _ error) string {
		if n := e.remoteHits.Load(); n > 0 {
			return fmt.Sprintf("the engine fetched a loopback URL for the attacker (%d requests)", n)
		}
		return ""
	}
	// (The docker CLI downloads an http:// context itself, as the user: only a raw request
	// makes the engine fetch it.)
	add(atkCase{row: rLeak, name: "raw build remote=http://127.0.0.1:PORT/", refuse: true,
		setup: func(t *testing.T, e *atkEnv) { e.remoteHits.Store(0) },
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			resp := e.raw(atkA, httpReq(http.MethodPost, fmt.Sprintf("%s/build?remote=http://127.0.0.1:%d/Dockerfile", atkAPI, e.remotePort), ""))
			if statusOf(resp) >= 400 || statusOf(resp) == 0 {
				return resp, errors.New("refused")
			}
			return resp, nil
		},
		harm: remoteHarm})
	add(atkCase{row: rLeak, name: "raw build remote=http://localhost:PORT/", refuse: true,
		setup: func(t *testing.T, e *atkEnv) { e.remoteHits.Store(0) },
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			resp := e.raw(atkA, httpReq(http.MethodPost, fmt.Sprintf("%s/build?remote=http://localhost:%d/", atkAPI, e.remotePort), ""))
			if statusOf(resp) >= 400 || statusOf(resp) == 0 {
				return resp, errors.New("refused")
			}
			return resp, nil
		},
		harm: remoteHarm})
	add(atkCase{row: rLeak, name: "raw build remote=http://[::1]:PORT/", refuse: true,
		setup: func(t *testing.T, e *atkEnv) { e.remoteHits.Store(0) },
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			if e.remotePort6 == 0 {
				t.Skip("no IPv6 loopback here")
			}
			resp := e.raw(atkA, httpReq(http.MethodPost, fmt.Sprintf("%s/build?remote=http://%%5B::1%%5D:%d/", atkAPI, e.remotePort6), ""))
			if statusOf(resp) >= 400 || statusOf(resp) == 0 {
				return resp, errors.New("refused")
			}
			return resp, nil
		},
		harm: remoteHarm})
	add(atkCase{row: rLeak, name: "docker build --network host", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("build", "--network", "host", "-t", "gwatk-a/host:1", filepath.Join(e.homeA, "atk-ctx"))
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if imageID("gwatk-a/host:1") != "" {
				return "a build ran on the host's network"
			}
			return ""
		}})
	add(atkCase{row: rLeak, name: "raw build with a cgroupparent", refuse: true,
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			resp := e.raw(atkA, httpReq(http.MethodPost, atkAPI+"/build?cgroupparent=/gwatk&remote=http://127.0.0.1:9/", ""))
			if statusOf(resp) >= 400 || statusOf(resp) == 0 {
				return resp, errors.New("refused")
			}
			return resp, nil
		}})

	// --- The small leaks.
	prefixCase := func(name string, prefix func(id string) string) atkCase {
		return atkCase{row: rLeak, name: name, refuse: true,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				return e.a("container", "inspect", "-f", "{{.Name}} {{.Config.Env}}", prefix(e.bobCtr))
			},
			harm: func(t *testing.T, e *atkEnv, out string, err error) string {
				if strings.Contains(out, atkB) || strings.Contains(out, "bob-env-secret") || strings.Contains(out, "gwatk-bctr") {
					return "the prefix named bob's container or its owner: " + out
				}
				if err != nil && !strings.Contains(out, "No such container") {
					return "not answered \"No such container\" as the engine would: " + out
				}
				return ""
			}}
	}
	add(prefixCase("a shortest unique ID prefix of bob's container", shortestUniquePrefix))
	add(prefixCase("the 12-character short ID of bob's container", func(id string) string { return id[:12] }))
	add(atkCase{row: rAlloc, name: "a Manual GPUAllocation naming bob's containerID",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			kc := filepath.Join(e.homeA, "atk-kubeconfig")
			if out, err := exec.Command("runuser", "-u", atkA, "--", e.bin, "kubeconfig", "--gateway-socket", e.sock, "-o", kc).CombinedOutput(); err != nil {
				t.Fatalf("gpuwarden kubeconfig as %s (through the gateway): %v %s", atkA, err, out)
			}
			cmd := exec.Command("runuser", "-u", atkA, "--", "kubectl", "--kubeconfig", kc, "create", "-f", "-")
			cmd.Stdin = strings.NewReader(fmt.Sprintf("apiVersion: gpuwarden.io/v1alpha1\nkind: GPUAllocation\nmetadata: {name: gwatk-steal}\nspec: {user: %s, nodeName: e2e-gwatk, request: {gpus: 1}, containerID: %q}\n", atkA, e.bobCtr))
			out, err := cmd.CombinedOutput()
			return withoutSkewWarning(string(out)), err
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if err != nil {
				return ""
			}
			var got string
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				got, _ = kubectl(t, e.s.kubeconfig, "", "get", "ga", "gwatk-steal", "-o", "jsonpath={.status.phase} {.status.containerID}")
				if strings.Contains(got, e.bobCtr) {
					return "the attacker's allocation is attached to bob's container: " + got
				}
				ev, _ := kubectl(t, e.s.kubeconfig, "", "get", "events", "--field-selector", "involvedObject.name=gwatk-steal", "-o", "jsonpath={.items[*].reason}")
				if strings.Contains(ev, "NotAttached") {
					return ""
				}
				time.Sleep(500 * time.Millisecond)
			}
			if state := inspect("gwatk-bctr", "{{.State.Running}}"); state != "true" {
				return "bob's container is no longer running"
			}
			return ""
		}})

	// --- The everyday workloads: these must work, before and after.
	ok := func(want string) func(*testing.T, *atkEnv, string, error) string {
		return func(t *testing.T, e *atkEnv, out string, err error) string {
			if err != nil || !strings.Contains(out, want) {
				return fmt.Sprintf("did not work: %v %s", err, out)
			}
			return ""
		}
	}
	add(atkCase{row: rEveryDy, name: "docker run --gpus 1 of a root image writing into the home bind (files owned by the user)",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "--gpus", "1", "-v", e.homeA+":/h", e.image, "sh", "-c", "echo GPU=$NVIDIA_VISIBLE_DEVICES; mkdir -p /h/atk-out && echo data > /h/atk-out/file && echo WROTE")
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if err != nil || !strings.Contains(out, "GPU=GPU-") || !strings.Contains(out, "WROTE") {
				return fmt.Sprintf("did not work: %v %s", err, out)
			}
			for _, p := range []string{"atk-out", "atk-out/file"} {
				fi, err := os.Stat(filepath.Join(e.homeA, p))
				if err != nil {
					return err.Error()
				}
				if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != e.uidA {
					return fmt.Sprintf("~/%s is owned by uid %d, not the user's %d", p, st.Uid, e.uidA)
				}
			}
			return ""
		}})
	add(atkCase{row: rEveryDy, name: "pip install --user-like write to $HOME in the container",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", e.image, "sh", "-c", "mkdir -p $HOME/.local && touch $HOME/.local/x && echo HOME-OK")
		},
		harm: ok("HOME-OK")})
	add(atkCase{row: rEveryDy, name: "docker exec as the default user",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("exec", "gwatk-actr", "sh", "-c", "echo exec-ok")
		},
		harm: ok("exec-ok")})
	add(atkCase{row: rEveryDy, name: "docker commit of one's own container",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("commit", "gwatk-actr", "gwatk-a/committed:1")
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if err != nil || imageID("gwatk-a/committed:1") == "" {
				return fmt.Sprintf("did not work: %v %s", err, out)
			}
			return ""
		}})
	add(atkCase{row: rEveryDy, name: "docker rm --link of a legacy link between one's own containers",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			if out, err := e.a("run", "-d", "--name", "gwatk-lnk", "--link", "gwatk-actr:peer", e.image, "sleep", "600"); err != nil {
				t.Fatalf("a link between one's own containers: %v %s", err, out)
			}
			return e.a("rm", "--link", "gwatk-lnk/peer")
		},
		harm: func(t *testing.T, e *atkEnv, out string, err error) string {
			if err != nil {
				return fmt.Sprintf("did not work: %v %s", err, out)
			}
			if v := inspect("gwatk-lnk", "{{json .HostConfig.Links}}"); strings.Contains(v, "peer") {
				return "the link is still there: " + v
			}
			return ""
		}})
	add(atkCase{row: rEveryDy, name: "--tmpfs and --mount type=tmpfs",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "--tmpfs", "/scratch", "--mount", "type=tmpfs,dst=/s2", e.image, "sh", "-c", "touch /scratch/x /s2/x && echo TMPFS-OK")
		},
		harm: ok("TMPFS-OK")})
	add(atkCase{row: rEveryDy, name: "one's own named volume, written by the container",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			if out, err := e.a("volume", "create", "gwatk-avol"); err != nil {
				return out, err
			}
			return e.a("run", "--rm", "-v", "gwatk-avol:/data", e.image, "sh", "-c", "touch /data/x && echo VOL-OK")
		},
		harm: ok("VOL-OK")})
	add(atkCase{row: rEveryDy, name: "one's own network",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			if out, err := e.a("network", "create", "gwatk-anet"); err != nil {
				return out, err
			}
			return e.a("run", "--rm", "--network", "gwatk-anet", e.image, "sh", "-c", "echo NET-OK")
		},
		harm: ok("NET-OK")})
	add(atkCase{row: rEveryDy, name: "--volumes-from and --link of one's own container",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "--volumes-from", "gwatk-actr", "--link", "gwatk-actr:mine", e.image, "sh", "-c", "echo OWN-OK")
		},
		harm: ok("OWN-OK")})
	add(atkCase{row: rEveryDy, name: "--ulimit nofile=1024:1024 (within the caller's hard limit)",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			return e.a("run", "--rm", "--ulimit", "nofile=1024:1024", e.image, "sh", "-c", "ulimit -n")
		},
		harm: ok("1024")})
	add(atkCase{row: rEveryDy, name: "--mount type=volume of one's own volume with volume-nocopy",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			if out, err := e.a("volume", "create", "gwatk-avol2"); err != nil {
				return out, err
			}
			return e.a("run", "--rm", "--mount", "type=volume,src=gwatk-avol2,dst=/data,volume-nocopy", e.image, "sh", "-c", "echo NOCOPY-OK")
		},
		harm: ok("NOCOPY-OK")})
	for _, quiet := range []bool{false, true} {
		name := "docker build -t onto one's own name twice (a rebuild)"
		args := []string{"build", "-t", "gwatk-a/rebuilt:1", ""}
		if quiet {
			name = "docker build -q -t onto one's own name twice (a quiet rebuild)"
			args = []string{"build", "-q", "-t", "gwatk-a/rebuiltq:1", ""}
		}
		add(atkCase{row: rEveryDy, name: name,
			attack: func(t *testing.T, e *atkEnv) (string, error) {
				args[len(args)-1] = filepath.Join(e.homeA, "atk-ctx")
				if out, err := e.a(args...); err != nil {
					return out, err
				}
				out, err := e.a(args...)
				if err == nil {
					out += "\nREBUILT"
				}
				return out, err
			},
			harm: ok("REBUILT")})
	}
	add(atkCase{row: rEveryDy, name: "docker tag and rmi of one's own image onto a new name",
		attack: func(t *testing.T, e *atkEnv) (string, error) {
			if out, err := e.a("tag", "gwatk-a/app:1", "gwatk-a/app:2"); err != nil {
				return out, err
			}
			return e.a("rmi", "gwatk-a/app:2")
		},
		harm: ok("Untagged")})
	return cs
}
