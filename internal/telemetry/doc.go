// Package telemetry exports the node's GPUs to Prometheus under dcgm-exporter's names,
// types, units and labels, with the user, container and allocation that hold each device.
// A Sampler reads NVML on its own schedule and keeps the latest reading; the Collector
// renders that reading at scrape time, so a scrape never calls NVML and a hung NVML call
// delays only the Sampler, which then reports itself stale.
package telemetry
