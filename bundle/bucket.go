package bundle

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/onestone/onestone/internal/objstore"
)

// ErrConflict is wrapped by the error of a Bucket's SetLatest when another
// publisher moved the latest pointer since this one last read or wrote
// it: the pointer is left as the other publisher set it.
var ErrConflict = errors.New("bundle: another publisher moved the latest pointer")

// claimFile is the first object of a version in a Bucket: written only if
// absent, it reserves the version's number for one publisher.
const claimFile = ".claim"

// maxPointerBytes bounds what is read of a latest pointer.
const maxPointerBytes = 64 << 10

// IsURL reports whether loc names an object store (scheme://...) rather
// than a local path.
func IsURL(loc string) bool { return objstore.IsURL(loc) }

// OpenStore opens the store at loc: a local directory (a path, or a
// file:// URL), or an object store bucket (s3://, gs://, azblob://;
// OpenBucket). The caller
// closes a Bucket when done.
func OpenStore(ctx context.Context, loc string) (Store, error) {
	if !IsURL(loc) {
		return NewDir(loc), nil
	}
	if rest, ok := strings.CutPrefix(loc, "file://"); ok {
		u, err := url.Parse("file://" + rest)
		if err != nil || u.RawQuery != "" || (u.Host != "" && u.Host != "localhost") {
			return nil, fmt.Errorf("bundle: %q: want file:///absolute/dir with no query", loc)
		}
		return NewDir(u.Path), nil
	}
	return OpenBucket(ctx, loc)
}

// Bucket is a Store in an object store bucket, under a prefix: version v
// is the objects prefix/v/..., and latest is the object prefix/latest, a
// small JSON pointer (Pointer). Its methods are safe for concurrent use.
//
// An object store has no rename, so a version is published in steps that
// a reader can tell apart:
//
//  1. prefix/v/.claim is written only if absent (If-None-Match: *; on
//     GCS, the DoesNotExist condition): this
//     reserves the number v for one publisher; a publisher that loses the
//     race takes the next number.
//  2. The version's files, each written only if absent.
//  3. The manifest (ManifestFile), last: a version is complete once it
//     holds its manifest, and Versions lists only complete versions. A
//     publisher stopped before this step leaves an incomplete version
//     that readers never resolve and Prune eventually removes.
//
// SetLatest replaces the pointer with a compare-and-swap, conditional on
// the version of the pointer read (S3 and Azure: If-Match on its ETag;
// GCS: its generation), and only if the pointer is still what
// this Bucket saw before its first version or set last, so that two
// publishers on one prefix cannot silently overwrite each other: the one
// that finds the pointer moved gets an error wrapping ErrConflict.
//
// S3, GCS and Azure Blob buckets are supported (internal/objstore, over
// gocloud.dev/blob): the compare-and-swap needs each driver's request
// types, which gocloud.dev/blob has no portable option for.
type Bucket struct {
	b      *blob.Bucket
	name   string // for messages: scheme://bucket/prefix, no query
	prefix string
	// Publisher names this Bucket in the pointers and claims it writes:
	// the host name, the process id and a random suffix.
	publisher string

	mu sync.Mutex
	// last is the pointer as this Bucket last saw it: before its first
	// NewVersion, or as it set it (raw bytes; its ETag when read). nil
	// before either, and after a SetLatest of unknown outcome.
	last *pointerState
}

type pointerState struct {
	data []byte
	etag string // its version (ETag or generation); "" when there was no pointer
}

// Pointer is the content of a Bucket's latest object.
type Pointer struct {
	// Version is the version latest names.
	Version string `json:"version"`
	// Publisher names the process that set it (Bucket.Publisher).
	Publisher string `json:"publisher"`
	// Time is when it was set.
	Time time.Time `json:"time"`
}

// OpenBucket opens the object store URL u (internal/objstore):
//
//	s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=us-east-1&use_path_style=true
//	gs://BUCKET/PREFIX[?endpoint=http://HOST:PORT]
//	azblob://CONTAINER/PREFIX[?domain=HOST:PORT&protocol=http&localemu=true]
//
// The path, if any, is the prefix the versions go under (the same as
// gocloud.dev's prefix= parameter; give one or the other). The other
// query parameters are gocloud.dev's for the scheme
// (docs/object-storage.md). Credentials come from the provider's
// standard chain (environment, shared configuration, instance role),
// never from the URL.
func OpenBucket(ctx context.Context, u string) (*Bucket, error) {
	l, err := objstore.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("bundle: store URL: %w", err)
	}
	prefix := strings.Trim(l.Path, "/")
	if p := l.Query.Get("prefix"); p != "" {
		if prefix != "" {
			return nil, fmt.Errorf("bundle: store URL %q: a path and prefix= both name a prefix", l)
		}
		prefix = strings.Trim(p, "/")
	}
	l.Query.Del("prefix")
	l.Path = ""
	if prefix != "" {
		prefix += "/"
	}
	b, err := objstore.Open(ctx, l)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if prefix != "" {
		b = blob.PrefixedBucket(b, prefix)
	}
	return &Bucket{b: b, name: l.Scheme + "://" + l.Bucket + "/" + prefix, prefix: prefix, publisher: newPublisherID()}, nil
}

