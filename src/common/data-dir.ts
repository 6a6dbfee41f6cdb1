/** The default data directory: /var/lib/rampart as root, else ~/.local/share/rampart. */
import { homedir } from 'node:os';
import { join } from 'node:path';

export function defaultDataDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/rampart' : join(homedir(), '.local', 'share', 'rampart');
}
