// Package gen generates a synthetic impression log with known click and
// conversion probabilities, so a model's AUC can be compared with the AUC the
// true probabilities reach (the ceiling).
//
// # Generating process
//
// A World is drawn once from the seed:
//
//   - 32 categories (Zipf-like popularity), each with a CTR effect, a CVR
//     effect and a typical log-price.
//   - Brands (Items/40, at least 50), each belonging to one category, with a
//     CTR and a CVR effect.
//   - Items: a category, a brand of that category, a price (log-normal around
//     the category's typical price), a CTR and a CVR bias (N(0, 0.35²),
//     N(0, 0.2²)) and a popularity weight exp(0.2·z + 1.2·bias) whose log is
//     the visible item_popularity column. Impressions pick items in
//     proportion to popularity.
//   - 8 user segments with a segment x category affinity for CTR and another
//     for CVR (N(0, 0.8²) and N(0, 0.6²)). A user has a hidden segment, 0-5
//     tags of which ~80% come from the segment's own 8 tags (10% of users
//     have none), an age (centred on 22+5·segment; 5% of users have no
//     age), a CTR and a CVR bias (N(0, 0.35²), N(0, 0.2²)) and an activity
//     level 3·exp(1.43·bias + 0.2·z), the visible user_activity column. The model
//     sees the segment only through tags and age.
//
// With a Skew, users and items are picked with Zipf-like weights instead:
// user u (0-based) in proportion to (u+1)^-Skew.Users, and item i's
// popularity weight is multiplied by (i+1)^-Skew.Items (its log, the
// item_popularity column, includes that term), so that a few ids get most
// impressions and most ids few, as real ids do. Users and items are drawn
// independently of their index, so the index order is a random one.
//
// With id effects (World.AddIDEffects, Config.IDEffects, gen
// --id-effects), users and items also have CTR and CVR biases and a
// user × item latent-factor affinity that no column reveals, so that a
// model learns them only through its user_id and item_id embeddings, and
// hash collisions cost what they cost on real ids.
//
// Each impression picks a user uniformly, an item by popularity, a device
// (android, ios, web, tablet), an hour from a daily profile and a slot
// position 1-20. Then
//
//	ctr_shared = cat + brand + affinity_ctr[segment][category] + user + item
//	             + device + hour(h) + age(bucket) - 0.3·relative log price
//	ctr_logit  = bias_ctr + scale·(ctr_shared - 0.55·ln position)
//	cvr_own    = its own cat, brand, affinity, user, item, device, hour,
//	             age and price effects
//	cvr_logit  = bias_cvr + 1.1·(corr·std(ctr_shared) + sqrt(1-corr²)·std(cvr_own))
//
// where std() standardises over a calibration sample, corr is
// Config.TaskCorr, and the biases are solved on the same sample so that
// the mean CTR is about 3.5% and the mean CVR among clicks about 15%.
// click ~ Bernoulli(true_ctr); conversion ~ Bernoulli(true_cvr) only when
// click is 1. The position effect is on the click only.
//
// With Config.Cart the funnel has a third step between click and
// conversion, add-to-cart: cart ~ Bernoulli(true_cart) when click is 1 and
// conversion ~ Bernoulli(true_cvr/true_cart) when cart is 1, where
//
//	true_cart = true_cvr^α,  α = clamp(0.5 − 0.2·relative log price, 0.2, 0.8)
//
// so true_cvr stays the probability of a conversion given a click, and
// expensive items are put in the cart more often than they are bought.
// The other columns are drawn as in the two-step funnel (the same rows, up
// to the first cart, whose extra draw moves the stream on).
//
// Everything is deterministic for a seed: the world comes from one stream
// and each output file from its own stream, so files can be written in
// parallel.
//
// # Event streams
//
// Streams (and WriteStreams) turn the same world into what a real system
// logs in three places, for the stream trainer's join: impressions (the
// features the ranker scored, an impression id and an event time), clicks
// and conversions (each an impression id and an event time), and the truth
// (which impressions were clicked and converted, and when). Impressions
// arrive as a Poisson process; a click comes seconds to minutes after its
// impression, a conversion a heavy-tailed delay (mean of hours) after its
// click (see ClickDelayMedian and the constants after it); a time-scale
// factor shrinks every delay. A few events are logged twice, a few clicks
// before their impression (a client clock behind the ranker's), and a few
// impressions never, so their clicks and conversions are orphans. The
// message formats are in docs/streaming.md ("Event formats").
package gen

