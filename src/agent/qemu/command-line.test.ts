/**
 * The QEMU command line: the full sandbox deny set, no default devices or user config, no display and
 * no network listener, host-hardening machine options, the guest agent port; values that could inject
 * QEMU options are refused; the unprivileged wrapper drops everything; MACs are stable.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  GUEST_AGENT_PORT_NAME,
  SANDBOX,
  buildQemuArgs,
  kernelCommandLine,
  macForVm,
  socketPaths,
  unprivilegedPrefix,
  type QemuSpec,
} from './command-line.js';

const SPEC: QemuSpec = {
  id: '0f8e2c7a-1b2c-4d5e-8f90-123456789abc',
  name: 'web-1',
  vcpus: 2,
  memoryMiB: 256,
  accelerator: 'tcg',
  kernel: {
    kernelPath: '/var/lib/rampart/images/abc/vmlinuz',
    initrdPath: '/var/lib/rampart/images/abc/initrd.img',
  },
  runDir: '/var/lib/rampart/agent/vms/0f8e2c7a-1b2c-4d5e-8f90-123456789abc/run',
};

/** The value following `flag` (asserting the flag occurs exactly once). */
function valueOf(args: readonly string[], flag: string): string {
  const indexes = args.flatMap((a, i) => (a === flag ? [i] : []));
  assert.equal(indexes.length, 1, `${flag} occurs ${indexes.length} times in ${JSON.stringify(args)}`);
  const value = args[indexes[0]! + 1];
  assert.ok(value !== undefined, `${flag} has no value`);
  return value;
}

function valuesOf(args: readonly string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag && args[i + 1] !== undefined ? [args[i + 1]!] : []));
}

