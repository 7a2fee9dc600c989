package overview

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// What gpuwarden's /metrics says of a whole GPU and a MIG instance (dcgm-exporter's names
// and labels), with free memory before used.
const scrape = `# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-0",modelName="NVIDIA H100 80GB HBM3",Hostname="n1",user="alice",container="c",allocation="a"} 37
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-0"} 71680
DCGM_FI_DEV_FB_FREE{gpu="1",UUID="GPU-1",GPU_I_PROFILE="1g.10gb",GPU_I_ID="9"} 8192
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-0"} 10240
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-1",GPU_I_PROFILE="1g.10gb",GPU_I_ID="9"} 1536
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-0"} 45
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-0"} 312.5
# TYPE gpuwarden_allocations gauge
gpuwarden_allocations{phase="Bound"} 3
`

func TestScrapeReadsWholeGPUsAndMIGInstances(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(scrape)) }))
	defer srv.Close()
	r, err := Scrape(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	g := r[Key("GPU-0", 0, false)]
	if g.UtilizationPercent == nil || *g.UtilizationPercent != 37 || *g.MemoryUsedBytes != 10240*mib || *g.MemoryTotalBytes != 81920*mib ||
		*g.TemperatureC != 45 || *g.PowerWatts != 312.5 {
		t.Errorf("GPU 0: %+v", g)
	}
	m := r[Key("GPU-1", 9, true)]
	if m.UtilizationPercent != nil || m.MemoryUsedBytes == nil || *m.MemoryUsedBytes != 1536*mib || *m.MemoryTotalBytes != 9728*mib {
		t.Errorf("the MIG instance: %+v", m)
	}
	if len(r) != 2 {
		t.Errorf("readings of %d devices; want 2: %v", len(r), r)
	}
}

func TestScrapeSaysWhatFailed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusForbidden) }))
	defer srv.Close()
	if _, err := Scrape(t.Context(), srv.URL+"/metrics"); err == nil || err.Error() != "reading the GPUs' metrics at "+srv.URL+"/metrics: 403 Forbidden" {
		t.Errorf("error %v", err)
	}
	if _, err := Scrape(t.Context(), "http://127.0.0.1:1/metrics"); err == nil {
		t.Error("no error from a closed port")
	}
}
