// Package objstore opens the object store URLs onestone takes wherever it
// takes a path (s3://, gs://, azblob://) through gocloud.dev/blob, and
// gives the one thing gocloud.dev/blob has no portable option for: a
// compare-and-swap write, conditional on the version of an object that
// was read (S3 and Azure: its ETag; GCS: its generation).
//
// URLs:
//
//	s3://BUCKET/PATH?endpoint=http://HOST:PORT&region=us-east-1&use_path_style=true
//	gs://BUCKET/PATH[?endpoint=http://HOST:PORT]
//	azblob://CONTAINER/PATH[?domain=HOST:PORT&protocol=http&localemu=true]
//
// The query parameters are gocloud.dev's for the scheme (s3blob,
// gcsblob, azureblob), with one of onestone's own: endpoint= on gs://
// names a GCS emulator (fake-gcs-server), reached without credentials,
// as the STORAGE_EMULATOR_HOST variable does for every gs:// URL of the
// process. Credentials never go in a URL: they come from each provider's
// standard chain (AWS: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a
// profile or an instance role; GCS: application default credentials;
// Azure: AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY,
// AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_SAS_TOKEN, or
// azidentity's default chain).
package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	azblobblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // registers azblob:// with blob.OpenBucket
	"gocloud.dev/blob/gcsblob"     // registers gs://
	_ "gocloud.dev/blob/s3blob"    // registers s3://
	"google.golang.org/api/option"
)

// Schemes are the URL schemes of the object stores Open opens.
var Schemes = []string{"s3", "gs", "azblob"}

// IsURL reports whether loc names something by URL (scheme://...) rather
// than a local path.
func IsURL(loc string) bool {
	scheme, _, ok := strings.Cut(loc, "://")
	return ok && scheme != "" && !strings.ContainsAny(scheme, "/\\")
}

// Location is a parsed object store URL.
type Location struct {
	// Scheme is one of Schemes.
	Scheme string
	// Bucket is the bucket (Azure: the container).
	Bucket string
	// Path is the URL's path without its leading slash (a key or a
	// prefix, as the caller reads it).
	Path string
	// Query holds the driver's parameters.
	Query url.Values
}

// credentialHint says where each scheme's credentials come from.
var credentialHint = map[string]string{
	"s3":     "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or use a profile",
	"gs":     "use application default credentials (GOOGLE_APPLICATION_CREDENTIALS)",
	"azblob": "set AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, or AZURE_STORAGE_CONNECTION_STRING",
}

// Parse parses an object store URL. Its errors never quote the query or
// the user part of the URL.
func Parse(raw string) (*Location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's errors quote the URL whole: name only its scheme.
		scheme, _, _ := strings.Cut(raw, "://")
		return nil, fmt.Errorf("objstore: a %s:// URL that does not parse", scheme)
	}
	hint, ok := credentialHint[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("objstore: %s://...: unsupported scheme: want s3://, gs:// or azblob:// (or a local path)", u.Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("objstore: credentials do not go in the URL: %s", hint)
	}
	l := &Location{Scheme: u.Scheme, Bucket: u.Host, Path: strings.TrimPrefix(u.Path, "/"), Query: u.Query()}
	if l.Bucket == "" {
		return nil, fmt.Errorf("objstore: %q names no bucket", l.String())
	}
	if u.Scheme == "gs" && l.Query.Has("endpoint") {
		ep, err := url.Parse(l.Query.Get("endpoint"))
		if err != nil || (ep.Scheme != "http" && ep.Scheme != "https") || ep.Host == "" || ep.User != nil {
			return nil, fmt.Errorf("objstore: %s: endpoint= wants http://HOST:PORT", l)
		}
	}
	return l, nil
}

// String is the URL without its query: scheme://bucket/path.
func (l *Location) String() string {
	return (&url.URL{Scheme: l.Scheme, Host: l.Bucket, Path: "/" + l.Path}).String()
}

// URL is the URL whole, query included.
func (l *Location) URL() string {
	return (&url.URL{Scheme: l.Scheme, Host: l.Bucket, Path: "/" + l.Path, RawQuery: l.Query.Encode()}).String()
}

// Open opens the bucket of l (the whole bucket: Path is the caller's to
// read). The caller closes it.
func Open(ctx context.Context, l *Location) (*blob.Bucket, error) {
	q := cloneValues(l.Query)
	if l.Scheme == "gs" && q.Has("endpoint") {
		ep := q.Get("endpoint")
		q.Del("endpoint")
		if len(q) > 0 {
			return nil, fmt.Errorf("objstore: %s: endpoint= takes no other parameter", l)
		}
		c, err := emulatorClient(ctx, ep)
		if err != nil {
			return nil, fmt.Errorf("objstore: %s: %w", l, err)
		}
		b, err := gcsblob.OpenBucket(ctx, nil, l.Bucket, &gcsblob.Options{Client: c})
		if err != nil {
			return nil, fmt.Errorf("objstore: open %s: %w", l, err)
		}
		return b, nil
	}
	u := url.URL{Scheme: l.Scheme, Host: l.Bucket, RawQuery: q.Encode()}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		// gocloud.dev's errors may quote the URL (and so its query).
		return nil, fmt.Errorf("objstore: open %s: %s", l, scrub(err.Error(), u.String()))
	}
	var c *storage.Client
	if b.As(&c) {
		boundRetries(c)
	}
	return b, nil
}

