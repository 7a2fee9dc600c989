#!/usr/bin/env bash
# Versions releases from conventional commits (https://www.conventionalcommits.org).
#
#   hack/release.sh next       the next version (vX.Y.Z) from the commits since the last tag;
#                              exits 3, printing nothing, when none of them calls for a release
#   hack/release.sh changelog  those commits as Markdown: breaking changes, features, fixes
#   hack/release.sh tag        tags HEAD with the next version, the changelog as its message
#
# feat → minor, fix and perf → patch, a `!` after the type (feat!:, fix(api)!:) or a
# BREAKING CHANGE: footer → major; other types (docs, test, refactor, chore, ci, style,
# build) release nothing. The last tag is the newest vX.Y.Z tag reachable from HEAD; with
# none, the first release counts from v0.0.0.
set -euo pipefail

last_tag() { git describe --tags --abbrev=0 --match 'v[0-9]*.[0-9]*.[0-9]*' HEAD 2>/dev/null || true; }

# commits prints one record per commit since the last tag: hash, subject, body, NUL-separated.
commits() {
  local tag range
  tag=$(last_tag)
  range=HEAD
  [ -n "$tag" ] && range="$tag..HEAD"
  git log --no-merges --format='%h%x1f%s%x1f%b%x00' "$range"
}

# kind classifies one commit: major, minor, patch or none.
kind() {
  local subject=$1 body=$2
  if [[ $subject =~ ^[a-zA-Z]+(\([^\)]*\))?!: ]] || grep -qE '^BREAKING[ -]CHANGE: ' <<<"$body"; then
    echo major
  elif [[ $subject =~ ^feat(\([^\)]*\))?: ]]; then
    echo minor
  elif [[ $subject =~ ^(fix|perf)(\([^\)]*\))?: ]]; then
    echo patch
  else
    echo none
  fi
}

next() {
  local bump=none tag major minor patch
  while IFS=$'\x1f' read -r -d '' hash subject body; do
    case $(kind "$subject" "$body") in
      major) bump=major ;;
      minor) [ "$bump" = major ] || bump=minor ;;
      patch) [ "$bump" = none ] && bump=patch ;;
    esac
  done < <(commits)
  tag=$(last_tag)
  [ "$bump" = none ] && { echo "hack/release.sh: no feat, fix, perf or breaking change since ${tag:-the start}; nothing to release" >&2; return 3; }
  IFS=. read -r major minor patch <<<"${tag#v}"
  major=${major:-0} minor=${minor:-0} patch=${patch:-0}
  case $bump in
    major) echo "v$((major + 1)).0.0" ;;
    minor) echo "v$major.$((minor + 1)).0" ;;
    patch) echo "v$major.$minor.$((patch + 1))" ;;
  esac
}

changelog() {
  local breaking=() features=() fixes=()
  while IFS=$'\x1f' read -r -d '' hash subject body; do
    hash=${hash#$'\n'}
    local line="- ${subject#*: } ($hash)"
    case $(kind "$subject" "$body") in
      major) breaking+=("$line") ;;
      minor) features+=("$line") ;;
      patch) fixes+=("$line") ;;
    esac
  done < <(commits)
  section() { local title=$1; shift; (($#)) && printf '### %s\n\n%s\n\n' "$title" "$(printf '%s\n' "$@")"; return 0; }
  section "Breaking changes" "${breaking[@]}"
  section "Features" "${features[@]}"
  section "Fixes" "${fixes[@]}"
}

case ${1:-} in
  next) next ;;
  changelog) changelog ;;
  tag)
    v=$(next)
    git tag -a "$v" -m "gpuwarden $v" -m "$(changelog)"
    echo "$v"
    ;;
  *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