func newPublisherID() string {
	host, _ := os.Hostname()
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}

// String names the bucket and prefix (never the query or credentials).
func (b *Bucket) String() string { return b.name }

// Path names version v: the bucket, prefix and version, as a URL with
// no query.
func (b *Bucket) Path(v string) string { return b.name + v }

// Publisher is the name this Bucket writes into its pointers and claims.
func (b *Bucket) Publisher() string { return b.publisher }

// Close releases the bucket's resources.
func (b *Bucket) Close() error { return b.b.Close() }

// Child returns the store under prefix name/ of b (for example
// CheckpointDir), sharing b's connection; closing either closes both.
func (b *Bucket) Child(name string) *Bucket {
	return &Bucket{b: blob.PrefixedBucket(b.b, name+"/"), name: b.name + name + "/", prefix: b.prefix + name + "/", publisher: b.publisher}
}

// Init checks that the bucket can be listed, so that a trainer fails
// before it trains rather than at its first publish.
func (b *Bucket) Init(ctx context.Context) error {
	it := b.b.List(&blob.ListOptions{Delimiter: "/"})
	if _, err := it.Next(ctx); err != nil && err != io.EOF {
		return fmt.Errorf("bundle: %s: %w", b, err)
	}
	return nil
}

func (b *Bucket) key(v, name string) string { return v + "/" + name }

// scan lists every version under the prefix with whether it is complete,
// oldest first.
func (b *Bucket) scan(ctx context.Context) (all []string, complete map[string]bool, err error) {
	complete = map[string]bool{}
	seen := map[string]bool{}
	it := b.b.List(nil)
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("bundle: list %s: %w", b, err)
		}
		v, name, ok := strings.Cut(obj.Key, "/")
		if !ok || versionNumber(v) == 0 || strings.Contains(name, "/") {
			continue
		}
		if !seen[v] {
			seen[v] = true
			all = append(all, v)
		}
		if name == ManifestFile {
			complete[v] = true
		}
	}
	slices.SortFunc(all, func(a, b string) int { return versionNumber(a) - versionNumber(b) })
	return all, complete, nil
}

