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
// A file that runs longer than this fails by name (its process is ended) and the run goes on, instead of a
// hang using up the whole CI budget. The longest file takes under 5 minutes here.
const FILE_TIMEOUT_MS = Number(process.env.RAMPART_TEST_FILE_TIMEOUT_MS ?? 20 * 60_000);
const result = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=1', `--test-timeout=${FILE_TIMEOUT_MS}`, '--test-reporter=spec', ...files],
  {
    stdio: 'inherit',
  },
);
process.exit(result.status ?? 1);
