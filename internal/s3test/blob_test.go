package s3test

// What onestone's object-store backend needs from gocloud.dev/blob, shown
// on the real servers of each provider (Each: S3, GCS, Azure) and on
// fileblob (a local directory) with the same code.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // registers file://
	"gocloud.dev/gcerrors"

	"github.com/onestone/onestone/internal/objstore"
)

// openFile opens a fresh directory through fileblob (no_tmp_dir: its
// temporary files go beside the final ones, so the rename never crosses
// file systems).
func openFile(t *testing.T) *blob.Bucket {
	b, err := blob.OpenBucket(context.Background(), "file://"+t.TempDir()+"?no_tmp_dir=true")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// eachBackend runs f on a prefix of each provider's server (Each) and on
// a fileblob directory.
func eachBackend(t *testing.T, f func(t *testing.T, b *blob.Bucket)) {
	Each(t, func(t *testing.T) { f(t, Bucket(t)) })
	t.Run("file", func(t *testing.T) { f(t, openFile(t)) })
}

func TestBlobWriteReadListDelete(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *blob.Bucket) {
		ctx := context.Background()
		keys := []string{"v00000001/manifest.json", "v00000001/weights", "v00000002/weights", "LATEST"}
		for _, k := range keys {
			if err := b.WriteAll(ctx, k, []byte("data of "+k), nil); err != nil {
				t.Fatal(err)
			}
		}
		got, err := b.ReadAll(ctx, "v00000001/weights")
		if err != nil || string(got) != "data of v00000001/weights" {
			t.Fatalf("ReadAll = %q, %v", got, err)
		}
		var top []string
		it := b.List(&blob.ListOptions{Delimiter: "/"})
		for {
			obj, err := it.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			top = append(top, fmt.Sprintf("%s dir=%v", obj.Key, obj.IsDir))
		}
		want := []string{"LATEST dir=false", "v00000001/ dir=true", "v00000002/ dir=true"}
		if !slices.Equal(top, want) {
			t.Errorf("List with delimiter = %v, want %v", top, want)
		}
		if err := b.Delete(ctx, "v00000002/weights"); err != nil {
			t.Fatal(err)
		}
		if ok, err := b.Exists(ctx, "v00000002/weights"); ok || err != nil {
			t.Errorf("Exists after Delete = %v, %v", ok, err)
		}
		// Deleting a missing key is NotFound on both (pruning treats it as
		// done).
		if err := b.Delete(ctx, "v00000002/weights"); gcerrors.Code(err) != gcerrors.NotFound {
			t.Errorf("Delete of a missing key: %v, want NotFound", err)
		}
		if _, err := b.ReadAll(ctx, "missing"); gcerrors.Code(err) != gcerrors.NotFound {
			t.Errorf("ReadAll of a missing key: %v, want NotFound", err)
		}
	})
}

func TestBlobRangeReader(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *blob.Bucket) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 2))
		data := make([]byte, 1<<20+13)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		if err := b.WriteAll(ctx, "part.parquet", data, nil); err != nil {
			t.Fatal(err)
		}
		n := int64(len(data))
		for _, c := range []struct{ off, length int64 }{
			{0, 1}, {n - 8, 8}, {n - 8, -1}, {4096, 65536}, {12345, 0}, {n - 3, 100},
		} {
			r, err := b.NewRangeReader(ctx, "part.parquet", c.off, c.length, nil)
			if err != nil {
				t.Fatalf("NewRangeReader(%d, %d): %v", c.off, c.length, err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			end := n
			if c.length >= 0 && c.off+c.length < n {
				end = c.off + c.length
			}
			if !bytes.Equal(got, data[c.off:end]) {
				t.Errorf("range (%d, %d): got %d bytes, want data[%d:%d]", c.off, c.length, len(got), c.off, end)
			}
			if r.Size() != n {
				t.Errorf("range (%d, %d): Size() = %d, want the object's %d", c.off, c.length, r.Size(), n)
			}
		}
	})
}