void describe('buildQemuArgs', () => {
  const args = buildQemuArgs(SPEC);

  void test('the sandbox is on with the full deny set, exactly', () => {
    assert.equal(SANDBOX, 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
    assert.equal(
      valueOf(args, '-sandbox'),
      'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    );
  });

  void test('no default devices, no user config, no display', () => {
    assert.ok(args.includes('-nodefaults'));
    assert.ok(args.includes('-no-user-config'));
    assert.equal(valueOf(args, '-display'), 'none');
  });

  void test('no VNC, SPICE, GDB stub or TCP listener of any kind', () => {
    for (const flag of ['-vnc', '-spice', '-gdb', '-s', '-monitor', '-qmp', '-incoming', '-daemonize']) {
      assert.ok(!args.includes(flag), `${flag} must not be used`);
    }
    for (const arg of args) {
      assert.ok(!arg.includes('tcp:'), `tcp listener in ${JSON.stringify(arg)}`);
      assert.ok(!arg.includes('host='), `host= in ${JSON.stringify(arg)}`);
      assert.ok(
        !/hostfwd|guestfwd|telnet|websocket|spice|vnc/i.test(arg),
        `network exposure in ${JSON.stringify(arg)}`,
      );
    }
  });

  void test('the only network is user-mode with restrict=on', () => {
    assert.deepEqual(valuesOf(args, '-netdev'), ['user,id=net0,restrict=on']);
  });

  void test('machine options keep guest memory out of core dumps and unmerged', () => {
    const machine = valueOf(args, '-machine').split(',');
    assert.ok(machine.includes('dump-guest-core=off'), machine.join(','));
    assert.ok(machine.includes('mem-merge=off'), machine.join(','));
  });

  void test('all chardevs are unix sockets in the run directory', () => {
    const sockets = socketPaths(SPEC.runDir);
    const chardevs = valuesOf(args, '-chardev');
    assert.equal(chardevs.length, 3);
    for (const chardev of chardevs) {
      assert.match(chardev, /^socket,id=[a-z0-9]+,path=[^,]+,server=on,wait=off$/);
      const path = /path=([^,]+)/.exec(chardev)![1]!;
      assert.ok(path.startsWith(`${SPEC.runDir}/`), path);
    }
    assert.ok(chardevs.some((c) => c.includes(`path=${sockets.qmp},`)));
    assert.ok(chardevs.some((c) => c.includes(`path=${sockets.console},`)));
    assert.ok(chardevs.some((c) => c.includes(`path=${sockets.guestAgent},`)));
  });

  void test('the guest agent port has its well-known name', () => {
    assert.equal(GUEST_AGENT_PORT_NAME, 'org.rampart.agent.0');
    const devices = valuesOf(args, '-device');
    assert.ok(
      devices.some(
        (d) => d.startsWith('virtserialport,') && d.split(',').includes(`name=${GUEST_AGENT_PORT_NAME}`),
      ),
      JSON.stringify(devices),
    );
  });

  void test('sizes, name, uuid and accelerator come from the spec', () => {
    assert.equal(valueOf(args, '-m'), '256');
    assert.equal(valueOf(args, '-smp'), '2');
    assert.equal(valueOf(args, '-uuid'), SPEC.id);
    // TCG's translation cache is bounded so QEMU fits its memory cgroup limit.
    assert.equal(valueOf(args, '-accel'), 'tcg,tb-size=32');
    assert.equal(valueOf(args, '-name'), 'guest=web-1,debug-threads=on');
    assert.equal(valueOf(args, '-kernel'), SPEC.kernel!.kernelPath);
    assert.equal(valueOf(args, '-initrd'), SPEC.kernel!.initrdPath);
    // No hypervisor inside the guest unless its tenant is allowed nested virtualization.
    assert.equal(valueOf(args, '-cpu'), 'qemu64,vmx=off,svm=off');
    const kvm = buildQemuArgs({ ...SPEC, accelerator: 'kvm' });
    assert.equal(valueOf(kvm, '-accel'), 'kvm');
    assert.equal(valueOf(kvm, '-cpu'), 'host,vmx=off,svm=off');
    assert.equal(valueOf(buildQemuArgs({ ...SPEC, accelerator: 'kvm', nested: true }), '-cpu'), 'host');
  });

  void test('the kernel command line carries the hostname and the serial console', () => {
    const append = valueOf(args, '-append').split(' ');
    assert.ok(append.includes('console=ttyS0'));
    assert.ok(append.includes('rampart.hostname=web-1'));
    assert.equal(valueOf(args, '-append'), kernelCommandLine(SPEC));
  });

  void test('every argument is a separate array element (no shell string)', () => {
    for (const arg of args) assert.equal(typeof arg, 'string');
    assert.ok(!args.some((a) => a.startsWith('-sandbox ') || a.startsWith('-display ')));
  });

  void describe('values that could inject QEMU options are refused', () => {
    const badNames = [
      'web,1',
      'web 1',
      'a=b',
      'x,file=/etc/shadow',
      'name\n',
      'nm;id',
      '$(id)',
      'a\u0000b',
      '',
    ];
    for (const name of badNames) {
      void test(`VM name ${JSON.stringify(name)} throws`, () => {
        assert.throws(() => buildQemuArgs({ ...SPEC, name }), /VM name/);
        assert.throws(() => kernelCommandLine({ name }), /VM name/);
      });
    }

    const pathFields = ['kernelPath', 'initrdPath', 'runDir'] as const;
    const withPath = (field: (typeof pathFields)[number], value: string): QemuSpec =>
      field === 'runDir'
        ? { ...SPEC, runDir: value }
        : { ...SPEC, kernel: { ...SPEC.kernel!, [field]: value } };
    const badPaths = ['/tmp/a,b', '/tmp/a=b', '/tmp/a b', '/tmp/a\nb', '/tmp/x,readonly=off'];
    for (const field of pathFields) {
      for (const value of badPaths) {
        void test(`${field} ${JSON.stringify(value)} throws`, () => {
          assert.throws(() => buildQemuArgs(withPath(field, value)), /not allowed in a QEMU option/);
        });
      }
      void test(`${field} with '../' cannot add or split options`, () => {
        // '..' is only a path component to QEMU (paths are confined by the agent config); what matters
        // here is that the argument vector keeps exactly the same shape as with a plain path.
        const dotted = '/var/lib/rampart/../../etc/x';
        const plain = '/var/lib/rampart/zzzzz/etc/x';
        const built = buildQemuArgs(withPath(field, dotted));
        const reference = buildQemuArgs(withPath(field, plain));
        assert.ok(
          built.some((a) => a.includes(dotted)),
          'the path is used verbatim',
        );
        assert.deepEqual(
          built.map((a) => a.split(dotted).join('<P>')),
          reference.map((a) => a.split(plain).join('<P>')),
        );
      });
    }

    void test('a VM id with option separators throws', () => {
      assert.throws(() => buildQemuArgs({ ...SPEC, id: 'abc,debug=on' }), /VM id/);
    });
  });
});

void describe('unprivilegedPrefix', () => {
  void test('switches to the given uid/gid with no new privileges and no capabilities', () => {
    const prefix = unprivilegedPrefix(3_100_042, 3_100_042, []);
    assert.equal(valueOf(prefix, '--reuid'), '3100042');
    assert.equal(valueOf(prefix, '--regid'), '3100042');
    assert.ok(prefix.includes('--no-new-privs'));
    assert.ok(prefix.includes('--inh-caps=-all'));
    assert.ok(prefix.includes('--bounding-set=-all'));
    assert.ok(prefix.includes('--clear-groups'));
    assert.ok(!prefix.includes('--groups'));
    assert.equal(prefix[prefix.length - 1], '--', 'the command follows after --');
  });

  void test('never switches to uid or gid 0 when given an unprivileged uid', () => {
    for (const uid of [1000, 65534, 3_000_000, 4_000_000_000]) {
      const prefix = unprivilegedPrefix(uid, uid + 1, [uid + 2]);
      assert.equal(valueOf(prefix, '--reuid'), String(uid));
      assert.equal(valueOf(prefix, '--regid'), String(uid + 1));
      assert.notEqual(valueOf(prefix, '--reuid'), '0');
      assert.notEqual(valueOf(prefix, '--regid'), '0');
      assert.ok(!prefix.includes('0'), JSON.stringify(prefix));
      assert.ok(prefix.includes('--no-new-privs'));
    }
  });

  void test('supplementary groups replace --clear-groups', () => {
    const prefix = unprivilegedPrefix(4000, 4000, [36, 108]);
    assert.equal(valueOf(prefix, '--groups'), '36,108');
    assert.ok(!prefix.includes('--clear-groups'));
    assert.ok(prefix.includes('--no-new-privs'));
  });
});

void describe('macForVm', () => {
  void test('is stable for an id and uses the 52:54:00 prefix', () => {
    const mac = macForVm(SPEC.id);
    assert.equal(macForVm(SPEC.id), mac);
    assert.match(mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
    const args = buildQemuArgs(SPEC);
    assert.ok(valuesOf(args, '-device').some((d) => d === `virtio-net-pci,netdev=net0,mac=${mac}`));
  });

  void test('differs between ids', () => {
    const macs = new Set<string>();
    for (let i = 0; i < 200; i++)
      macs.add(macForVm(`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`));
    for (const mac of macs) assert.ok(mac.startsWith('52:54:00:'), mac);
    // 24 random bits over 200 ids: collisions are possible but very unlikely; a constant MAC gives 1.
    assert.ok(macs.size >= 198, `only ${macs.size} distinct MACs`);
  });
});

void describe('tenant network NICs', () => {
  const nic = {
    tap: 'rpt0123456789ab',
    mac: '52:54:00:aa:bb:cc',
    ipv4: '10.9.0.2',
    prefixLength: 24,
    gateway: null,
  };

  void test('a tap netdev per NIC (no user-mode network), the address on the kernel command line', () => {
    const args = buildQemuArgs({ ...SPEC, nics: [nic] });
    assert.deepEqual(valuesOf(args, '-netdev'), [
      'tap,id=net0,ifname=rpt0123456789ab,script=no,downscript=no',
    ]);
    assert.ok(valuesOf(args, '-device').includes('virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc'));
    const append = valueOf(args, '-append');
    assert.match(append, /rampart\.ip=10\.9\.0\.2\/24/);
    assert.doesNotMatch(append, /rampart\.gw=/);
    assert.match(
      kernelCommandLine({ name: 'x', nics: [{ ...nic, gateway: '10.9.0.1' }] }),
      /rampart\.gw=10\.9\.0\.1/,
    );
  });

  void test('names, MACs and addresses that could inject are refused', () => {
    assert.throws(
      () => buildQemuArgs({ ...SPEC, nics: [{ ...nic, tap: 'rpt0123,script=/x' }] }),
      /bad tap name/,
    );
    assert.throws(
      () => buildQemuArgs({ ...SPEC, nics: [{ ...nic, mac: '52:54:00:aa:bb:cc,x=y' }] }),
      /bad MAC/,
    );
    assert.throws(
      () => buildQemuArgs({ ...SPEC, nics: [{ ...nic, ipv4: '10.0.0.1 init=/bin/sh' }] }),
      /not an IPv4/,
    );
  });
});

void describe('volumes', () => {
  const volumes = [
    {
      id: '11111111-2222-4333-8444-555555555555',
      path: '/volumes/11111111-2222-4333-8444-555555555555',
      keyFile: `${SPEC.runDir}/volume-0.key`,
    },
    {
      id: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee',
      path: '/volumes/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee',
      keyFile: `${SPEC.runDir}/volume-1.key`,
    },
  ];

  void test('per volume: a secret from its key file, a LUKS node on the file, a virtio-blk device', () => {
    const args = buildQemuArgs({ ...SPEC, volumes });
    assert.deepEqual(valuesOf(args, '-object'), [
      `secret,id=volsec0,file=${SPEC.runDir}/volume-0.key,format=raw`,
      `secret,id=volsec1,file=${SPEC.runDir}/volume-1.key,format=raw`,
    ]);
    assert.deepEqual(
      valuesOf(args, '-blockdev').map((b) => JSON.parse(b) as unknown),
      volumes.map((v, i) => ({
        driver: 'luks',
        'node-name': `vol${i}`,
        'key-secret': `volsec${i}`,
        file: { driver: 'file', filename: v.path },
      })),
    );
    assert.deepEqual(valuesOf(args, '-device').slice(-2), [
      'virtio-blk-pci,drive=vol0,serial=11111111-2222-4333-8',
      'virtio-blk-pci,drive=vol1,serial=aaaaaaaa-bbbb-4ccc-8',
    ]);
    // In attachment order, after the NICs: /dev/vda is the first volume.
    assert.ok(
      args.indexOf('-blockdev') > args.lastIndexOf('virtio-net-pci,netdev=net0,mac=' + macForVm(SPEC.id)),
    );
  });

  void test('disk limits: each volume behind a throttle node of its own group; the device uses it', () => {
    const args = buildQemuArgs({ ...SPEC, volumes, diskLimits: { iops: 200, bytesPerSecond: 1048576 } });
    assert.deepEqual(valuesOf(args, '-object').slice(-3), [
      'throttle-group,id=tg-vol0,x-iops-total=200,x-bps-total=1048576',
      `secret,id=volsec1,file=${SPEC.runDir}/volume-1.key,format=raw`,
      'throttle-group,id=tg-vol1,x-iops-total=200,x-bps-total=1048576',
    ]);
    assert.ok(
      valuesOf(args, '-blockdev').includes(
        'driver=throttle,node-name=throttle-vol0,throttle-group=tg-vol0,file=vol0',
      ),
    );
    assert.deepEqual(valuesOf(args, '-device').slice(-2), [
      'virtio-blk-pci,drive=throttle-vol0,serial=11111111-2222-4333-8',
      'virtio-blk-pci,drive=throttle-vol1,serial=aaaaaaaa-bbbb-4ccc-8',
    ]);
    assert.ok(
      !buildQemuArgs({ ...SPEC, volumes, diskLimits: {} })
        .join(' ')
        .includes('throttle'),
    );
  });

  void test('no volume: no block device at all', () => {
    const args = buildQemuArgs(SPEC);
    assert.ok(!args.includes('-blockdev') && !args.includes('-object'));
  });

  void test('ids and paths that could inject options are refused; no key material on the line', () => {
    assert.throws(
      () => buildQemuArgs({ ...SPEC, volumes: [{ ...volumes[0]!, id: 'x,file=/etc/shadow' }] }),
      /bad volume id/,
    );
    assert.throws(
      () => buildQemuArgs({ ...SPEC, volumes: [{ ...volumes[0]!, keyFile: '/run/k,data=secret' }] }),
      /not allowed/,
    );
    const args = buildQemuArgs({ ...SPEC, volumes });
    assert.ok(!args.some((a) => /data=|key=|passphrase/.test(a)));
  });
});

void describe('disk images: firmware boot from a root overlay, seed, generation id', () => {
  const root = {
    id: '11111111-2222-4333-8444-555555555555',
    path: '/volumes/11111111-2222-4333-8444-555555555555',
    keyFile: `${SPEC.runDir}/volume-0.key`,
    format: 'qcow2' as const,
    backing: { path: '/image/disk-0', format: 'qcow2' as const },
    boot: true,
  };
  const diskSpec: QemuSpec = { ...SPEC, volumes: [root] };
  delete diskSpec.kernel;

  void test('no -kernel: the firmware boots the root volume (bootindex 0)', () => {
    const args = buildQemuArgs(diskSpec);
    assert.ok(!args.includes('-kernel') && !args.includes('-initrd') && !args.includes('-append'));
    assert.ok(
      valuesOf(args, '-device').includes('virtio-blk-pci,drive=vol0,serial=11111111-2222-4333-8,bootindex=0'),
    );
    assert.throws(
      () => buildQemuArgs({ ...diskSpec, volumes: [{ ...root, boot: false }] }),
      /no boot volume/,
    );
  });

  void test('the overlay is qcow2 with LUKS over an explicit read-only base node', () => {
    const blockdevs = valuesOf(buildQemuArgs(diskSpec), '-blockdev').map((b) => JSON.parse(b) as unknown);
    assert.deepEqual(blockdevs, [
      {
        driver: 'qcow2',
        'node-name': 'base0',
        'read-only': true,
        file: { driver: 'file', filename: '/image/disk-0', 'read-only': true },
      },
      {
        driver: 'qcow2',
        'node-name': 'vol0',
        encrypt: { format: 'luks', 'key-secret': 'volsec0' },
        file: { driver: 'file', filename: root.path },
        backing: 'base0',
      },
    ]);
    // Without a base (restored from a backup): the header's backing name is never followed.
    const { backing: _backing, ...standalone } = root;
    const alone = valuesOf(buildQemuArgs({ ...diskSpec, volumes: [standalone] }), '-blockdev');
    assert.equal(alone.length, 1);
    assert.equal((JSON.parse(alone[0]!) as { backing: unknown }).backing, null);
    assert.throws(
      () =>
        buildQemuArgs({ ...diskSpec, volumes: [{ ...root, backing: { ...root.backing, path: '/x,y' } }] }),
      /not allowed/,
    );
  });

  void test('the seed is a read-only raw disk after the volumes; vmgenid carries the generation id', () => {
    const args = buildQemuArgs({
      ...diskSpec,
      seedPath: `${SPEC.runDir}/seed.img`,
      generationId: '9b2c6f1e-3d4a-4b5c-8d6e-7f8091a2b3c4',
    });
    const seed = JSON.parse(valuesOf(args, '-blockdev').at(-1)!) as Record<string, unknown>;
    assert.deepEqual(seed, {
      driver: 'raw',
      'node-name': 'seed0',
      'read-only': true,
      file: { driver: 'file', filename: `${SPEC.runDir}/seed.img`, 'read-only': true },
    });
    assert.deepEqual(valuesOf(args, '-device').slice(-2), [
      'virtio-blk-pci,drive=seed0,serial=cidata',
      'vmgenid,guid=9b2c6f1e-3d4a-4b5c-8d6e-7f8091a2b3c4',
    ]);
    assert.throws(() => buildQemuArgs({ ...diskSpec, generationId: 'x,guid=1' }), /UUID/);
    assert.throws(() => buildQemuArgs({ ...diskSpec, seedPath: '/run/seed,ro=off' }), /not allowed/);
  });
});
