package objstore

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // registers file://
)

// secret stands for what must never reach an error message.
const secret = "s3cr3tV4LU3"

// noSecret fails t if err is nil or names secret.
func noSecret(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("%s: the error names the secret: %v", what, err)
	}
	if !strings.HasPrefix(err.Error(), "objstore: ") {
		t.Errorf("%s: the error %q does not start with the package name", what, err)
	}
}

func TestIsURL(t *testing.T) {
	for loc, want := range map[string]bool{
		"s3://b/p":            true,
		"gs://b":              true,
		"azblob://c/p?x=1":    true,
		"file:///tmp/models":  true,
		"models":              false,
		"/tmp/models":         false,
		"./a://b":             false, // a relative path with "://" in a file name
		`C:\models`:           false,
		"://b":                false,
		"models/v00000001":    false,
		"relative/dir://odd":  false,
		"s3:/one-slash/p":     false,
		"http://host:9000/b/": true, // a URL, refused by Parse
	} {
		if got := IsURL(loc); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", loc, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		raw                  string
		scheme, bucket, path string
		query                url.Values
		str                  string
	}{
		{
			raw:    "s3://models/team/ctr?endpoint=http://127.0.0.1:9000&region=us-east-1&use_path_style=true",
			scheme: "s3", bucket: "models", path: "team/ctr",
			query: url.Values{"endpoint": {"http://127.0.0.1:9000"}, "region": {"us-east-1"}, "use_path_style": {"true"}},
			str:   "s3://models/team/ctr",
		},
		{
			raw:    "gs://models?endpoint=http://127.0.0.1:4443",
			scheme: "gs", bucket: "models", path: "",
			query: url.Values{"endpoint": {"http://127.0.0.1:4443"}},
			str:   "gs://models/",
		},
		{
			raw:    "azblob://container/a/b/?domain=127.0.0.1:10000&protocol=http&localemu=true",
			scheme: "azblob", bucket: "container", path: "a/b/",
			query: url.Values{"domain": {"127.0.0.1:10000"}, "protocol": {"http"}, "localemu": {"true"}},
			str:   "azblob://container/a/b/",
		},
	} {
		l, err := Parse(c.raw)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.raw, err)
			continue
		}
		if l.Scheme != c.scheme || l.Bucket != c.bucket || l.Path != c.path {
			t.Errorf("Parse(%q) = %s %s %q, want %s %s %q", c.raw, l.Scheme, l.Bucket, l.Path, c.scheme, c.bucket, c.path)
		}
		if l.Query.Encode() != c.query.Encode() {
			t.Errorf("Parse(%q).Query = %v, want %v", c.raw, l.Query, c.query)
		}
		if l.String() != c.str {
			t.Errorf("Parse(%q).String() = %q, want %q (no query)", c.raw, l.String(), c.str)
		}
		// URL gives it back whole, to the query's order.
		back, err := Parse(l.URL())
		if err != nil || back.URL() != l.URL() || back.Query.Encode() != c.query.Encode() {
			t.Errorf("Parse(%q).URL() = %q does not round-trip: %v", c.raw, l.URL(), err)
		}
	}
}

// TestParseRefuses: what Parse refuses, and that it says why without
// quoting a secret the URL holds.
func TestParseRefuses(t *testing.T) {
	for _, c := range []struct {
		raw, want string
	}{
		// Credentials in the user part, each scheme pointing to its chain.
		{"s3://AKIAEXAMPLE:" + secret + "@models/p?region=us-east-1", "AWS_ACCESS_KEY_ID"},
		{"gs://user:" + secret + "@models/p", "GOOGLE_APPLICATION_CREDENTIALS"},
		{"azblob://account:" + secret + "@container/p", "AZURE_STORAGE_KEY"},
		{"s3://" + secret + "@models", "credentials do not go in the URL"},
		// Not a store onestone opens.
		{"http://host/b?key=" + secret, "unsupported scheme"},
		{"file:///tmp/models?x=" + secret, "unsupported scheme"},
		{"ftp://models/p", "unsupported scheme"},
		// No bucket.
		{"s3:///p?token=" + secret, "names no bucket"},
		// gs:// endpoint= must be http(s)://HOST[:PORT], with no user.
		{"gs://models?endpoint=127.0.0.1:4443&x=" + secret, "endpoint= wants"},
		{"gs://models?endpoint=ftp://h:1", "endpoint= wants"},
		{"gs://models?endpoint=http://u:" + secret + "@h:1", "endpoint= wants"},
		{"gs://models?endpoint=http://", "endpoint= wants"},
		// Does not parse (a bad escape): url's error would quote it whole.
		{"s3://models/%zz?key=" + secret, "does not parse"},
	} {
		_, err := Parse(c.raw)
		noSecret(t, c.raw, err)
		if err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q): %v; want it to say %q", c.raw, err, c.want)
		}
	}
}

