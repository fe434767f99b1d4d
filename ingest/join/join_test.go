package join

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/onestone/onestone/internal/gen"
)

// t0 is the processing time of the tests: event times are in 2024, well
// before it.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// base is an event time (ms) the hand-made events count from.
const base = int64(1_704_067_200_000) // 2024-01-01T00:00:00Z

// harness feeds hand-made messages one at a time and keeps what came out.
type harness struct {
	t    *testing.T
	j    *Join
	now  time.Time
	off  [3]map[int]int64
	ex   []Example
	dead []deadLetter
	out  Output
}

type deadLetter struct {
	topic, reason string
	value         string
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	j, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	h := &harness{t: t, j: j, now: t0}
	for i := range h.off {
		h.off[i] = map[int]int64{}
	}
	return h
}

func impMsg(id string, ts int64) []byte {
	return fmt.Appendf(nil, `{"impression_id":%q,"ts_ms":%d,"user_id":7,"price":1.5}`, id, ts)
}

func actMsg(id string, ts int64) []byte {
	return fmt.Appendf(nil, `{"impression_id":%q,"ts_ms":%d,"user_id":7}`, id, ts)
}

// send adds one message to partition p of topic t.
func (h *harness) send(t Topic, p int, value []byte) {
	h.t.Helper()
	m := Message{Topic: t, Partition: p, Offset: h.off[t][p], Key: []byte("7"), Value: value}
	h.off[t][p]++
	h.add(m)
}

func (h *harness) add(ms ...Message) {
	h.t.Helper()
	h.out.Reset()
	if err := h.j.Add(&h.out, ms, h.now); err != nil {
		h.t.Fatal(err)
	}
	h.collect()
}

func (h *harness) collect() {
	for _, e := range h.out.Examples {
		e.Value = append([]byte(nil), e.Value...)
		h.ex = append(h.ex, e)
	}
	for _, d := range h.out.DeadLetters {
		h.dead = append(h.dead, deadLetter{d.Topic, d.Reason, string(d.Value)})
	}
}

func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.out.Reset()
	h.j.Advance(&h.out, h.now)
	h.collect()
}

func (h *harness) imp(id string, ts int64)   { h.send(Impressions, 0, impMsg(id, ts)) }
func (h *harness) click(id string, ts int64) { h.send(Clicks, 0, actMsg(id, ts)) }
func (h *harness) conv(id string, ts int64)  { h.send(Conversions, 0, actMsg(id, ts)) }

// takeExamples returns the examples since the last call as "kind id
// click conversion" lines.
func (h *harness) takeExamples() []string {
	var s []string
	for _, e := range h.ex {
		var v struct {
			ID         string  `json:"impression_id"`
			Click      float64 `json:"click"`
			Conversion float64 `json:"conversion"`
		}
		if err := json.Unmarshal(e.Value, &v); err != nil {
			h.t.Fatalf("example %s: %v", e.Value, err)
		}
		if HashID(v.ID) != e.ID || (v.Click == 1) != e.Click || (v.Conversion == 1) != e.Conversion {
			h.t.Fatalf("example %+v does not match its value %s", e, e.Value)
		}
		s = append(s, fmt.Sprintf("%s %s %d %d", e.Kind, v.ID, int(v.Click), int(v.Conversion)))
	}
	h.ex = nil
	return s
}

// takeDead returns the dead letters since the last call as "reason" lines.
func (h *harness) takeDead() []string {
	var s []string
	for _, d := range h.dead {
		s = append(s, d.reason)
	}
	h.dead = nil
	return s
}

