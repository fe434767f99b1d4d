package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/parquet-go/parquet-go"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/onestone/onestone/internal/objstore"
)

// Parquet files in an object store: a path of ParquetConfig.Paths may be a
// URL (internal/objstore: s3://BUCKET/KEY?endpoint=...&region=...,
// gs://BUCKET/KEY, azblob://CONTAINER/KEY), whose key may hold glob
// characters in its last element (path.Match syntax:
// s3://b/logs/day=1/*.parquet). The file is read through ranged GETs, in
// parquet-go's buffered reads (remoteReadBuffer per column), never
// downloaded whole. Credentials come from the provider's standard chain.
// A file:// URL is a local path.

// remoteReadBuffer is parquet-go's read buffer for a file in an object
// store: each column reads this much per request.
const remoteReadBuffer = 1 << 20

// isURL reports whether p names an object (scheme://...) rather than a
// local file (a path, or a file:// URL: localPath).
func isURL(p string) bool {
	return objstore.IsURL(p) && !strings.HasPrefix(p, "file://")
}

// localPath is the file a file:///abs/path URL names, or p itself.
func localPath(p string) string {
	if rest, ok := strings.CutPrefix(p, "file://"); ok {
		if u, err := url.Parse("file://" + rest); err == nil && (u.Host == "" || u.Host == "localhost") {
			return u.Path
		}
	}
	return p
}

// splitURL parses an object URL into the bucket URL (scheme, bucket and
// query) and the key.
func splitURL(u string) (bucketURL, key string, err error) {
	l, err := objstore.Parse(u)
	if err != nil {
		return "", "", fmt.Errorf("ingest: %w", err)
	}
	key = l.Path
	if key == "" {
		return "", "", fmt.Errorf("ingest: %s: want %s://BUCKET/KEY", l, l.Scheme)
	}
	if l.Query.Has("prefix") {
		return "", "", fmt.Errorf("ingest: %s: give the key in the path, not prefix=", l)
	}
	b := url.URL{Scheme: l.Scheme, Host: l.Bucket, RawQuery: l.Query.Encode()}
	return b.String(), key, nil
}

// openBucket opens the bucket of a bucket URL from splitURL.
func openBucket(ctx context.Context, bucketURL string) (*blob.Bucket, error) {
	l, err := objstore.Parse(bucketURL)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	b, err := objstore.Open(ctx, l)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return b, nil
}

// objectURL is bucketURL's object key.
func objectURL(bucketURL, key string) string {
	pu, _ := url.Parse(bucketURL)
	pu.Path = "/" + key
	return pu.String()
}

func redactURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// expandURL lists the objects matching the URL pattern u, sorted. A key
// without glob characters is returned as it is (opening it checks it).
func expandURL(ctx context.Context, u string) ([]string, error) {
	bu, key, err := splitURL(u)
	if err != nil {
		return nil, err
	}
	if !strings.ContainsAny(key, "*?[\\") {
		return []string{u}, nil
	}
	dir, base := path.Split(key)
	if strings.ContainsAny(dir, "*?[\\") {
		return nil, fmt.Errorf("ingest: %s: glob characters only in the last element of the key", redactKey(bu, key))
	}
	if _, err := path.Match(base, ""); err != nil {
		return nil, fmt.Errorf("ingest: %s: %w", redactKey(bu, key), err)
	}
	b, err := openBucket(ctx, bu)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	lit := base
	if i := strings.IndexAny(base, "*?[\\"); i >= 0 {
		lit = base[:i]
	}
	var out []string
	it := b.List(&blob.ListOptions{Prefix: dir + lit, Delimiter: "/"})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ingest: list %s: %w", redactKey(bu, dir), err)
		}
		if obj.IsDir {
			continue
		}
		if ok, _ := path.Match(base, path.Base(obj.Key)); ok {
			out = append(out, objectURL(bu, obj.Key))
		}
	}
	sort.Strings(out)
	return out, nil
}

func redactKey(bucketURL, key string) string {
	pu, _ := url.Parse(bucketURL)
	return redactURL(&url.URL{Scheme: pu.Scheme, Host: pu.Host, Path: "/" + key})
}

// blobFile is an object read through ranged GETs, as an io.ReaderAt.
type blobFile struct {
	b    *blob.Bucket
	key  string
	size int64
	// fetched counts the bytes requested (ReadAt may run on several
	// goroutines: Workers).
	fetched atomic.Int64
	gets    atomic.Int64
}

// openBlobFile opens the object u and reads its size.
func openBlobFile(ctx context.Context, u string) (*blobFile, error) {
	bu, key, err := splitURL(u)
	if err != nil {
		return nil, err
	}
	b, err := openBucket(ctx, bu)
	if err != nil {
		return nil, err
	}
	a, err := b.Attributes(ctx, key)
	if err != nil {
		b.Close()
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, fmt.Errorf("%w: %q", ErrNoFiles, redactKey(bu, key))
		}
		return nil, fmt.Errorf("ingest: %s: %w", redactKey(bu, key), err)
	}
	return &blobFile{b: b, key: key, size: a.Size}, nil
}

// ReadAt reads len(p) bytes at off with one ranged GET.
func (f *blobFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("ingest: negative offset")
	}
	if off >= f.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), f.size-off))
	f.fetched.Add(int64(n))
	f.gets.Add(1)
	r, err := f.b.NewRangeReader(context.Background(), f.key, off, int64(n), nil)
	if err != nil {
		return 0, fmt.Errorf("ingest: %s: %w", f.key, err)
	}
	defer r.Close()
	got, err := io.ReadFull(r, p[:n])
	if err != nil {
		return got, fmt.Errorf("ingest: %s at %d: %w", f.key, off, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *blobFile) Close() error { return f.b.Close() }

// openRemoteParquet opens the Parquet object u and reads its footer,
// with parquet-go's reads buffered by remoteReadBuffer.
func openRemoteParquet(u string) (io.Closer, *parquet.File, error) {
	return openRemoteParquetBuffer(u, remoteReadBuffer)
}

func openRemoteParquetBuffer(u string, buf int) (f *blobFile, pf *parquet.File, err error) {
	bf, err := openBlobFile(context.Background(), u)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, u, r)
		}
		if err != nil {
			bf.Close()
			f, pf = nil, nil
		}
	}()
	pf, err = parquet.OpenFile(bf, bf.size, parquet.SkipBloomFilters(true),
		parquet.OptimisticRead(true), parquet.ReadBufferSize(buf))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, bf.key, err)
	}
	return bf, pf, nil
}
