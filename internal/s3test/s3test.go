// Package s3test gives tests a bucket on a real S3-compatible server: the
// store named by ONESTONE_S3_ENDPOINT, or else the server that
// scripts/s3-server.sh installs (Versity's S3 gateway over a throwaway
// directory), started through that script once per test process, on first
// use, and stopped when the process's tests end.
//
// A package whose tests use it runs them through Main:
//
//	func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }
//
// and each test asks for a prefix of its own with URL (a gocloud.dev/blob
// URL) or Open (the bucket opened on that URL).
//
// Without a server installed the tests fail and say how to install one
// (scripts/s3-server.sh install); ONESTONE_S3_SKIP=1 skips them instead.
// CI installs the server and never sets it.
package s3test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/s3blob" // registers s3:// with blob.OpenBucket
)

// Environment variables the package reads.
const (
	// EnvEndpoint points the tests at an outside S3-compatible store
	// (for example http://127.0.0.1:9000); its credentials come from the
	// AWS SDK's standard chain (AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, or a profile).
	EnvEndpoint = "ONESTONE_S3_ENDPOINT"
	// EnvBucket names the outside store's bucket, which must exist.
	// Default: onestone.
	EnvBucket = "ONESTONE_S3_BUCKET"
	// EnvRegion is the region of requests. Default: us-east-1.
	EnvRegion = "AWS_REGION"
	// EnvSkip, set to 1, skips the tests that need a store when neither
	// EnvEndpoint nor an installed server is there.
	EnvSkip = "ONESTONE_S3_SKIP"
)

// StartTimeout bounds how long Main's server may take to become ready
// (the machine the tests run on may be loaded).
const StartTimeout = 3 * time.Minute

// Store is an S3-compatible server and the bucket the tests use on it.
type Store struct {
	Endpoint string // http://host:port
	Region   string
	Bucket   string
}

// URL returns the gocloud.dev/blob URL of the bucket, limited to keys
// under prefix when prefix is not empty. The credentials are not part of
// it: the AWS SDK reads them from the environment.
func (s Store) URL(prefix string) string {
	q := url.Values{}
	q.Set("endpoint", s.Endpoint)
	q.Set("region", s.Region)
	q.Set("use_path_style", "true")
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	return "s3://" + s.Bucket + "?" + q.Encode()
}

var (
	mainRan atomic.Bool
	seq     atomic.Int64

	startOnce sync.Once
	store     Store
	startErr  error
	server    *exec.Cmd // nil unless this process started the server
	serverLog bytes.Buffer
)

// Main runs the tests of m and then stops the server if one was started
// for them. It returns m.Run's exit code.
func Main(m *testing.M) int {
	mainRan.Store(true)
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Open returns the store for t: the one named by EnvEndpoint, or the
// local server (started on first use). When there is neither it fails t,
// or skips it when EnvSkip is 1.
func Open(t testing.TB) Store {
	t.Helper()
	if !mainRan.Load() {
		t.Fatal("s3test: the package's TestMain must run its tests through s3test.Main")
	}
	startOnce.Do(func() { store, startErr = start() })
	if startErr != nil {
		if errors.Is(startErr, errNotInstalled) && os.Getenv(EnvSkip) == "1" {
			t.Skipf("%v (%s=1)", startErr, EnvSkip)
		}
		t.Fatal(startErr)
	}
	return store
}

// URL returns a gocloud.dev/blob URL for a prefix of the bucket unique to
// t (the process, a sequence number and the test's name); the objects
// under it are deleted when t ends.
func URL(t testing.TB) string {
	t.Helper()
	s := Open(t)
	prefix := fmt.Sprintf("t/%d-%d-%s/", os.Getpid(), seq.Add(1), strings.ReplaceAll(t.Name(), "/", "_"))
	u := s.URL(prefix)
	t.Cleanup(func() {
		if err := deleteAll(u); err != nil {
			t.Errorf("s3test: cleaning %s: %v", prefix, err)
		}
	})
	return u
}

// Bucket opens URL(t) and closes it when t ends.
func Bucket(t testing.TB) *blob.Bucket {
	t.Helper()
	b, err := blob.OpenBucket(context.Background(), URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// deleteAll deletes every object under the bucket URL u.
func deleteAll(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := blob.OpenBucket(ctx, u)
	if err != nil {
		return err
	}
	defer b.Close()
	it := b.List(nil)
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := b.Delete(ctx, obj.Key); err != nil {
			return err
		}
	}
}

var errNotInstalled = errors.New("s3test: no S3 server: install the test server with" +
	" scripts/s3-server.sh install (it builds versitygw from the Go module proxy, once)," +
	" or set " + EnvEndpoint + " to an outside store, or " + EnvSkip + "=1 to skip these tests")

// start returns the outside store, or starts the local server through
// scripts/s3-server.sh run and reads the environment it prints.
func start() (Store, error) {
	region := os.Getenv(EnvRegion)
	if region == "" {
		region = "us-east-1"
	}
	if ep := os.Getenv(EnvEndpoint); ep != "" {
		bucket := os.Getenv(EnvBucket)
		if bucket == "" {
			bucket = "onestone"
		}
		return Store{Endpoint: ep, Region: region, Bucket: bucket}, nil
	}
	script, err := findScript()
	if err != nil {
		return Store{}, err
	}
	if err := exec.Command("bash", script, "path").Run(); err != nil {
		return Store{}, errNotInstalled
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	cmd := exec.Command("bash", script, "run")
	cmd.Stderr = &syncWriter{w: &serverLog}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Store{}, fmt.Errorf("s3test: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return Store{}, fmt.Errorf("s3test: starting %s: %w", script, err)
	}
	server = cmd
	// The script prints KEY=VALUE lines once the server is ready, then
	// closes its standard output.
	env := map[string]string{}
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				env[k] = v
			}
		}
		done <- sc.Err()
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = fmt.Errorf("not ready after %v", StartTimeout)
	}
	if err == nil && env["ONESTONE_S3_ENDPOINT"] == "" {
		err = errors.New("it printed no ONESTONE_S3_ENDPOINT")
	}
	if err != nil {
		_ = stop()
		return Store{}, fmt.Errorf("s3test: %s run: %w\n%s", script, err, serverLog.String())
	}
	// The SDK's standard chain reads the credentials from the environment;
	// they are the throwaway ones of this server.
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if err := os.Setenv(k, env[k]); err != nil {
			return Store{}, fmt.Errorf("s3test: %w", err)
		}
	}
	return Store{Endpoint: env["ONESTONE_S3_ENDPOINT"], Region: env["AWS_REGION"], Bucket: env["ONESTONE_S3_BUCKET"]}, nil
}