import (
	"fmt"
	"math"
	"math/rand/v2"
)

const (
	numCategories = 32
	numSegments   = 8
	tagsPerSeg    = 8
	numPositions  = 20
)

var deviceNames = [...]string{"android", "ios", "web", "tablet"}

var (
	deviceShare = [...]float64{0.5, 0.3, 0.15, 0.05}
	deviceCTR   = [...]float64{0, 0.2, -0.3, 0.1}
	deviceCVR   = [...]float64{0, 0.3, 0.1, -0.2}
)

type user struct {
	segment  int
	tags     []string
	age      int32
	hasAge   bool
	ctr, cvr float64
	activity float64
}

type item struct {
	category   int
	brand      int
	price      float64
	relPrice   float64 // log price minus the category's typical log price
	ctr, cvr   float64
	popularity float64 // log weight
}

// World holds the users, items and effects impressions are drawn from. It is
// immutable after NewWorld and safe for concurrent use.
type World struct {
	users   []user
	items   []item
	catName []string
	catCTR  []float64
	catCVR  []float64
	catLogP []float64
	brName  []string
	brCTR   []float64
	brCVR   []float64
	affCTR  [numSegments][numCategories]float64
	affCVR  [numSegments][numCategories]float64
	hourCDF [24]float64
	itemCDF []float64
	userCDF []float64 // nil: users are picked uniformly

	// itemVecs holds vecDim numbers per item (DrawItemVectors), or nil.
	itemVecs []float32
	vecDim   int

	// idEff is the strength of the hidden id effects (AddIDEffects), 0
	// for none; userHid and itemHid hold idStride numbers per user and
	// per item.
	idEff            float64
	userHid, itemHid []float64

	corr             float64
	biasCTR, biasCVR float64
	ctrScale         float64
	m1, s1, m2, s2   float64 // calibration of the shared and own structures
}

// Skew makes the picks of users and items Zipf-like (see the package
// documentation): the exponents, 0 for the default picks (uniform users,
// items by their popularity alone).
type Skew struct {
	Users, Items float64
}

// Validate checks that the exponents are finite and in [0, 4].
func (s Skew) Validate() error {
	if !(s.Users >= 0 && s.Users <= 4 && s.Items >= 0 && s.Items <= 4) {
		return fmt.Errorf("gen: skew exponents %v (users) and %v (items) must be in [0, 4]", s.Users, s.Items)
	}
	return nil
}

// NewWorld draws a world of users and items from seed. corr in [-1, 1] is
// how much of the CVR logit's structure is shared with the CTR logit.
func NewWorld(seed uint64, users, items int, corr float64) (*World, error) {
	return NewSkewedWorld(seed, users, items, corr, Skew{})
}

