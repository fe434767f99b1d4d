// Writes arrowrs-vectors.parquet, vector columns as the Rust arrow-rs
// Parquet writer (the one under arrow2's successors and polars, and close
// to pyarrow's) writes them (TestArrowRsVectors reads it): a
// list<float> with null lists (id % 17 == 3) and a list of 2 at id 150, a
// list<double>, a fixed_size_list<float, 3>; row groups of 100 rows,
// Snappy (pyarrow's default). arrow-rs runs as WebAssembly from npm:
//
//   npm install parquet-wasm@0.8.0 apache-arrow@21.2.0
//   node arrowrs-vectors.mjs arrowrs-vectors.parquet
import { writeFileSync } from 'node:fs';
import {
  Field, FixedSizeList, Float32, Float64, Int64, List, Table, makeVector,
  tableToIPC, vectorFromArray,
} from 'apache-arrow';
import * as pq from 'parquet-wasm';

const out = process.argv[2];
const n = 300;
const id = [], a = [], b = [], c = [], click = [];
for (let i = 0; i < n; i++) {
  id.push(BigInt(i));
  a.push(i % 17 === 3 ? null : i === 150 ? [1, 2] : [i / 7, Math.sin(i), -1]);
  b.push([i * 1e-3, Math.cos(i), i]);
  c.push([i, 0.5, -i]);
  click.push(BigInt(i % 2));
}
const table = new Table({
  id: vectorFromArray(id, new Int64()),
  a: vectorFromArray(a, new List(new Field('item', new Float32(), true))),
  b: vectorFromArray(b, new List(new Field('item', new Float64(), true))),
  c: vectorFromArray(c, new FixedSizeList(3, new Field('item', new Float32(), true))),
  click: vectorFromArray(click, new Int64()),
});
const props = new pq.WriterPropertiesBuilder()
  .setCompression(pq.Compression.SNAPPY)
  .setMaxRowGroupSize(100)
  .build();
const bytes = pq.writeParquet(pq.Table.fromIPCStream(tableToIPC(table, 'stream')), props);
writeFileSync(out, bytes);
console.log(`wrote ${out}: ${bytes.length} bytes`);
