/** The Rampart version, read from package.json at the repository root. */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  // dist/src/common/version.js -> ../../../package.json
  const url = new URL('../../../package.json', import.meta.url);
  try {
    return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

export const RAMPART_VERSION = readVersion();
