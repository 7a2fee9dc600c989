package gateway

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The create allow-list: every field that reaches the host, another user or the machine's
// shares is refused or bounded, and nothing is forwarded when it is.
func TestCreateAllowList(t *testing.T) {
	w := newWorld(t)
	pid := os.Getpid()
	for _, tc := range []struct{ name, hostConfig, want string }{
		{"systempaths=unconfined (empty MaskedPaths)", `{"MaskedPaths":[]}`, "MaskedPaths"},
		{"empty ReadonlyPaths", `{"ReadonlyPaths":[]}`, "ReadonlyPaths"},
		{"a shorter masked list", `{"MaskedPaths":["/proc/kcore"]}`, "MaskedPaths"},
		{"a kernel sysctl", `{"Sysctls":{"kernel.core_pattern":"|/tmp/x"}}`, "sysctl kernel.core_pattern"},
		{"a negative OOM score", `{"OomScoreAdj":-1000}`, "OOM score"},
		{"no OOM killer", `{"OomKillDisable":true}`, "OOM killer"},
		{"huge CPU shares", `{"CpuShares":262144}`, "CPU shares"},
		{"real-time CPU", `{"CpuRealtimeRuntime":950000}`, "real-time"},
		{"a block I/O weight over the default", `{"BlkioWeight":1000}`, "block I/O weight"},
		{"a device throttle", `{"BlkioDeviceReadBps":[{"Path":"/dev/sda","Rate":1}]}`, "per-device"},
		{"a nofile ulimit over the caller's", `{"Ulimits":[{"Name":"nofile","Soft":1,"Hard":9223372036854775807}]}`, "ulimit nofile"},
		{"an unknown ulimit", `{"Ulimits":[{"Name":"bogus","Soft":1,"Hard":1}]}`, "bogus"},
		{"a storage option", `{"StorageOpt":{"size":"1T"}}`, "HostConfig.StorageOpt"},
		{"annotations (CDI injection)", `{"Annotations":{"cdi.k8s.io/x":"nvidia.com/gpu=all"}}`, "HostConfig.Annotations"},
		{"a cgroup", `{"Cgroup":"container:bob-job"}`, "cgroup"},
		{"the host's cgroup namespace", `{"CgroupnsMode":"host"}`, "cgroup namespace"},
		{"a syslog log driver", `{"LogConfig":{"Type":"syslog","Config":{"syslog-address":"udp://10.0.0.1:514"}}}`, "log driver"},
		{"a huge log file", `{"LogConfig":{"Type":"json-file","Config":{"max-size":"100g"}}}`, "max-size"},
		{"a container ID file", `{"ContainerIDFile":"/etc/cron.d/x"}`, "container ID file"},
		{"port 80 on the host", `{"PortBindings":{"80/tcp":[{"HostPort":"80"}]}}`, "host port 80"},
		{"a Windows setting", `{"CpuCount":4}`, "Windows"},
		{"an isolation", `{"Isolation":"hyperv"}`, "isolation"},
		{"another's named volume", `{"Binds":["bobs:/x"]}`, "volume bobs does not belong to alice"},
		{"another's volume through Mounts", `{"Mounts":[{"Type":"volume","Source":"bobs","Target":"/x"}]}`, "volume bobs does not belong"},
		{"a volume subpath escaping", `{"Mounts":[{"Type":"volume","Source":"alicevol","Target":"/x","VolumeOptions":{"Subpath":"../../"}}]}`, "subpath"},
		{"a bind that makes its source", `{"Mounts":[{"Type":"bind","Source":"` + w.home + `/new","Target":"/x","BindOptions":{"CreateMountpoint":true}}]}`, "creates its source"},
		{"shared propagation", `{"Mounts":[{"Type":"bind","Source":"` + w.home + `","Target":"/x","BindOptions":{"Propagation":"rshared"}}]}`, "propagation"},
		{"a shared propagation option", `{"Binds":["` + w.home + `:/x:rshared"]}`, "volume option"},
		{"an image mount", `{"Mounts":[{"Type":"image","Source":"x","Target":"/x"}]}`, "image"},
		{"another's network", `{"NetworkMode":"bobnet"}`, "network bobnet does not belong"},
		{"a network no user owns", `{"NetworkMode":"adminnet"}`, "network adminnet does not belong"},
		{"every port published", `{"PublishAllPorts":true}`, "-P"},
		{"a link to another's container", `{"Links":["bob-job:b"]}`, "belongs to bob"},
		{"another's IPC namespace", `{"IpcMode":"container:bob-job"}`, "belongs to bob"},
		{"the host's user namespace", `{"UsernsMode":"host"}`, "user namespace"},
		{"a group the caller is not in", `{"GroupAdd":["4242"]}`, "--group-add 4242"},
		{"seccomp off", `{"SecurityOpt":["seccomp=unconfined"]}`, "security option"},
		{"a custom seccomp profile", `{"SecurityOpt":["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]}`, "security option"},
		{"label=disable", `{"SecurityOpt":["label=disable"]}`, "security option"},
		{"a pids limit over the policy", `{"PidsLimit":100000000}`, "processes"},
		{"a field the gateway does not know", `{"Memory":1,"FutureEscape":{"x":1}}`, "HostConfig.FutureEscape"},
	} {
		before := len(w.engine.reached())
		caller := w.alice()
		caller.PID, caller.GID = pid, 1000
		rec := w.do(caller, "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":`+tc.hostConfig+`}`)
		if rec.Code < 400 || !strings.Contains(rec.Body.String(), tc.want) || !strings.Contains(rec.Body.String(), "gpuwarden:") {
			t.Errorf("%s: %d %s; want a refusal saying %q", tc.name, rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
		}
		for _, r := range w.engine.reached()[before:] {
			if !strings.HasPrefix(r, "GET ") {
				t.Errorf("%s: forwarded %s to the engine", tc.name, r)
			}
		}
	}
	for _, tc := range []struct{ name, body string }{
		{"another's network through NetworkingConfig", `{"Image":"x","NetworkingConfig":{"EndpointsConfig":{"bobnet":{}}}}`},
		{"driver options on an endpoint", `{"Image":"x","NetworkingConfig":{"EndpointsConfig":{"alicenet":{"DriverOpts":{"x":"y"}}}}}`},
		{"an endpoint link to another's", `{"Image":"x","NetworkingConfig":{"EndpointsConfig":{"alicenet":{"Links":["bob-job:b"]}}}}`},
		{"root", `{"Image":"x","User":"root"}`},
		{"uid 0", `{"Image":"x","User":"0:0"}`},
		{"another's uid", `{"Image":"x","User":"1001"}`},
		{"the caller's uid with root's group", `{"Image":"x","User":"1000:0"}`},
		{"MIG configuration", `{"Image":"x","Env":["NVIDIA_MIG_CONFIG_DEVICES=all"]}`},
	} {
		alice := w.alice()
		alice.GID = 1000
		if rec := w.do(alice, "POST", "/v1.41/containers/create", tc.body); rec.Code != http.StatusForbidden {
			t.Errorf("%s: %d %s; want 403", tc.name, rec.Code, rec.Body)
		}
	}
}

// What an ordinary create sends is allowed, and the gateway makes it run as its caller.
func TestCreateRunsAsTheCaller(t *testing.T) {
	w := newWorld(t)
	alice := w.alice()
	alice.GID, alice.Groups, alice.PID = 1000, []int{1000, 2000}, os.Getpid()
	if err := os.MkdirAll(filepath.Join(w.home, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := w.do(alice, "POST", "/v1.41/containers/create?name=nb", `{"Image":"x","User":"","Env":["A=1"],"HostConfig":{
		"Binds":["`+w.home+`:`+w.home+`","alicevol:/v:ro","fresh:/f"],
		"Mounts":[{"Type":"tmpfs","Target":"/scratch"},{"Type":"volume","Target":"/anon"}],
		"NetworkMode":"alicenet","PortBindings":{"8888/tcp":[{"HostIp":"127.0.0.1","HostPort":"8888"}]},
		"CapDrop":["ALL"],"OomScoreAdj":500,"CpuShares":512,"Ulimits":[{"Name":"nofile","Soft":64,"Hard":64}],
		"Sysctls":{"net.ipv4.ip_unprivileged_port_start":"0"},"LogConfig":{"Type":"json-file","Config":{"max-size":"10m","max-file":"3"}},
		"RestartPolicy":{"Name":"unless-stopped"},"AutoRemove":false,"Init":true,"ReadonlyRootfs":false,"ShmSize":1048576,
		"Dns":["10.0.0.53"],"ExtraHosts":["db:10.0.0.2"],"GroupAdd":["2000"],"SecurityOpt":["no-new-privileges"]}}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("an ordinary create: %d %s", rec.Code, rec.Body)
	}
	body := w.engine.lastBody()
	hc := body["HostConfig"].(map[string]any)
	if body["User"] != "1000:1000" || fmt.Sprint(hc["SecurityOpt"]) != "[no-new-privileges]" || fmt.Sprint(hc["GroupAdd"]) != "[2000]" {
		t.Errorf("forwarded User %v, SecurityOpt %v, GroupAdd %v; want 1000:1000, no-new-privileges, [2000]", body["User"], hc["SecurityOpt"], hc["GroupAdd"])
	}
	env := fmt.Sprint(body["Env"])
	if !strings.Contains(env, "HOME="+w.home) || !strings.Contains(env, "USER=alice") || !strings.Contains(env, "A=1") {
		t.Errorf("env forwarded: %s; want HOME at the mounted home and USER", env)
	}
	// The volume that did not exist is the caller's now.
	if l := w.engine.object("/volumes/fresh"); l[labelUser] != "alice" {
		t.Errorf("a new named volume's labels: %v", l)
	}
	// Without the home mounted, HOME is a writable /tmp; the caller's own uid may be named.
	w.do(alice, "POST", "/v1.41/containers/create", `{"Image":"x","User":"1000:2000"}`)
	if b := w.engine.lastBody(); b["User"] != "1000:2000" || !strings.Contains(fmt.Sprint(b["Env"]), "HOME=/tmp") {
		t.Errorf("forwarded User %v, Env %v", b["User"], b["Env"])
	}
	// An admin's create is theirs to shape.
	w.do(Caller{Name: "root", Admin: true}, "POST", "/v1.41/containers/create", `{"Image":"x","User":"0"}`)
	if b := w.engine.lastBody(); b["User"] != "0" {
		t.Errorf("an admin's User forwarded as %v", b["User"])
	}
	// An exec runs as the caller whatever it asks, or is refused.
	w.do(alice, "POST", "/v1.41/containers/alice-nb/exec", `{"Cmd":["id"]}`)
	if b := w.engine.lastBody(); b["User"] != "1000:1000" {
		t.Errorf("an exec's User forwarded as %v", b["User"])
	}
	if rec := w.do(alice, "POST", "/v1.41/containers/alice-nb/exec", `{"Cmd":["id"],"User":"root"}`); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "your own uid") {
		t.Errorf("an exec as root: %d %s", rec.Code, rec.Body)
	}
}

