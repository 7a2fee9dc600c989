// Package controllers holds gpuwarden's reconcilers. Each is small, level-based and
// idempotent: it computes the desired status from what it observes and writes only changes.
package controllers
