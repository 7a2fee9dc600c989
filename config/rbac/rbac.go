// Package rbac embeds the ClusterRoles that ship with gpuwarden.
package rbac

import _ "embed"

// UserRole is config/rbac/user_role.yaml: what a user's own kubeconfig may do.
//
//go:embed user_role.yaml
var UserRole []byte
