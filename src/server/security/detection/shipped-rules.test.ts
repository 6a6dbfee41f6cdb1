import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRuleFile } from './rule-loader.js';
import { DetectionEngine, type Detection } from './rule-engine.js';
import { SHIPPED_RULE_IDS, SHIPPED_RULES_TEXT } from './shipped-rules.js';
import { ev, type EventOptions } from './test-helpers.js';

type Step = [kind: string, seconds: number, detail: Record<string, unknown>, options?: EventOptions];

const covered = new Set<string>();

/** Runs `steps` through a fresh engine with the shipped rules; returns every detection. */
function run(steps: Step[]): Detection[] {
  const engine = new DetectionEngine(SHIPPED_RULES_TEXT);
  const out: Detection[] = [];
  for (const [kind, seconds, detail, options] of steps)
    out.push(...engine.process(ev(kind, detail, { ...options, at: seconds })));
  return out;
}

/** Asserts `positive` fires `ruleId` (exactly `times` times) and `negatives` never fire it. */
function check(ruleId: string, positive: Step[], negatives: Record<string, Step[]>, times = 1): Detection {
  const detections = run(positive).filter((d) => d.ruleId === ruleId);
  assert.equal(detections.length, times, `${ruleId}: fired ${detections.length} times, not ${times}`);
  for (const [name, steps] of Object.entries(negatives)) {
    const fired = run(steps).filter((d) => d.ruleId === ruleId);
    assert.equal(fired.length, 0, `${ruleId} fired on: ${name}`);
  }
  covered.add(ruleId);
  return detections[0]!;
}

const series = (n: number, make: (i: number) => Step): Step[] => Array.from({ length: n }, (_, i) => make(i));

test('the shipped rules parse and are all enabled', () => {
  const result = parseRuleFile(SHIPPED_RULES_TEXT);
  assert.ok(result.ok, JSON.stringify(!result.ok && result.errors));
  assert.deepEqual(
    result.rules.map((r) => r.id),
    [...SHIPPED_RULE_IDS],
  );
  assert.ok(result.rules.every((r) => r.enabled));
  assert.doesNotThrow(() => JSON.parse(SHIPPED_RULES_TEXT) as unknown);
});

test('auth-brute-force-source: 20 failures from one address in 5 minutes', () => {
  const fail = (i: number, spacing: number, ip = '203.0.113.9'): Step => [
    'auth.login_failed',
    i * spacing,
    { username: `user${i}`, sourceIp: ip, reason: 'bad-password' },
  ];
  const d = check(
    'auth-brute-force-source',
    series(20, (i) => fail(i, 10)),
    {
      '19 failures': series(19, (i) => fail(i, 10)),
      '20 failures over 304 s': series(20, (i) => fail(i, 16)),
      '20 failures from 2 addresses': series(20, (i) => fail(i, 10, `198.51.100.${i % 2}`)),
    },
  );
  assert.equal(d.groupKey, 'detail.sourceIp=203.0.113.9');
  assert.equal(d.count, 20);
  assert.equal(d.severity, 'high');
});

test('auth-brute-force-account: 10 failures for one account from anywhere', () => {
  const fail = (i: number, spacing: number, username = 'alice'): Step => [
    'auth.login_failed',
    i * spacing,
    { username, sourceIp: `198.51.100.${i}`, reason: 'bad-password' },
  ];
  check(
    'auth-brute-force-account',
    series(10, (i) => fail(i, 20)),
    {
      '9 failures': series(9, (i) => fail(i, 20)),
      'spread over 315 s': series(10, (i) => fail(i, 35)),
      'different accounts': series(10, (i) => fail(i, 20, `user${i}`)),
    },
  );
});

test('auth-login-after-failures: 4 failures then a success for the account', () => {
  const fail = (s: number, username = 'bob'): Step => [
    'auth.login_failed',
    s,
    { username, sourceIp: '192.0.2.1' },
  ];
  const ok = (s: number, username = 'bob'): Step => [
    'auth.login_succeeded',
    s,
    { username, sourceIp: '192.0.2.1' },
  ];
  check('auth-login-after-failures', [fail(0), fail(10), fail(20), fail(30), ok(40)], {
    '3 failures then success': [fail(0), fail(10), fail(20), ok(40)],
    'success first': [ok(0), fail(10), fail(20), fail(30), fail(40)],
    'beyond 10 minutes': [fail(0), fail(10), fail(20), fail(30), ok(601)],
    'another account succeeds': [fail(0), fail(10), fail(20), fail(30), ok(40, 'carol')],
  });
});

