/**
 * The detection engine of a real server resumes where it stopped: password guesses for one account
 * spread across a server crash (SIGKILL) and restart add up to the shipped brute-force threshold (10
 * for one account) and raise one alert, counting each guess once.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { SecurityAlert } from '../src/api/security.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;

before(async () => {
  harness = await RampartHarness.start({
    localAgent: false,
    env: { RAMPART_RATE_LIMIT_PRINCIPAL: 'off', RAMPART_LOGIN_BASE_DELAY_MS: '1' },
  });
});

after(async () => {
  await harness?.cleanup();
});

async function guess(): Promise<number> {
  const response = await harness.api(
    'POST',
    '/v1/auth/login',
    { username: 'resume-guess', password: 'Not-the-Passw0rd-1' },
    { authorization: '' },
  );
  return response.status;
}

async function bruteForceAlerts(): Promise<SecurityAlert[]> {
  const list = await harness.api<{ items: SecurityAlert[] }>('GET', '/v1/platform/security/alerts?limit=200');
  assert.equal(list.status, 200);
  return list.body.items.filter((a) => a.ruleId === 'auth-brute-force-account');
}

test('guesses spread across a server crash and restart add up to one brute-force alert', async () => {
  for (let i = 0; i < 6; i++) assert.ok([401, 429].includes(await guess()));
  // The engine saves how far it got every second.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  assert.deepEqual(await bruteForceAlerts(), [], 'six guesses are under the threshold');
  await harness.killServer('SIGKILL');
  await harness.startServer();
  await harness.waitFor(
    () => Promise.resolve(harness.serverOutput.includes('detection resumed')),
    30_000,
    'the engine resumed',
  );
  for (let i = 0; i < 4; i++) assert.ok([401, 429].includes(await guess()));
  await harness.waitFor(async () => (await bruteForceAlerts()).length > 0, 15_000, 'the brute-force alert');
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const alerts = await bruteForceAlerts();
  assert.equal(alerts.length, 1);
  assert.equal(alerts[0]!.count, 10, 'each guess counted once');
  assert.equal(alerts[0]!.groupKey, 'detail.username=resume-guess');
});
