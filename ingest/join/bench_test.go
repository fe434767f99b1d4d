package join

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/internal/gen"
)

// benchStreams are 200,000 generated impressions with their clicks and
// conversions (time scale 0.01: conversions within minutes), over 4
// partitions per topic, and the windows that cover every delay.
func benchStreams(b *testing.B) (*genStreams, Config, int64) {
	b.Helper()
	const scale = 0.01
	g := generate(b, gen.StreamsConfig{Impressions: 200_000, Users: 20_000, Items: 20_000, Seed: 21, TimeScale: scale}, 4)
	var imps int64
	for _, m := range g.msgs {
		if m.Topic == Impressions {
			imps++
		}
	}
	return g, streamCfg(scale, EmitClick), imps
}

// BenchmarkJoin is the join alone: every message of the three streams
// through Add in batches of 4096, and Finish; one iteration joins the whole
// stream with a fresh join.
func BenchmarkJoin(b *testing.B) {
	g, cfg, imps := benchStreams(b)
	var out Output
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		j := newJoin(b, cfg, g.parts)
		for lo := 0; lo < len(g.msgs); lo += 4096 {
			out.Reset()
			if err := j.Add(&out, g.msgs[lo:min(lo+4096, len(g.msgs))], t0); err != nil {
				b.Fatal(err)
			}
		}
		out.Reset()
		j.Finish(&out)
		j.Close()
	}
	reportImpressions(b, imps*int64(b.N), cpuTime()-cpu0)
	b.ReportMetric(float64(len(g.msgs)*b.N)/b.Elapsed().Seconds(), "messages/s")
}

// reportImpressions reports impressions per wall second and per CPU
// second (the process's, garbage collection included).
func reportImpressions(b *testing.B, n int64, cpu time.Duration) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "impressions/s")
	if cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "impressions/cpu-s")
	}
}

// BenchmarkJoinTransform is the join followed by what the stream does with
// each batch of examples: decode them with the spec's schema and transform
// them with the generated spec's Transformer (fitted on the examples).
func BenchmarkJoinTransform(b *testing.B) {
	g, cfg, imps := benchStreams(b)
	spec, err := features.ParseSpec(strings.NewReader(gen.SpecYAML(20_000, 20_000)))
	if err != nil {
		b.Fatal(err)
	}
	mem := memory.NewGoAllocator()
	dec, err := features.NewJSONDecoder(spec.Schema(true), features.JSONConfig{Allocator: mem})
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Release()
	// Fit the statistics on the joined examples.
	fit, err := features.NewFitter(spec, features.FitConfig{})
	if err != nil {
		b.Fatal(err)
	}
	j := newJoin(b, cfg, g.parts)
	res := run(b, j, g.msgs, 4096, true)
	j.Close()
	for lo := 0; lo < len(res.ex); lo += 4096 {
		for _, e := range res.ex[lo:min(lo+4096, len(res.ex))] {
			if err := dec.Append(e.Value); err != nil {
				b.Fatal(err)
			}
		}
		rec := dec.NewRecordBatch()
		err := fit.Add(rec)
		rec.Release()
		if err != nil {
			b.Fatal(err)
		}
	}
	stats, err := fit.Finish()
	if err != nil {
		b.Fatal(err)
	}
	tr, err := features.NewTransformer(spec, stats, features.TransformerConfig{Labels: true})
	if err != nil {
		b.Fatal(err)
	}
	var out Output
	var batch features.Batch
	examples := 0
	transform := func() {
		for _, e := range out.Examples {
			if err := dec.Append(e.Value); err != nil {
				b.Fatal(err)
			}
		}
		rec := dec.NewRecordBatch()
		defer rec.Release()
		if err := tr.TransformTo(&batch, rec); err != nil {
			b.Fatal(err)
		}
		examples += batch.Rows
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		j := newJoin(b, cfg, g.parts)
		for lo := 0; lo < len(g.msgs); lo += 4096 {
			out.Reset()
			if err := j.Add(&out, g.msgs[lo:min(lo+4096, len(g.msgs))], t0); err != nil {
				b.Fatal(err)
			}
			transform()
		}
		out.Reset()
		j.Finish(&out)
		transform()
		j.Close()
	}
	reportImpressions(b, imps*int64(b.N), cpuTime()-cpu0)
	b.ReportMetric(float64(examples)/b.Elapsed().Seconds(), "examples/s")
}

// BenchmarkPendingMemory holds 1,000,000 generated impressions pending (no
// window closes) and reports the heap and the accounted state per pending
// impression, and the checkpoint's size and write and read speed.
func BenchmarkPendingMemory(b *testing.B) {
	g := generate(b, gen.StreamsConfig{Impressions: 1_000_000, Seed: 22}, 4)
	var imps []Message
	var msgBytes int
	for _, m := range g.msgs {
		if m.Topic == Impressions {
			imps = append(imps, m)
			msgBytes += len(m.Value)
		}
	}
	g.msgs = nil
	b.ResetTimer()
	var heap, accounted float64
	for range b.N {
		heap, accounted = pendingMemory(b, imps)
	}
	b.ReportMetric(heap, "heap-B/pending")
	b.ReportMetric(accounted, "accounted-B/pending")
	b.ReportMetric(float64(msgBytes)/float64(len(imps)), "message-B")
	b.ReportMetric(heap*1e6/(1<<20), "heap-MiB/1M-pending")
}

// BenchmarkCheckpoint writes the state of 1,000,000 pending impressions to
// memory and reads it back into a new join (MiB/s counts the state once
// per write and read).
func BenchmarkCheckpoint(b *testing.B) {
	g := generate(b, gen.StreamsConfig{Impressions: 1_000_000, Seed: 23}, 4)
	j := newJoin(b, Config{ClickWindow: 24 * time.Hour}, 1)
	defer j.Close()
	var out Output
	for lo := 0; lo < len(g.msgs); lo += 4096 {
		var imps []Message
		for _, m := range g.msgs[lo:min(lo+4096, len(g.msgs))] {
			if m.Topic == Impressions {
				imps = append(imps, m)
			}
		}
		out.Reset()
		if err := j.Add(&out, imps, t0); err != nil {
			b.Fatal(err)
		}
	}
	g.msgs = nil
	var buf bytes.Buffer
	if _, err := j.WriteTo(&buf); err != nil { // sizes the buffer
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		buf.Reset()
		if _, err := j.WriteTo(&buf); err != nil {
			b.Fatal(err)
		}
		r := newJoin(b, Config{ClickWindow: 24 * time.Hour}, 1)
		if _, err := r.ReadFrom(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
	b.ReportMetric(float64(buf.Len())/(1<<20), "MiB")
	b.ReportMetric(float64(buf.Len()*b.N)/(1<<20)/b.Elapsed().Seconds(), "MiB/s")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(buf.Len()*b.N)/(1<<20)/cpu.Seconds(), "MiB/cpu-s")
	}
}
