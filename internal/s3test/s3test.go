// Package s3test gives tests a bucket on a real object store server, for
// each provider onestone supports: S3 (the store named by
// ONESTONE_S3_ENDPOINT, or else Versity's S3 gateway, which
// scripts/s3-server.sh installs), GCS (fake-gcs-server) and Azure Blob
// (Azurite), both installed and run by scripts/emulator.sh. Each server
// is started through its script once per test process, on first use, and
// stopped when the process's tests end.
//
// A package whose tests use it runs them through Main:
//
//	func TestMain(m *testing.M) { os.Exit(s3test.Main(m)) }
//
// and each test asks for a prefix of its own with URL (a gocloud.dev/blob
// URL) or Bucket (the bucket opened on that URL); prefixes are unique
// across processes, so that the test processes of one `go test` run can
// share one server per provider (see below). The store is S3 unless the
// test runs inside Each or One. Each runs a function once per provider
// (as subtests named s3, gcs and azure), for the tests whose behaviour is
// per provider: the bucket suite, compare-and-swap, URL and error
// handling, fault handling by each provider's SDK, one serve/poll test.
// One runs it once, on S3 by default, for the tests of code above the
// store (training, streaming, serving from a store), which
// ONESTONE_STORES=gcs (or azure) runs on another provider. Under the race
// detector Each runs S3 alone: the other providers' code paths are the
// same in onestone and were run without it.
//
// `make test` starts the three servers once for all its test processes
// (scripts/with-stores.sh) and passes them through the *_ENDPOINT
// variables below; a plain `go test` without them starts the servers it
// needs itself, once per test process.
//
// Without the S3 server installed the tests fail and say how to install
// it (scripts/s3-server.sh install); ONESTONE_S3_SKIP=1 skips them
// instead. Without an emulator installed the GCS or Azure subtests skip
// and say how to install it, except under CI (CI set), where they fail.
// CI installs all three.
package s3test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/onestone/onestone/internal/objstore"
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
	// EnvGCSEndpoint points the GCS tests at an outside emulator
	// (http://HOST:PORT) with a bucket EnvGCSBucket (default onestone).
	EnvGCSEndpoint = "ONESTONE_GCS_ENDPOINT"
	EnvGCSBucket   = "ONESTONE_GCS_BUCKET"
	// EnvAzureEndpoint points the Azure tests at an outside store
	// (http://HOST:PORT, the account in the path as Azurite has it) with
	// a container EnvAzureContainer (default onestone); the credentials
	// come from AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY.
	EnvAzureEndpoint  = "ONESTONE_AZURE_ENDPOINT"
	EnvAzureContainer = "ONESTONE_AZURE_CONTAINER"
	// EnvStores limits Each to some providers: a comma-separated list of
	// s3, gcs and azure; One runs on the first. Default: all three (S3
	// alone under the race detector).
	EnvStores = "ONESTONE_STORES"
)

// Providers are the names of the providers Each runs, in its order.
var Providers = []string{"s3", "gcs", "azure"}

// StartTimeout bounds how long a server may take to become ready (the
// machine the tests run on may be loaded: Azurite takes a few CPU
// seconds to load).
const StartTimeout = 4 * time.Minute

// Store is an object store server and the bucket the tests use on it.
type Store struct {
	Provider string // s3, gcs or azure
	Endpoint string // http://host:port
	Region   string // S3 only
	Bucket   string // Azure: the container
}

// URL returns the gocloud.dev/blob URL of the bucket, limited to keys
// under prefix when prefix is not empty. The credentials are not part of
// it: each provider's chain reads them from the environment.
func (s Store) URL(prefix string) string {
	q := url.Values{}
	scheme := "s3"
	switch s.Provider {
	case "gcs":
		scheme = "gs"
		q.Set("endpoint", s.Endpoint)
	case "azure":
		scheme = "azblob"
		u, _ := url.Parse(s.Endpoint)
		q.Set("domain", u.Host)
		q.Set("protocol", u.Scheme)
		q.Set("localemu", "true")
	default:
		q.Set("endpoint", s.Endpoint)
		q.Set("region", s.Region)
		q.Set("use_path_style", "true")
	}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	return scheme + "://" + s.Bucket + "?" + q.Encode()
}

// server is one provider's server, started once per process.
type server struct {
	once  sync.Once
	store Store
	err   error
	cmd   *exec.Cmd // nil unless this process started it
	log   bytes.Buffer
}

var (
	mainRan atomic.Bool
	seq     atomic.Int64
	// tmpDir is the process's temporary directory as Main found it: the
	// servers' data goes there, not into a test's TempDir that a test
	// made TMPDIR (t.Setenv) while a server started in the background.
	tmpDir string

	servers = map[string]*server{"s3": {}, "gcs": {}, "azure": {}}

	// runToken tells this process's prefixes from those of every other
	// process sharing the servers, including an earlier run's on an
	// outside store whose cleanup was cut short: the pid and 32 random
	// bits.
	runToken = fmt.Sprintf("%d.%08x", os.Getpid(), rand.Uint32())

	// scopes maps the name of a subtest of Each to its provider.
	scopes sync.Map
)

