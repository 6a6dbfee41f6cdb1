// Runs every compiled benchmark (dist/bench/*.bench.js) one after another, each in its own node
// process (benchmarks must not share a JIT or a heap, nor run concurrently on this two-core machine).
//   node scripts/run-benches.mjs            # all of them
//   node scripts/run-benches.mjs authz      # only files whose path contains one of the arguments
// A benchmark reports a missed target on stdout and exits 0; a non-zero exit means it broke, and
// this script then exits non-zero too (after running the rest).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const dir = join('dist', 'bench');
if (!existsSync(dir)) {
  console.error(`${dir} does not exist: build first (npm run build)`);
  process.exit(1);
}
const filter = process.argv.slice(2);
let files = readdirSync(dir)
  .filter((entry) => entry.endsWith('.bench.js'))
  .map((entry) => join(dir, entry))
  .sort();
if (filter.length > 0) files = files.filter((f) => filter.some((pattern) => f.includes(pattern)));
if (files.length === 0) {
  console.error('no benchmark files found');
  process.exit(1);
}

const failed = [];
for (const file of files) {
  console.log(`\n=== ${file}`);
  const started = Date.now();
  const result = spawnSync(process.execPath, [file], { stdio: 'inherit' });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (result.error) {
    console.error(`=== ${file}: could not run: ${result.error.message}`);
    failed.push(file);
  } else if (result.status !== 0) {
    const how = result.signal ? `signal ${result.signal}` : `exit code ${result.status}`;
    console.error(`=== ${file}: FAILED (${how}) after ${seconds} s`);
    failed.push(file);
  } else {
    console.log(`=== ${file}: done in ${seconds} s`);
  }
}
if (failed.length > 0) {
  console.error(`\n${failed.length} of ${files.length} benchmark(s) failed: ${failed.join(', ')}`);
  process.exit(1);
}
console.log(`\n${files.length} benchmark(s) ran`);
