package s3test

// The S3 operations onestone needs, checked on the raw protocol (AWS SDK
// v2, no gocloud layer), so that a store that lacks one is named before
// anything is built on it. docs/object-storage.md records which servers
// passed.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// client returns an S3 client for the store and a key prefix unique to t.
func client(t *testing.T) (*s3.Client, Store, string) {
	t.Helper()
	s := Open(t)
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion(s.Region))
	if err != nil {
		t.Fatal(err)
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(s.Endpoint)
		o.UsePathStyle = true
	})
	prefix := fmt.Sprintf("raw/%d-%d-%s/", os.Getpid(), seq.Add(1), t.Name())
	t.Cleanup(func() {
		ctx := context.Background()
		out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: &prefix})
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		for _, o := range out.Contents {
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.Bucket, Key: o.Key}); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return c, s, prefix
}

func put(t *testing.T, c *s3.Client, bucket, key, body string, mod func(*s3.PutObjectInput)) (*s3.PutObjectOutput, error) {
	t.Helper()
	in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader(body)}
	if mod != nil {
		mod(in)
	}
	return c.PutObject(context.Background(), in)
}

func get(t *testing.T, c *s3.Client, bucket, key string, rng string) string {
	t.Helper()
	in := &s3.GetObjectInput{Bucket: &bucket, Key: &key}
	if rng != "" {
		in.Range = &rng
	}
	out, err := c.GetObject(context.Background(), in)
	if err != nil {
		t.Fatalf("GetObject %s %s: %v", key, rng, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// status returns the HTTP status of a failed request, or 0.
func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func TestServerPutGetRange(t *testing.T) {
	c, s, p := client(t)
	body := "0123456789abcdefghijklmnopqrstuvwxyz"
	if _, err := put(t, c, s.Bucket, p+"obj", body, nil); err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, s.Bucket, p+"obj", ""); got != body {
		t.Fatalf("GET = %q, want %q", got, body)
	}
	for _, tc := range []struct{ rng, want string }{
		{"bytes=0-0", body[:1]},
		{"bytes=10-19", body[10:20]},
		{"bytes=30-", body[30:]},
		{"bytes=-4", body[len(body)-4:]},
	} {
		if got := get(t, c, s.Bucket, p+"obj", tc.rng); got != tc.want {
			t.Errorf("GET %s = %q, want %q", tc.rng, got, tc.want)
		}
	}
	_, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &s.Bucket, Key: aws.String(p + "missing")})
	var nsk *types.NoSuchKey
	if !errors.As(err, &nsk) {
		t.Errorf("GET of a missing key: %v, want NoSuchKey", err)
	}
}

func TestServerListDelimiter(t *testing.T) {
	c, s, p := client(t)
	keys := []string{"a/1", "a/2", "a/b/3", "c/4", "top"}
	for _, k := range keys {
		if _, err := put(t, c, s.Bucket, p+k, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	list := func(prefix, delim string, maxKeys int32) (objs, dirs []string) {
		in := &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: aws.String(p + prefix)}
		if delim != "" {
			in.Delimiter = &delim
		}
		if maxKeys > 0 {
			in.MaxKeys = &maxKeys
		}
		pg := s3.NewListObjectsV2Paginator(c, in)
		for pg.HasMorePages() {
			out, err := pg.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range out.Contents {
				objs = append(objs, strings.TrimPrefix(*o.Key, p))
			}
			for _, cp := range out.CommonPrefixes {
				dirs = append(dirs, strings.TrimPrefix(*cp.Prefix, p))
			}
		}
		return objs, dirs
	}
	objs, dirs := list("", "/", 0)
	if !slices.Equal(objs, []string{"top"}) || !slices.Equal(dirs, []string{"a/", "c/"}) {
		t.Errorf("list / = %v %v, want [top] [a/ c/]", objs, dirs)
	}
	objs, dirs = list("a/", "/", 0)
	if !slices.Equal(objs, []string{"a/1", "a/2"}) || !slices.Equal(dirs, []string{"a/b/"}) {
		t.Errorf("list a/ / = %v %v, want [a/1 a/2] [a/b/]", objs, dirs)
	}
	objs, _ = list("", "", 2) // pages of 2 keys
	if !slices.Equal(objs, keys) {
		t.Errorf("list all in pages of 2 = %v, want %v", objs, keys)
	}
}

func TestServerDelete(t *testing.T) {
	c, s, p := client(t)
	if _, err := put(t, c, s.Bucket, p+"x", "x", nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.Bucket, Key: aws.String(p + "x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.Bucket, Key: aws.String(p + "x")}); status(err) != http.StatusNotFound {
		t.Errorf("HEAD after DELETE: %v, want 404", err)
	}
	// Deleting a missing key succeeds (S3 semantics; pruning relies on it
	// being idempotent).
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.Bucket, Key: aws.String(p + "x")}); err != nil {
		t.Errorf("DELETE of a missing key: %v", err)
	}
}

// multipart uploads parts of 5 MiB (the S3 minimum for all but the last)
// and completes them, with mod applied to the completion.
func multipart(t *testing.T, c *s3.Client, bucket, key string, parts [][]byte, mod func(*s3.CompleteMultipartUploadInput)) error {
	t.Helper()
	ctx := context.Background()
	mu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	var done []types.CompletedPart
	for i, part := range parts {
		n := int32(i + 1)
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: mu.UploadId, PartNumber: &n, Body: bytes.NewReader(part)})
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: &n})
	}
	in := &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: mu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}
	if mod != nil {
		mod(in)
	}
	_, err = c.CompleteMultipartUpload(ctx, in)
	if err != nil {
		_, _ = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: mu.UploadId})
	}
	return err
}

