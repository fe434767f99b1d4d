// Writes duckdb-vectors.parquet, vector columns as DuckDB writes them
// (TestDuckDBVectors reads it): a FLOAT[] with null lists (id % 17 == 3)
// and a list of 2 at id 150, a DOUBLE[], a FLOAT[3] (an ARRAY, written as
// a Parquet list). DuckDB comes from npm:
//
//   npm install @duckdb/node-api && node duckdb-vectors.mjs duckdb-vectors.parquet
import { DuckDBInstance } from '@duckdb/node-api';
const out = process.argv[2];
const inst = await DuckDBInstance.create(':memory:');
const con = await inst.connect();
await con.run(`
CREATE TABLE t AS
SELECT
  i::BIGINT AS id,
  CASE WHEN i % 17 = 3 THEN NULL
       WHEN i = 150 THEN [1.0, 2.0]::FLOAT[]
       ELSE [i / 7.0, sin(i), -1.0]::FLOAT[] END AS a,
  [i * 1e-3, cos(i), i]::DOUBLE[] AS b,
  [i, 0.5, -i]::FLOAT[3] AS c,
  (i % 2)::BIGINT AS click
FROM range(300) r(i)`);
await con.run(`COPY t TO '${out}' (FORMAT parquet, ROW_GROUP_SIZE 100)`);
const v = await con.runAndReadAll(`SELECT version()`);
console.log('written by DuckDB', v.getRows()[0][0]);
