package pipelines

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/onestone/onestone/internal/s3test"
)

func TestMain(m *testing.M) {
	// The kill test runs this test binary as the stream process.
	if os.Getenv(streamChildEnv) != "" {
		os.Exit(streamChild())
	}
	// s3test.Main starts the S3 test server for the tests that use it.
	// The AWS SDK's HTTP client keeps idle connections to it and offers
	// no way to close them: their goroutines are not leaks.
	goleak.VerifyTestMain(withS3{m},
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}

type withS3 struct{ m *testing.M }

func (w withS3) Run() int { return s3test.Main(w.m) }
