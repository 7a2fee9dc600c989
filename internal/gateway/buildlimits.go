package gateway

import (
	"context"
	"net/url"
	"strconv"
	"sync"

	"github.com/moby/moby/api/types/container"
)

// MaxBuildsPerUser is how many builds one user may run at once through the gateway: a
// build's RUN steps run as root in the build container with no process limit the classic
// builder lets anyone set, so they are few, and bounded like a container.
const MaxBuildsPerUser = 2

// builds counts each user's running builds.
type builds struct {
	mu      sync.Mutex
	running map[int]int
}

// start takes one of the caller's build slots; release gives it back.
func (b *builds) start(c Caller) (release func(), ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running == nil {
		b.running = map[int]int{}
	}
	if b.running[c.UID] >= MaxBuildsPerUser {
		return nil, false
	}
	b.running[c.UID]++
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.running[c.UID]--
	}, true
}

// boundBuild bounds what a build's containers may take of the machine as a container of the
// caller's is bounded (their policy's CPU and memory, the default CPU weight), setting the
// policy's defaults where the build asks none, and takes one of the caller's build slots.
func (s *Server) boundBuild(ctx context.Context, c Caller, q url.Values) (release func(), err error) {
	l, err := s.limitsOf(ctx, c.Name, nil)
	if err != nil {
		return nil, err
	}
	num := func(key string) (int64, error) {
		v := q.Get(key)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, &refusal{status: 400, msg: "build option " + key + "=" + v + " is not a number"}
		}
		return n, nil
	}
	var r struct{ memory, quota, period, shares int64 }
	for key, into := range map[string]*int64{"memory": &r.memory, "cpuquota": &r.quota, "cpuperiod": &r.period, "cpushares": &r.shares} {
		if *into, err = num(key); err != nil {
			return nil, err
		}
	}
	res := container.Resources{Memory: r.memory, CPUQuota: r.quota, CPUPeriod: r.period, CPUShares: r.shares}
	if err := checkResources(c, &res); err != nil {
		return nil, err
	}
	if err := l.check(res); err != nil {
		return nil, err
	}
	if r.memory <= 0 {
		if v, ok := first(l.memory, l.maxMemory); ok {
			q.Set("memory", strconv.FormatInt(v.value, 10))
		}
	}
	if requestedCPUs(res) == 0 {
		if v, ok := first(l.cpus, l.maxCPUs); ok {
			q.Set("cpuperiod", "100000")
			q.Set("cpuquota", strconv.FormatInt(v.value/1e4, 10)) // nano-CPUs → µs per 100ms
		}
	}
	release, ok := s.builds.start(c)
	if !ok {
		return nil, &refusal{status: 429, msg: "you have " + strconv.Itoa(MaxBuildsPerUser) + " builds running already: wait for one to finish"}
	}
	return release, nil
}
