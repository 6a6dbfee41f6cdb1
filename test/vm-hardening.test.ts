/**
 * The hardening self-check (GET /v1/vms/{vm}/hardening) against two real QEMUs, and what it claims
 * checked independently (SECURITY-TESTS.md items 12 and 13): every check passes; the kernel's own view
 * (/proc) agrees; the uids differ; a process running as one VM's uid gets EACCES on the other VM's
 * sockets, run directory and logs. Each QEMU runs in a jail of its own (issue 7): a private mount
 * namespace, chrooted into vms/<id>/jail, read-only but for its run directory and device nodes, holding
 * nothing of the host, the agent or the other VM; when it stops, nothing of it is left.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { VmHardening } from '../src/api/hardening.js';
import type { Vm } from '../src/api/vm.js';
import { RampartHarness } from './helpers/rampart-harness.js';

let harness: RampartHarness;
const running: Record<string, Vm> = {};

before(async () => {
  harness = await RampartHarness.start();
  for (const name of ['hard1', 'hard2']) {
    const created = await harness.api<Vm>('POST', '/v1/vms', { name, image: 'tiny', flavor: 'tiny' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  for (const name of ['hard1', 'hard2']) running[name] = await harness.waitForState(name, 'running');
});

after(async () => {
  await harness?.cleanup();
});

/** The mount namespace of a process (`mnt:[inode]`), null when it is gone. */
function mountNamespace(pid: number | 'self'): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return null;
  }
}

/** Every process in the mount namespace `ns`. */
function processesIn(ns: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => mountNamespace(Number(entry)) === ns)
    .map(Number);
}

/** Mount points (relative to the process's root) and their read-only flag, from its mountinfo. */
function mountsOf(pid: number): Map<string, boolean> {
  const mounts = new Map<string, boolean>();
  for (const line of readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').filter(Boolean)) {
    const fields = line.split(' ');
    mounts.set(fields[4]!, fields[5]!.split(',').includes('ro'));
  }
  return mounts;
}

function vmDir(vm: Vm): string {
  return join(harness.dataDir, 'agent', 'vms', vm.id);
}