// A start checks again what the create declared: the user and the mounts.
func TestStartChecksAgain(t *testing.T) {
	w := newWorld(t)
	alice := w.alice()
	alice.GID = 1000
	if err := os.MkdirAll(filepath.Join(w.home, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A container made before the gateway forced the user (or straight at the engine).
	w.engine.inspect = map[string]string{"alice-nb": `{"Config":{"User":""},"HostConfig":{}}`}
	if rec := w.do(alice, "POST", "/v1.41/containers/alice-nb/start", ""); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "recreate it") {
		t.Errorf("starting a root container: %d %s", rec.Code, rec.Body)
	}
	ok := `{"Config":{"User":"1000:1000"},"HostConfig":{"SecurityOpt":["no-new-privileges"],"Binds":["` + w.home + `/d:/d"]}}`
	w.engine.inspect = map[string]string{"alice-nb": ok}
	if rec := w.do(alice, "POST", "/v1.41/containers/alice-nb/start", ""); rec.Code >= 300 {
		t.Errorf("starting a checked container: %d %s", rec.Code, rec.Body)
	}
	// The engine mounts bind sources again, as root, for docker cp: refused on such a container.
	for _, m := range []string{"GET", "HEAD", "PUT"} {
		if rec := w.do(alice, m, "/v1.41/containers/alice-nb/archive?path=/d", ""); rec.Code != http.StatusForbidden {
			t.Errorf("%s archive of a container with bind mounts: %d %s", m, rec.Code, rec.Body)
		}
	}
	// …as on one that took them from another container (--volumes-from).
	w.engine.inspect = map[string]string{"alice-nb": `{"Config":{"User":"1000:1000"},"HostConfig":{"SecurityOpt":["no-new-privileges"],"VolumesFrom":["other"]},
		"Mounts":[{"Type":"bind","Source":"` + w.home + `/d","Destination":"/d"}]}`}
	if rec := w.do(alice, "PUT", "/v1.41/containers/alice-nb/archive?path=/", ""); rec.Code != http.StatusForbidden {
		t.Errorf("archive of a container with bind mounts from --volumes-from: %d %s", rec.Code, rec.Body)
	}
	// The directory replaced by a link to / since the create.
	if err := os.Remove(filepath.Join(w.home, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(w.home, "d")); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"start", "restart", "unpause"} {
		if rec := w.do(alice, "POST", "/v1.41/containers/alice-nb/"+op, ""); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "now resolves to /") {
			t.Errorf("%s after the swap: %d %s", op, rec.Code, rec.Body)
		}
	}
}

