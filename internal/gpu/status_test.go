package gpu

import "testing"

func TestWeight(t *testing.T) {
	for _, tc := range []struct {
		slices, total int
		want          string
	}{{1, 7, "142857143n"}, {2, 7, "285714286n"}, {3, 7, "428571429n"}, {4, 7, "571428571n"}, {7, 7, "1"}, {0, 0, "1"}, {1, 8, "125m"}} {
		if got := Weight(tc.slices, tc.total); got.String() != tc.want {
			t.Errorf("Weight(%d, %d) = %s, want %s", tc.slices, tc.total, got.String(), tc.want)
		}
	}
}