// TestBlobIfNotExist: a version's files are written create-only, so a
// retried upload cannot overwrite what another publisher wrote.
func TestBlobIfNotExist(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *blob.Bucket) {
		ctx := context.Background()
		createOnly := &blob.WriterOptions{IfNotExist: true}
		if err := b.WriteAll(ctx, "v1/manifest.json", []byte("first"), createOnly); err != nil {
			t.Fatal(err)
		}
		err := b.WriteAll(ctx, "v1/manifest.json", []byte("second"), createOnly)
		if gcerrors.Code(err) != gcerrors.FailedPrecondition {
			t.Fatalf("second create-only write: %v, want FailedPrecondition", err)
		}
		if got, _ := b.ReadAll(ctx, "v1/manifest.json"); string(got) != "first" {
			t.Errorf("object = %q, want first", got)
		}
	})
}

// TestBlobIfNotExistMultipart: the same for an object uploaded in parts
// (a bundle's weights are far above one part): S3 checks If-None-Match
// when the upload completes, Azure when the block list is committed, GCS
// when the resumable upload finishes.
//
// The object is above the AWS transfer manager's multipart threshold
// (16 MiB, whatever BufferSize says; BufferSize only sizes the parts),
// so that S3 takes it in parts: below it, the write is one PutObject,
// which versitygw refuses from its headers, reading at most 256 KiB of
// the body before it closes the connection; the client, still sending,
// then gets a reset in place of the 412 whenever its failed write wins
// the race with the response (net/http returns the first of the two).
// The ETag of the first write proves the parts on S3.
func TestBlobIfNotExistMultipart(t *testing.T) { Each(t, testBlobIfNotExistMultipart) }

func testBlobIfNotExistMultipart(t *testing.T) {
	b := Bucket(t)
	ctx := context.Background()
	const part = 5 << 20
	data := bytes.Repeat([]byte("w"), 3*part+2<<20+1) // S3: four parts
	opts := &blob.WriterOptions{IfNotExist: true, BufferSize: part}
	if err := b.WriteAll(ctx, "v1/weights", data, opts); err != nil {
		t.Fatal(err)
	}
	first, err := b.Attributes(ctx, "v1/weights")
	if err != nil {
		t.Fatal(err)
	}
	// An S3 multipart ETag is "md5-of-the-parts'-md5s-PARTS".
	if provider(t) == "s3" && !strings.HasSuffix(strings.Trim(first.ETag, `"`), "-4") {
		t.Fatalf("S3 ETag %s: want that of a 4-part upload", first.ETag)
	}
	err = b.WriteAll(ctx, "v1/weights", data[:len(data)-1], opts)
	if gcerrors.Code(err) != gcerrors.FailedPrecondition {
		t.Fatalf("second create-only multipart write: %v, want FailedPrecondition", err)
	}
	if a, err := b.Attributes(ctx, "v1/weights"); err != nil || a.Size != int64(len(data)) || a.ETag != first.ETag {
		t.Errorf("after the refused write: %+v, %v; want the first object (size %d, ETag %s)", a, err, len(data), first.ETag)
	}
}

// TestBlobIfNotExistRace: publishers racing to create one key; exactly
// one wins.
func TestBlobIfNotExistRace(t *testing.T) { Each(t, testBlobIfNotExistRace) }

func testBlobIfNotExistRace(t *testing.T) {
	b := Bucket(t)
	const rounds, writers = 5, 4
	for r := range rounds {
		key := fmt.Sprintf("v%08d/manifest.json", r)
		errs := race(writers, func(w int) error {
			return b.WriteAll(context.Background(), key, fmt.Appendf(nil, "writer %d", w), &blob.WriterOptions{IfNotExist: true})
		})
		checkOneWinner(t, errs)
	}
}

// readPointer reads key and the version (ETag, generation) of exactly
// what it read (the GET response's, not a separate HEAD's).
func readPointer(ctx context.Context, b *blob.Bucket, key string) (data []byte, version string, err error) {
	r, err := b.NewReader(ctx, key, nil)
	if err != nil {
		return nil, "", err
	}
	defer r.Close()
	if version, err = objstore.ReadVersion(r); err != nil {
		return nil, "", err
	}
	data, err = io.ReadAll(r)
	return data, version, err
}

