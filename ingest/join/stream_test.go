package join

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/onestone/onestone/internal/gen"
)

// genStreams is a generated stream as partitioned messages, in log order.
type genStreams struct {
	msgs  []Message
	truth []gen.Truth
	sum   gen.StreamsSummary
	parts int
}

// generate draws the streams of cfg and spreads each topic over parts
// partitions by key, as a Kafka producer keyed by user id does. Under the
// race detector it draws an eighth of the impressions.
func generate(t testing.TB, cfg gen.StreamsConfig, parts int) *genStreams {
	t.Helper()
	if raceEnabled {
		cfg.Impressions /= 8
	}
	s, err := gen.NewStreams(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := &genStreams{parts: parts}
	var off [3][]int64
	for i := range off {
		off[i] = make([]int64, parts)
	}
	for {
		ev, ok := s.Next()
		if !ok {
			break
		}
		h := fnv.New32a()
		h.Write(ev.Key)
		p := int(h.Sum32() % uint32(parts))
		tp := Topic(ev.Topic)
		g.msgs = append(g.msgs, Message{Topic: tp, Partition: p, Offset: off[tp][p], Key: ev.Key, Value: ev.Value})
		off[tp][p]++
	}
	g.truth = s.DrainTruth(nil)
	g.sum = s.Summary()
	return g
}

// shuffled returns the messages in a random interleaving that keeps each
// partition's order.
func (g *genStreams) shuffled(seed uint64) []Message {
	r := rand.New(rand.NewPCG(seed, seed))
	var lanes [][]Message
	idx := map[[2]int]int{}
	for _, m := range g.msgs {
		k := [2]int{int(m.Topic), m.Partition}
		i, ok := idx[k]
		if !ok {
			i = len(lanes)
			idx[k] = i
			lanes = append(lanes, nil)
		}
		lanes[i] = append(lanes[i], m)
	}
	out := make([]Message, 0, len(g.msgs))
	for len(lanes) > 0 {
		i := r.IntN(len(lanes))
		n := min(len(lanes[i]), 1+r.IntN(300)) // runs of up to 300 messages
		out = append(out, lanes[i][:n]...)
		lanes[i] = lanes[i][n:]
		if len(lanes[i]) == 0 {
			lanes = slices.Delete(lanes, i, i+1)
		}
	}
	return out
}

// result is what a join emitted, copied.
type result struct {
	ex   []Example
	dead map[string]int64
	dls  []string
}

// run feeds msgs in batches of up to batch messages and finishes.
func run(t testing.TB, j *Join, msgs []Message, batch int, finish bool) *result {
	t.Helper()
	res := &result{dead: map[string]int64{}}
	var out Output
	take := func() {
		for _, e := range out.Examples {
			e.Value = bytes.Clone(e.Value)
			res.ex = append(res.ex, e)
		}
		for _, d := range out.DeadLetters {
			res.dead[d.Reason]++
			res.dls = append(res.dls, fmt.Sprintf("%s %s %d %d %s", d.Reason, d.Topic, d.Partition, d.Offset, d.Value))
		}
		out.Reset()
	}
	for lo := 0; lo < len(msgs); lo += batch {
		if err := j.Add(&out, msgs[lo:min(lo+batch, len(msgs))], t0); err != nil {
			t.Fatal(err)
		}
		take()
	}
	if finish {
		j.Finish(&out)
		take()
	}
	return res
}

func newJoin(t testing.TB, cfg Config, parts int) *Join {
	t.Helper()
	j, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for tp := range numTopics {
		ps := make([]int, parts)
		for i := range ps {
			ps[i] = i
		}
		if err := j.Assign(tp, ps); err != nil {
			t.Fatal(err)
		}
	}
	return j
}

// joined is the labels the join gave one impression.
type joined struct {
	rows              []Kind
	click, conversion bool
}

// checkAgainstTruth checks the examples against the truth: every logged
// impression is emitted once (plus its re-sent conversion with EmitClick),
// and every label equals the truth's except where the truth's delay
// exceeds a window. It returns how many labels differ from the truth.
func checkAgainstTruth(t *testing.T, g *genStreams, res *result, cfg Config) (clickDiffs, convDiffs int) {
	t.Helper()
	cfg = cfg.withDefaults()
	byID := map[uint64]*joined{}
	for _, e := range res.ex {
		jd := byID[e.ID]
		if jd == nil {
			jd = &joined{}
			byID[e.ID] = jd
		}
		jd.rows = append(jd.rows, e.Kind)
		jd.click = jd.click || e.Click
		jd.conversion = jd.conversion || e.Conversion
	}
	clickW, convW := cfg.ClickWindow.Milliseconds(), cfg.ConversionWindow.Milliseconds()
	logged := 0
	for _, tr := range g.truth {
		jd := byID[HashID(tr.ImpressionID)]
		if !tr.Logged {
			if jd != nil {
				t.Fatalf("unlogged impression %s was emitted: %v", tr.ImpressionID, jd.rows)
			}
			continue
		}
		logged++
		if jd == nil {
			t.Fatalf("impression %s was never emitted", tr.ImpressionID)
		}
		inClick := tr.Click && tr.ClickTime-tr.Time <= clickW
		inConv := inClick && tr.Conversion && tr.ConversionTime-tr.ClickTime <= convW
		var want []Kind
		switch {
		case !inClick:
			want = []Kind{Negative}
		case cfg.Emit == EmitLabel:
			want = []Kind{Final}
		case inConv:
			want = []Kind{Click, Conversion}
		default:
			want = []Kind{Click}
		}
		if !slices.Equal(jd.rows, want) || jd.click != inClick || jd.conversion != inConv {
			t.Fatalf("impression %s (truth click %v after %d ms, conversion %v after %d ms): rows %v click %v conversion %v; want rows %v click %v conversion %v",
				tr.ImpressionID, tr.Click, tr.ClickTime-tr.Time, tr.Conversion, tr.ConversionTime-tr.ClickTime,
				jd.rows, jd.click, jd.conversion, want, inClick, inConv)
		}
		if jd.click != tr.Click {
			clickDiffs++
		}
		if jd.conversion != tr.Conversion {
			convDiffs++
		}
	}
	if len(byID) != logged {
		t.Fatalf("%d ids emitted, %d impressions logged", len(byID), logged)
	}
	// Every message is in exactly one place: an impression, click or
	// conversion that made an example, or a dead letter.
	var applied int64
	for _, e := range res.ex {
		switch e.Kind {
		case Negative:
			applied++
		case Click:
			applied += 2
		case Conversion:
			applied++
		case Final:
			applied += 2
			if e.Conversion {
				applied++
			}
		}
	}
	var dead int64
	for _, n := range res.dead {
		dead += n
	}
	if applied+dead != int64(len(g.msgs)) {
		t.Errorf("%d messages: %d made examples, %d dead letters", len(g.msgs), applied, dead)
	}
	return clickDiffs, convDiffs
}

// streamCfg are windows longer than every generated delay at scale.
func streamCfg(scale float64, emit string) Config {
	sc := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	return Config{
		Emit:             emit,
		ClickWindow:      sc(gen.MaxClickDelay) + time.Millisecond,
		ConversionWindow: sc(gen.MaxConversionDelay+gen.MaxClickDelay+gen.MaxEarlyClick) + time.Millisecond,
		Lateness:         sc(gen.MaxRetryDelay) + time.Millisecond,
		MaxSkew:          sc(gen.MaxEarlyClick) + time.Millisecond,
	}
}

// TestLabelsMatchTheTruth: with windows longer than every generated delay
// the joined labels equal the truth, whatever the interleaving of the
// partitions, and every bad message is accounted for.
func TestLabelsMatchTheTruth(t *testing.T) {
	const scale = 0.001
	g := generate(t, gen.StreamsConfig{Impressions: 40_000, Users: 800, Items: 800, Seed: 11, TimeScale: scale,
		Duplicates: 0.01, EarlyClicks: 0.05, Unlogged: 0.01}, 3)
	for _, emit := range []string{EmitClick, EmitLabel} {
		for i, msgs := range [][]Message{g.msgs, g.shuffled(1), g.shuffled(2)} {
			t.Run(fmt.Sprintf("%s/interleaving%d", emit, i), func(t *testing.T) {
				cfg := streamCfg(scale, emit)
				j := newJoin(t, cfg, g.parts)
				defer j.Close()
				res := run(t, j, msgs, 997, true)
				if c, v := checkAgainstTruth(t, g, res, cfg); c != 0 || v != 0 {
					t.Errorf("%d click and %d conversion labels differ from the truth", c, v)
				}
				want := map[string]int64{
					ReasonOrphanClick: g.sum.OrphanClicks, ReasonOrphanConversion: g.sum.OrphanConversions,
					ReasonDuplicateImpression: g.sum.Duplicates[0], ReasonDuplicateClick: g.sum.Duplicates[1],
					ReasonDuplicateConversion: g.sum.Duplicates[2],
				}
				for r, n := range want {
					if n == 0 {
						delete(want, r)
					}
				}
				if fmt.Sprint(res.dead) != fmt.Sprint(want) {
					t.Errorf("dead letters %v, want %v", res.dead, want)
				}
				if s := j.Stats(); s.Pending+s.Clicked+s.Waiting+s.Tombstones != 0 || s.StateBytes != 0 {
					t.Errorf("state left after Finish: %+v", s)
				}
			})
		}
	}
}

// TestShortWindowsExplainEveryDifference: with windows shorter than many
// delays, every label that differs from the truth is one whose delay
// exceeds its window (checkAgainstTruth fails otherwise).
func TestShortWindowsExplainEveryDifference(t *testing.T) {
	const scale = 0.01
	g := generate(t, gen.StreamsConfig{Impressions: 40_000, Users: 800, Items: 800, Seed: 12, TimeScale: scale}, 2)
	for _, emit := range []string{EmitClick, EmitLabel} {
		t.Run(emit, func(t *testing.T) {
			cfg := streamCfg(scale, emit)
			cfg.ClickWindow = 150 * time.Millisecond // 15 s unscaled: about 1/3 of the clicks come later
			cfg.ConversionWindow = 36 * time.Second  // 1 h unscaled: most conversions come later
			cfg.Retention = time.Hour                // so late events are told from orphans
			j := newJoin(t, cfg, g.parts)
			defer j.Close()
			res := run(t, j, g.shuffled(3), 512, true)
			c, v := checkAgainstTruth(t, g, res, cfg)
			if lo := len(g.truth) / 130; c < lo || v < lo/3 {
				t.Errorf("only %d click and %d conversion labels differ: the windows do not cut", c, v)
			}
			for r := range res.dead {
				switch r {
				case ReasonLateClick, ReasonLateConversion, ReasonConversionWithoutClick, ReasonOrphanClick,
					ReasonOrphanConversion, ReasonDuplicateImpression, ReasonDuplicateClick, ReasonDuplicateConversion:
				default:
					t.Errorf("unexpected dead letters %q: %v", r, res.dead)
				}
			}
			if res.dead[ReasonLateClick] == 0 || res.dead[ReasonLateConversion] == 0 {
				t.Errorf("dead letters %v: want late clicks and conversions", res.dead)
			}
		})
	}
}

// TestCheckpointRestoreIsExact: a join checkpointed and restored at points
// of a stream emits exactly what an uninterrupted one does.
func TestCheckpointRestoreIsExact(t *testing.T) {
	const scale = 0.001
	g := generate(t, gen.StreamsConfig{Impressions: 20_000, Users: 500, Items: 500, Seed: 13, TimeScale: scale,
		Duplicates: 0.01, EarlyClicks: 0.05, Unlogged: 0.01}, 3)
	msgs := g.shuffled(4)
	for _, emit := range []string{EmitClick, EmitLabel} {
		t.Run(emit, func(t *testing.T) {
			cfg := streamCfg(scale, emit)
			cfg.ClickWindow = 150 * time.Millisecond // some late clicks and conversions too
			cfg.ConversionWindow = 20 * time.Second
			whole := newJoin(t, cfg, g.parts)
			defer whole.Close()
			want := run(t, whole, msgs, 701, true)

			j := newJoin(t, cfg, g.parts)
			got := &result{dead: map[string]int64{}}
			n := len(msgs)
			cuts := []int{n / 10, n / 3, n/3 + 701, n * 4 / 5, n}
			lo := 0
			for k, hi := range cuts {
				r := run(t, j, msgs[lo:hi], 701, k == len(cuts)-1)
				got.ex = append(got.ex, r.ex...)
				got.dls = append(got.dls, r.dls...)
				lo = hi
				if k == len(cuts)-1 {
					break
				}
				var ck bytes.Buffer
				if _, err := j.WriteTo(&ck); err != nil {
					t.Fatal(err)
				}
				offsets := [3]map[int]int64{j.Offsets(Impressions), j.Offsets(Clicks), j.Offsets(Conversions)}
				stats := j.Stats()
				j.Close()
				j = newJoin(t, cfg, g.parts)
				if _, err := j.ReadFrom(bytes.NewReader(ck.Bytes())); err != nil {
					t.Fatal(err)
				}
				// The restored state writes the same checkpoint, holds
				// the same offsets and the same counts.
				var again bytes.Buffer
				if _, err := j.WriteTo(&again); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ck.Bytes(), again.Bytes()) {
					t.Fatalf("cut %d: a restored state writes a different checkpoint", k)
				}
				for tp := range numTopics {
					if fmt.Sprint(j.Offsets(tp)) != fmt.Sprint(offsets[tp]) {
						t.Fatalf("cut %d: %s offsets %v, want %v", k, tp, j.Offsets(tp), offsets[tp])
					}
				}
				s := j.Stats()
				s.ArenaBytes = stats.ArenaBytes // chunks: the restored arenas are packed
				if fmt.Sprint(s) != fmt.Sprint(stats) {
					t.Fatalf("cut %d: restored stats %+v, want %+v", k, s, stats)
				}
			}
			j.Close()
			if len(got.ex) != len(want.ex) {
				t.Fatalf("%d examples with restores, %d without", len(got.ex), len(want.ex))
			}
			for i := range want.ex {
				a, b := want.ex[i], got.ex[i]
				if a.Kind != b.Kind || a.ID != b.ID || a.Click != b.Click || a.Conversion != b.Conversion ||
					a.ImpressionTime != b.ImpressionTime || a.ClickTime != b.ClickTime || a.ConversionTime != b.ConversionTime ||
					a.EmitTime != b.EmitTime || !bytes.Equal(a.Value, b.Value) {
					t.Fatalf("example %d: %+v with restores, %+v without", i, b, a)
				}
			}
			if !slices.Equal(got.dls, want.dls) {
				t.Fatalf("dead letters differ with restores")
			}
		})
	}
}

