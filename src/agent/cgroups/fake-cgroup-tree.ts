/**
 * Test support: a fake cgroup tree in a temp directory that behaves like the kernel where the drivers
 * depend on it, so driver mistakes fail the unit tests:
 *   - mkdir fills in the control files with kernel defaults. On v2 that happens only for controllers
 *     the parent enabled in cgroup.subtree_control.
 *   - control files cannot be created (EACCES), only written.
 *   - cgroup.procs appends a pid, and cgroup.subtree_control takes "+ctl -ctl" edits.
 *   - v1 memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes (EINVAL).
 *   - rmdir fails with EBUSY while the cgroup holds tasks or child cgroups, and it removes the control
 *     files along with the directory.
 * Every write is logged so tests can assert that re-applying limits writes nothing.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import type { CgroupVersion } from './cgroup-driver.js';
import { CgroupError } from './cgroup-driver.js';
import { nodeCgroupFs, type CgroupFs } from './cgroup-fs.js';

const UNLIMITED_V1 = '9223372036854771712';
const V2_AVAILABLE = 'cpuset cpu io memory hugetlb pids rdma misc';

export interface FakeCgroupTreeOptions {
  /** v1: swap accounting on (memory.memsw.* files). v2: memory.swap.max exists. Default true. */
  swap?: boolean;
  /** v1: a cpuset hierarchy too (root CPUs 0-3, memory node 0; new cgroups start empty). Default false. */
  cpuset?: boolean;
}

export interface FakeCgroupTree {
  root: string;
  fs: CgroupFs;
  /** Paths written, in order (relative to the root). */
  writes: string[];
  /** Pids the driver asked to SIGKILL; the fake removes them from every cgroup.procs. */
  killed: number[];
  kill: (pid: number) => void;
  /** Reads a file of the tree, trimmed (relative path). */
  read: (path: string) => string;
  /** Sets a file as the kernel would (usage counters, task lists), bypassing the rules. */
  set: (path: string, value: string) => void;
  cleanup: () => void;
}

function fail(what: string, path: string, code: string): never {
  throw new CgroupError(`cannot ${what} ${path}: ${code}`, path, code);
}

function v1Defaults(controller: string, swap: boolean): Record<string, string> {
  switch (controller) {
    case 'cpu':
      return { 'cpu.cfs_period_us': '100000', 'cpu.cfs_quota_us': '-1', 'cpu.shares': '1024' };
    case 'cpuacct':
      return { 'cpuacct.usage': '0' };
    case 'memory':
      return {
        'memory.limit_in_bytes': UNLIMITED_V1,
        'memory.usage_in_bytes': '0',
        ...(swap ? { 'memory.memsw.limit_in_bytes': UNLIMITED_V1 } : {}),
      };
    case 'pids':
      return { 'pids.max': 'max', 'pids.current': '0' };
    case 'cpuset':
      return { 'cpuset.cpus': '', 'cpuset.mems': '' };
    default:
      return {};
  }
}

function v2Defaults(enabled: Set<string>, swap: boolean): Record<string, string> {
  return {
    ...(enabled.has('cpu')
      ? { 'cpu.max': 'max 100000', 'cpu.weight': '100', 'cpu.stat': 'usage_usec 0\nuser_usec 0\n' }
      : {}),
    ...(enabled.has('memory')
      ? { 'memory.max': 'max', 'memory.current': '0', ...(swap ? { 'memory.swap.max': 'max' } : {}) }
      : {}),
    ...(enabled.has('pids') ? { 'pids.max': 'max', 'pids.current': '0' } : {}),
  };
}

