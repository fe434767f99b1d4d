package gen

import (
	"bufio"
	"context"
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/onestone/onestone/features"
)

// normCDF is the standard normal distribution function.
func normCDF(x float64) float64 { return 0.5 * (1 + math.Erf(x/math.Sqrt2)) }

// truncLogNormalMean is E[X | X <= max] for X = exp(N(mu, sigma²)).
func truncLogNormalMean(mu, sigma, max float64) float64 {
	lm := math.Log(max)
	return math.Exp(mu+sigma*sigma/2) * normCDF((lm-mu-sigma*sigma)/sigma) / normCDF((lm-mu)/sigma)
}

// quantile returns the q-quantile of sorted x.
func quantile(sorted []float64, q float64) float64 {
	return sorted[int(q*float64(len(sorted)-1))]
}

func TestDelayDistributions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 200_000
	click := make([]float64, n)
	conv := make([]float64, n)
	var sc, sv float64
	for i := range n {
		click[i], conv[i] = clickDelay(r), conversionDelay(r)
		sc += click[i]
		sv += conv[i]
	}
	slices.Sort(click)
	slices.Sort(conv)
	// Click: seconds to minutes.
	wantClick := truncLogNormalMean(math.Log(ClickDelayMedian.Seconds()), ClickDelaySigma, MaxClickDelay.Seconds())
	if m := sc / n; math.Abs(m/wantClick-1) > 0.03 {
		t.Errorf("mean click delay %.2f s, want %.2f s", m, wantClick)
	}
	if med := quantile(click, 0.5); math.Abs(med/ClickDelayMedian.Seconds()-1) > 0.03 {
		t.Errorf("median click delay %.2f s, want %v", med, ClickDelayMedian)
	}
	if q1, q99 := quantile(click, 0.01), quantile(click, 0.99); q1 < 0.3 || q1 > 3 || q99 < 60 || q99 > 600 {
		t.Errorf("click delay quantiles 1%% %.2f s, 99%% %.1f s: want seconds to minutes", q1, q99)
	}
	if mx := click[n-1]; mx > MaxClickDelay.Seconds() {
		t.Errorf("click delay %v above the maximum", mx)
	}
	// Conversion: mean of hours, heavy tail.
	mu := math.Log(ConversionDelayMean.Seconds()) - ConversionDelaySigma*ConversionDelaySigma/2
	wantConv := truncLogNormalMean(mu, ConversionDelaySigma, MaxConversionDelay.Seconds())
	if m := sv / n; math.Abs(m/wantConv-1) > 0.03 {
		t.Errorf("mean conversion delay %.0f s, want %.0f s", m, wantConv)
	}
	if h := wantConv / 3600; h < 2 || h > 4 {
		t.Errorf("the configured mean conversion delay is %.2f h, want hours", h)
	}
	ratio := quantile(conv, 0.99) / quantile(conv, 0.5)
	// Log-normal: exp(2.326·σ) = 32.8; an exponential would give
	// ln(100)/ln(2) = 6.6.
	if want := math.Exp(2.3263 * ConversionDelaySigma); math.Abs(ratio/want-1) > 0.1 || ratio < 20 {
		t.Errorf("conversion delay q99/q50 = %.1f, want about %.1f (heavy tail)", ratio, want)
	}
	if mx := conv[n-1]; mx > MaxConversionDelay.Seconds() {
		t.Errorf("conversion delay %v above the maximum", mx)
	}
}

