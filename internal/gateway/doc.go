// Package gateway serves the Docker Engine API on a Unix socket in front of the real
// engine and makes gpuwarden's rules part of the API: the caller is who the kernel says
// (SO_PEERCRED, SO_PEERGROUPS), every endpoint is on an allow-list, request bodies are
// decoded with the engine's own semantics, checked and re-encoded (never forwarded raw), a
// create gets the caller's owner labels and its GPUs through a GPUAllocation, and a
// non-admin sees and touches only their own containers.
package gateway