// maxAttempts bounds the tries of one GCS request, as the AWS SDK (3)
// and the Azure SDK (4) bound theirs: the storage client's default
// retries an idempotent request until its context ends, so a dead store
// would take a caller's whole deadline rather than fail.
const maxAttempts = 3

func boundRetries(c *storage.Client) { c.SetRetry(storage.WithMaxAttempts(maxAttempts)) }

// scrub replaces the URL u in msg by its form without the query.
func scrub(msg, u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return msg
	}
	short := (&url.URL{Scheme: pu.Scheme, Host: pu.Host, Path: pu.Path}).String()
	msg = strings.ReplaceAll(msg, u, short)
	if pu.RawQuery != "" {
		msg = strings.ReplaceAll(msg, pu.RawQuery, "...")
	}
	return msg
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// emulatorClients holds one storage client per GCS emulator endpoint,
// kept for the process's life (a bucket opened with Options.Client does
// not close it).
var emulatorClients sync.Map // endpoint -> *storage.Client

// emulatorClient is the storage client for the GCS emulator at endpoint:
// the JSON API under /storage/v1/, no credentials.
func emulatorClient(ctx context.Context, endpoint string) (*storage.Client, error) {
	if c, ok := emulatorClients.Load(endpoint); ok {
		return c.(*storage.Client), nil
	}
	c, err := storage.NewClient(context.WithoutCancel(ctx),
		option.WithEndpoint(strings.TrimSuffix(endpoint, "/")+"/storage/v1/"),
		option.WithoutAuthentication(),
		storage.WithJSONReads())
	if err != nil {
		return nil, err
	}
	boundRetries(c)
	if prev, loaded := emulatorClients.LoadOrStore(endpoint, c); loaded {
		_ = c.Close()
		return prev.(*storage.Client), nil
	}
	return c, nil
}

// ErrNoCAS is returned when a store gives no version of an object read,
// or takes no condition on one written: the compare-and-swap cannot be
// done there.
var ErrNoCAS = errors.New("objstore: the store offers no compare-and-swap")

// ReadVersion returns the version of exactly what r reads: the ETag of
// an S3 or Azure object, the generation of a GCS one.
func ReadVersion(r *blob.Reader) (string, error) {
	var s3out s3.GetObjectOutput
	if r.As(&s3out) {
		if s3out.ETag == nil || *s3out.ETag == "" {
			return "", fmt.Errorf("%w: the S3 store gives no ETag", ErrNoCAS)
		}
		return *s3out.ETag, nil
	}
	var gr *storage.Reader
	if r.As(&gr) {
		if gr == nil || gr.Attrs.Generation == 0 {
			return "", fmt.Errorf("%w: the GCS store gives no generation", ErrNoCAS)
		}
		return strconv.FormatInt(gr.Attrs.Generation, 10), nil
	}
	var ar azblobblob.DownloadStreamResponse
	if r.As(&ar) {
		if ar.ETag == nil || *ar.ETag == "" {
			return "", fmt.Errorf("%w: the Azure store gives no ETag", ErrNoCAS)
		}
		return string(*ar.ETag), nil
	}
	return "", ErrNoCAS
}

// IfMatch is a blob.WriterOptions.BeforeWrite that makes the write
// succeed only if the object is still at version (ReadVersion): S3
// If-Match, GCS ifGenerationMatch, Azure If-Match. A write that finds the
// object at another version fails with gcerrors.FailedPrecondition.
func IfMatch(version string) func(as func(any) bool) error {
	return func(as func(any) bool) error {
		var s3in *transfermanager.UploadObjectInput
		if as(&s3in) {
			s3in.IfMatch = aws.String(version)
			return nil
		}
		var oh **storage.ObjectHandle
		if as(&oh) {
			gen, err := strconv.ParseInt(version, 10, 64)
			if err != nil || gen <= 0 {
				return fmt.Errorf("objstore: %q is not a GCS generation", version)
			}
			*oh = (*oh).If(storage.Conditions{GenerationMatch: gen})
			return nil
		}
		var ao *azblob.UploadStreamOptions
		if as(&ao) {
			etag := azcore.ETag(version)
			if ao.AccessConditions == nil {
				ao.AccessConditions = &azblob.AccessConditions{}
			}
			if ao.AccessConditions.ModifiedAccessConditions == nil {
				ao.AccessConditions.ModifiedAccessConditions = &azblobblob.ModifiedAccessConditions{}
			}
			ao.AccessConditions.ModifiedAccessConditions.IfMatch = &etag
			return nil
		}
		return ErrNoCAS
	}
}
