/** Paths of the repository as seen from compiled tests (dist/test/...). */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('repository root not found');
    dir = parent;
  }
  return dir;
}

export const REPO_ROOT = findRoot();
export const CLI_MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
export const GUEST_IMAGE_DIR = join(REPO_ROOT, 'guest', 'out', 'tiny');
