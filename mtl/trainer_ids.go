package mtl

import (
	"fmt"

	"github.com/onestone/onestone/features"
)

// SetIDTables makes Step admit the exact ids of each batch to ids before
// training on it (features.IDTables.Admit): ids are counted and admitted,
// rows freed, and the batch's ids rewritten to the rows they train. A row
// given to an id is reset first: its weights become those of the id's
// shared row (what the id trained so far) and its optimizer state its
// initial value. ids must be the tables of the transform that makes the
// batches, sized like the model's embedding tables; nil turns admission
// off. While the shared part is frozen (FreezeShared) nothing is
// admitted: the embeddings do not train.
func (t *Trainer) SetIDTables(ids *features.IDTables) error {
	for i := range ids.Len() {
		f := ids.SparseIndex(i)
		rows := ids.Table(i).Config().Rows()
		if f >= len(t.dims) || len(t.tables[f]) != rows*t.dims[f] {
			return fmt.Errorf("mtl: trainer: exact table %q (%d rows) does not match embedding table %d: %w", ids.Table(i).Name(), rows, f, ErrShape)
		}
	}
	t.ids = ids
	return nil
}

// admit runs the exact tables' admission on b and resets the rows given
// out.
func (t *Trainer) admit(b *features.Batch) error {
	if t.ids.Len() == 0 || t.mt.frozen {
		return nil
	}
	resets, err := t.ids.Admit(b)
	if err != nil {
		return err
	}
	for _, r := range resets {
		d := t.dims[r.Table]
		v := t.tables[r.Table]
		copy(v[int(r.Row)*d:int(r.Row)*d+d], v[int(r.From)*d:int(r.From)*d+d])
		t.sparse.ResetRow(r.Table, r.Row)
		if t.touched != nil {
			t.touched.markRow(r.Table, r.Row)
		}
	}
	return nil
}