// Only attach and exec start become raw streams; an Upgrade anywhere else is a plain request.
func TestUpgradeOnlyOnStreams(t *testing.T) {
	w := newWorld(t)
	r := w.do(w.alice(), "GET", "/v1.41/images/x/get", "")
	_ = r
	for _, kind := range []kind{pass, listContainer, build, events, onContainer} {
		if wantsHijack(nil, route{kind: kind}) {
			t.Errorf("kind %d would become a raw stream", kind)
		}
	}
	for _, kind := range []kind{attachContainer, startExec} {
		if !wantsHijack(nil, route{kind: kind}) {
			t.Errorf("kind %d would not stream", kind)
		}
	}
}

// Another user's container is not there for an ID prefix; swarm answers like a non-swarm engine.
func TestSmallLeaks(t *testing.T) {
	w := newWorld(t)
	w.engine.inspect = map[string]string{"b": `{"Id":"bbbbbb","Name":"/bob-job","Config":{"Labels":{"gpuwarden.io/user":"bob"}}}`}
	if rec := w.do(w.alice(), "GET", "/v1.41/containers/b/json", ""); rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "bob") {
		t.Errorf("a one-character prefix of bob's container: %d %s", rec.Code, rec.Body)
	}
	if rec := w.do(w.alice(), "GET", "/v1.41/images/bobpriv:1/get%3F/json", ""); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "canonical") {
		t.Errorf("an escaped ? in the path: %d %s", rec.Code, rec.Body)
	}
	if rec := w.do(w.alice(), "POST", "/v1.41/swarm/leave", ""); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("swarm leave: %d %s", rec.Code, rec.Body)
	}
	// A legacy link of one's own container can be removed; not without ?link=1.
	if rec := w.do(w.alice(), "DELETE", "/v1.41/containers/alice-nb/db?link=1", ""); rec.Code != http.StatusOK {
		t.Errorf("removing a link: %d %s", rec.Code, rec.Body)
	}
	if got := w.engine.reached(); got[len(got)-1] != "DELETE /v1.41/containers/alice-nb/db" {
		t.Errorf("link removal forwarded as %s", got[len(got)-1])
	}
	if rec := w.do(w.alice(), "DELETE", "/v1.41/containers/bob-job/db?link=1", ""); rec.Code != http.StatusForbidden {
		t.Errorf("removing a link of bob's: %d %s", rec.Code, rec.Body)
	}
}