// TestOpenErrorsHideTheQuery: gocloud.dev's errors quote the URL it was
// given, query included; Open's name the bucket and path only.
func TestOpenErrorsHideTheQuery(t *testing.T) {
	ctx := context.Background()
	for _, raw := range []string{
		"s3://models/p?region=us-east-1&bogus=" + secret,
		"gs://models/p?bogus=" + secret,
		"azblob://container/p?bogus=" + secret,
	} {
		l, err := Parse(raw)
		if err != nil {
			t.Fatalf("Parse(%q): %v", raw, err)
		}
		// The driver's own error does quote it: what Open must scrub.
		u := url.URL{Scheme: l.Scheme, Host: l.Bucket, RawQuery: l.Query.Encode()}
		if _, err := blob.OpenBucket(ctx, u.String()); err == nil || !strings.Contains(err.Error(), secret) && l.Scheme != "azblob" {
			t.Errorf("gocloud.dev no longer quotes the query of %s (%v): this test checks nothing there", l.Scheme, err)
		}
		_, err = Open(ctx, l)
		noSecret(t, raw, err)
		if err != nil && !strings.Contains(err.Error(), l.String()) {
			t.Errorf("Open(%q): %v; want it to name %s", raw, err, l.String())
		}
	}
	// An emulator endpoint takes no other parameter (it has no region, no
	// credentials): refused, without quoting them.
	l, err := Parse("gs://models?endpoint=http://127.0.0.1:1&credentials_file=" + secret)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, l)
	noSecret(t, "gs endpoint= with another parameter", err)
	if err != nil && !strings.Contains(err.Error(), "takes no other parameter") {
		t.Errorf("gs endpoint= with another parameter: %v", err)
	}
}

func TestScrub(t *testing.T) {
	u := "s3://b/p?region=r&key=" + secret
	msg := `open bucket ` + u + `: unknown query parameter; query was region=r&key=` + secret
	got := scrub(msg, u)
	if strings.Contains(got, secret) {
		t.Fatalf("scrub left the secret: %q", got)
	}
	if want := "open bucket s3://b/p: unknown query parameter; query was ..."; got != want {
		t.Errorf("scrub = %q, want %q", got, want)
	}
}

// TestNoCAS: a store without versions (fileblob) gives ErrNoCAS on both
// sides of the compare-and-swap; a GCS version must be a generation. The
// compare-and-swap itself runs on each provider's server in
// internal/s3test and bundle.
func TestNoCAS(t *testing.T) {
	ctx := context.Background()
	b, err := blob.OpenBucket(ctx, "file://"+t.TempDir()+"?no_tmp_dir=true")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WriteAll(ctx, "LATEST", []byte("v1"), nil); err != nil {
		t.Fatal(err)
	}
	r, err := b.NewReader(ctx, "LATEST", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := ReadVersion(r); !errors.Is(err, ErrNoCAS) {
		t.Errorf("ReadVersion on fileblob: %v, want ErrNoCAS", err)
	}
	err = b.WriteAll(ctx, "LATEST", []byte("v2"), &blob.WriterOptions{BeforeWrite: IfMatch("etag")})
	if !errors.Is(err, ErrNoCAS) {
		t.Errorf("IfMatch on fileblob: %v, want ErrNoCAS", err)
	}
	if got, _ := b.ReadAll(ctx, "LATEST"); string(got) != "v1" {
		t.Errorf("the refused write changed the object: %q", got)
	}
}