/** A command run as root inside QEMU's jail (its namespace and root), not as QEMU. */
function inJail(pid: number, command: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('nsenter', ['--target', String(pid), '--mount', '--root', '--', ...command], {
    encoding: 'utf8',
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const jailNamespaces: Record<string, string> = {};

function procStatus(pid: number, field: string): string {
  const match = new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match?.[1]?.trim() ?? '';
}

test('every check of the self-check passes, and /proc agrees with what it reports', async () => {
  const reports: VmHardening[] = [];
  for (const name of ['hard1', 'hard2']) {
    const answer = await harness.api<VmHardening>('GET', `/v1/vms/${name}/hardening`);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const report = answer.body;
    assert.equal(report.running, true);
    const failed = report.checks.filter((c) => !c.ok);
    assert.deepEqual(failed, [], `${name}: ${JSON.stringify(failed)}`);
    assert.equal(report.pid, running[name]!.pid);
    assert.equal(report.seccompMode, 2);
    assert.equal(report.noNewPrivs, true);
    assert.match(report.capabilities!.effective, /^0+$/);
    assert.equal(report.rlimits!.openFiles, 4096);
    assert.equal(report.environmentVariables, 0);
    assert.deepEqual(report.listeningSockets, []);
    assert.ok(report.devices.length >= 2, `devices: ${JSON.stringify(report.devices)}`);
    assert.ok(
      report.devices.some((d) => d.id === '1af4:1000'),
      'virtio-net is there',
    );
    assert.ok(
      report.cgroups.some((c) => c.includes(`vm-${running[name]!.id}`)),
      'in its own cgroup',
    );
    // The kernel's own view, read here, not through the agent.
    const pid = report.pid!;
    assert.equal(procStatus(pid, 'Seccomp'), '2');
    assert.equal(procStatus(pid, 'NoNewPrivs'), '1');
    assert.match(procStatus(pid, 'CapEff'), /^0+$/);
    assert.equal(Number(procStatus(pid, 'Uid').split(/\s+/)[0]), report.uid);
    reports.push(report);
  }
  assert.notEqual(reports[0]!.uid, reports[1]!.uid, 'each VM has its own uid');
  assert.ok(reports.every((r) => r.uid! > 0));
});

test("one VM's uid cannot open the other VM's sockets, run directory or logs (EACCES)", async () => {
  const other = await harness.api<VmHardening>('GET', '/v1/vms/hard2/hardening');
  const uid = other.body.uid!;
  const vmDir = join(harness.dataDir, 'agent', 'vms', running.hard1!.id);
  for (const target of [
    join(vmDir, 'run', 'qmp.sock'),
    join(vmDir, 'run', 'console.sock'),
    join(vmDir, 'run'),
    join(vmDir, 'console.log'),
    join(vmDir, 'qemu.log'),
  ]) {
    const attempt = spawnSync(
      'setpriv',
      ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', 'cat', target],
      { encoding: 'utf8' },
    );
    assert.notEqual(attempt.status, 0, `${target} was readable by another VM's uid`);
    assert.match(attempt.stderr, /Permission denied/, `${target}: ${attempt.stderr}`);
  }
});

test('each QEMU runs in a jail of its own: private mount namespace, chroot, read-only, nothing else', async () => {
  const agentPid = harness.agentPid();
  assert.ok(agentPid, 'the agent runs');
  const agentNs = mountNamespace(agentPid);
  assert.ok(agentNs);
  const hostEntries = ['bin', 'sbin', 'lib', 'lib64'].filter((name) => existsSync(`/${name}`));
  const dataTop = harness.dataDir.split('/')[1]!;
  for (const name of ['hard1', 'hard2']) {
    const vm = running[name]!;
    const other = running[name === 'hard1' ? 'hard2' : 'hard1']!;
    const pid = vm.pid!;
    const jail = join(vmDir(vm), 'jail');
    const runDir = join(vmDir(vm), 'run');
    // Its root is its jail, its mount namespace its own (not the agent's, not the other VM's), and
    // nothing else lives in that namespace: the holder that built it is gone.
    assert.equal(readlinkSync(`/proc/${pid}/root`), jail, `${name}: root`);
    const ns = mountNamespace(pid)!;
    jailNamespaces[name] = ns;
    assert.notEqual(ns, agentNs, `${name}: not the agent's mount namespace`);
    assert.notEqual(ns, mountNamespace('self'));
    assert.notEqual(ns, mountNamespace(other.pid!), `${name}: not the other VM's mount namespace`);
    assert.deepEqual(processesIn(ns), [pid], `${name}: only QEMU is in its namespace`);

    // What QEMU can see: the jail's entries only.
    const root = `/proc/${pid}/root`;
    assert.deepEqual(
      readdirSync(root).sort(),
      [...new Set([...hostEntries, 'usr', 'dev', 'etc', 'image', dataTop])].sort(),
      `${name}: jail entries`,
    );
    for (const absent of ['home', 'root', 'etc/shadow', 'etc/passwd', 'proc', 'sys', 'var/lib'])
      assert.equal(existsSync(join(root, absent)), false, `${name}: ${absent} is visible`);
    assert.deepEqual(readdirSync(join(root, 'etc')), ['ld.so.cache']);
    assert.deepEqual(readdirSync(join(root, 'image')).sort(), ['initrd', 'kernel']);
    const kvm = vm.accelerator === 'kvm' ? ['kvm'] : [];
    assert.deepEqual(
      readdirSync(join(root, 'dev')).sort(),
      [...kvm, 'net', 'null', 'random', 'urandom', 'zero'].sort(),
    );
    // The path to its run directory holds nothing else: no agent data, no other VM.
    assert.deepEqual(readdirSync(join(root, harness.dataDir)), ['agent']);
    assert.deepEqual(readdirSync(join(root, harness.dataDir, 'agent')), ['vms']);
    assert.deepEqual(readdirSync(join(root, harness.dataDir, 'agent', 'vms')), [vm.id]);
    assert.deepEqual(readdirSync(join(root, vmDir(vm))), ['run']);
    assert.deepEqual(readdirSync(join(root, runDir)).sort(), ['console.sock', 'ga.sock', 'qmp.sock']);
    assert.equal(existsSync(join(root, vmDir(other))), false, `${name}: the other VM's directory`);
    assert.ok(lstatSync(join(root, runDir, 'qmp.sock')).isSocket());

    // Read-only but for the run directory and the device nodes (the kernel's view, its mountinfo).
    const mounts = mountsOf(pid);
    assert.equal(mounts.get('/'), true, `${name}: / is read-only`);
    assert.equal(mounts.get('/usr'), true, `${name}: /usr is read-only`);
    assert.equal(mounts.get('/image/kernel'), true);
    assert.equal(mounts.get('/image/initrd'), true);
    assert.equal(mounts.get(runDir), false, `${name}: its run directory is writable`);
    const writable = [...mounts].filter(([, ro]) => !ro).map(([path]) => path);
    assert.deepEqual(
      writable.sort(),
      [
        runDir,
        ...kvm.map((d) => `/dev/${d}`),
        '/dev/net/tun',
        '/dev/null',
        '/dev/random',
        '/dev/urandom',
        '/dev/zero',
      ].sort(),
    );
    // Even root inside the jail cannot write to /usr; the other VM's run directory does not exist.
    const write = inJail(pid, ['/usr/bin/touch', '/usr/rampart-jail-probe']);
    assert.notEqual(write.status, 0);
    assert.match(write.stderr, /Read-only file system/);
    assert.equal(existsSync('/usr/rampart-jail-probe'), false);
    const peek = inJail(pid, ['/usr/bin/ls', join(vmDir(other), 'run')]);
    assert.notEqual(peek.status, 0);
    assert.match(peek.stderr, /No such file or directory/);

    // The host's own mount table never holds a jail mount (they exist only in QEMU's namespace).
    assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(harness.dataDir));

    // The self-check says the same.
    const report = (await harness.api<VmHardening>('GET', `/v1/vms/${name}/hardening`)).body;
    assert.equal(report.mountNamespace, 'private');
    assert.equal(report.root, jail);
    assert.ok(report.mounts.some((m) => m.path === '/usr' && m.readOnly));
    assert.ok(report.mounts.some((m) => m.path === runDir && !m.readOnly));
    for (const check of ['private-mount-namespace', 'jail-root', 'jail-read-only'])
      assert.ok(report.checks.find((c) => c.name === check)?.ok, `${name}: ${check}`);
  }
});

test('a stopped VM reports that it is not running, and nothing of its jail is left', async () => {
  assert.equal((await harness.api('POST', '/v1/vms/hard2/stop', { force: true })).status, 202);
  await harness.waitForState('hard2', 'stopped');
  // Its namespace went with QEMU: no process is in it, no mount of it is on the host.
  assert.ok(jailNamespaces.hard2, 'the jail test ran first');
  assert.deepEqual(processesIn(jailNamespaces.hard2), []);
  assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(harness.dataDir));
  const hostMounts = readFileSync(`/proc/${harness.agentPid()!}/mountinfo`, 'utf8');
  assert.ok(!hostMounts.includes(join(vmDir(running.hard2!), 'jail')));
  const report = await harness.api<VmHardening>('GET', '/v1/vms/hard2/hardening');
  assert.equal(report.status, 200);
  assert.equal(report.body.running, false);
  assert.deepEqual(
    report.body.checks.map((c) => [c.name, c.ok]),
    [['running', false]],
  );
});

test('nested virtualization: off by default; only a platform admin turns it on for a tenant', async () => {
  const before = await harness.api<VmHardening>('GET', '/v1/vms/hard1/hardening');
  const check = before.body.checks.find((c) => c.name === 'nested-virtualization');
  assert.ok(check?.ok, JSON.stringify(check));
  assert.match(check.detail, /vmx=off,svm=off/);

  const adminToken = await harness.createMember(
    'nestadmin',
    'a long enough password 1',
    'default',
    'tenant-admin',
  );
  const refused = await harness.api(
    'PATCH',
    '/v1/tenants/default',
    { allowNestedVirtualization: true },
    { authorization: `Bearer ${adminToken}` },
  );
  assert.equal(refused.status, 403, 'a tenant admin cannot allow it');
  const allowed = await harness.api<{ allowNestedVirtualization: boolean }>('PATCH', '/v1/tenants/default', {
    allowNestedVirtualization: true,
  });
  assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
  assert.equal(allowed.body.allowNestedVirtualization, true);
  // The next boot exposes VMX/SVM; the self-check says why that is fine.
  assert.equal((await harness.api('POST', '/v1/vms/hard2/start')).status, 202);
  await harness.waitForState('hard2', 'running');
  const after = await harness.api<VmHardening>('GET', '/v1/vms/hard2/hardening');
  const nested = after.body.checks.find((c) => c.name === 'nested-virtualization')!;
  assert.ok(nested.ok);
  assert.match(nested.detail, /-cpu qemu64 \(allowed for the tenant\)/);
  // A tenant admin may turn it off again (tightening).
  const off = await harness.api(
    'PATCH',
    '/v1/tenants/default',
    { allowNestedVirtualization: false },
    { authorization: `Bearer ${adminToken}` },
  );
  assert.equal(off.status, 200);
});