// Volumes and networks a user makes are theirs, and reach nothing past them.
func TestVolumeAndNetworkCreates(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct{ name, path, body, want string }{
		{"a volume bound onto /etc", "/v1.41/volumes/create", `{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/etc"}}`, "volume options"},
		{"a volume driver", "/v1.41/volumes/create", `{"Name":"v","Driver":"nfs"}`, "volume driver"},
		{"a lower-case duplicate driver key", "/v1.41/volumes/create", `{"Name":"v","Driver":"local","driver":"nfs"}`, "volume driver"},
		{"a macvlan network", "/v1.41/networks/create", `{"Name":"n","Driver":"macvlan"}`, "network driver"},
		{"a subnet", "/v1.41/networks/create", `{"Name":"n","IPAM":{"Config":[{"Subnet":"10.0.0.0/8"}]}}`, "address settings"},
		{"network options", "/v1.41/networks/create", `{"Name":"n","Options":{"com.docker.network.bridge.name":"eth0"}}`, "network options"},
		{"an ingress network", "/v1.41/networks/create", `{"Name":"n","Ingress":true}`, "swarm"},
		{"another's volume by its name", "/v1.41/volumes/create", `{"Name":"bobs"}`, "not yours"},
	} {
		if rec := w.do(w.alice(), "POST", tc.path, tc.body); rec.Code < 400 || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s: %d %s; want a refusal saying %q", tc.name, rec.Code, rec.Body, tc.want)
		}
	}
	// What compose sends is allowed, and the owner is set whatever the labels say.
	if rec := w.do(w.alice(), "POST", "/v1.41/networks/create", `{"Name":"proj_default","Driver":"bridge","IPAM":{"Driver":"default","Config":[]},"Labels":{"gpuwarden.io/user":"bob","com.docker.compose.project":"proj"}}`); rec.Code >= 300 {
		t.Fatalf("compose's network: %d %s", rec.Code, rec.Body)
	}
	if l := w.engine.lastBody()["Labels"].(map[string]any); l["gpuwarden.io/user"] != "alice" || l["com.docker.compose.project"] != "proj" {
		t.Errorf("the network's labels: %v", l)
	}
}

// A build's containers are bounded like the caller's containers, and few at a time.
func TestBuildsAreBounded(t *testing.T) {
	w := newWorld(t)
	for _, q := range []string{"cpushares=100000", "cpurealtime=1&cpushares=2048", "memory=x"} {
		if rec := w.do(w.alice(), "POST", "/v1.41/build?"+q, ""); rec.Code < 400 {
			t.Errorf("a build with %s: %d %s", q, rec.Code, rec.Body)
		}
	}
	var releases []func()
	for range MaxBuildsPerUser {
		release, ok := w.s.builds.start(w.alice())
		if !ok {
			t.Fatal("a build slot refused under the cap")
		}
		releases = append(releases, release)
	}
	if rec := w.do(w.alice(), "POST", "/v1.41/build", ""); rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "builds running") {
		t.Errorf("a build over the cap: %d %s", rec.Code, rec.Body)
	}
	if _, ok := w.s.builds.start(Caller{UID: 1001, Name: "bob"}); !ok {
		t.Error("another user's build refused by alice's cap")
	}
	for _, r := range releases {
		r()
	}
	if _, ok := w.s.builds.start(w.alice()); !ok {
		t.Error("a build slot not given back")
	}
}