func TestServerMultipart(t *testing.T) {
	c, s, p := client(t)
	a := bytes.Repeat([]byte("a"), 5<<20)
	b := []byte("tail")
	if err := multipart(t, c, s.Bucket, p+"big", [][]byte{a, b}, nil); err != nil {
		t.Fatal(err)
	}
	want := string(a[len(a)-3:]) + string(b)
	if got := get(t, c, s.Bucket, p+"big", fmt.Sprintf("bytes=%d-", len(a)-3)); got != want {
		t.Errorf("tail across the part boundary = %q, want %q", got, want)
	}
	// Create-only on completion: the object exists now, so a second
	// upload completed with If-None-Match: * must fail.
	err := multipart(t, c, s.Bucket, p+"big", [][]byte{b}, func(in *s3.CompleteMultipartUploadInput) { in.IfNoneMatch = aws.String("*") })
	if status(err) != http.StatusPreconditionFailed {
		t.Errorf("CompleteMultipartUpload If-None-Match * over an object: %v, want 412", err)
	}
}

func TestServerIfNoneMatch(t *testing.T) {
	c, s, p := client(t)
	createOnly := func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }
	if _, err := put(t, c, s.Bucket, p+"v1/manifest", "first", createOnly); err != nil {
		t.Fatalf("create-only PUT of a new key: %v", err)
	}
	_, err := put(t, c, s.Bucket, p+"v1/manifest", "second", createOnly)
	if status(err) != http.StatusPreconditionFailed {
		t.Fatalf("create-only PUT over an existing key: %v, want 412", err)
	}
	if got := get(t, c, s.Bucket, p+"v1/manifest", ""); got != "first" {
		t.Errorf("after the refused PUT the object is %q, want first", got)
	}
}

func TestServerIfMatch(t *testing.T) {
	c, s, p := client(t)
	key := p + "LATEST"
	out, err := put(t, c, s.Bucket, key, "v00000001", nil)
	if err != nil {
		t.Fatal(err)
	}
	etag1 := out.ETag
	if etag1 == nil || *etag1 == "" {
		t.Fatal("PUT returned no ETag")
	}
	out, err = put(t, c, s.Bucket, key, "v00000002", func(in *s3.PutObjectInput) { in.IfMatch = etag1 })
	if err != nil {
		t.Fatalf("PUT If-Match with the current ETag: %v", err)
	}
	// The first ETag is stale now.
	_, err = put(t, c, s.Bucket, key, "v00000003", func(in *s3.PutObjectInput) { in.IfMatch = etag1 })
	if status(err) != http.StatusPreconditionFailed {
		t.Fatalf("PUT If-Match with a stale ETag: %v, want 412", err)
	}
	if got := get(t, c, s.Bucket, key, ""); got != "v00000002" {
		t.Errorf("pointer = %q, want v00000002", got)
	}
	// If-Match on a missing key fails too (S3 answers 404 NoSuchKey; some
	// stores 412): either way the write does not happen.
	_, err = put(t, c, s.Bucket, p+"missing", "x", func(in *s3.PutObjectInput) { in.IfMatch = out.ETag })
	if st := status(err); st != http.StatusNotFound && st != http.StatusPreconditionFailed {
		t.Errorf("PUT If-Match on a missing key: %v, want 404 or 412", err)
	}
	if _, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &s.Bucket, Key: aws.String(p + "missing")}); status(err) != http.StatusNotFound {
		t.Errorf("the refused If-Match PUT created the key: %v", err)
	}
}

// TestServerIfMatchRace races writers on one pointer, all holding the
// same ETag: in every round exactly one must win.
func TestServerIfMatchRace(t *testing.T) {
	c, s, p := client(t)
	key := p + "LATEST"
	out, err := put(t, c, s.Bucket, key, "round-0", nil)
	if err != nil {
		t.Fatal(err)
	}
	etag := out.ETag
	const rounds, writers = 10, 4
	for r := 1; r <= rounds; r++ {
		type result struct {
			etag *string
			err  error
			body string
		}
		res := make(chan result, writers)
		start := make(chan struct{})
		for w := range writers {
			body := fmt.Sprintf("round-%d-writer-%d", r, w) // distinct bodies: distinct ETags
			go func() {
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				o, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.Bucket, Key: &key, Body: strings.NewReader(body), IfMatch: etag})
				if err != nil {
					res <- result{err: err}
					return
				}
				res <- result{etag: o.ETag, body: body}
			}()
		}
		close(start)
		var winners []result
		for range writers {
			x := <-res
			switch {
			case x.err == nil:
				winners = append(winners, x)
			case status(x.err) == http.StatusPreconditionFailed:
			default:
				t.Fatalf("round %d: unexpected error: %v", r, x.err)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of %d writers won, want exactly 1", r, len(winners), writers)
		}
		if got := get(t, c, s.Bucket, key, ""); got != winners[0].body {
			t.Fatalf("round %d: pointer = %q, the winner wrote %q", r, got, winners[0].body)
		}
		etag = winners[0].etag
	}
}
