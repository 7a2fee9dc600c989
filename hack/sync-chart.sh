#!/usr/bin/env bash
# Copies the generated CRDs and ClusterRole into the Helm chart so it stays in step.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f charts/gpuwarden/crds/*.yaml
cp config/crd/bases/*.yaml charts/gpuwarden/crds/
{ echo "# Generated from config/rbac/role.yaml by hack/sync-chart.sh. DO NOT EDIT."; cat config/rbac/role.yaml; } > charts/gpuwarden/templates/clusterrole.yaml
{ echo "# Generated from config/rbac/user_role.yaml by hack/sync-chart.sh. DO NOT EDIT."; cat config/rbac/user_role.yaml; } > charts/gpuwarden/templates/userrole.yaml
{ echo "# Generated from config/rbac/access.yaml by hack/sync-chart.sh. DO NOT EDIT."; cat config/rbac/access.yaml; } > charts/gpuwarden/templates/access.yaml
mkdir -p charts/gpuwarden/files && cp config/prometheus/prometheusrule.yaml charts/gpuwarden/files/prometheusrule.yaml