// Versions lists the complete versions (those holding their manifest),
// oldest first.
func (b *Bucket) Versions(ctx context.Context) ([]string, error) {
	all, complete, err := b.scan(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, v := range all {
		if complete[v] {
			out = append(out, v)
		}
	}
	return out, nil
}

// NewVersion claims the next version number (one more than the highest
// present, complete or not) and writes files under it, each only if
// absent, the manifest last whatever its place in files (the files after
// it are written before it; it is held in memory meanwhile). On an error
// the version stays incomplete: it is never listed by Versions, and the
// number is not reused.
func (b *Bucket) NewVersion(ctx context.Context, files []File) (string, error) {
	for _, f := range files {
		if f.Name == "" || strings.ContainsAny(f.Name, "/\\") || strings.HasPrefix(f.Name, ".") {
			return "", fmt.Errorf("bundle: file name %q is not a plain name", f.Name)
		}
	}
	if err := b.notePointer(ctx); err != nil {
		return "", err
	}
	v, err := b.claim(ctx)
	if err != nil {
		return "", err
	}
	var manifest *bytes.Buffer
	for _, f := range files {
		if f.Name == ManifestFile {
			manifest = new(bytes.Buffer)
			if err := f.Write(manifest); err != nil {
				return "", fmt.Errorf("bundle: publish %s%s: %s: %w", b, v, f.Name, err)
			}
			continue
		}
		if err := b.put(ctx, b.key(v, f.Name), f.Write); err != nil {
			return "", fmt.Errorf("bundle: publish %s%s: %s: %w", b, v, f.Name, err)
		}
	}
	if manifest == nil {
		return "", fmt.Errorf("bundle: publish %s%s: no %s among the files", b, v, ManifestFile)
	}
	err = b.put(ctx, b.key(v, ManifestFile), func(w io.Writer) error {
		_, err := w.Write(manifest.Bytes())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("bundle: publish %s%s: %s: %w", b, v, ManifestFile, err)
	}
	return v, nil
}

// notePointer records the pointer as it is before this Bucket's first
// version, for SetLatest's compare-and-swap.
func (b *Bucket) notePointer(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last != nil {
		return nil
	}
	cur, err := b.readPointer(ctx)
	if err != nil {
		return err
	}
	b.last = cur
	return nil
}

// claim reserves the next free version number.
func (b *Bucket) claim(ctx context.Context) (string, error) {
	data, err := json.Marshal(Pointer{Publisher: b.publisher, Time: time.Now().UTC()})
	if err != nil {
		return "", err
	}
	for range 100 {
		all, _, err := b.scan(ctx)
		if err != nil {
			return "", err
		}
		next := 1
		if len(all) > 0 {
			next = versionNumber(all[len(all)-1]) + 1
		}
		v := versionName(next)
		err = b.b.WriteAll(ctx, b.key(v, claimFile), data, &blob.WriterOptions{IfNotExist: true, ContentType: "application/json"})
		if err == nil {
			return v, nil
		}
		if gcerrors.Code(err) != gcerrors.FailedPrecondition {
			return "", fmt.Errorf("bundle: publish under %s: claim %s: %w", b, v, err)
		}
	}
	return "", fmt.Errorf("bundle: publish under %s: too many concurrent publishers", b)
}

// put writes key, only if absent, through write; on an error of write
// the upload is abandoned (no object appears).
func (b *Bucket) put(ctx context.Context, key string, write func(io.Writer) error) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.b.NewWriter(wctx, key, &blob.WriterOptions{IfNotExist: true, ContentType: "application/octet-stream"})
	if err != nil {
		return err
	}
	if err := write(w); err != nil {
		cancel() // abandons the upload
		_ = w.Close()
		return err
	}
	return w.Close()
}

// Open opens file name of version v for reading.
func (b *Bucket) Open(ctx context.Context, v, name string) (io.ReadCloser, error) {
	r, err := b.b.NewReader(ctx, b.key(v, name), nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, fmt.Errorf("bundle: %s%s/%s: %w", b, v, name, os.ErrNotExist)
		}
		return nil, fmt.Errorf("bundle: %s%s/%s: %w", b, v, name, err)
	}
	return r, nil
}

// readPointer reads the pointer object and the version (ETag or
// generation) of exactly what it read; no pointer gives a nil state's
// data and an empty version.
func (b *Bucket) readPointer(ctx context.Context) (*pointerState, error) {
	r, err := b.b.NewReader(ctx, LatestLink, nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return &pointerState{}, nil
		}
		return nil, fmt.Errorf("bundle: %s%s: %w", b, LatestLink, err)
	}
	defer r.Close()
	version, err := objstore.ReadVersion(r)
	if err != nil {
		return nil, fmt.Errorf("bundle: %s%s: %w", b, LatestLink, err)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPointerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("bundle: %s%s: %w", b, LatestLink, err)
	}
	if len(data) > maxPointerBytes {
		return nil, fmt.Errorf("%w: %s%s is over %d bytes", ErrCorrupt, b, LatestLink, maxPointerBytes)
	}
	return &pointerState{data: data, etag: version}, nil
}

func parsePointer(where string, data []byte) (Pointer, error) {
	var p Pointer
	if err := json.Unmarshal(data, &p); err != nil || versionNumber(p.Version) == 0 {
		return Pointer{}, fmt.Errorf("%w: %s%s is not a pointer: %q", ErrCorrupt, where, LatestLink, data)
	}
	return p, nil
}

// ReadPointer returns the latest pointer, or a zero Pointer when there is
// none.
func (b *Bucket) ReadPointer(ctx context.Context) (Pointer, error) {
	st, err := b.readPointer(ctx)
	if err != nil || st.etag == "" {
		return Pointer{}, err
	}
	return parsePointer(b.name, st.data)
}

// Latest returns the version the latest pointer names, or "" when there
// is no pointer.
func (b *Bucket) Latest(ctx context.Context) (string, error) {
	p, err := b.ReadPointer(ctx)
	return p.Version, err
}