func TestReadFromRejects(t *testing.T) {
	cfg := cfgSmall()
	h := newHarness(t, cfg)
	h.imp("a", base)
	h.click("b", base+10)
	var ck bytes.Buffer
	if _, err := h.j.WriteTo(&ck); err != nil {
		t.Fatal(err)
	}
	if _, err := h.j.ReadFrom(bytes.NewReader(ck.Bytes())); err == nil {
		t.Error("ReadFrom into a join that consumed messages")
	}
	fresh := func(c Config) *Join {
		j, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(j.Close)
		return j
	}
	b := ck.Bytes()
	for name, data := range map[string][]byte{
		"empty":     nil,
		"truncated": b[:len(b)-9],
		"flipped":   append(append(bytes.Clone(b[:40]), b[40]^1), b[41:]...),
		"magic":     append([]byte("x"), b[1:]...),
	} {
		if _, err := fresh(cfg).ReadFrom(bytes.NewReader(data)); err == nil {
			t.Errorf("%s checkpoint accepted", name)
		}
	}
	other := cfg
	other.Emit = EmitLabel
	if _, err := fresh(other).ReadFrom(bytes.NewReader(b)); err == nil {
		t.Error("checkpoint of another emission mode accepted")
	}
	// Wider windows are fine: deadlines are recomputed.
	wider := cfg
	wider.ClickWindow = time.Hour
	j := fresh(wider)
	if _, err := j.ReadFrom(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if s := j.Stats(); s.Pending != 1 || s.Waiting != 1 || s.Messages[Clicks] != 1 {
		t.Errorf("restored stats %+v", s)
	}
}

// TestStateBytesMatchesHeap checks the state accounting against the heap
// the pending impressions really take.
func TestStateBytesMatchesHeap(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes the heap")
	}
	g := generate(t, gen.StreamsConfig{Impressions: 100_000, Users: 2000, Items: 2000, Seed: 14}, 4)
	var imps []Message
	for _, m := range g.msgs {
		if m.Topic == Impressions {
			imps = append(imps, m)
		}
	}
	perPending, accounted := pendingMemory(t, imps)
	t.Logf("%d pending impressions: %.0f B each on the heap, %.0f B accounted", len(imps), perPending, accounted)
	if r := accounted / perPending; r < 0.8 || r > 1.25 {
		t.Errorf("accounting %.0f B per pending impression, heap %.0f B", accounted, perPending)
	}
}

