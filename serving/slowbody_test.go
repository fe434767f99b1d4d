package serving

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// slowClient is a score request sent over a raw TCP connection whose body
// stops halfway, as a client on a slow or stalled network sends it.
type slowClient struct {
	conn net.Conn
	rest []byte
}

// startSlow sends the headers and the first half of body.
func startSlow(t *testing.T, base string, body []byte) *slowClient {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() }) // before the server's shutdown
	half := len(body) / 2
	head := fmt.Sprintf("POST /v1/score HTTP/1.1\r\nHost: onestone\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	return &slowClient{conn: conn, rest: body[half:]}
}

// response reads the server's answer (within 10 s) after sending the rest
// of the body if finish.
func (c *slowClient) response(t *testing.T, finish bool) (int, string) {
	t.Helper()
	defer c.conn.Close()
	if finish {
		if _, err := c.conn.Write(c.rest); err != nil {
			t.Fatal(err)
		}
	}
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c.conn), nil)
	if err != nil {
		t.Fatalf("slow client: reading the response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServerSlowBodiesHoldNoSlot: eight clients whose bodies stall halfway
// do not keep other requests from being scored, with a single in-flight
// slot: a body is read before its request takes a slot. The slow clients
// are then answered as their bodies complete.
func TestServerSlowBodiesHoldNoSlot(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	s, err := NewServer(ServerConfig{Models: root, Poll: -1, Logger: quietLogger(),
		MaxInFlight: 1, MaxQueue: 1, QueueWait: 20 * time.Millisecond, BodyTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, s)
	r := rand.New(rand.NewPCG(3, 4))
	body := testRequest(t, r, 20, "")

	const nslow = 8
	slow := make([]*slowClient, nslow)
	for i := range slow {
		slow[i] = startSlow(t, base, body)
	}
	waitUntil(t, "the server reads the 8 slow bodies", func() bool { return s.reading.Load() == nslow })

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for i := range 20 {
		if code, b, _ := post(t, client, base+"/v1/score", body); code != 200 {
			t.Fatalf("request %d beside 8 slow clients: %d %s", i, code, b)
		}
	}
	// The slow clients were mid-body all along.
	if n := s.reading.Load(); n != nslow {
		t.Fatalf("%d bodies being read after the normal requests, want %d", n, nslow)
	}
	for i, c := range slow {
		if i%2 == 1 {
			c.conn.Close() // gives up
			continue
		}
		if code, b := c.response(t, true); code != 200 {
			t.Errorf("slow client %d after its body completed: %d %s", i, code, b)
		}
	}
	waitUntil(t, "no body is being read", func() bool { return s.reading.Load() == 0 })
}

// TestServerBodyTimeout: a body that has not arrived within BodyTimeout
// gets 408, and the server goes on serving.
func TestServerBodyTimeout(t *testing.T) {
	root := t.TempDir()
	writeTestBundle(t, root, 1)
	s, err := NewServer(ServerConfig{Models: root, Poll: -1, Logger: quietLogger(), BodyTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, s)
	body := testRequest(t, rand.New(rand.NewPCG(5, 6)), 5, "")
	c := startSlow(t, base, body)
	code, b := c.response(t, false)
	if code != http.StatusRequestTimeout || !strings.Contains(b, "not received within 200ms") {
		t.Fatalf("stalled body: %d %s, want 408", code, b)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	if code, b, _ := post(t, client, base+"/v1/score", body); code != 200 {
		t.Fatalf("after the timeout: %d %s", code, b)
	}
	if _, m := get(t, base+"/metrics"); !strings.Contains(string(m), `onestone_http_requests_total{code="408",path="/v1/score"} 1`) {
		t.Errorf("408 not counted:\n%s", grepLines(string(m), "requests_total"))
	}
}
