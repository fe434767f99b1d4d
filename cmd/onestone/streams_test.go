package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/ingest/join"
	"github.com/onestone/onestone/internal/gen"
)

// TestGenAndProduceStreams: gen --streams writes the three streams, the
// truth and a spec whose join: section parses; produce --streams replays
// every line into its topic.
func TestGenAndProduceStreams(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := onestone(t, "gen", "--streams", "--rows", "3000", "--users", "200", "--items", "200",
		"--time-scale", "0.001", "--event-rate", "500", "--out", dir, "--json")
	if code != exitOK {
		t.Fatalf("gen --streams: exit %d: %s", code, errOut)
	}
	var sum gen.StreamsSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Impressions != 3000 || sum.Clicks == 0 || len(sum.Files) != 4 {
		t.Fatalf("summary %+v", sum)
	}
	// 3000 impressions at 500/s of event time span about 6 s.
	if span := sum.LastTime - sum.FirstTime; span < 5000 || span > 7000 {
		t.Errorf("impressions span %d ms, want about 6000", span)
	}
	spec, err := os.ReadFile(sum.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok, err := join.ParseSpecSection(spec); err != nil || !ok || c.ClickWindow != 2*time.Second {
		t.Errorf("join section: %+v %v %v", c, ok, err)
	}
	lines := make([]int64, 3)
	for i := range lines {
		b, err := os.ReadFile(filepath.Join(dir, gen.StreamFiles[i]))
		if err != nil {
			t.Fatal(err)
		}
		lines[i] = int64(strings.Count(string(b), "\n"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := ingest.StartBroker(ctx, ingest.BrokerConfig{Partitions: 2, Topics: []string{"imp", "clk", "conv"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, errOut, code = onestone(t, "produce", "--brokers", b.Addrs()[0], "--streams", dir, "--topics", "imp,clk,conv", "--speedup", "0")
	if code != exitOK {
		t.Fatalf("produce --streams: exit %d: %s", code, errOut)
	}
	for i, topic := range []string{"imp", "clk", "conv"} {
		if !strings.Contains(errOut, fmt.Sprintf("%d events to %s\n", lines[i], topic)) {
			t.Errorf("stderr does not report %d events to %s:\n%s", lines[i], topic, errOut)
		}
		var n int64
		for p := range 2 {
			conn, err := kafka.DialLeader(ctx, "tcp", b.Addrs()[0], topic, p)
			if err != nil {
				t.Fatal(err)
			}
			end, err := conn.ReadLastOffset()
			conn.Close()
			if err != nil {
				t.Fatal(err)
			}
			n += end
		}
		if n != lines[i] {
			t.Errorf("%s holds %d messages, the file %d lines", topic, n, lines[i])
		}
	}

	// lag --topics: every partition of the three topics, nothing committed.
	out, errOut, code = onestone(t, "lag", "--brokers", b.Addrs()[0], "--topics", "imp,clk,conv", "--group", "none", "--json")
	if code != exitOK {
		t.Fatalf("lag --topics: exit %d: %s", code, errOut)
	}
	var lags []ingest.PartitionLag
	if err := json.Unmarshal([]byte(out), &lags); err != nil {
		t.Fatal(err)
	}
	ends := map[string]int64{}
	for _, l := range lags {
		if l.Committed != -1 {
			t.Errorf("lag: %+v, want nothing committed", l)
		}
		ends[l.Topic] += l.End
	}
	if len(lags) != 6 || ends["imp"] != lines[0] || ends["clk"] != lines[1] || ends["conv"] != lines[2] {
		t.Errorf("lag --topics: %+v, want 2 partitions of each topic ending at %v", lags, lines)
	}
	if out, _, _ := onestone(t, "lag", "--brokers", b.Addrs()[0], "--topics", "imp,clk,conv", "--group", "none"); !strings.Contains(out, "topic") || !strings.Contains(out, "conv") {
		t.Errorf("lag --topics prints no topic column:\n%s", out)
	}

	for _, args := range [][]string{
		{"produce", "--streams", dir, "--data", "x.parquet"},
		{"produce", "--streams", dir, "--topics", "a,b"},
		{"produce", "--streams", dir, "--rate", "10"},
		{"gen", "--streams", "--time-scale", "0"},
		{"gen", "--streams", "--id-effects", "1"},
	} {
		if _, errOut, code := onestone(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d: %s", args, code, errOut)
		}
	}
}

// TestServeLogImpressionsFlags: --log-impressions and --brokers go
// together.
func TestServeLogImpressionsFlags(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--models", t.TempDir(), "--log-impressions", "imps"},
		{"serve", "--models", t.TempDir(), "--brokers", "127.0.0.1:9092"},
	} {
		if _, errOut, code := onestone(t, args...); code != exitUsage || !strings.Contains(errOut, "--brokers") {
			t.Errorf("%q: exit %d: %s", args, code, errOut)
		}
	}
}

// TestStreamJoinFlags: the join flags need --topics, and --topics three
// topics.
func TestStreamJoinFlags(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(spec, []byte(gen.SpecYAML(10, 10)+gen.StreamsJoinYAML(0.01)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--topics", "a,b"}, "--topics wants 3 topics"},
		{[]string{"--click-window", "1m"}, "need --topics"},
		{[]string{"--topics", "a,b,c", "--click-window", "1x"}, "--click-window"},
		{[]string{"--topics", "a,b,c", "--emit", "label", "--correction", "fnw"}, "correction"},
	} {
		args := append([]string{"stream", "--model", t.TempDir(), "--spec", spec, "--brokers", "127.0.0.1:1"}, c.args...)
		if _, errOut, code := onestone(t, args...); code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%q: exit %d: %s", c.args, code, errOut)
		}
	}
	c, err := joinConfig(spec, "", "2h", "", "none")
	if err != nil || c.ClickWindow != 12*time.Second || c.ConversionWindow != 2*time.Hour || c.Correction != "none" || c.Emit != "click" {
		t.Errorf("spec with flags: %+v, %v", c, err)
	}
}
