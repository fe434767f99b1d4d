package gen

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// MaxItemVectors is the largest Config.ItemVectors (features.MaxDim).
const MaxItemVectors = 65536

// vecFactors is the number of hidden item factors a content vector mixes.
const vecFactors = 7

// DrawItemVectors gives every item of w a content vector of dim numbers,
// as a content model (text or image embeddings) would: a fixed random
// linear map of the item's hidden factors — its CTR and CVR biases, its
// category's and its brand's CTR and CVR effects and its relative log
// price, each standardised — plus noise of standard deviation 0.5 in every
// dimension. The map and the noise come from a stream of their own, so
// the rest of the world, and every other column, is the same with or
// without vectors. Call it before using w from several goroutines.
func (w *World) DrawItemVectors(seed uint64, dim int) error {
	if dim < 1 || dim > MaxItemVectors {
		return fmt.Errorf("gen: item vector dim %d outside [1, %d]", dim, MaxItemVectors)
	}
	r := rand.New(rand.NewPCG(seed, 0x2545f4914f6cdd1d))
	p := make([]float64, dim*vecFactors)
	for i := range p {
		p[i] = r.NormFloat64() / math.Sqrt(vecFactors)
	}
	w.vecDim = dim
	w.itemVecs = make([]float32, len(w.items)*dim)
	for i := range w.items {
		it := &w.items[i]
		z := [vecFactors]float64{
			it.ctr / 0.35, it.cvr / 0.2,
			w.catCTR[it.category] / 0.35, w.catCVR[it.category] / 0.35,
			w.brCTR[it.brand] / 0.3, w.brCVR[it.brand] / 0.3,
			it.relPrice / 0.6,
		}
		for d := range dim {
			s := 0.5 * r.NormFloat64()
			for j, x := range z {
				s += p[d*vecFactors+j] * x
			}
			w.itemVecs[i*dim+d] = float32(s)
		}
	}
	return nil
}

// VecEvent is an impression with the item's content vector
// (Config.ItemVectors): an Event and the column item_vec, a list of float
// after the Event's columns.
type VecEvent struct {
	Event
	ItemVec []float32 `parquet:"item_vec,list" json:"item_vec"`
}

// NextVec is Next with the item's content vector (DrawItemVectors must
// have been called). ItemVec points into the World.
func (s *Stream) NextVec(e *VecEvent) {
	s.next(&e.Event, nil)
	i := int(e.ItemID-1) * s.w.vecDim
	e.ItemVec = s.w.itemVecs[i : i+s.w.vecDim : i+s.w.vecDim]
}
