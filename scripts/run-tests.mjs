// Runs every compiled test file (dist/**/*.test.js) with node's test runner, one file at a time:
// the VM tests boot real QEMU guests and this machine class has two cores.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function collect(dir, out) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) collect(path, out);
    else if (entry.endsWith('.test.js')) out.push(path);
  }
  return out;
}

const filter = process.argv.slice(2);
let files = [...collect('dist/src', []), ...collect('dist/test', [])].sort();
if (filter.length > 0) files = files.filter((f) => filter.some((pattern) => f.includes(pattern)));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  {
    stdio: 'inherit',
  },
);
process.exit(result.status ?? 1);