test('api-id-probing: 20 different absent or foreign ids in a minute; revokes the token', () => {
  const denied = (i: number, resourceId: string, reason = 'not-found'): Step => [
    'api.denied',
    i * 2,
    { principalId: 'user-7', tokenId: 'tok-9', reason, resourceType: 'vm', resourceId, method: 'GET' },
  ];
  const d = check(
    'api-id-probing',
    series(20, (i) => denied(i, `vm-${i}`, i % 2 ? 'forbidden' : 'not-found')),
    {
      '19 ids': series(19, (i) => denied(i, `vm-${i}`)),
      'the same id 20 times': series(20, (i) => denied(i, 'vm-1')),
      'other reasons': series(20, (i) => denied(i, `vm-${i}`, 'rate-limited')),
      'over 2 minutes': series(20, (i) => {
        const s = denied(i, `vm-${i}`);
        s[1] = i * 7;
        return s;
      }),
    },
  );
  assert.deepEqual(d.response, {
    action: 'revoke-token',
    target: 'detail.tokenId',
    targetId: 'tok-9',
    allow: [],
    url: null,
  });
  assert.equal(d.events.length, 20);
});

test('privilege-escalation-attempts: 3 denied IAM/platform permissions in 10 minutes; disables the user', () => {
  const denied = (s: number, permission: string): Step => [
    'auth.privilege_denied',
    s,
    { principalId: 'user-3', tokenId: null, permission },
  ];
  const d = check(
    'privilege-escalation-attempts',
    [denied(0, 'member:create'), denied(60, 'platform:host:update'), denied(120, 'role:create')],
    {
      'ordinary permissions': [denied(0, 'vm:create'), denied(1, 'volume:update'), denied(2, 'vm:delete')],
      'two attempts': [denied(0, 'member:create'), denied(60, 'member:create')],
      'over 10 minutes': [
        denied(0, 'member:create'),
        denied(300, 'member:create'),
        denied(601, 'member:create'),
      ],
    },
  );
  // Alert only by default (a tenant admin exploring the console must not lock itself out); an
  // operator's rule file can make it disable-user.
  assert.equal(d.response.action, 'alert');
});

test('image-verification-failed: every failure, once per image per 10 minutes', () => {
  const failed = (s: number, imageId = 'img-1'): Step => [
    'image.verification_failed',
    s,
    { vmName: 'web', imageId, hostId: 'h1', reason: 'digest mismatch' },
    { severity: 'high', subjectType: 'vm', subjectId: 'vm-1' },
  ];
  check(
    'image-verification-failed',
    [failed(0), failed(60), failed(120, 'img-2'), failed(601)],
    {
      'other kinds': [['image.scan_error', 0, { imageId: 'img-1' }]],
    },
    3,
  );
});

test('image-quarantined: fires on a quarantine', () => {
  const d = check(
    'image-quarantined',
    [
      [
        'image.quarantined',
        0,
        { trigger: 'import', verdict: 'infected' },
        { subjectType: 'image', subjectId: 'img-1' },
      ],
    ],
    {
      'a scan error': [['image.scan_error', 0, {}, { subjectType: 'image', subjectId: 'img-1' }]],
    },
  );
  assert.equal(d.severity, 'critical');
});

test('anti-spoofing-drops: 3 drop reports in 2 minutes isolate the VM', () => {
  const drop = (s: number, packets = 12, vmId = 'vm-5'): Step => [
    'port.spoof_drop',
    s,
    { vmId, portId: 'p1', reason: 'ip', packets, srcIp: '10.9.9.9' },
  ];
  const d = check('anti-spoofing-drops', [drop(0), drop(10), drop(20)], {
    'two reports': [drop(0), drop(10)],
    'spread over 140 s': [drop(0), drop(70), drop(140)],
    'empty reports': [drop(0, 0), drop(10, 0), drop(20, 0)],
    'different VMs': [drop(0, 1, 'a'), drop(10, 1, 'b'), drop(20, 1, 'c')],
  });
  assert.deepEqual(d.response, {
    action: 'isolate-vm',
    target: 'detail.vmId',
    targetId: 'vm-5',
    allow: [],
    url: null,
  });
});

