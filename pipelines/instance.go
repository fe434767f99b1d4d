package pipelines

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/onestone/onestone/ingest"
	"github.com/onestone/onestone/internal/fileutil"
)

// InstanceFile is the file under a stream's model root that holds the
// stream's instance id (StreamConfig.InstanceID) when none is given.
const InstanceFile = "instance-id"

// lockFile is the file under a stream's model root that a running stream
// holds an exclusive lock on.
const lockFile = ".stream.lock"

// streamInstance returns the stream's instance id: id when given, else the
// one stored in root's InstanceFile, which the first run makes (the host
// name and 8 random hex digits) and stores durably.
func streamInstance(root, id string) (string, error) {
	if id != "" {
		return id, ingest.ValidInstanceID(id)
	}
	path := filepath.Join(root, InstanceFile)
	b, err := os.ReadFile(path)
	if err == nil {
		id = strings.TrimSpace(string(b))
		if err := ingest.ValidInstanceID(id); err != nil || id == "" {
			return "", fmt.Errorf("pipelines: stream: %s holds no usable instance id (%q); remove it to make a new one", path, id)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("pipelines: stream: %w", err)
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("pipelines: stream: instance id: %w", err)
	}
	id = hostLabel() + hex.EncodeToString(rnd[:])
	if err := fileutil.WriteFile(path, 0o644, func(w io.Writer) error {
		_, err := io.WriteString(w, id+"\n")
		return err
	}); err != nil {
		return "", fmt.Errorf("pipelines: stream: %w", err)
	}
	return id, nil
}

// hostLabel is the host name's first label, reduced to the characters an
// instance id allows and to 40 of them, with a trailing '-' ("" when there
// is none).
func hostLabel() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	h, _, _ = strings.Cut(h, ".")
	var sb strings.Builder
	for _, c := range h {
		if sb.Len() == 40 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			sb.WriteRune(c)
		}
	}
	if sb.Len() == 0 {
		return ""
	}
	return sb.String() + "-"
}