// pendingMemory adds impressions that all stay pending (the clicks'
// watermark is held) and returns the heap and the accounted bytes per
// pending impression.
func pendingMemory(t testing.TB, imps []Message) (heap, accounted float64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	j := newJoin(t, Config{ClickWindow: 24 * time.Hour}, 1) // clicks partition 0 holds the watermark
	var out Output
	for lo := 0; lo < len(imps); lo += 4096 {
		out.Reset()
		if err := j.Add(&out, imps[lo:min(lo+4096, len(imps))], t0); err != nil {
			t.Fatal(err)
		}
	}
	out = Output{}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	s := j.Stats()
	if s.Pending != int64(len(imps))-s.DeadLetters[ReasonDuplicateImpression] {
		t.Fatalf("%d pending of %d impressions", s.Pending, len(imps))
	}
	heap = float64(ms.HeapAlloc-before) / float64(s.Pending)
	accounted = float64(s.StateBytes) / float64(s.Pending)
	runtime.KeepAlive(j)
	j.Close()
	return heap, accounted
}

// TestAddAllocatesPerBatchOnly: in steady state Add allocates per batch
// (the decoded record), not per message.
func TestAddAllocatesPerBatchOnly(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	g := generate(t, gen.StreamsConfig{Impressions: 60_000, Users: 1000, Items: 1000, Seed: 15, TimeScale: 0.001, EarlyClicks: -1, Duplicates: -1, Unlogged: -1}, 2)
	cfg := Config{ClickWindow: 100 * time.Millisecond, ConversionWindow: time.Second, Retention: 100 * time.Millisecond}
	j := newJoin(t, cfg, g.parts)
	defer j.Close()
	var out Output
	warm := len(g.msgs) * 2 / 3
	for lo := 0; lo < warm; lo += 1000 {
		out.Reset()
		if err := j.Add(&out, g.msgs[lo:lo+1000], t0); err != nil {
			t.Fatal(err)
		}
	}
	lo := warm
	allocs := testing.AllocsPerRun(10, func() {
		out.Reset()
		if err := j.Add(&out, g.msgs[lo:lo+1000], t0); err != nil {
			t.Fatal(err)
		}
		lo += 1000
	})
	if allocs > 40 {
		t.Errorf("Add of 1000 messages allocates %v times", allocs)
	}
}
