package allocation

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ResolveDevices turns the devices a request names — UUIDs, GPU indices ("3") or MIG
// instances by GPU index and position ("4:0", in the GPU's instance order) — into the UUIDs
// of inventory slots. It returns, in order, what it resolved, the names that match no slot,
// and the UUIDs named more than once.
func ResolveDevices(inventory []Slot, devices []string) (uuids, missing, twice []string) {
	byUUID := map[string]bool{}
	byIndex := map[int]Slot{}
	instances := map[int][]Slot{}
	for _, s := range inventory {
		byUUID[s.UUID] = true
		if s.Profile == "" {
			byIndex[s.GPUIndex] = s
		} else {
			instances[s.GPUIndex] = append(instances[s.GPUIndex], s)
		}
	}
	for _, d := range devices {
		uuid := ""
		gi, mi, isMIG := strings.Cut(d, ":")
		g, gerr := strconv.Atoi(gi)
		m, merr := strconv.Atoi(mi)
		switch {
		case byUUID[d]:
			uuid = d
		case isMIG && gerr == nil && merr == nil && m >= 0 && m < len(instances[g]):
			uuid = instances[g][m].UUID
		case !isMIG && gerr == nil && byIndex[g].UUID != "":
			uuid = byIndex[g].UUID
		default:
			missing = append(missing, d)
			continue
		}
		if slices.Contains(uuids, uuid) {
			twice = append(twice, d)
			continue
		}
		uuids = append(uuids, uuid)
	}
	return uuids, missing, twice
}

// Unsatisfiable says why req could not be met by inventory even with every slot free and
// healthy; "" when it could. inventory must be complete: a node whose GPUs are not all
// known yet says nothing about what can never be met.
func Unsatisfiable(inventory []Slot, req Request, node string) string {
	switch {
	case len(req.Devices) > 0:
		_, missing, twice := ResolveDevices(inventory, req.Devices)
		if len(twice) > 0 {
			return fmt.Sprintf("the request names the same device more than once (%s)", strings.Join(twice, ", "))
		}
		if len(missing) > 0 {
			return fmt.Sprintf("no device %s on %s", strings.Join(missing, ", "), node)
		}
	case req.MIGProfile != "":
		offered := map[string]bool{}
		for _, s := range inventory {
			if s.Profile != "" {
				offered[s.Profile] = true
			}
		}
		if !offered[req.MIGProfile] {
			if len(offered) == 0 {
				return fmt.Sprintf("no GPU on %s offers MIG profile %s (none is in MIG mode)", node, req.MIGProfile)
			}
			names := make([]string, 0, len(offered))
			for p := range offered {
				names = append(names, p)
			}
			sort.Strings(names)
			return fmt.Sprintf("no GPU on %s offers MIG profile %s (offered: %s)", node, req.MIGProfile, strings.Join(names, ", "))
		}
	case req.GPUs > 0:
		whole := 0
		for _, s := range inventory {
			if s.Profile == "" {
				whole++
			}
		}
		if req.GPUs > whole {
			return fmt.Sprintf("%s asked for %s; %s has %s", req.User, plural(req.GPUs, "whole GPU"), node, plural(whole, "whole GPU"))
		}
	}
	return ""
}
