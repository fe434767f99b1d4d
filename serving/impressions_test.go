package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/onestone/onestone/features"
	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/jsontext"
)

// TestImpressionMessage: the message is the candidate's fields over the
// context's, with the id and time first; the key is the user id's text.
func TestImpressionMessage(t *testing.T) {
	l, err := newImpressionLog(ImpressionLogConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "t"}, quietLogger(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer l.close(context.Background())
	ctx := []byte(`{"user_id":123,"device":"ios","price":1.5,"impression_id":"forged","age":null}`)
	for _, c := range []struct {
		cand, want, key string
	}{
		{`{"item_id":"i\"7","price":2.5}`,
			`{"impression_id":"00000000000000ff","ts_ms":1704067200123,"item_id":"i\"7","price":2.5,"user_id":123,"device":"ios","age":null}`, "123"},
		// A null candidate member takes the context's; the candidate's
		// user id wins (a string: its text without quotes).
		{` { "price" : null , "user_id":"u9", "ts_ms": 5 } `,
			`{"impression_id":"00000000000000ff","ts_ms":1704067200123,"user_id":"u9","device":"ios","price":1.5,"age":null}`, "u9"},
	} {
		var sc jsontext.Scanner
		b, key := l.appendImpression([]byte("xx"), &sc, 0xff, 1704067200123, []byte(c.cand), ctx)
		if key != nil {
			off, n := le32(key[:4]), le32(key[4:])
			key = b[off : off+n]
		}
		if got := string(b[2:]); got != c.want {
			t.Errorf("candidate %s:\n got %s\nwant %s", c.cand, got, c.want)
		}
		if !json.Valid(b[2:]) {
			t.Errorf("invalid JSON %s", b[2:])
		}
		if string(key) != c.key {
			t.Errorf("candidate %s: key %q, want %q", c.cand, key, c.key)
		}
	}
	if got := string(appendHex16(nil, mix64(1))); len(got) != 16 || got == string(appendHex16(nil, mix64(2))) {
		t.Errorf("ids %s", got)
	}
}

// TestServeLogsImpressions: every returned result is logged once, in the
// impression format, under the id the response gives it.
func TestServeLogsImpressions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	broker, err := ingest.StartBroker(ctx, ingest.BrokerConfig{Partitions: 2, Topics: []string{"imps"}})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	s, err := NewServer(ServerConfig{Models: root, Poll: -1, Logger: quietLogger(),
		ImpressionLog: &ImpressionLogConfig{Brokers: broker.Addrs(), Topic: "imps"}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx, ln) }()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	url := "http://" + ln.Addr().String() + "/v1/score"

	// What each impression id must be logged with.
	type shown struct{ user, item string }
	want := map[string]shown{}
	r := rand.New(rand.NewPCG(1, 2))
	start := time.Now().UnixMilli()
	for range 5 {
		body := testRequest(t, r, 7, `,"top_k":4`)
		code, out, _ := post(t, client, url, body)
		if code != 200 {
			t.Fatalf("score: %d %s", code, out)
		}
		var req struct {
			Context    map[string]any   `json:"context"`
			Candidates []map[string]any `json:"candidates"`
		}
		var resp struct {
			Results []struct {
				Index int    `json:"index"`
				ID    string `json:"impression_id"`
			} `json:"results"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &resp); err != nil || len(resp.Results) != 4 {
			t.Fatalf("%v: %s", err, out)
		}
		for _, res := range resp.Results {
			if _, dup := want[res.ID]; dup || len(res.ID) != 16 {
				t.Fatalf("impression id %q (duplicate or malformed)", res.ID)
			}
			want[res.ID] = shown{fmt.Sprint(req.Context["user_id"]), fmt.Sprint(req.Candidates[res.Index]["item_id"])}
		}
	}
	end := time.Now().UnixMilli()
	stop() // shutdown flushes the queue
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := testutilCounter(s, "onestone_impressions_logged_total"); got != 20 {
		t.Errorf("logged %v impressions, want 20", got)
	}

	spec, err := features.ParseSpec(strings.NewReader(testSpec))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := features.NewJSONDecoder(spec.Schema(false), features.JSONConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	got := 0
	for p := range 2 {
		conn, err := kafka.DialLeader(ctx, "tcp", broker.Addrs()[0], "imps", p)
		if err != nil {
			t.Fatal(err)
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last == 0 {
			continue
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: broker.Addrs(), Topic: "imps", Partition: p, MaxWait: 50 * time.Millisecond})
		for {
			m, err := rd.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ev struct {
				ID     string `json:"impression_id"`
				TS     int64  `json:"ts_ms"`
				UserID any    `json:"user_id"`
				ItemID any    `json:"item_id"`
			}
			if err := json.Unmarshal(m.Value, &ev); err != nil {
				t.Fatal(err)
			}
			w, ok := want[ev.ID]
			if !ok {
				t.Fatalf("logged an unknown or repeated impression: %s", m.Value)
			}
			delete(want, ev.ID)
			if fmt.Sprint(ev.UserID) != w.user || fmt.Sprint(ev.ItemID) != w.item || string(m.Key) != w.user || ev.TS < start || ev.TS > end {
				t.Errorf("impression %s (key %s) logged as %s, want user %s item %s", ev.ID, m.Key, m.Value, w.user, w.item)
			}
			// An event of the model's spec, as the stream decodes it.
			if err := dec.Append(m.Value); err != nil {
				t.Errorf("%v: %s", err, m.Value)
			}
			got++
			if m.Offset == last-1 {
				break
			}
		}
		rd.Close()
	}
	if got != 20 || len(want) != 0 {
		t.Errorf("read %d impressions, %d never logged", got, len(want))
	}
}

// TestImpressionLogNeverBlocks: with a broker that accepts connections and
// never answers, requests are served without waiting for it (each far
// below the write timeout), and at shutdown every impression is counted
// as dropped.
func TestImpressionLogNeverBlocks(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := dead.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	const writeTimeout = time.Minute
	s, err := NewServer(ServerConfig{Models: root, Poll: -1, Logger: quietLogger(), ShutdownTimeout: time.Second,
		ImpressionLog: &ImpressionLogConfig{Brokers: []string{dead.Addr().String()}, Topic: "imps", QueueBytes: 8 << 10, WriteTimeout: writeTimeout}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	url := "http://" + ln.Addr().String() + "/v1/score"
	r := rand.New(rand.NewPCG(3, 4))
	const reqs, cands = 20, 10
	for i := range reqs {
		t0 := time.Now()
		code, out, _ := post(t, client, url, testRequest(t, r, cands, ""))
		if code != 200 || !strings.Contains(string(out), `"impression_id":"`) {
			t.Fatalf("request %d: %d %s", i, code, out)
		}
		// A request that waited for the broker would take the write
		// timeout; scoring takes milliseconds (a second under -race on a
		// loaded machine).
		if el := time.Since(t0); el > writeTimeout/6 {
			t.Errorf("request %d took %v", i, el)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var dropped float64
	mfs, _ := s.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() == "onestone_impressions_dropped_total" {
			for _, m := range mf.GetMetric() {
				dropped += m.GetCounter().GetValue()
			}
		}
	}
	logged := testutilCounter(s, "onestone_impressions_logged_total")
	if logged != 0 || dropped != reqs*cands {
		t.Errorf("logged %v, dropped %v; want 0 and %d", logged, dropped, reqs*cands)
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
