package serving

import "github.com/onestone/onestone/bundle"

// DecodeTransform exposes to the external benchmarks (bench_test.go) the
// serving path before the model: run decodes a request body, merges the
// context and transforms every candidate, on one pooled state of s that
// done gives back.
func DecodeTransform(s *Scorer) (run func(body []byte) error, done func()) {
	st := s.pool.Get().(*scoreState)
	run = func(body []byte) error {
		if err := DecodeRequest(&st.req, body, s.cfg.MaxCandidates); err != nil {
			return err
		}
		if err := st.decodeContext(&st.req); err != nil {
			return err
		}
		pt := &st.parts[0]
		pt.lo, pt.hi = 0, len(st.req.Candidates)
		return st.preparePart(pt, &st.req)
	}
	return run, func() { s.pool.Put(st) }
}

// LoadBundleInPlace exposes loadBundle with a spare bundle, whose model
// a delta on its chain is applied onto in place (the server's path).
func LoadBundleInPlace(dir string, spare *Bundle) (*Bundle, error) {
	return loadBundle(dir, bundle.Limits{}, nil, spare)
}

// DecodeRequestSplit exposes ScoreBody's envelope scan to the external
// benchmarks: DecodeRequest with the candidates split unchecked.
func DecodeRequestSplit(dst *Request, body []byte, maxCandidates int) error {
	return decodeRequest(dst, body, maxCandidates, false)
}
