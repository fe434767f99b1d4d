package mtl

// ResetRow sets the optimizer state of row r of table `table` to its
// initial value (the accumulators to InitialAccumulator), as for a row
// never trained: an exact table gives the row to a new id.
func (o *SparseAdagrad) ResetRow(table int, r int32) {
	a := o.acc[table]
	if o.cfg.PerElement {
		d := o.tables[table].Dim
		a = a[int(r)*d : int(r)*d+d]
	} else {
		a = a[r : r+1]
	}
	v := float32(o.cfg.InitialAccumulator)
	for i := range a {
		a[i] = v
	}
}

// ResetRow sets the moments and the step count of row r of table `table`
// to zero, as for a row never trained.
func (o *SparseAdam) ResetRow(table int, r int32) {
	d := o.tables[table].Dim
	clear(o.m[table][int(r)*d : int(r)*d+d])
	clear(o.v[table][int(r)*d : int(r)*d+d])
	o.steps[table][r] = 0
}