export function fakeCgroupTree(version: CgroupVersion, options: FakeCgroupTreeOptions = {}): FakeCgroupTree {
  const swap = options.swap ?? true;
  const root = mkdtempSync(join(tmpdir(), `rampart-fake-cgroup-${version}-`));
  const writes: string[] = [];
  const killed: number[] = [];
  const raw = nodeCgroupFs;

  const populate = (dir: string, files: Record<string, string>) => {
    for (const [name, value] of Object.entries(files)) writeFileSync(join(dir, name), `${value}\n`);
  };
  if (version === 'v1') {
    for (const controller of ['cpu', 'cpuacct', 'memory', 'pids', 'blkio']) {
      mkdirSync(join(root, controller));
      populate(join(root, controller), { 'cgroup.procs': '1', ...v1Defaults(controller, swap) });
    }
    if (options.cpuset) {
      mkdirSync(join(root, 'cpuset'));
      populate(join(root, 'cpuset'), { 'cgroup.procs': '1', 'cpuset.cpus': '0-3', 'cpuset.mems': '0' });
    }
  } else {
    populate(root, { 'cgroup.controllers': V2_AVAILABLE, 'cgroup.subtree_control': '', 'cgroup.procs': '1' });
  }

  const enabledIn = (dir: string) =>
    new Set(raw.read(join(dir, 'cgroup.subtree_control')).trim().split(/\s+/).filter(Boolean));

  const mkdirOne = (dir: string) => {
    mkdirSync(dir);
    if (version === 'v1') {
      const controller = relative(root, dir).split('/')[0] ?? '';
      populate(dir, { 'cgroup.procs': '', ...v1Defaults(controller, swap) });
    } else {
      const enabled = enabledIn(dirname(dir));
      populate(dir, {
        'cgroup.procs': '',
        'cgroup.controllers': [...enabled].join(' '),
        'cgroup.subtree_control': '',
        ...v2Defaults(enabled, swap),
      });
    }
  };

  const numberIn = (path: string) => {
    const text = raw.read(path).trim();
    return text === 'max' ? Infinity : Number(text);
  };

  const fs: CgroupFs = {
    exists: (path) => raw.exists(path),
    mkdir: (path) => {
      if (raw.exists(path)) return;
      if (!raw.exists(dirname(path))) fs.mkdir(dirname(path));
      mkdirOne(path);
    },
    rmdir: (path) => {
      if (!raw.exists(path)) fail('remove', path, 'ENOENT');
      const procs = raw.read(join(path, 'cgroup.procs')).trim();
      const children = readdirSync(path, { withFileTypes: true }).some((e) => e.isDirectory());
      if (procs !== '' || children) fail('remove', path, 'EBUSY');
      rmSync(path, { recursive: true });
    },
    read: (path) => raw.read(path),
    write: (path, value) => {
      if (!raw.exists(path)) fail('write', path, 'EACCES');
      writes.push(relative(root, path));
      const name = basename(path);
      const dir = dirname(path);
      if (name === 'cgroup.procs') {
        // v1 cpuset: a cgroup without CPUs or memory nodes takes no task (ENOSPC), as in the kernel.
        if (version === 'v1' && raw.exists(join(dir, 'cpuset.cpus'))) {
          if (
            raw.read(join(dir, 'cpuset.cpus')).trim() === '' ||
            raw.read(join(dir, 'cpuset.mems')).trim() === ''
          )
            fail('write', path, 'ENOSPC');
        }
        const current = raw.read(path).trim();
        raw.write(path, `${current ? `${current}\n` : ''}${value.trim()}\n`);
        return;
      }
      if (name === 'cgroup.subtree_control') {
        const enabled = enabledIn(dir);
        for (const edit of value.trim().split(/\s+/)) {
          if (edit.startsWith('+')) enabled.add(edit.slice(1));
          else if (edit.startsWith('-')) enabled.delete(edit.slice(1));
          else fail('write', path, 'EINVAL');
        }
        raw.write(path, `${[...enabled].join(' ')}\n`);
        return;
      }
      if (
        version === 'v1' &&
        name === 'memory.limit_in_bytes' &&
        raw.exists(join(dir, 'memory.memsw.limit_in_bytes'))
      ) {
        if (Number(value) > numberIn(join(dir, 'memory.memsw.limit_in_bytes'))) fail('write', path, 'EINVAL');
      }
      if (version === 'v1' && name === 'memory.memsw.limit_in_bytes') {
        if (Number(value) < numberIn(join(dir, 'memory.limit_in_bytes'))) fail('write', path, 'EINVAL');
      }
      raw.write(path, `${value}\n`);
    },
    subdirectories: (path) => raw.subdirectories(path),
    ageMs: (path) => raw.ageMs(path),
  };

  const kill = (pid: number) => {
    killed.push(pid);
    const strip = (dir: string) => {
      const procs = join(dir, 'cgroup.procs');
      if (existsSync(procs)) {
        const left = raw
          .read(procs)
          .split('\n')
          .filter((line) => line.trim() !== '' && Number(line) !== pid);
        raw.write(procs, left.length > 0 ? `${left.join('\n')}\n` : '');
      }
      for (const entry of readdirSync(dir, { withFileTypes: true }))
        if (entry.isDirectory()) strip(join(dir, entry.name));
    };
    strip(root);
  };

  return {
    root,
    fs,
    writes,
    killed,
    kill,
    read: (path) => raw.read(join(root, path)).trim(),
    set: (path, value) => raw.write(join(root, path), `${value}\n`),
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