// writeIfMatch writes data to key only if the object is still at
// version: gocloud.dev/blob has no such option, so objstore.IfMatch sets
// it on the driver's request through BeforeWrite.
func writeIfMatch(ctx context.Context, b *blob.Bucket, key, version string, data []byte) error {
	return b.WriteAll(ctx, key, data, &blob.WriterOptions{BeforeWrite: objstore.IfMatch(version)})
}

// TestBlobPointerRace: publishers that read the same pointer race to
// replace it; exactly one wins and the others get FailedPrecondition.
func TestBlobPointerRace(t *testing.T) { Each(t, testBlobPointerRace) }

func testBlobPointerRace(t *testing.T) {
	b := Bucket(t)
	ctx := context.Background()
	if err := b.WriteAll(ctx, "LATEST", []byte("v00000000"), nil); err != nil {
		t.Fatal(err)
	}
	const rounds, writers = 5, 4
	for r := 1; r <= rounds; r++ {
		_, etag, err := readPointer(ctx, b, "LATEST")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var won []string
		errs := race(writers, func(w int) error {
			// Distinct contents, so that distinct versions have distinct ETags.
			v := fmt.Sprintf("v%08d by publisher %d", r, w)
			err := writeIfMatch(ctx, b, "LATEST", etag, []byte(v))
			if err == nil {
				mu.Lock()
				won = append(won, v)
				mu.Unlock()
			}
			return err
		})
		checkOneWinner(t, errs)
		if got, _, err := readPointer(ctx, b, "LATEST"); err != nil || string(got) != won[0] {
			t.Fatalf("round %d: pointer = %q, %v; the winner wrote %q", r, got, err, won[0])
		}
	}
}

// TestBlobPointerCASLoop: publishers each advance a counter through
// read / write-if-match / retry on FailedPrecondition; no update is lost.
func TestBlobPointerCASLoop(t *testing.T) { Each(t, testBlobPointerCASLoop) }

func testBlobPointerCASLoop(t *testing.T) {
	b := Bucket(t)
	ctx := context.Background()
	if err := b.WriteAll(ctx, "counter", []byte("0"), nil); err != nil {
		t.Fatal(err)
	}
	const publishers, each = 3, 5
	errs := race(publishers, func(int) error {
		for range each {
			for {
				data, etag, err := readPointer(ctx, b, "counter")
				if err != nil {
					return err
				}
				var n int
				if _, err := fmt.Sscan(string(data), &n); err != nil {
					return fmt.Errorf("counter %q: %w", data, err)
				}
				err = writeIfMatch(ctx, b, "counter", etag, fmt.Appendf(nil, "%d", n+1))
				if err == nil {
					break
				}
				if gcerrors.Code(err) != gcerrors.FailedPrecondition {
					return err
				}
			}
		}
		return nil
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.ReadAll(ctx, "counter")
	if err != nil || string(got) != fmt.Sprint(publishers*each) {
		t.Fatalf("counter = %q, %v; want %d", got, err, publishers*each)
	}
}

// TestFileblobNoIfMatch records what fileblob offers for a pointer: no
// ETag on its reader and no If-Match on writes (its BeforeWrite exposes
// only *os.File), so a local directory needs onestone's own mechanism.
func TestFileblobNoIfMatch(t *testing.T) {
	b := openFile(t)
	ctx := context.Background()
	if err := b.WriteAll(ctx, "LATEST", []byte("v1"), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readPointer(ctx, b, "LATEST"); !errors.Is(err, objstore.ErrNoCAS) {
		t.Errorf("readPointer on fileblob: %v, want ErrNoCAS", err)
	}
	a, err := b.Attributes(ctx, "LATEST")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeIfMatch(ctx, b, "LATEST", a.ETag, []byte("v2")); !errors.Is(err, objstore.ErrNoCAS) {
		t.Errorf("writeIfMatch on fileblob: %v, want ErrNoCAS", err)
	}
}

// race runs f(0..n-1) at once and returns their errors by index.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// checkOneWinner wants exactly one nil error and FailedPrecondition for
// the rest.
func checkOneWinner(t *testing.T, errs []error) {
	t.Helper()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case gcerrors.Code(err) != gcerrors.FailedPrecondition:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d writers won, want exactly 1 (errors: %v)", wins, len(errs), errs)
	}
}