// collect runs a Streams to its end.
func collect(t *testing.T, cfg StreamsConfig) ([]StreamEvent, []Truth, StreamsSummary) {
	t.Helper()
	s, err := NewStreams(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var evs []StreamEvent
	for {
		ev, ok := s.Next()
		if !ok {
			break
		}
		evs = append(evs, ev)
	}
	return evs, s.DrainTruth(nil), s.Summary()
}

type action struct {
	ID   string `json:"impression_id"`
	Time int64  `json:"ts_ms"`
	User int64  `json:"user_id"`
}

func TestStreamsMatchTruth(t *testing.T) {
	const scale = 0.01
	cfg := StreamsConfig{Impressions: 30_000, Users: 1000, Items: 1000, Seed: 5, TimeScale: scale,
		Duplicates: 0.01, EarlyClicks: 0.05, Unlogged: 0.01}
	evs, truth, sum := collect(t, cfg)
	if int64(len(truth)) != cfg.Impressions || sum.Impressions != cfg.Impressions {
		t.Fatalf("%d truth rows, summary %d impressions, want %d", len(truth), sum.Impressions, cfg.Impressions)
	}
	byID := map[string]*Truth{}
	for i := range truth {
		tr := &truth[i]
		if byID[tr.ImpressionID] != nil {
			t.Fatalf("impression id %s drawn twice", tr.ImpressionID)
		}
		byID[tr.ImpressionID] = tr
		if i > 0 && tr.Time < truth[i-1].Time {
			t.Fatalf("impression %d at %d before its predecessor at %d", i, tr.Time, truth[i-1].Time)
		}
		if tr.Conversion && !tr.Click {
			t.Fatalf("impression %s converts without a click", tr.ImpressionID)
		}
	}
	// Rate: impressions span about Impressions/Rate seconds.
	if span := float64(sum.LastTime-sum.FirstTime) / 1000; math.Abs(span/30-1) > 0.05 {
		t.Errorf("impressions span %.1f s, want about 30 s at 1000/s", span)
	}
	var seen [3]map[string]int
	for i := range seen {
		seen[i] = map[string]int{}
	}
	var last [3]int64
	var prev int64
	var dups [3]int64
	maxClick := int64(0)
	minClick := int64(math.MaxInt64)
	maxConv := int64(0)
	for _, ev := range evs {
		if ev.Time < prev {
			t.Fatalf("merged order: %s event at %d after %d", ev.Topic, ev.Time, prev)
		}
		prev = ev.Time
		if ev.Time < last[ev.Topic] {
			t.Fatalf("%s out of log order", ev.Topic)
		}
		last[ev.Topic] = ev.Time
		var a action
		if err := json.Unmarshal(ev.Value, &a); err != nil {
			t.Fatalf("%s: %v: %s", ev.Topic, err, ev.Value)
		}
		tr := byID[a.ID]
		if tr == nil {
			t.Fatalf("%s for unknown impression %s", ev.Topic, a.ID)
		}
		if string(ev.Key) != strconv.FormatInt(a.User, 10) || a.User != tr.UserID {
			t.Fatalf("%s key %s, user %d, want %d", ev.Topic, ev.Key, a.User, tr.UserID)
		}
		if ev.Duplicate {
			dups[ev.Topic]++
			if ev.Time < a.Time || ev.Time > a.Time+scaledMs(MaxRetryDelay.Seconds(), scale) {
				t.Fatalf("duplicate logged at %d, event time %d", ev.Time, a.Time)
			}
		} else if ev.Time != a.Time {
			t.Fatalf("%s logged at %d, event time %d", ev.Topic, ev.Time, a.Time)
		}
		seen[ev.Topic][a.ID]++
		switch ev.Topic {
		case TopicImpressions:
			if !tr.Logged || a.Time != tr.Time {
				t.Fatalf("impression %s: logged %v, time %d want %d", a.ID, tr.Logged, a.Time, tr.Time)
			}
		case TopicClicks:
			if !tr.Click || a.Time != tr.ClickTime {
				t.Fatalf("click of %s: truth click %v at %d, event at %d", a.ID, tr.Click, tr.ClickTime, a.Time)
			}
			d := a.Time - tr.Time
			if tr.EarlyClick && d > 0 || !tr.EarlyClick && d < 0 {
				t.Fatalf("click of %s: delay %d ms, early %v", a.ID, d, tr.EarlyClick)
			}
			maxClick, minClick = max(maxClick, d), min(minClick, d)
		case TopicConversions:
			if !tr.Conversion || a.Time != tr.ConversionTime {
				t.Fatalf("conversion of %s: truth %v at %d, event at %d", a.ID, tr.Conversion, tr.ConversionTime, a.Time)
			}
			maxConv = max(maxConv, a.Time-tr.ClickTime)
		}
	}
	// Every logged event appears once or twice (a duplicate), nothing else.
	var clicks, convs, orphanClicks int64
	for _, tr := range truth {
		want := [3]bool{tr.Logged, tr.Click, tr.Conversion}
		for tp := range 3 {
			n := seen[tp][tr.ImpressionID]
			if want[tp] != (n > 0) || n > 2 {
				t.Fatalf("impression %s: %s logged %d times, truth says %v", tr.ImpressionID, StreamTopic(tp), n, want[tp])
			}
		}
		if tr.Click {
			clicks++
			if !tr.Logged {
				orphanClicks++
			}
		}
		if tr.Conversion {
			convs++
		}
	}
	if clicks != sum.Clicks || convs != sum.Conversions || orphanClicks != sum.OrphanClicks || dups != sum.Duplicates {
		t.Errorf("summary %+v; counted clicks %d conversions %d orphan clicks %d duplicates %v", sum, clicks, convs, orphanClicks, dups)
	}
	if ctr := float64(clicks) / float64(cfg.Impressions); ctr < 0.025 || ctr > 0.05 {
		t.Errorf("CTR %v", ctr)
	}
	if sum.Logged+int64(float64(cfg.Impressions)*0.01*0.5) > cfg.Impressions || sum.Logged == cfg.Impressions {
		t.Errorf("%d of %d impressions logged, want about 1%% unlogged", sum.Logged, cfg.Impressions)
	}
	for tp, n := range dups {
		if n == 0 {
			t.Errorf("no duplicate %s", StreamTopic(tp))
		}
	}
	if sum.EarlyClicks == 0 || minClick >= 0 || minClick < -scaledMs(MaxEarlyClick.Seconds(), scale) {
		t.Errorf("%d early clicks, earliest %d ms before its impression", sum.EarlyClicks, -minClick)
	}
	if maxClick > scaledMs(MaxClickDelay.Seconds(), scale) {
		t.Errorf("click delay %d ms above the scaled maximum", maxClick)
	}
	if lim := scaledMs(MaxConversionDelay.Seconds()+MaxClickDelay.Seconds()+MaxEarlyClick.Seconds(), scale); maxConv > lim {
		t.Errorf("conversion %d ms after its logged click, above %d", maxConv, lim)
	}
}

// TestTimeScale checks that TimeScale scales the delays and not the rate.
func TestTimeScale(t *testing.T) {
	mean := func(scale float64) (click, conv, span float64) {
		_, truth, sum := collect(t, StreamsConfig{Impressions: 30_000, Users: 500, Items: 500, Seed: 9, TimeScale: scale, EarlyClicks: -1})
		var nc, nv float64
		for _, tr := range truth {
			if tr.Click {
				click += float64(tr.ClickTime - tr.Time)
				nc++
			}
			if tr.Conversion {
				conv += float64(tr.ConversionTime - tr.ClickTime)
				nv++
			}
		}
		return click / nc, conv / nv, float64(sum.LastTime - sum.FirstTime)
	}
	c1, v1, s1 := mean(1)
	c2, v2, s2 := mean(0.01)
	if math.Abs(c2/c1-0.01) > 0.0005 || math.Abs(v2/v1-0.01) > 0.0005 {
		t.Errorf("scale 0.01: mean click delay %.0f -> %.0f ms, conversion %.0f -> %.0f ms", c1, c2, v1, v2)
	}
	if s1 != s2 {
		t.Errorf("the impression span changed with the time scale: %v, %v", s1, s2)
	}
}

func TestStreamsDeterministic(t *testing.T) {
	digest := func(seed uint64) uint64 {
		evs, truth, _ := collect(t, StreamsConfig{Impressions: 5000, Users: 300, Items: 300, Seed: seed, TimeScale: 0.001})
		h := fnv.New64a()
		for _, ev := range evs {
			h.Write([]byte{byte(ev.Topic)})
			h.Write(ev.Key)
			h.Write(ev.Value)
		}
		b, _ := json.Marshal(truth)
		h.Write(b)
		return h.Sum64()
	}
	if a, b := digest(3), digest(3); a != b {
		t.Error("two runs with seed 3 differ")
	}
	if digest(3) == digest(4) {
		t.Error("seeds 3 and 4 give the same streams")
	}
}

// TestImpressionsDecodeWithTheSpec checks that the impression messages
// are events of the generated spec (with the labels added, as the join
// does).
func TestImpressionsDecodeWithTheSpec(t *testing.T) {
	spec, err := features.ParseSpec(strings.NewReader(SpecYAML(300, 300)))
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dec, err := features.NewJSONDecoder(spec.Schema(true), features.JSONConfig{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	evs, _, sum := collect(t, StreamsConfig{Impressions: 2000, Users: 300, Items: 300, Seed: 1})
	n := 0
	for _, ev := range evs {
		if ev.Topic != TopicImpressions {
			continue
		}
		labelled := append(ev.Value[:len(ev.Value)-1:len(ev.Value)-1], `,"click":0,"conversion":0}`...)
		if err := dec.Append(labelled); err != nil {
			t.Fatalf("%v: %s", err, labelled)
		}
		n++
	}
	rec := dec.NewRecordBatch()
	defer rec.Release()
	if int64(n) != sum.Logged+sum.Duplicates[TopicImpressions] || rec.NumRows() != int64(n) {
		t.Errorf("decoded %d impressions into %d rows, summary %+v", n, rec.NumRows(), sum)
	}
}

func TestWriteStreams(t *testing.T) {
	dir := t.TempDir()
	cfg := StreamsConfig{Dir: dir, Impressions: 10_000, Users: 500, Items: 500, Seed: 2, TimeScale: 0.001}
	sum, err := WriteStreams(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	evs, truth, want := collect(t, cfg)
	want.Files = sum.Files
	want.Spec = filepath.Join(dir, "spec.yaml")
	if b, err := os.ReadFile(want.Spec); err != nil || string(b) != SpecYAML(500, 500)+StreamsJoinYAML(0.001) {
		t.Errorf("spec.yaml: %v\n%s", err, b)
	}
	if got, _ := json.Marshal(sum); string(got) != string(mustJSON(t, want)) {
		t.Errorf("summary %s, want %s", got, mustJSON(t, want))
	}
	var lines [4][]string
	for i, name := range StreamFiles {
		if sum.Files[i] != filepath.Join(dir, name) {
			t.Errorf("file %d is %s", i, sum.Files[i])
		}
		f, err := os.Open(sum.Files[i])
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines[i] = append(lines[i], sc.Text())
		}
		f.Close()
	}
	var k [3]int
	for _, ev := range evs {
		if got := lines[ev.Topic][k[ev.Topic]]; got != string(ev.Value) {
			t.Fatalf("%s line %d: %s, want %s", ev.Topic, k[ev.Topic], got, ev.Value)
		}
		k[ev.Topic]++
	}
	for tp := range 3 {
		if k[tp] != len(lines[tp]) {
			t.Errorf("%s: %d lines, %d events", StreamTopic(tp), len(lines[tp]), k[tp])
		}
	}
	if len(lines[3]) != len(truth) {
		t.Fatalf("%d truth lines, want %d", len(lines[3]), len(truth))
	}
	for i, l := range lines[3] {
		if l != string(mustJSON(t, truth[i])) {
			t.Fatalf("truth line %d: %s", i, l)
		}
	}
	if _, err := WriteStreams(context.Background(), StreamsConfig{}); err == nil {
		t.Error("no directory accepted")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStreamsConfigValidate(t *testing.T) {
	for _, c := range []StreamsConfig{
		{Impressions: -1},
		{Users: -1},
		{TaskCorr: 2},
		{Rate: math.Inf(1)},
		{Rate: -1},
		{TimeScale: math.NaN()},
		{Duplicates: 1},
		{Unlogged: 1.5},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted a bad config", c)
		}
	}
	if d := (StreamsConfig{}).withDefaults(); d.Start != time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC) || d.Duplicates != 0.002 {
		t.Errorf("defaults %+v", d)
	}
	if d := (StreamsConfig{Duplicates: -1}).withDefaults(); d.Duplicates != 0 {
		t.Errorf("a negative share gives %v, want none", d.Duplicates)
	}
}
