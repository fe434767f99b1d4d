package gen

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// MaxIDEffects is the largest strength AddIDEffects takes.
const MaxIDEffects = 3

// idFactors is the number of latent factors of a user's taste and an
// item's profile in the hidden user × item affinity.
const idFactors = 8

// idStride is the number of hidden numbers per user or item: a CTR bias,
// a CVR bias and idFactors latent factors.
const idStride = 2 + idFactors

// AddIDEffects gives every user and item of w effects that only its id
// reveals, of the given strength s (the standard deviation of each term
// on the CTR logit):
//
//	ctr_shared += hu_ctr + hi_ctr + s·⟨pu, qi⟩/√8
//	cvr_own    += hu_cvr + hi_cvr
//
// where hu_ctr, hi_ctr ~ N(0, s²) are hidden user and item CTR biases,
// hu_cvr, hi_cvr ~ N(0, (0.6·s)²) hidden CVR biases, and pu, qi ~ N(0, I)
// 8-dimensional latent factors whose product is a user × item affinity
// (what collaborative filtering learns). No column shows them: not
// user_activity or item_popularity, not the tags, the age, the category,
// the brand or item_vec. The CVR logit takes the CTR structure's hidden
// terms through Config.TaskCorr, as it takes the rest. The biases are
// solved again so the mean CTR and CVR stay about 3.5% and 15%.
//
// The effects come from a stream of their own, so the world's other
// draws are unchanged; s = 0 leaves w as it is. Call it at most once,
// before w is used from several goroutines.
func (w *World) AddIDEffects(seed uint64, s float64) error {
	if !(s >= 0 && s <= MaxIDEffects) {
		return fmt.Errorf("gen: id effect strength %v outside [0, %d]", s, MaxIDEffects)
	}
	if w.idEff != 0 {
		return fmt.Errorf("gen: id effects already added (strength %v)", w.idEff)
	}
	if s == 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(seed, 0x4cf5ad432745937f))
	draw := func(n int) []float64 {
		h := make([]float64, n*idStride)
		for k := 0; k < len(h); k += idStride {
			h[k] = s * r.NormFloat64()
			h[k+1] = 0.6 * s * r.NormFloat64()
			for j := range idFactors {
				h[k+2+j] = r.NormFloat64()
			}
		}
		return h
	}
	w.userHid = draw(len(w.users))
	w.itemHid = draw(len(w.items))
	w.idEff = s
	w.calibrate(rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d)))
	return nil
}

// idTerms returns the hidden id terms of user u and item i on the CTR
// structure and on the CVR's own structure (AddIDEffects).
func (w *World) idTerms(u, i int) (ctr, cvr float64) {
	hu := w.userHid[u*idStride : (u+1)*idStride : (u+1)*idStride]
	hi := w.itemHid[i*idStride : (i+1)*idStride : (i+1)*idStride]
	var dot float64
	for j := 2; j < idStride; j++ {
		dot += hu[j] * hi[j]
	}
	return hu[0] + hi[0] + w.idEff*dot/math.Sqrt(idFactors), hu[1] + hi[1]
}