// stop ends the server start started, if any: SIGTERM makes the script
// stop it and remove its data.
func stop() error {
	if server == nil {
		return nil
	}
	cmd := server
	server = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		// The script exits 0 on SIGTERM; anything else (the server died
		// during the tests) is an error, with the script's log.
		if err != nil {
			return fmt.Errorf("s3test: the server script: %w\n%s", err, serverLog.String())
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return errors.New("s3test: the server did not stop within 30s of SIGTERM")
	}
}

// findScript walks up from the working directory (a package directory
// under go test) to the repository's scripts/s3-server.sh.
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	for {
		p := filepath.Join(dir, "scripts", "s3-server.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("s3test: scripts/s3-server.sh not found above the working directory")
		}
		dir = parent
	}
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Proxy is a TCP proxy on loopback in front of a store, for fault tests:
// Down makes the store unreachable (connections refused, those open
// cut), Stall makes it hang (connections accepted, nothing answered),
// and Up restores it, on the same port.
type Proxy struct {
	target string // host:port
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	stall bool
	wg    sync.WaitGroup
}

// NewProxy starts a proxy to s, stopped when t ends.
func NewProxy(t testing.TB, s Store) *Proxy {
	t.Helper()
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: u.Host, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.Down()
		p.wg.Wait()
	})
	return p
}

// Rewrite returns the bucket URL u with its endpoint replaced by the
// proxy's.
func (p *Proxy) Rewrite(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		panic(err)
	}
	q := pu.Query()
	q.Set("endpoint", "http://"+p.addr)
	pu.RawQuery = q.Encode()
	return pu.String()
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns[c] = true
			stall := p.stall
			p.mu.Unlock()
			if stall {
				continue // held open, never answered, until Down or Up
			}
			p.wg.Go(func() { p.pipe(c) })
		}
	})
}

func (p *Proxy) pipe(c net.Conn) {
	defer func() {
		c.Close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.conns[up] = true
	p.mu.Unlock()
	defer func() {
		up.Close()
		p.mu.Lock()
		delete(p.conns, up)
		p.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	<-done
}

// Down closes the listener and every connection.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// Stall cuts the open connections and answers nothing on new ones.
func (p *Proxy) Stall() {
	p.Down()
	p.mu.Lock()
	p.stall = true
	p.mu.Unlock()
	p.listen()
}

// Up serves again after Down or Stall.
func (p *Proxy) Up() {
	p.Down()
	p.mu.Lock()
	p.stall = false
	p.mu.Unlock()
	p.listen()
}

func (p *Proxy) listen() {
	// The port was just freed by Down; nothing else takes a port below
	// the ephemeral range meanwhile, but retry briefly in case.
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	panic(fmt.Sprintf("s3test: proxy cannot listen on %s again: %v", p.addr, err))
}