// NewSkewedWorld is NewWorld with users and items picked as skew says. A
// zero Skew gives NewWorld's world exactly.
func NewSkewedWorld(seed uint64, users, items int, corr float64, skew Skew) (*World, error) {
	if users < 1 || items < 1 {
		return nil, fmt.Errorf("gen: users %d and items %d must be positive", users, items)
	}
	if !(corr >= -1 && corr <= 1) {
		return nil, fmt.Errorf("gen: task correlation %v outside [-1, 1]", corr)
	}
	if err := skew.Validate(); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	w := &World{corr: corr, ctrScale: 1}
	// Categories.
	catW := make([]float64, numCategories)
	for c := range numCategories {
		w.catName = append(w.catName, fmt.Sprintf("cat_%02d", c))
		w.catCTR = append(w.catCTR, 0.35*r.NormFloat64())
		w.catCVR = append(w.catCVR, 0.35*r.NormFloat64())
		w.catLogP = append(w.catLogP, 2.5+2*r.Float64())
		catW[c] = math.Pow(float64(c+2), -0.8)
	}
	catCDF := cdf(catW)
	// Brands.
	nb := max(50, items/40)
	brandsOf := make([][]int, numCategories)
	for b := range nb {
		c := pick(catCDF, r.Float64())
		if b < numCategories {
			c = b // every category has a brand
		}
		brandsOf[c] = append(brandsOf[c], b)
		w.brName = append(w.brName, fmt.Sprintf("brand_%04d", b))
		w.brCTR = append(w.brCTR, 0.3*r.NormFloat64())
		w.brCVR = append(w.brCVR, 0.3*r.NormFloat64())
	}
	for s := range numSegments {
		for c := range numCategories {
			w.affCTR[s][c] = 0.8 * r.NormFloat64()
			w.affCVR[s][c] = 0.6 * r.NormFloat64()
		}
	}
	var hourW [24]float64
	for h := range 24 {
		hourW[h] = 1 + 0.6*math.Cos(2*math.Pi*float64(h-20)/24)
	}
	copy(w.hourCDF[:], cdf(hourW[:]))
	// Items.
	w.items = make([]item, items)
	popW := make([]float64, items)
	for i := range w.items {
		it := &w.items[i]
		it.category = pick(catCDF, r.Float64())
		bs := brandsOf[it.category]
		it.brand = bs[r.IntN(len(bs))]
		lp := w.catLogP[it.category] + 0.6*r.NormFloat64()
		it.price = math.Round(math.Exp(lp)*100) / 100
		it.relPrice = lp - w.catLogP[it.category]
		it.ctr = 0.35 * r.NormFloat64()
		it.cvr = 0.2 * r.NormFloat64()
		it.popularity = 0.2*r.NormFloat64() + 1.2*it.ctr
		if skew.Items > 0 {
			it.popularity -= skew.Items * math.Log(float64(i+1))
		}
		popW[i] = math.Exp(it.popularity)
	}
	w.itemCDF = cdf(popW)
	// Users.
	w.users = make([]user, users)
	for u := range w.users {
		us := &w.users[u]
		us.segment = r.IntN(numSegments)
		n := 0
		if r.Float64() >= 0.1 {
			n = 1 + r.IntN(5)
		}
		seen := map[int]bool{}
		for len(us.tags) < n {
			t := us.segment*tagsPerSeg + r.IntN(tagsPerSeg)
			if r.Float64() < 0.2 {
				t = r.IntN(numSegments * tagsPerSeg)
			}
			if !seen[t] {
				seen[t] = true
				us.tags = append(us.tags, fmt.Sprintf("tag_%02d", t))
			}
		}
		age := 22 + 5*float64(us.segment) + 6*r.NormFloat64()
		us.age = int32(min(80, max(16, math.Round(age))))
		us.hasAge = r.Float64() >= 0.05
		us.ctr = 0.35 * r.NormFloat64()
		us.cvr = 0.2 * r.NormFloat64()
		us.activity = math.Round(3*math.Exp(us.ctr/0.35*0.5+0.2*r.NormFloat64())*1000) / 1000
	}
	if skew.Users > 0 {
		uw := make([]float64, users)
		for u := range uw {
			uw[u] = math.Pow(float64(u+1), -skew.Users)
		}
		w.userCDF = cdf(uw)
	}
	w.calibrate(rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d)))
	return w, nil
}

// calibrate standardises the structures and solves the biases on a sample.
func (w *World) calibrate(r *rand.Rand) {
	const n = 50000
	shared := make([]float64, n)
	own := make([]float64, n)
	posEff := make([]float64, n)
	var d draw
	for k := range n {
		w.drawInto(r, &d)
		shared[k], own[k] = w.structures(&d)
		posEff[k] = -0.55 * math.Log(float64(d.position))
	}
	w.m1, w.s1 = meanStd(shared)
	w.m2, w.s2 = meanStd(own)
	ctrLogit := make([]float64, n)
	for k := range n {
		ctrLogit[k] = w.ctrScale * (shared[k] - w.m1 + posEff[k])
	}
	w.biasCTR = solveBias(ctrLogit, nil, 0.035)
	weights := make([]float64, n)
	cvrLogit := make([]float64, n)
	for k := range n {
		weights[k] = sigmoid(w.biasCTR + ctrLogit[k])
		cvrLogit[k] = w.cvrStructure(shared[k], own[k])
	}
	w.biasCVR = solveBias(cvrLogit, weights, 0.15)
}