test('vm-port-scan: 50 distinct denied destination ports in a minute', () => {
  const probe = (i: number, port: number, spacing = 1, protocol = 'tcp'): Step => [
    'port.egress_denied',
    i * spacing,
    { vmId: 'vm-scan', portId: 'p1', protocol, dstIp: '10.0.0.2', dstPort: port, packets: 1 },
  ];
  const d = check(
    'vm-port-scan',
    series(50, (i) => probe(i, 1000 + i)),
    {
      '49 ports': series(49, (i) => probe(i, 1000 + i)),
      'one port 50 times': series(50, (i) => probe(i, 22)),
      'over 100 s': series(50, (i) => probe(i, 1000 + i, 2)),
      icmp: series(50, (i) => probe(i, 1000 + i, 1, 'icmp')),
    },
  );
  assert.equal(d.response.action, 'isolate-vm');
  assert.equal(d.response.targetId, 'vm-scan');
  assert.equal(d.count, 50);
});

const sample = (s: number, fields: Record<string, unknown>, vmId = 'vm-9'): Step => [
  'vm.sample',
  s,
  { vmId, hostId: 'h1', intervalSeconds: 10, cpuPercent: 20, txPps: 100, txBps: 50_000, ...fields },
];

test('vm-outbound-flood: over 100,000 packets/s in 3 samples within a minute pauses the VM', () => {
  const d = check(
    'vm-outbound-flood',
    [sample(0, { txPps: 150_000 }), sample(10, { txPps: 400_000 }), sample(20, { txPps: 100_000 })],
    {
      'just under': [
        sample(0, { txPps: 99_999 }),
        sample(10, { txPps: 99_999 }),
        sample(20, { txPps: 99_999 }),
      ],
      'two samples': [
        sample(0, { txPps: 500_000 }),
        sample(10, { txPps: 500_000 }),
        sample(20, { txPps: 10 }),
      ],
      'spread out': [
        sample(0, { txPps: 500_000 }),
        sample(40, { txPps: 500_000 }),
        sample(80, { txPps: 500_000 }),
      ],
    },
  );
  assert.equal(d.response.action, 'pause-vm');
  assert.equal(d.response.targetId, 'vm-9');
});

test('vm-crypto-mining: 5 minutes of full CPU with steady low egress', () => {
  const mining = (n: number, fields: Record<string, unknown> = {}, spacing = 10): Step[] =>
    series(n, (i) => sample(i * spacing, { cpuPercent: 99, txBps: 20_000, ...fields }));
  const d = check('vm-crypto-mining', mining(30), {
    '29 samples': mining(29),
    'CPU 90%': mining(30, { cpuPercent: 90 }),
    'no egress': mining(30, { txBps: 0 }),
    'bulk egress': mining(30, { txBps: 50_000_000 }),
    'with gaps (30 samples over 580 s)': mining(30, {}, 20),
  });
  assert.equal(d.response.action, 'snapshot-vm');
  assert.equal(d.severity, 'medium');
});

const consoleLine = (s: number, line: string, vmId = 'vm-g'): Step => ['guest.console', s, { vmId, line }];

test('guest-kernel-oops: an oops, panic or BUG on the console snapshots the VM', () => {
  const d = check(
    'guest-kernel-oops',
    [
      consoleLine(0, '[  101.2] BUG: unable to handle page fault for address: ffff8880deadbeef'),
      consoleLine(5, '[  101.3] Oops: 0002 [#1] SMP NOPTI'), // same VM, within the cooldown
      consoleLine(10, '[    9.9] Kernel panic - not syncing: Fatal exception', 'vm-other'),
    ],
    {
      'ordinary lines': [
        consoleLine(0, '[    0.0] Linux version 6.8.0'),
        consoleLine(1, 'systemd[1]: Started OpenSSH server'),
        consoleLine(2, 'oops, I did it again (a user message)'),
      ],
    },
    2,
  );
  assert.equal(d.response.action, 'snapshot-vm');
  assert.equal(d.response.targetId, 'vm-g');
});

test('guest-segfault-oom: 5 segfaults or OOM kills in 5 minutes', () => {
  const lines = [
    'nginx[811]: segfault at 7ffd3c ip 000055 sp 00007f error 4 in nginx',
    'Out of memory: Killed process 912 (java) total-vm:812kB',
    'java invoked oom-killer: gfp_mask=0x140cca',
    'oom-kill:constraint=CONSTRAINT_NONE,task=java,pid=912',
    'sshd[99]: segfault at 0 ip 0 sp 0 error 6',
  ];
  check(
    'guest-segfault-oom',
    lines.map((l, i) => consoleLine(i * 30, l)),
    {
      four: lines.slice(0, 4).map((l, i) => consoleLine(i * 30, l)),
      'over 6 minutes': lines.map((l, i) => consoleLine(i * 90, l)),
    },
  );
});

