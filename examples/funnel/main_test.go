package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
)

// TestRunSmall runs ESMM and AITM for one seed on a small data set: a
// table row per method with every metric a number, AUCs in (0, 1].
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two models")
	}
	var out bytes.Buffer
	if err := run(context.Background(), &out, 30000, 1, "1,4", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	var rows int
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.HasPrefix(line, "| ESMM |") && !strings.HasPrefix(line, "| AITM |") {
			continue
		}
		rows++
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 1+len(metricNames) {
			t.Fatalf("row %q: %d cells", line, len(cells))
		}
		for k, c := range cells[1:] {
			v, err := strconv.ParseFloat(strings.Fields(c)[0], 64)
			if err != nil || !(v > 0) || (k < 3 && v > 1) {
				t.Errorf("%s: %s = %q", cells[0], metricNames[k], c)
			}
		}
	}
	if rows != 2 {
		t.Fatalf("%d method rows in:\n%s", rows, out.String())
	}
}