// SetLatest points latest at version v, which must be complete, with a
// compare-and-swap. The pointer must still be the one this Bucket saw
// when it began its first version (NewVersion) or last set it itself,
// else the error wraps ErrConflict: another publisher moved it meanwhile,
// and this one must not overwrite it. (A Bucket that has neither
// published nor set the pointer requires v to be newer than the version
// the pointer names.) The write is conditional on the version of the
// pointer read (objstore.IfMatch: its ETag or generation), or on there
// being none (If-None-Match: *, GCS's DoesNotExist), so
// a publisher racing in between makes it fail with ErrConflict too.
//
// After a conflict the Bucket keeps refusing: it has been fenced off by
// the other publisher. After an error whose outcome is unknown (a
// timeout), the next NewVersion reads the pointer afresh.
func (b *Bucket) SetLatest(ctx context.Context, v string) error {
	if versionNumber(v) == 0 {
		return fmt.Errorf("bundle: %q is not a version", v)
	}
	if ok, err := b.b.Exists(ctx, b.key(v, ManifestFile)); err != nil {
		return fmt.Errorf("bundle: %s: %w", b, err)
	} else if !ok {
		return fmt.Errorf("bundle: %s%s is not a complete version", b, v)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, err := b.readPointer(ctx)
	if err != nil {
		return err
	}
	if b.last != nil && !bytes.Equal(cur.data, b.last.data) {
		return fmt.Errorf("%w: %s%s changed since this publisher (%s) read or set it: it now holds %s", ErrConflict, b, LatestLink, b.publisher, cur.data)
	}
	if b.last == nil && cur.etag != "" {
		p, err := parsePointer(b.name, cur.data)
		if err != nil {
			return err
		}
		if versionNumber(p.Version) >= versionNumber(v) {
			return fmt.Errorf("%w: %s%s names %s (set by %s), not older than %s", ErrConflict, b, LatestLink, p.Version, p.Publisher, v)
		}
	}
	data, err := json.Marshal(Pointer{Version: v, Publisher: b.publisher, Time: time.Now().UTC()})
	if err != nil {
		return err
	}
	opts := &blob.WriterOptions{ContentType: "application/json"}
	if cur.etag == "" {
		opts.IfNotExist = true
	} else {
		opts.BeforeWrite = objstore.IfMatch(cur.etag)
	}
	if err := b.b.WriteAll(ctx, LatestLink, data, opts); err != nil {
		if gcerrors.Code(err) == gcerrors.FailedPrecondition {
			if b.last == nil {
				b.last = cur
			}
			return fmt.Errorf("%w: %s%s was replaced while %s set it to %s", ErrConflict, b, LatestLink, b.publisher, v)
		}
		// The outcome is unknown (a timeout may come after the write).
		b.last = nil
		return fmt.Errorf("bundle: %s%s: %w", b, LatestLink, err)
	}
	b.last = &pointerState{data: data}
	return nil
}

// DefaultIncompleteAge is how old an incomplete version of a Bucket must
// be before Prune removes it.
const DefaultIncompleteAge = time.Hour

// pruneIncomplete removes the incomplete versions older than the newest
// complete one whose claim is older than age: a publisher stopped
// half-way left them (one still writing has a younger claim).
func (b *Bucket) pruneIncomplete(ctx context.Context, age time.Duration) error {
	all, complete, err := b.scan(ctx)
	if err != nil {
		return err
	}
	newest := 0
	for _, v := range all {
		if complete[v] {
			newest = versionNumber(v)
		}
	}
	for _, v := range all {
		if complete[v] || versionNumber(v) >= newest {
			continue
		}
		a, err := b.b.Attributes(ctx, b.key(v, claimFile))
		if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return fmt.Errorf("bundle: %s%s: %w", b, v, err)
		}
		if err == nil && time.Since(a.ModTime) < age {
			continue
		}
		if err := b.Remove(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

// Remove deletes version v: its manifest first, so that a removal stopped
// half-way leaves an incomplete version and never a complete one missing
// files. Objects already gone are not an error.
func (b *Bucket) Remove(ctx context.Context, v string) error {
	if versionNumber(v) == 0 {
		return fmt.Errorf("bundle: %q is not a version", v)
	}
	if err := b.b.Delete(ctx, b.key(v, ManifestFile)); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("bundle: remove %s%s: %w", b, v, err)
	}
	it := b.b.List(&blob.ListOptions{Prefix: v + "/"})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bundle: remove %s%s: %w", b, v, err)
		}
		if err := b.b.Delete(ctx, obj.Key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return fmt.Errorf("bundle: remove %s%s: %w", b, v, err)
		}
	}
}