func (w *World) cvrStructure(shared, own float64) float64 {
	return 1.1 * (w.corr*(shared-w.m1)/w.s1 + math.Sqrt(1-w.corr*w.corr)*(own-w.m2)/w.s2)
}

// draw is one impression before labels.
type draw struct {
	user, item, device, hour, position int
}

func (w *World) drawInto(r *rand.Rand, d *draw) {
	if w.userCDF != nil {
		d.user = pick(w.userCDF, r.Float64())
	} else {
		d.user = r.IntN(len(w.users))
	}
	d.item = pick(w.itemCDF, r.Float64())
	x := r.Float64()
	d.device = len(deviceShare) - 1
	for k, s := range deviceShare {
		if x < s {
			d.device = k
			break
		}
		x -= s
	}
	d.hour = pick(w.hourCDF[:], r.Float64())
	d.position = 1 + r.IntN(numPositions)
}

func ageEffect(u *user) (ctr, cvr float64) {
	if !u.hasAge {
		return 0, 0
	}
	a := float64(u.age)
	return 0.3 * math.Sin((a-16)/10), 0.25 * math.Cos((a-16)/12)
}

// structures returns the CTR structure shared with CVR (without position)
// and the CVR's own structure.
func (w *World) structures(d *draw) (shared, own float64) {
	u := &w.users[d.user]
	it := &w.items[d.item]
	ac, av := ageEffect(u)
	h := float64(d.hour)
	shared = w.catCTR[it.category] + w.brCTR[it.brand] + w.affCTR[u.segment][it.category] +
		u.ctr + it.ctr + deviceCTR[d.device] + 0.25*math.Cos(2*math.Pi*(h-21)/24) + ac -
		0.3*it.relPrice
	own = w.catCVR[it.category] + w.brCVR[it.brand] + w.affCVR[u.segment][it.category] +
		u.cvr + it.cvr + deviceCVR[d.device] + 0.15*math.Cos(2*math.Pi*(h-14)/24) + av -
		0.5*it.relPrice - 0.2*(math.Log(it.price)-3.5)
	if w.idEff != 0 {
		c, v := w.idTerms(d.user, d.item)
		shared += c
		own += v
	}
	return shared, own
}