const exit = (s: number, fields: Record<string, unknown>): Step => [
  'vm.exit',
  s,
  { vmId: 'vm-q', hostId: 'h1', expected: false, reason: 'crash', signal: null, exitCode: 1, ...fields },
];

test('qemu-seccomp-kill: QEMU killed by seccomp keeps the VM stopped', () => {
  const d = check('qemu-seccomp-kill', [exit(0, { reason: 'seccomp', signal: 'SIGSYS' })], {
    crash: [exit(0, {})],
  });
  assert.equal(d.severity, 'critical');
  assert.deepEqual([d.response.action, d.response.targetId], ['stop-vm', 'vm-q']);
  assert.deepEqual(
    run([exit(0, { reason: 'seccomp' })]).map((x) => x.ruleId),
    ['qemu-seccomp-kill'],
    'a seccomp kill is not also reported as an unexpected exit',
  );
});

test('qemu-unexpected-exit: an exit nobody asked for', () => {
  check('qemu-unexpected-exit', [exit(0, { reason: 'signal', signal: 'SIGKILL' })], {
    'asked for': [exit(0, { expected: true, reason: 'shutdown', exitCode: 0 })],
    seccomp: [exit(0, { reason: 'seccomp' })],
    'no expected field': [['vm.exit', 0, { vmId: 'vm-q', reason: 'crash' }]],
  });
});

test('vm-heartbeat-lost and host-heartbeat-lost', () => {
  check(
    'vm-heartbeat-lost',
    [
      ['vm.heartbeat_lost', 0, { vmId: 'vm-h', hostId: 'h1', missed: 3 }],
      ['vm.heartbeat_lost', 60, { vmId: 'vm-h', missed: 9 }],
    ],
    {
      'a host heartbeat': [
        ['host.heartbeat_lost', 0, { hostId: 'h1' }, { subjectType: 'host', subjectId: 'h1' }],
      ],
    },
  );
  const d = check(
    'host-heartbeat-lost',
    [
      [
        'host.heartbeat_lost',
        0,
        { hostId: 'h1', missed: 3 },
        { tenantId: null, subjectType: 'host', subjectId: 'h1' },
      ],
    ],
    {
      'a VM heartbeat': [['vm.heartbeat_lost', 0, { vmId: 'vm-h' }]],
    },
  );
  assert.equal(d.groupKey, 'subjectId=h1');
  assert.equal(d.tenantId, null);
});

const copy = (kind: string, s: number, volumeId: string, fields: Record<string, unknown> = {}): Step => [
  kind,
  s,
  {
    actorId: 'user-x',
    actorType: 'user',
    crossTenant: false,
    volumeId,
    newId: `new-${s}`,
    vmId: null,
    ...fields,
  },
  { subjectType: 'volume', subjectId: volumeId },
];

test('volume-copy-cross-tenant: a clone or snapshot by someone outside the tenant', () => {
  check(
    'volume-copy-cross-tenant',
    [
      copy('volume.cloned', 0, 'vol-1', { crossTenant: true }),
      copy('volume.snapshot_created', 10, 'vol-2', { crossTenant: true }),
    ],
    { 'a member': [copy('volume.cloned', 0, 'vol-1'), copy('volume.snapshot_created', 1, 'vol-1')] },
    2,
  );
});

test('volume-bulk-copy: one actor copying 5 different volumes within an hour', () => {
  const kinds = ['volume.cloned', 'volume.snapshot_created'];
  check(
    'volume-bulk-copy',
    series(5, (i) => copy(kinds[i % 2]!, i * 600, `vol-${i}`)),
    {
      'the same volume 5 times': series(5, (i) => copy('volume.snapshot_created', i * 600, 'vol-1')),
      'four volumes': series(4, (i) => copy('volume.cloned', i * 600, `vol-${i}`)),
      'over more than an hour': series(5, (i) => copy('volume.cloned', i * 901, `vol-${i}`)),
    },
  );
});

test('every shipped rule is covered by a test above', () => {
  assert.deepEqual(
    [...SHIPPED_RULE_IDS].filter((id) => !covered.has(id)),
    [],
  );
});
