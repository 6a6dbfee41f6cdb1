/**
 * Driver selection: v2 when the root offers cpu, memory and pids, else v1 when those four controllers
 * are mounted; forced versions are still checked; `none` turns limits off; a host without usable
 * cgroups or without cgexec gets an `unavailable` setup with the reason.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { detectCgroupVersion, loadCgroups } from './cgroup-load.js';
import { fakeCgroupTree } from './fake-cgroup-tree.js';

const cgexec = () => '/usr/bin/cgexec';

void describe('cgroup driver selection', () => {
  test('a v1 host (controllers mounted separately) gets the v1 driver', () => {
    const tree = fakeCgroupTree('v1');
    try {
      assert.deepEqual(detectCgroupVersion('auto', tree.root), { version: 'v1' });
      const setup = loadCgroups({ mode: 'auto', parent: 'rampart-t', root: tree.root, findCgexec: cgexec });
      assert.equal(setup.state, 'enabled');
      if (setup.state !== 'enabled') return;
      assert.equal(setup.driver.version, 'v1');
      assert.equal(setup.driver.parent, 'rampart-t');
      assert.equal(setup.cgexec, '/usr/bin/cgexec');
    } finally {
      tree.cleanup();
    }
  });

  test('a v2 host gets the v2 driver', () => {
    const tree = fakeCgroupTree('v2');
    try {
      assert.deepEqual(detectCgroupVersion('auto', tree.root), { version: 'v2' });
      const setup = loadCgroups({ mode: 'auto', parent: 'rampart', root: tree.root, findCgexec: cgexec });
      assert.equal(setup.state === 'enabled' && setup.driver.version, 'v2');
    } finally {
      tree.cleanup();
    }
  });

  test('a v2 root without the needed controllers is not used; the reason names them', () => {
    const root = mkdtempSync(join(tmpdir(), 'rampart-cg-'));
    try {
      writeFileSync(join(root, 'cgroup.controllers'), 'cpuset io hugetlb\n');
      const detection = detectCgroupVersion('auto', root);
      assert.ok('reason' in detection);
      assert.match(detection.reason, /lacks the controllers cpu, memory, pids/);
      assert.match(detection.reason, /cgroup v1 controllers not mounted/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('a hybrid host like the build machine (empty cgroup2 at unified/, v1 controllers) is v1', () => {
    const tree = fakeCgroupTree('v1');
    try {
      mkdirSync(join(tree.root, 'unified'));
      writeFileSync(join(tree.root, 'unified', 'cgroup.controllers'), 'hugetlb\n');
      assert.deepEqual(detectCgroupVersion('auto', tree.root), { version: 'v1' });
    } finally {
      tree.cleanup();
    }
  });

  test('a forced version is still checked', () => {
    const tree = fakeCgroupTree('v1');
    try {
      const setup = loadCgroups({ mode: 'v2', parent: 'rampart', root: tree.root, findCgexec: cgexec });
      assert.equal(setup.state, 'unavailable');
      assert.match(setup.state === 'unavailable' ? setup.reason : '', /no cgroup v2 hierarchy/);
      assert.equal(
        loadCgroups({ mode: 'v1', parent: 'rampart', root: tree.root, findCgexec: cgexec }).state,
        'enabled',
      );
    } finally {
      tree.cleanup();
    }
  });

  test('none turns limits off without looking at the host', () => {
    assert.deepEqual(
      loadCgroups({ mode: 'none', parent: 'rampart', root: '/nonexistent', findCgexec: cgexec }),
      { state: 'disabled' },
    );
  });

  test('a missing cgexec makes limits unavailable, with the package to install', () => {
    const tree = fakeCgroupTree('v1');
    try {
      const setup = loadCgroups({
        mode: 'auto',
        parent: 'rampart',
        root: tree.root,
        findCgexec: () => {
          throw new Error('not found');
        },
      });
      assert.deepEqual(setup, {
        state: 'unavailable',
        reason: 'cgexec not found (install the Debian package cgroup-tools)',
      });
    } finally {
      tree.cleanup();
    }
  });
});
