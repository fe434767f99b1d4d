//go:build tools

// Package tools pins module dependencies that the packages will import.
package tools
import (
 _ "github.com/apache/arrow-go/v18/arrow"
 _ "github.com/apache/arrow-go/v18/parquet/pqarrow"
 _ "github.com/parquet-go/parquet-go"
 _ "gonum.org/v1/gonum/blas/blas32"
 _ "github.com/segmentio/kafka-go"
 _ "github.com/twmb/franz-go/pkg/kfake"
 _ "github.com/cespare/xxhash/v2"
 _ "go.yaml.in/yaml/v3"
 _ "golang.org/x/sys/cpu"
 _ "golang.org/x/sync/errgroup"
 _ "go.uber.org/goleak"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "gonum.org/v1/plot"
)