// probabilities returns the true click and conversion-given-click
// probabilities of an impression.
func (w *World) probabilities(d *draw) (ctr, cvr float64) {
	shared, own := w.structures(d)
	ctr = sigmoid(w.biasCTR + w.ctrScale*(shared-w.m1-0.55*math.Log(float64(d.position))))
	cvr = sigmoid(w.biasCVR + w.cvrStructure(shared, own))
	return ctr, cvr
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// solveBias finds b with weighted mean sigmoid(b + x) = target by bisection.
func solveBias(x, weights []float64, target float64) float64 {
	lo, hi := -20.0, 20.0
	for range 60 {
		mid := (lo + hi) / 2
		var s, ws float64
		for k, v := range x {
			wt := 1.0
			if weights != nil {
				wt = weights[k]
			}
			s += wt * sigmoid(mid+v)
			ws += wt
		}
		if s/ws < target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

func meanStd(x []float64) (m, s float64) {
	for _, v := range x {
		m += v
	}
	m /= float64(len(x))
	for _, v := range x {
		s += (v - m) * (v - m)
	}
	s = math.Sqrt(s / float64(len(x)))
	if s == 0 {
		s = 1
	}
	return m, s
}

// cdf returns the normalised cumulative sums of weights.
func cdf(w []float64) []float64 {
	out := make([]float64, len(w))
	var s float64
	for i, v := range w {
		s += v
		out[i] = s
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

// pick returns the first index whose cumulative share exceeds x in [0, 1).
func pick(cdf []float64, x float64) int {
	lo, hi := 0, len(cdf)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if cdf[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// Event is one generated impression, with the column names of the Parquet
// files and of JSON events.
type Event struct {
	UserID         int64    `parquet:"user_id" json:"user_id"`
	ItemID         int64    `parquet:"item_id" json:"item_id"`
	Category       string   `parquet:"category,dict" json:"category"`
	Brand          string   `parquet:"brand,dict" json:"brand"`
	Device         string   `parquet:"device,dict" json:"device"`
	Hour           int32    `parquet:"hour" json:"hour"`
	Position       int32    `parquet:"position" json:"position"`
	Price          float64  `parquet:"price" json:"price"`
	Age            *int32   `parquet:"age,optional" json:"age"`
	UserTags       []string `parquet:"user_tags,list" parquet-element:",dict" json:"user_tags"`
	UserActivity   float64  `parquet:"user_activity" json:"user_activity"`
	ItemPopularity float64  `parquet:"item_popularity" json:"item_popularity"`
	Click          int32    `parquet:"click" json:"click"`
	Conversion     int32    `parquet:"conversion" json:"conversion"`
	TrueCTR        float64  `parquet:"true_ctr" json:"true_ctr"`
	TrueCVR        float64  `parquet:"true_cvr" json:"true_cvr"`
}

// CartEvent is an impression of the three-step funnel (Config.Cart): an
// Event with the add-to-cart step. Parquet files put its columns after the
// Event's.
type CartEvent struct {
	Event
	Cart int32 `parquet:"cart" json:"cart"`
	// TrueCart is the probability of add-to-cart given a click.
	TrueCart float64 `parquet:"true_cart" json:"true_cart"`
}

// Stream draws impressions from a World. A Stream is not safe for
// concurrent use; use one per goroutine.
type Stream struct {
	w *World
	r *rand.Rand
	d draw
}

// NewStream returns a stream of impressions; streams with different ids are
// independent, and the same (seed, id) gives the same events.
func (w *World) NewStream(seed, id uint64) *Stream {
	return &Stream{w: w, r: rand.New(rand.NewPCG(seed^0xda942042e4dd58b5, id))}
}

// Next overwrites e with the next impression. It does not allocate: Age and
// UserTags point into the World, which callers must not modify.
func (s *Stream) Next(e *Event) { s.next(e, nil) }

// NextCart is Next for the three-step funnel: the same impression, with
// the add-to-cart step drawn between click and conversion.
func (s *Stream) NextCart(e *CartEvent) { s.next(&e.Event, e) }

func (s *Stream) next(e *Event, c *CartEvent) {
	w := s.w
	w.drawInto(s.r, &s.d)
	d := &s.d
	u := &w.users[d.user]
	it := &w.items[d.item]
	ctr, cvr := w.probabilities(d)
	e.UserID = int64(d.user) + 1
	e.ItemID = int64(d.item) + 1
	e.Category = w.catName[it.category]
	e.Brand = w.brName[it.brand]
	e.Device = deviceNames[d.device]
	e.Hour = int32(d.hour)
	e.Position = int32(d.position)
	e.Price = it.price
	e.Age = nil
	if u.hasAge {
		e.Age = &u.age
	}
	e.UserTags = u.tags
	e.UserActivity = u.activity
	e.ItemPopularity = math.Round(it.popularity*1e4) / 1e4
	e.TrueCTR = ctr
	e.TrueCVR = cvr
	e.Click, e.Conversion = 0, 0
	if c != nil {
		c.Cart, c.TrueCart = 0, math.Pow(cvr, min(0.8, max(0.2, 0.5-0.2*it.relPrice)))
	}
	if s.r.Float64() < ctr {
		e.Click = 1
		u := s.r.Float64()
		switch {
		case c == nil:
			if u < cvr {
				e.Conversion = 1
			}
		case u < c.TrueCart:
			c.Cart = 1
			if s.r.Float64() < cvr/c.TrueCart {
				e.Conversion = 1
			}
		}
	}
}
