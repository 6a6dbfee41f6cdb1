/** CPU topology from sysfs (SMT siblings grouped into cores) and which cores may be pinned. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cpuCores, dedicatedCores } from './host-facts.js';

test('online CPUs are grouped into physical cores by their thread siblings', (t) => {
  const sys = mkdtempSync(join(tmpdir(), 'rampart-sysfs-'));
  t.after(() => rmSync(sys, { recursive: true, force: true }));
  writeFileSync(join(sys, 'online'), '0-3\n');
  for (const [cpu, siblings] of [
    [0, '0,2'],
    [1, '1,3'],
    [2, '0,2'],
    [3, '1,3'],
  ] as const) {
    mkdirSync(join(sys, `cpu${cpu}`, 'topology'), { recursive: true });
    writeFileSync(join(sys, `cpu${cpu}`, 'topology', 'thread_siblings_list'), `${siblings}\n`);
  }
  assert.deepEqual(cpuCores(sys), {
    online: [0, 1, 2, 3],
    cores: [
      [0, 2],
      [1, 3],
    ],
  });
});

test('by default every core but the first may be pinned; a CPU list takes whole cores inside it', () => {
  const cores = [
    [0, 4],
    [1, 5],
    [2, 6],
    [3, 7],
  ];
  assert.deepEqual(dedicatedCores(cores, undefined), [
    [1, 5],
    [2, 6],
    [3, 7],
  ]);
  assert.deepEqual(dedicatedCores([[0]], undefined), [], 'a one-core host pins nothing');
  assert.deepEqual(dedicatedCores(cores, '2-3,6-7'), [
    [2, 6],
    [3, 7],
  ]);
  assert.deepEqual(dedicatedCores(cores, '1-3'), [], 'half a core is no core');
  assert.deepEqual(dedicatedCores(cores, 'none'), []);
  assert.deepEqual(
    dedicatedCores(cores, '0-7'),
    [
      [1, 5],
      [2, 6],
      [3, 7],
    ],
    'one core always stays shared',
  );
});
