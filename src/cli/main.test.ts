import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startFakeApi, vmFixture, type FakeApi } from './testing.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

/** Runs the compiled CLI as a child process; async, so this process's fake server keeps answering. */
function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill(), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

void describe('the compiled rampart executable', () => {
  let api: FakeApi;
  const body = { items: [vmFixture()] };
  before(async () => {
    api = await startFakeApi((req) => (req.method === 'GET' && req.url === '/v1/vms' ? { body } : undefined));
  });
  after(() => api.close());

  void it('lists VMs as JSON and exits 0', async () => {
    const result = await runCli(['vm', 'list', '-o', 'json'], {
      RAMPART_URL: api.url,
      RAMPART_TOKEN: 'child-token',
    });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), body);
    assert.equal(result.stderr, '');
    assert.equal(api.requests.at(-1)?.headers.authorization, 'Bearer child-token');
  });

  void it('exits 0 on --help and shows the exit codes', async () => {
    const result = await runCli(['--help'], {});
    assert.equal(result.code, 0);
    assert.match(result.stdout, /Usage: rampart/);
    assert.match(result.stdout, /Exit codes:/);
  });

  void it('exits 3 on a missing VM', async () => {
    const result = await runCli(['vm', 'show', 'nope'], { RAMPART_URL: api.url });
    assert.equal(result.code, 3);
    assert.equal(result.stderr, 'rampart: route not found (RAMPART_NOT_FOUND, request req-404)\n');
  });

  void it('exits 2 on a bad --output value', async () => {
    const result = await runCli(['vm', 'list', '--output', 'yaml'], { RAMPART_URL: api.url });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /^rampart: .*yaml/);
  });
});
