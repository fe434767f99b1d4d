package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/onestone/onestone/bundle"
)

// DefaultFetchTimeout bounds one look at an object store: reading its
// latest pointer and copying the version it names.
const DefaultFetchTimeout = 5 * time.Minute

// maxStoreBackoff bounds the wait between looks at an object store that
// failed: it is retried after Poll, then twice as long each time, up to
// this (or Poll, when longer).
const maxStoreBackoff = 30 * time.Second

// cachedVersions is how many fetched versions the local cache keeps,
// besides the one served.
const cachedVersions = 2

// mirror follows an object store's latest pointer into a local cache
// directory, where the Server finds its candidates as in any local root:
// each version the pointer names is copied there once, with the versions
// of its delta chain the cache lacks (bundle.FetchChain checks every
// checksum on the way), before it is loaded. When the store
// fails, or a copy does, the cache keeps what it has, so the model served
// keeps serving; the store is looked at again after a backoff.
type mirror struct {
	src     bundle.Store
	cache   *bundle.Dir
	own     bool // the cache directory is a temporary one of ours
	limits  bundle.Limits
	timeout time.Duration
	poll    time.Duration
	log     *slog.Logger
	// onChain counts a delta whose chain the store cannot give (a parent
	// missing or corrupt there).
	onChain func()

	// Guarded by the Server's reloadMu.
	have     string    // the version last fetched
	failures int       // consecutive failed looks
	next     time.Time // no look before this, after a failure
	lastErr  string
}

// newMirror opens the store at models and the cache: cache, or a new
// temporary directory when empty.
func newMirror(cfg ServerConfig) (*mirror, error) {
	src, err := bundle.OpenStore(context.Background(), cfg.Models)
	if err != nil {
		return nil, fmt.Errorf("serving: %w", err)
	}
	m := &mirror{src: src, limits: cfg.Limits, timeout: cfg.FetchTimeout, poll: cfg.Poll, log: cfg.Logger}
	if cfg.Cache == "" {
		dir, err := os.MkdirTemp("", "onestone-serve-cache-")
		if err != nil {
			return nil, fmt.Errorf("serving: cache: %w", err)
		}
		m.cache, m.own = bundle.NewDir(dir), true
	} else {
		m.cache = bundle.NewDir(cfg.Cache)
		if err := m.cache.Init(); err != nil {
			return nil, fmt.Errorf("serving: cache: %w", err)
		}
	}
	return m, nil
}

// sync copies the version the store's pointer names (its newest complete
// version when there is no pointer) into the cache, unless it is there,
// and prunes the cache, keeping the version served (servedDir). Unless
// force, it does nothing during the backoff after a failure.
func (m *mirror) sync(ctx context.Context, servedDir string, force bool) error {
	now := time.Now()
	if !force && now.Before(m.next) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	err := m.fetch(ctx, servedDir)
	if err == nil {
		if m.failures > 0 {
			m.log.Info("serving: the model store answers again", "store", m.src.String(), "failures", m.failures)
		}
		m.failures, m.next, m.lastErr = 0, time.Time{}, ""
		return nil
	}
	if ctx.Err() != nil && context.Cause(ctx) == context.Canceled {
		return err // the server is stopping
	}
	m.failures++
	wait := m.poll << min(m.failures, 16)
	wait = min(wait, max(maxStoreBackoff, m.poll))
	m.next = now.Add(wait)
	chain := errors.Is(err, bundle.ErrChain)
	if chain && m.onChain != nil {
		m.onChain()
	}
	if msg := err.Error(); msg != m.lastErr {
		m.lastErr = msg
		what := "serving: model store failed; the model served keeps serving"
		if chain {
			what = "serving: the delta the store's pointer names has a broken chain; the model served keeps serving until a snapshot comes"
		}
		m.log.Error(what, "store", m.src.String(), "failures", m.failures, "retry_in", wait, "err", err)
	}
	return err
}

func (m *mirror) fetch(ctx context.Context, servedDir string) error {
	v, err := m.src.Latest(ctx)
	if err != nil {
		return err
	}
	if v == "" {
		if v, err = bundle.Newest(ctx, m.src); err != nil {
			return err
		}
	}
	if v != m.have {
		start := time.Now()
		if _, err := bundle.FetchChain(ctx, m.src, v, m.cache, m.limits); err != nil {
			return err
		}
		m.log.Info("serving: fetched from the model store", "store", m.src.String(), "version", v,
			"took", time.Since(start).Round(time.Millisecond))
		m.have = v
	}
	// The cache keeps the newest versions and the one served, so that a
	// refused newer version never makes the server fall back to an
	// older one than it serves, and the delta chains they need.
	vs, err := m.cache.Versions(ctx)
	if err != nil {
		return err
	}
	keep := []string{m.have}
	for i, old := range vs {
		if i >= len(vs)-cachedVersions || m.cache.Path(old) == servedDir {
			keep = append(keep, old)
		}
	}
	need, err := bundle.Needs(ctx, m.cache, keep)
	if err != nil {
		return err
	}
	for _, old := range vs {
		if need[old] {
			continue
		}
		if err := m.cache.Remove(ctx, old); err != nil {
			return err
		}
	}
	return nil
}

// close removes the cache when it is a temporary one, and closes the
// store.
func (m *mirror) close() {
	if c, ok := m.src.(interface{ Close() error }); ok {
		c.Close()
	}
	if m.own {
		os.RemoveAll(m.cache.Root())
	}
}