func (h *harness) expect(what string, got, want []string) {
	h.t.Helper()
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		h.t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

// cfgSmall: windows of 10 s and 100 s, no lateness, 1 s skew.
func cfgSmall() Config {
	return Config{ClickWindow: 10 * time.Second, ConversionWindow: 100 * time.Second,
		Lateness: -1, MaxSkew: time.Second, Retention: time.Minute}
}

func TestClickWindowEdges(t *testing.T) {
	h := newHarness(t, cfgSmall())
	h.imp("a", base)
	h.imp("b", base)
	h.imp("c", base)
	// A click exactly at the window's end counts.
	h.click("a", base+10_000)
	h.expect("click at the edge", h.takeExamples(), []string{"click a 1 0"})
	// The clicks' watermark is now exactly b's window end: b stays open,
	// and a click for b at the edge still counts.
	h.click("b", base+10_000)
	h.expect("second click at the edge", h.takeExamples(), []string{"click b 1 0"})
	// One ms later the watermark passes c's window: c is a negative, and
	// a click 1 ms beyond the window is late.
	h.click("c", base+10_001)
	h.expect("window closed", h.takeExamples(), []string{"negative c 0 0"})
	h.expect("late click", h.takeDead(), []string{ReasonLateClick})
	// A click beyond the window for an impression still pending (the
	// watermark lags by Lateness) is late too.
	cfg := cfgSmall()
	cfg.Lateness = 5 * time.Second
	h = newHarness(t, cfg)
	h.imp("d", base)
	h.click("d", base+10_001)
	h.expect("click beyond the window", h.takeDead(), []string{ReasonLateClick})
	h.expect("d still pending", h.takeExamples(), nil)
	h.click("x", base+20_000) // unknown id: waits for its impression
	h.expect("d closes", h.takeExamples(), []string{"negative d 0 0"})
}

func TestConversionWindowEdges(t *testing.T) {
	for _, emit := range []string{EmitClick, EmitLabel} {
		t.Run(emit, func(t *testing.T) {
			cfg := cfgSmall()
			cfg.Emit = emit
			h := newHarness(t, cfg)
			h.imp("a", base)
			h.imp("b", base)
			h.imp("c", base)
			h.click("a", base+1000)
			h.click("b", base+1000)
			h.click("c", base+1000)
			wantClicks := []string{"click a 1 0", "click b 1 0", "click c 1 0"}
			if emit == EmitLabel {
				wantClicks = nil
			}
			h.expect("clicks", h.takeExamples(), wantClicks)
			h.conv("a", base+101_000) // exactly at the conversion window's end
			h.conv("b", base+101_001) // 1 ms beyond: late, and b's and c's windows close
			want := []string{"conversion a 1 1"}
			if emit == EmitLabel {
				want = []string{"final a 1 1", "final b 1 0", "final c 1 0"}
			}
			h.expect("conversions", h.takeExamples(), want)
			h.expect("late conversion", h.takeDead(), []string{ReasonLateConversion})
			h.conv("c", base+101_000)
			h.expect("after the window", h.takeDead(), []string{ReasonLateConversion})
			h.conv("a", base+101_002)
			h.expect("duplicate", h.takeDead(), []string{ReasonDuplicateConversion})
		})
	}
}

func TestOutOfOrderAcrossTopics(t *testing.T) {
	for _, emit := range []string{EmitClick, EmitLabel} {
		t.Run(emit, func(t *testing.T) {
			cfg := cfgSmall()
			cfg.Emit = emit
			h := newHarness(t, cfg)
			// The click and the conversion come before the impression.
			h.conv("a", base+5000)
			h.click("a", base+2000)
			h.expect("nothing yet", h.takeExamples(), nil)
			h.imp("a", base)
			want := []string{"click a 1 0", "conversion a 1 1"}
			if emit == EmitLabel {
				want = []string{"final a 1 1"}
			}
			h.expect("all at the impression", h.takeExamples(), want)
			// A conversion before its click, both after the impression.
			h.imp("b", base+1000)
			h.conv("b", base+9000)
			h.expect("conversion waits for its click", h.takeExamples(), nil)
			h.click("b", base+3000)
			want = []string{"click b 1 0", "conversion b 1 1"}
			if emit == EmitLabel {
				want = []string{"final b 1 1"}
			}
			h.expect("at the click", h.takeExamples(), want)
			// A click logged slightly before its impression (within
			// MaxSkew) counts; 1.5 s before does not.
			h.imp("c", base+10_000)
			h.imp("d", base+10_000)
			h.click("c", base+9_500)
			h.click("d", base+8_500)
			if emit == EmitClick {
				h.expect("skewed clicks", h.takeExamples(), []string{"click c 1 0"})
			}
			h.expect("skew", h.takeDead(), []string{ReasonClockSkew})
			h.conv("c", base+9_000) // 0.5 s before its click: counts
			want = []string{"conversion c 1 1"}
			if emit == EmitLabel {
				want = []string{"final c 1 1"}
			}
			h.expect("skewed conversion", h.takeExamples(), want)
		})
	}
}

func TestDuplicatesAndOrphans(t *testing.T) {
	h := newHarness(t, cfgSmall())
	h.imp("a", base)
	h.imp("a", base)
	h.click("a", base+100)
	h.click("a", base+200)
	h.conv("a", base+300)
	h.conv("a", base+400)
	h.expect("examples", h.takeExamples(), []string{"click a 1 0", "conversion a 1 1"})
	h.expect("duplicates", h.takeDead(), []string{ReasonDuplicateImpression, ReasonDuplicateClick, ReasonDuplicateConversion})
	// Duplicates of an id held before its impression.
	h.click("b", base+500)
	h.click("b", base+500)
	h.conv("b", base+600)
	h.conv("b", base+700)
	h.expect("held duplicates", h.takeDead(), []string{ReasonDuplicateClick, ReasonDuplicateConversion})
	// b's impression never comes: once the impressions' watermark passes
	// the click's time + MaxSkew, both are orphans.
	h.imp("c", base+1500)
	h.expect("not yet", h.takeDead(), nil)
	h.imp("d", base+1501)
	h.expect("orphans", h.takeDead(), []string{ReasonOrphanClick, ReasonOrphanConversion})
	// Now an unknown id behind the watermark is an orphan at once.
	h.click("e", base+100)
	h.conv("f", base+100)
	h.expect("immediate orphans", h.takeDead(), []string{ReasonOrphanClick, ReasonOrphanConversion})
	// A conversion for an impression without a click: held while the
	// click window is open, dropped when it closes.
	h.conv("c", base+2000)
	h.click("z", base+11_501) // moves the clicks' watermark past c's window
	h.expect("c closes", h.takeExamples(), []string{"negative c 0 0"})
	h.expect("conversion without click", h.takeDead(), []string{ReasonConversionWithoutClick})
	h.conv("d", base+12_000) // d's window ends exactly at the watermark: still open
	h.click("y", base+11_502)
	h.expect("d closes", h.takeExamples(), []string{"negative d 0 0"})
	h.expect("d held conversion", h.takeDead(), []string{ReasonConversionWithoutClick})
	h.conv("d", base+12_001)
	h.expect("conversion for a closed impression", h.takeDead(), []string{ReasonConversionWithoutClick})
	// A duplicate impression of a closed one (a tombstone) is a duplicate.
	h.imp("d", base+1501)
	h.expect("duplicate of a closed impression", h.takeDead(), []string{ReasonDuplicateImpression})
}

func TestBadMessages(t *testing.T) {
	h := newHarness(t, cfgSmall())
	h.send(Impressions, 0, []byte(`{"impression_id":"a"`))
	h.send(Impressions, 0, []byte(`{"ts_ms":123}`))
	h.send(Clicks, 0, []byte(`{"impression_id":"a","ts_ms":"soon"}`))
	h.send(Clicks, 0, []byte(`{"impression_id":"a","ts_ms":0}`))
	future := t0.Add(2 * time.Hour).UnixMilli()
	h.send(Clicks, 0, actMsg("a", future))
	h.expect("reasons", h.takeDead(), []string{"bad_json", "missing_field", "wrong_type", ReasonBadTime, ReasonFuture})
	// A future event does not move the watermark.
	if w := h.j.Stats().Watermarks[Clicks]; w != math.MinInt64 {
		t.Errorf("clicks' watermark %d after bad events only", w)
	}
	// Numeric ids work like their text.
	h.send(Impressions, 0, []byte(`{"impression_id":42,"ts_ms":1704067200000}`))
	h.send(Clicks, 0, []byte(`{"impression_id":"42","ts_ms":1704067201000}`))
	if len(h.ex) != 1 || h.ex[0].ID != HashID("42") || !h.ex[0].Click {
		t.Errorf("numeric id: %+v", h.ex)
	}
	if s := h.j.Stats(); s.DeadLetters["bad_json"] != 1 || s.Messages[Clicks] != 4 {
		t.Errorf("stats %+v", s)
	}
}

func TestLateImpression(t *testing.T) {
	cfg := cfgSmall()
	cfg.Lateness = 2 * time.Second
	h := newHarness(t, cfg)
	h.imp("a", base+10_000)
	h.imp("b", base+8_000) // 2 s out of order: within Lateness
	h.imp("c", base+7_999) // 1 ms more: behind the watermark
	h.expect("late", h.takeDead(), []string{ReasonLateImpression})
	if s := h.j.Stats(); s.Pending != 2 {
		t.Errorf("%d pending, want 2", s.Pending)
	}
}

// TestImpressionsBehindClicks: when the impressions lag behind the clicks
// (the clicks' watermark already passed their windows), their clicks wait
// for them and they are decided at once.
func TestImpressionsBehindClicks(t *testing.T) {
	h := newHarness(t, cfgSmall())
	h.click("a", base+1000)
	h.click("z", base+60_000)
	h.imp("a", base)
	h.imp("b", base)
	h.expect("decided on arrival", h.takeExamples(), []string{"click a 1 0", "negative b 0 0"})
}

func TestIdlePartition(t *testing.T) {
	cfg := cfgSmall()
	cfg.IdleTimeout = 10 * time.Second
	h := newHarness(t, cfg)
	if err := h.j.Assign(Clicks, []int{0, 1}); err != nil {
		t.Fatal(err)
	}
	h.imp("a", base)
	h.advance(5 * time.Second)
	h.send(Clicks, 0, actMsg("x", base+60_000))
	// Partition 1 of clicks delivered nothing: it holds the watermark.
	h.expect("held by partition 1", h.takeExamples(), nil)
	if s := h.j.Stats(); s.Watermarks[Clicks] != math.MinInt64 || s.IdlePartitions[Clicks] != 0 {
		t.Errorf("stats %+v", s)
	}
	// After IdleTimeout it is idle and leaves the minimum.
	h.advance(6 * time.Second)
	h.expect("closed once partition 1 is idle", h.takeExamples(), []string{"negative a 0 0"})
	if s := h.j.Stats(); s.IdlePartitions[Clicks] != 1 || s.Watermarks[Clicks] != base+60_000 {
		t.Errorf("stats %+v", s)
	}
	// It comes back with a click for a: late.
	h.send(Clicks, 1, actMsg("a", base+5000))
	h.expect("late after idleness", h.takeDead(), []string{ReasonLateClick})
	if s := h.j.Stats(); s.IdlePartitions[Clicks] != 0 {
		t.Errorf("partition 1 still idle: %+v", s)
	}
}

// TestIdleTopic: when the whole clicks topic is silent, impressions close
// by the impressions' progress, so the state does not grow without limit.
func TestIdleTopic(t *testing.T) {
	cfg := cfgSmall()
	cfg.IdleTimeout = 10 * time.Second
	h := newHarness(t, cfg)
	h.imp("a", base)
	h.imp("b", base+5_000)
	h.expect("the clicks topic may just be slow", h.takeExamples(), nil)
	h.advance(11 * time.Second) // the clicks topic counts as idle now
	h.imp("c", base+20_000)     // but the impressions are not
	h.expect("closed by the impressions' watermark", h.takeExamples(), []string{"negative a 0 0", "negative b 0 0"})
}

func TestSkippedOffsets(t *testing.T) {
	h := newHarness(t, cfgSmall())
	m := Message{Topic: Impressions, Partition: 3, Offset: 10, Value: impMsg("a", base)}
	h.add(m)
	h.add(m, Message{Topic: Impressions, Partition: 3, Offset: 9, Value: impMsg("b", base)})
	if s := h.j.Stats(); s.Skipped[Impressions] != 2 || s.Messages[Impressions] != 1 || s.Pending != 1 {
		t.Errorf("stats %+v", s)
	}
	if o := h.j.Offsets(Impressions); len(o) != 1 || o[3] != 11 {
		t.Errorf("offsets %v", o)
	}
	if err := h.j.Add(&h.out, []Message{{Topic: 7}}, t0); err == nil {
		t.Error("unknown topic accepted")
	}
	if err := h.j.SetOffsets(Clicks, map[int]int64{0: 5}); err != nil {
		t.Fatal(err)
	}
	h.add(Message{Topic: Clicks, Partition: 0, Offset: 4, Value: actMsg("a", base+1)})
	h.expect("below SetOffsets", h.takeExamples(), nil)
}

func TestStateCap(t *testing.T) {
	pad := strings.Repeat("x", 2000)
	msgAt := func(i int, ts int64) []byte {
		return fmt.Appendf(nil, `{"impression_id":"i%04d","ts_ms":%d,"pad":"%s"}`, i, ts, pad)
	}
	msg := func(i int) []byte { return msgAt(i, base+int64(i)) }
	L := int64(len(msg(0)))
	for _, emit := range []string{EmitClick, EmitLabel} {
		t.Run(emit, func(t *testing.T) {
			cfg := cfgSmall()
			cfg.Emit = emit
			cfg.MaxStateBytes = 10 * (L + entryOverhead)
			h := newHarness(t, cfg)
			// Hold the clicks' watermark so nothing closes by itself.
			if err := h.j.Assign(Clicks, []int{0}); err != nil {
				t.Fatal(err)
			}
			for n := 1; n <= 30; n++ {
				h.send(Impressions, 0, msg(n-1))
				// k evicted impressions leave k tombstones (entryOverhead
				// each, and not evictable while their window is open): the
				// fewest k with (n-k)(L+overhead) + k·overhead <= cap.
				k := max(0, (int64(n)*(L+entryOverhead)-cfg.MaxStateBytes+L-1)/L)
				s := h.j.Stats()
				if s.EvictedPending != k || s.Pending != int64(n)-k || s.Tombstones != k || s.StateBytes > cfg.MaxStateBytes {
					t.Fatalf("after %d impressions: %+v; want %d evicted", n, s, k)
				}
			}
			ex := h.takeExamples()
			for i, e := range ex {
				if want := fmt.Sprintf("negative i%04d 0 0", i); e != want {
					t.Fatalf("eviction %d: %s, want %s (oldest first)", i, e, want)
				}
			}
			for _, e := range h.ex {
				if !e.Evicted {
					t.Errorf("example %+v not flagged as evicted", e)
				}
			}
			// A click for an evicted impression is late.
			h.click("i0000", base+100)
			h.expect("click of an evicted impression", h.takeDead(), []string{ReasonLateClick})
		})
	}
	// Tombstones whose window the watermark closed are forgotten first.
	cfg := cfgSmall()
	cfg.Retention = time.Hour
	cfg.MaxStateBytes = 5 * (L + entryOverhead)
	h := newHarness(t, cfg)
	for i := range 4 {
		h.send(Impressions, 0, msg(i))
	}
	h.click("z", base+20_000) // closes the four windows: four tombstones
	if s := h.j.Stats(); s.Tombstones != 4 || s.EvictedTombstones != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Five pending impressions, the held click of z and the tombstones
	// exceed the cap: the four tombstones go first, then one impression.
	for i := 4; i < 9; i++ {
		h.send(Impressions, 0, msgAt(i, base+15_000+int64(i)))
		if s := h.j.Stats(); s.EvictedPending > 0 && s.EvictedTombstones < 4 {
			t.Fatalf("stats %+v: an impression evicted before the closed tombstones", s)
		}
	}
	if s := h.j.Stats(); s.EvictedTombstones != 4 || s.EvictedPending != 1 || s.Tombstones != 1 || s.StateBytes > cfg.MaxStateBytes {
		t.Errorf("stats %+v", s)
	}
}

func TestAppendLabelled(t *testing.T) {
	members := []byte(`"click":1,"conversion":0`)
	for in, want := range map[string]string{
		`{"a":1}`:         `{"a":1,"click":1,"conversion":0}`,
		"{\"a\":1 }\n\t ": `{"a":1,"click":1,"conversion":0}`,
		`{}`:              `{"click":1,"conversion":0}`,
		"{ \n}":           `{"click":1,"conversion":0}`,
		`{"click":0}`:     `{"click":0,"click":1,"conversion":0}`,
	} {
		if got := appendLabelled(nil, []byte(in), members); string(got) != want {
			t.Errorf("%q: got %s, want %s", in, got, want)
		}
	}
}

func TestConfig(t *testing.T) {
	c, err := ParseConfig([]byte("click_window: 30m\nconversion_window: 7d\nemit: label\nlateness: 1d12h\nmax_state_bytes: 1000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClickWindow != 30*time.Minute || c.ConversionWindow != 7*24*time.Hour || c.Emit != EmitLabel ||
		c.Lateness != 36*time.Hour || c.MaxStateBytes != 1000 || c.Retention != 30*time.Minute || c.IDField != "impression_id" {
		t.Errorf("parsed %+v", c)
	}
	if c, err := ParseConfig(nil); err != nil || c.ClickWindow != DefaultClickWindow || c.Correction != CorrectionNone {
		t.Errorf("empty section: %+v, %v", c, err)
	}
	for _, bad := range []string{
		"click_window: 30x", "clik_window: 30m", "emit: later", "correction: fnw\nemit: label",
		"correction: esdfm", "click_label: ts_ms", "max_state_bytes: -1", "conversion_window: -1d",
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "1d12h": 36 * time.Hour, "90s": 90 * time.Second, "-2d": -48 * time.Hour, "0d": 0} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "1.5d", "xd", "7d-1h", "1dd"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestParseSpecSection(t *testing.T) {
	spec := gen.SpecYAML(100, 100) + gen.StreamsJoinYAML(0.01)
	c, ok, err := ParseSpecSection([]byte(spec))
	if err != nil || !ok {
		t.Fatalf("%v %v", ok, err)
	}
	// The generated section holds every generated delay at its scale.
	if c.ClickWindow != 12*time.Second || c.ConversionWindow != time.Duration(math.Ceil(gen.MaxConversionDelay.Seconds()*0.01))*time.Second ||
		c.Emit != EmitClick || c.Correction != CorrectionFNW {
		t.Errorf("parsed %+v", c)
	}
	if c, ok, err := ParseSpecSection([]byte(gen.SpecYAML(100, 100))); ok || err != nil || c.ClickWindow != 0 {
		t.Errorf("no join section: %+v %v %v", c, ok, err)
	}
	if _, _, err := ParseSpecSection([]byte("fields: []\njoin:\n  click_windw: 3s\n")); err == nil || !strings.Contains(err.Error(), "from line 3") {
		t.Errorf("a bad section: %v", err)
	}
}

func TestStatsAreSafeForConcurrentUse(t *testing.T) {
	h := newHarness(t, cfgSmall())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			_ = h.j.Stats()
		}
	}()
	for i := range 200 {
		h.imp(fmt.Sprint(i), base+int64(i))
	}
	<-done
	if p := h.j.Stats().Pending; p != 200 {
		t.Errorf("pending %d", p)
	}
}