// Main runs the tests of m and then stops the servers started for them.
// It returns m.Run's exit code.
func Main(m *testing.M) int {
	tmpDir = os.TempDir()
	mainRan.Store(true)
	code := m.Run()
	for _, p := range Providers {
		// Waits for a start Each began in the background, if any.
		servers[p].once.Do(func() {})
		if err := stop(servers[p]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Each runs f once per provider (EnvStores), each as a subtest of t named
// after the provider, in which URL, Open and Bucket use that provider.
// The servers not yet started are started at once, in the background,
// so that the slow ones (Azurite takes seconds) start while the first
// subtests run.
//
// Each is for behaviour that differs between providers; see One for the
// rest.
func Each(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	only := providers(t)
	if mainRan.Load() {
		for _, p := range only {
			go ensure(p)
		}
	}
	for _, p := range Providers {
		if slices.Contains(only, p) {
			run(t, p, f)
		}
	}
}

// One runs f once, as a subtest named after the provider, on the first
// provider of EnvStores (default S3): for tests of code whose behaviour
// does not depend on the provider, which reaches each provider only
// through bundle.Bucket or ingest's object store source, themselves
// tested on every provider (Each).
func One(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	run(t, providers(t)[0], f)
}

func run(t *testing.T, p string, f func(t *testing.T)) {
	t.Run(p, func(t *testing.T) {
		scopes.Store(t.Name(), p)
		f(t)
	})
}

// providers returns the providers of EnvStores, in its order, else all
// three, or S3 alone under the race detector (raceEnabled).
func providers(t *testing.T) []string {
	t.Helper()
	v := os.Getenv(EnvStores)
	if v == "" {
		if raceEnabled {
			return []string{"s3"}
		}
		return Providers
	}
	ps := strings.Split(v, ",")
	for _, p := range ps {
		if !slices.Contains(Providers, p) {
			t.Fatalf("s3test: %s=%s: %q is none of %v", EnvStores, v, p, Providers)
		}
	}
	return ps
}

// provider is the provider of t: that of the innermost Each around it,
// else s3.
func provider(t testing.TB) string {
	name := t.Name()
	for {
		if p, ok := scopes.Load(name); ok {
			return p.(string)
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			return "s3"
		}
		name = name[:i]
	}
}

// Open returns the store for t (see Each), started on first use. When
// its server is not installed it fails t or skips it (see the package
// doc).
func Open(t testing.TB) Store {
	t.Helper()
	if !mainRan.Load() {
		t.Fatal("s3test: the package's TestMain must run its tests through s3test.Main")
	}
	p := provider(t)
	srv := ensure(p)
	if srv.err != nil {
		if errors.Is(srv.err, errNotInstalled) {
			if p == "s3" && os.Getenv(EnvSkip) == "1" {
				t.Skipf("%v (%s=1)", srv.err, EnvSkip)
			}
			if p != "s3" && os.Getenv("CI") == "" {
				t.Skipf("%v (outside CI)", srv.err)
			}
		}
		t.Fatal(srv.err)
	}
	return srv.store
}

// ensure starts the server of provider p unless it was, and returns it
// once it is ready or failed to start.
func ensure(p string) *server {
	srv := servers[p]
	srv.once.Do(func() { srv.store, srv.err = start(p, srv) })
	return srv
}

// URL returns a gocloud.dev/blob URL for a prefix of the bucket unique to
// t (the process's run token, a sequence number and the test's name), in
// a bucket that other test processes may share; the objects under it are
// deleted when t ends.
func URL(t testing.TB) string {
	t.Helper()
	s := Open(t)
	prefix := fmt.Sprintf("t/%s-%d-%s/", runToken, seq.Add(1), strings.ReplaceAll(t.Name(), "/", "_"))
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
	b, err := OpenURL(context.Background(), URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// OpenURL opens a URL of Store.URL as a gocloud.dev/blob bucket, prefix=
// included, as onestone opens it (internal/objstore).
func OpenURL(ctx context.Context, u string) (*blob.Bucket, error) {
	l, err := objstore.Parse(u)
	if err != nil {
		return nil, err
	}
	prefix := l.Query.Get("prefix")
	l.Query.Del("prefix")
	b, err := objstore.Open(ctx, l)
	if err != nil {
		return nil, err
	}
	if prefix != "" {
		b = blob.PrefixedBucket(b, prefix)
	}
	return b, nil
}

// deleteAll deletes every object under the bucket URL u.
func deleteAll(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := OpenURL(ctx, u)
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

var errNotInstalled = errors.New("s3test: server not installed")

// installHint says how to install each provider's server.
var installHint = map[string]string{
	"s3": "no S3 server: install the test server with scripts/s3-server.sh install" +
		" (it builds versitygw from the Go module proxy, once), or set " + EnvEndpoint +
		" to an outside store, or " + EnvSkip + "=1 to skip these tests",
	"gcs": "no GCS emulator: install it with scripts/emulator.sh gcs install" +
		" (it builds fake-gcs-server from the Go module proxy, once), or set " + EnvGCSEndpoint,
	"azure": "no Azure emulator: install it with scripts/emulator.sh azure install" +
		" (Azurite, from the npm registry, once), or set " + EnvAzureEndpoint,
}

// start returns the outside store of provider p, or starts the local
// server through its script and reads the environment it prints.
func start(p string, srv *server) (Store, error) {
	region := os.Getenv(EnvRegion)
	if region == "" {
		region = "us-east-1"
	}
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	switch {
	case p == "s3" && os.Getenv(EnvEndpoint) != "":
		return Store{Provider: p, Endpoint: os.Getenv(EnvEndpoint), Region: region, Bucket: or(os.Getenv(EnvBucket), "onestone")}, nil
	case p == "gcs" && os.Getenv(EnvGCSEndpoint) != "":
		return Store{Provider: p, Endpoint: os.Getenv(EnvGCSEndpoint), Bucket: or(os.Getenv(EnvGCSBucket), "onestone")}, nil
	case p == "azure" && os.Getenv(EnvAzureEndpoint) != "":
		return Store{Provider: p, Endpoint: os.Getenv(EnvAzureEndpoint), Bucket: or(os.Getenv(EnvAzureContainer), "onestone")}, nil
	}
	script, args := "s3-server.sh", []string{}
	if p != "s3" {
		script, args = "emulator.sh", []string{p}
	}
	path, err := findScript(script)
	if err != nil {
		return Store{}, err
	}
	if err := exec.Command("bash", append([]string{path}, append(args, "path")...)...).Run(); err != nil {
		return Store{}, fmt.Errorf("%w: %s", errNotInstalled, installHint[p])
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	cmd := exec.Command("bash", append([]string{path}, append(args, "run")...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmpDir)
	cmd.Stderr = &syncWriter{w: &srv.log}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Store{}, fmt.Errorf("s3test: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return Store{}, fmt.Errorf("s3test: starting %s: %w", script, err)
	}
	srv.cmd = cmd
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
	endpointKey := map[string]string{"s3": "ONESTONE_S3_ENDPOINT", "gcs": "ONESTONE_GCS_ENDPOINT", "azure": "ONESTONE_AZURE_ENDPOINT"}[p]
	if err == nil && env[endpointKey] == "" {
		err = fmt.Errorf("it printed no %s", endpointKey)
	}
	if err != nil {
		_ = stop(srv)
		return Store{}, fmt.Errorf("s3test: %s run: %w\n%s", script, err, srv.log.String())
	}
	// The providers' standard chains read the credentials from the
	// environment; they are the throwaway ones of this server.
	creds := map[string][]string{
		"s3":    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
		"azure": {"AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY"},
	}[p]
	for _, k := range creds {
		if err := os.Setenv(k, env[k]); err != nil {
			return Store{}, fmt.Errorf("s3test: %w", err)
		}
	}
	switch p {
	case "gcs":
		return Store{Provider: p, Endpoint: env[endpointKey], Bucket: env["ONESTONE_GCS_BUCKET"]}, nil
	case "azure":
		return Store{Provider: p, Endpoint: env[endpointKey], Bucket: env["ONESTONE_AZURE_CONTAINER"]}, nil
	}
	return Store{Provider: p, Endpoint: env[endpointKey], Region: env["AWS_REGION"], Bucket: env["ONESTONE_S3_BUCKET"]}, nil
}

// stop ends the server start started, if any: SIGTERM makes the script
// stop it and remove its data.
func stop(srv *server) error {
	if srv.cmd == nil {
		return nil
	}
	cmd := srv.cmd
	srv.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		// The script exits 0 on SIGTERM; anything else (the server died
		// during the tests) is an error, with the script's log.
		if err != nil {
			return fmt.Errorf("s3test: the server script: %w\n%s", err, srv.log.String())
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return errors.New("s3test: the server did not stop within 30s of SIGTERM")
	}
}

// findScript walks up from the working directory (a package directory
// under go test) to the repository's scripts/NAME.
func findScript(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	for {
		p := filepath.Join(dir, "scripts", name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("s3test: scripts/%s not found above the working directory", name)
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
	if pu.Scheme == "azblob" {
		q.Set("domain", p.addr)
	} else {
		q.Set("endpoint", "http://"+p.addr)
	}
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
