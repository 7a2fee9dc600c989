package testutil

import "os"

// DockerImage is the local test image hack/docker-up.sh imports from busybox-static
// ($GPUWARDEN_TEST_IMAGE overrides it).
func DockerImage() string {
	if im := os.Getenv("GPUWARDEN_TEST_IMAGE"); im != "" {
		return im
	}
	return "gpuwarden-test/busybox:latest"
}

// DockerHost is the shared test engine hack/docker-up.sh starts ($DOCKER_HOST overrides it).
func DockerHost() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return "unix:///run/gpuwarden-test/docker.sock"
}
