/**
 * The file operations the cgroup drivers need. They go through this small interface so the unit tests
 * can run the drivers against a fake cgroup tree in a temp directory. Such a tree differs from
 * cgroupfs in one way: the kernel lets `rmdir` remove a cgroup directory that still shows its control
 * files. Every error becomes a CgroupError that names the path and the errno.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { CgroupError } from './cgroup-driver.js';

export interface CgroupFs {
  exists(path: string): boolean;
  /** Creates the directory and its missing parents; an existing directory is fine. */
  mkdir(path: string): void;
  /** Removes a cgroup directory; throws a CgroupError with code EBUSY while it holds tasks. */
  rmdir(path: string): void;
  read(path: string): string;
  /** One write of the whole value (cgroup files take one value per write). */
  write(path: string, value: string): void;
  /** Names of the subdirectories (child cgroups). */
  subdirectories(path: string): string[];
  /** Milliseconds since the directory was created (kernfs keeps its mtime at creation). */
  ageMs(path: string): number;
}

function wrap<T>(what: string, path: string, action: () => T): T {
  try {
    return action();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    throw new CgroupError(`cannot ${what} ${path}: ${code}`, path, code);
  }
}

export const nodeCgroupFs: CgroupFs = {
  exists: (path) => existsSync(path),
  mkdir: (path) => wrap('create', path, () => void mkdirSync(path, { recursive: true, mode: 0o755 })),
  rmdir: (path) => wrap('remove', path, () => rmdirSync(path)),
  read: (path) => wrap('read', path, () => readFileSync(path, 'utf8')),
  write: (path, value) => wrap('write', path, () => writeFileSync(path, value)),
  subdirectories: (path) =>
    wrap('list', path, () =>
      readdirSync(path, { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => entry.name),
    ),
  ageMs: (path) => wrap('stat', path, () => Date.now() - statSync(path).mtimeMs),
};
