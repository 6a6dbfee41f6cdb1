/**
 * Failpoints: named places where a test can make the server die on the spot (SIGKILL, no cleanup), to
 * prove that a crash at any step of a multi-step operation leaves a consistent state after restart.
 * Armed only through RAMPART_FAILPOINTS (comma separated names) — never by a request — and a server
 * with any armed failpoint says so loudly at start.
 */
const armed = new Set(
  (process.env.RAMPART_FAILPOINTS ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => /^[a-z0-9:-]{1,64}$/.test(name)),
);

export function armedFailpoints(): string[] {
  return [...armed];
}

/** Dies here, at once, when `name` is armed. */
export function failpoint(name: string): void {
  if (armed.size === 0 || !armed.has(name)) return;
  process.stderr.write(`failpoint ${name}: killing the server\n`);
  process.kill(process.pid, 'SIGKILL');
}
