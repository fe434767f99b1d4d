package pipelines

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The kill test runs this test binary as the stream process.
	if os.Getenv(streamChildEnv) != "" {
		os.Exit(streamChild())
	}
	goleak.VerifyTestMain(m)
}
