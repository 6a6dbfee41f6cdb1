/**
 * The detection rules Rampart ships, as the text of a rule file (format: rule-schema.ts). It is a
 * string rather than a .json file because tsc does not copy unimported .json files to dist; the text
 * is valid JSON, parsed by the same loader as an operator's file, so error lines match.
 *
 * EVENT KINDS. Recorded (schema in ../security-events.ts): image.quarantined,
 * image.verification_failed, image.scan_error, host.firewall_drift; and the kinds below, from the
 * control plane (../event-producers.ts, ../console-watch.ts, ../heartbeat-watch.ts, the volume routes)
 * and from the agents' telemetry (../telemetry-ingest.ts). They follow the same conventions
 * (subjectType / subjectId say what the event is about; tenantId is the owner, null for platform-wide
 * events) and their `detail` fields are:
 *
 *   auth.login_failed        subjectType 'user', subjectId the user id or null (unknown name).
 *                            detail: { username, sourceIp, reason: 'bad-password'|'unknown-user'|
 *                                      'bad-otp'|'locked', userAgent? }
 *   auth.login_succeeded     as auth.login_failed, detail: { username, sourceIp, userId, mfa: boolean }
 *   api.denied               subjectType 'user', subjectId the principal id.
 *                            detail: { principalId, tokenId: string|null (the API token used; null for a
 *                                      session), reason: 'not-found'|'forbidden', resourceId (the id or
 *                                      name in the path, or null), method, route, sourceIp }
 *                            One event per request of an authenticated principal answered 404 or 403.
 *   auth.privilege_denied    subjectType 'user', subjectId the principal id.
 *                            detail: { principalId, tokenId: string|null, permission (e.g. 'member:create',
 *                                      'platform:host:update'), method, route, sourceIp }
 *                            A request denied for lack of a permission.
 *   port.spoof_drop          subjectType 'vm', subjectId the VM id.
 *                            detail: { vmId, vmName, portId, hostId, reason: 'mac'|'ip'|'arp'|
 *                                      'dhcp-server'|'router-advert', packets (dropped since the last
 *                                      report) }   (frames of a protocol not offered, e.g. IPv6, are
 *                                      counted on the port but are no event: they are not forged)   At most one per port and reason per
 *                                      telemetry report (RAMPART_TELEMETRY_SECONDS, default 10).
 *   port.egress_denied       subjectType 'vm' (the sender), subjectId the VM id.
 *                            detail: { vmId, vmName, portId, hostId, deniedBy: 'egress' (the
 *                                      sender's groups) | 'ingress' (the local receiver's groups),
 *                                      protocol: 'tcp'|'udp', dstIp, dstPort, dstVmId (the receiving VM
 *                                      when it is in the same tenant, else null), packets: 1 }
 *                                      At most one per (sender, dstIp, protocol, dstPort) per minute.
 *   vm.sample                subjectType 'vm', subjectId the VM id, severity 'info'. One per telemetry
 *                            report while the VM is busy (CPU >= 50% or >= 1000 packets/s either
 *                            way; every sample, busy or not, is in GET /v1/vms/{vm}/samples).
 *                            detail: { vmId, hostId, intervalSeconds, cpuPercent (0-100 of the VM's
 *                                      vCPUs), memoryBytes, txPackets, txBytes, rxPackets, rxBytes,
 *                                      txPps, txBps, rxPps, rxBps, diskReadBytes, diskWriteBytes,
 *                                      diskReadOps, diskWriteOps, diskReadBps, diskWriteBps
 *                                      (counters over the interval, and divided by it) }
 *   guest.console            subjectType 'vm', subjectId the VM id. detail: { vmId, line } (one serial
 *                            console line, control characters stripped, at most 1 KiB). Producers
 *                            should only forward lines matching the kernel patterns below.
 *   vm.exit                  subjectType 'vm', subjectId the VM id.
 *                            detail: { vmId, hostId, expected: boolean (asked for: stop, shutdown,
 *                                      migration), reason: 'shutdown'|'stop'|'seccomp'|'crash'|
 *                                      'signal'|'oom-killed'|'error', signal: string|null,
 *                                      exitCode: number|null }
 *   vm.heartbeat_lost        subjectType 'vm', subjectId the VM id. detail: { vmId, hostId, lastSeenAt,
 *                            missed } (the guest agent missed `missed` heartbeats).
 *   host.heartbeat_lost      subjectType 'host', subjectId the host id, tenantId null.
 *                            detail: { hostId, lastSeenAt, missed }
 *   host.failed              subjectType 'host', tenantId null (its lease expired; host-failover.ts).
 *                            detail: { hostId, hostname, lastSeenAt, leaseSeconds, moved: vmId[],
 *                                      stayed: { vmId, reason }[] }
 *   host.fenced              subjectType 'host', tenantId null (it had killed its VMs: self-fencing).
 *                            detail: { hostId, hostname, fencedAt, vmIds }
 *   volume.snapshot_created  subjectType 'volume', subjectId the source volume id.
 *   volume.cloned            detail: { actorId, actorName, actorType: 'user'|'token', tokenId,
 *                                      crossTenant: boolean (the actor holds no role in the volume's
 *                                      tenant, e.g. a platform admin), volumeId, newId (snapshot or
 *                                      clone id), vmId: null }   Copies made through the API (the
 *                                      engine's own forensic snapshots are audited, not events).
 *
 * THE "UNUSUAL ACTOR" RULES. Without a learned baseline, "unusual" is read as two observable facts:
 * a copy of a tenant's disk made by someone who is not a member of that tenant (volume-copy-cross-
 * tenant), and one actor copying many different volumes in an hour, the shape of bulk exfiltration
 * (volume-bulk-copy).
 */
export const SHIPPED_RULES_TEXT = String.raw`{
  "version": 1,
  "rules": [
    {
      "id": "auth-brute-force-source",
      "description": "Brute-force login: 20 failed logins from one source address within 5 minutes",
      "severity": "high",
      "match": { "kind": "auth.login_failed" },
      "threshold": { "count": 20, "windowSeconds": 300, "groupBy": ["detail.sourceIp"] },
      "response": { "action": "alert" },
      "cooldownSeconds": 900
    },
    {
      "id": "auth-brute-force-account",
      "description": "Brute-force login: 10 failed logins for one account within 5 minutes (any source)",
      "severity": "medium",
      "match": { "kind": "auth.login_failed", "where": { "detail.username": { "exists": true } } },
      "threshold": { "count": 10, "windowSeconds": 300, "groupBy": ["detail.username"] },
      "response": { "action": "alert" },
      "cooldownSeconds": 900
    },
    {
      "id": "auth-login-after-failures",
      "description": "A successful login for an account right after 4 failed ones (a guessed password?)",
      "severity": "medium",
      "sequence": {
        "steps": [
          { "kind": "auth.login_failed" },
          { "kind": "auth.login_failed" },
          { "kind": "auth.login_failed" },
          { "kind": "auth.login_failed" },
          { "kind": "auth.login_succeeded" }
        ],
        "windowSeconds": 600,
        "groupBy": ["detail.username"]
      },
      "response": { "action": "alert" },
      "cooldownSeconds": 3600
    },
    {
      "id": "api-id-probing",
      "description": "One principal asked for 20 different absent or foreign ids within a minute (enumeration)",
      "severity": "high",
      "match": { "kind": "api.denied", "where": { "detail.reason": { "in": ["not-found", "forbidden"] } } },
      "threshold": {
        "count": 20,
        "windowSeconds": 60,
        "groupBy": ["detail.principalId"],
        "distinct": "detail.resourceId"
      },
      "response": { "action": "revoke-token", "target": "detail.tokenId" },
      "cooldownSeconds": 300
    },
    {
      "id": "privilege-escalation-attempts",
      "description": "Repeated attempts at permissions that grant power (platform, members, roles, tenant settings, image trust, security response) the principal does not hold",
      "severity": "high",
      "match": {
        "kind": "auth.privilege_denied",
        "where": { "detail.permission": { "regex": "^(?:platform:|member:(?:create|delete)|role:(?:create|delete)|tenant:update|image:trust|security:respond)" } }
      },
      "threshold": { "count": 3, "windowSeconds": 600, "groupBy": ["detail.principalId"] },
      "response": { "action": "alert" },
      "cooldownSeconds": 3600
    },
    {
      "id": "image-verification-failed",
      "description": "An image failed its digest, signature or trust-policy check before a boot",
      "severity": "high",
      "match": { "kind": "image.verification_failed" },
      "groupBy": ["detail.imageId"],
      "response": { "action": "alert" },
      "cooldownSeconds": 600
    },
    {
      "id": "image-quarantined",
      "description": "The malware scanner quarantined an image",
      "severity": "critical",
      "match": { "kind": "image.quarantined" },
      "response": { "action": "alert" }
    },
    {
      "id": "anti-spoofing-drops",
      "description": "A VM keeps sending packets with a forged MAC or IP address (3 reports in 2 minutes)",
      "severity": "high",
      "match": {
        "kind": "port.spoof_drop",
        "where": {
          "detail.packets": { "gt": 0 },
          "detail.reason": { "in": ["mac", "ip", "arp", "dhcp-server", "router-advert"] }
        }
      },
      "threshold": { "count": 3, "windowSeconds": 120, "groupBy": ["detail.vmId"] },
      "response": { "action": "isolate-vm", "target": "detail.vmId", "allow": [] },
      "cooldownSeconds": 3600
    },
    {
      "id": "vm-port-scan",
      "description": "A VM was denied egress to 50 different destination ports within a minute (port scan)",
      "severity": "high",
      "match": { "kind": "port.egress_denied", "where": { "detail.protocol": { "in": ["tcp", "udp"] } } },
      "threshold": { "count": 50, "windowSeconds": 60, "groupBy": ["detail.vmId"], "distinct": "detail.dstPort" },
      "response": { "action": "isolate-vm", "target": "detail.vmId", "allow": [] },
      "cooldownSeconds": 3600
    },
    {
      "id": "vm-outbound-flood",
      "description": "A VM sends over 100,000 packets/s for 3 samples within a minute (flood / DoS source)",
      "severity": "high",
      "match": { "kind": "vm.sample", "where": { "detail.txPps": { "gte": 100000 } } },
      "threshold": { "count": 3, "windowSeconds": 60, "groupBy": ["detail.vmId"] },
      "response": { "action": "pause-vm", "target": "detail.vmId" },
      "cooldownSeconds": 600
    },
    {
      "id": "vm-crypto-mining",
      "description": "Sustained full CPU with steady low-rate egress for 5 minutes (mining pattern)",
      "severity": "medium",
      "match": {
        "kind": "vm.sample",
        "where": {
          "detail.cpuPercent": { "gte": 95 },
          "detail.txBps": { "gte": 100, "lte": 1000000 }
        }
      },
      "threshold": { "count": 30, "windowSeconds": 330, "groupBy": ["detail.vmId"] },
      "response": { "action": "snapshot-vm", "target": "detail.vmId" },
      "cooldownSeconds": 3600
    },
    {
      "id": "guest-kernel-oops",
      "description": "The guest kernel oopsed, panicked or hit a BUG (possible kernel exploit)",
      "severity": "high",
      "match": {
        "kind": "guest.console",
        "where": {
          "detail.line": {
            "regex": "Kernel panic - not syncing|BUG: unable to handle|general protection fault|Oops: [0-9a-fx]+|kernel BUG at|BUG: KASAN|stack-protector: Kernel stack is corrupted"
          }
        }
      },
      "groupBy": ["detail.vmId"],
      "response": { "action": "snapshot-vm", "target": "detail.vmId" },
      "cooldownSeconds": 600
    },
    {
      "id": "guest-segfault-oom",
      "description": "Repeated segfaults or OOM kills in a guest (5 in 5 minutes: exploit attempts or a crash loop)",
      "severity": "low",
      "match": {
        "kind": "guest.console",
        "where": {
          "detail.line": { "regex": "segfault at [0-9a-f]+|Out of memory: Kill|invoked oom-killer|oom-kill:" }
        }
      },
      "threshold": { "count": 5, "windowSeconds": 300, "groupBy": ["detail.vmId"] },
      "response": { "action": "alert" },
      "cooldownSeconds": 1800
    },
    {
      "id": "qemu-seccomp-kill",
      "description": "QEMU was killed by its seccomp filter (a forbidden system call: possible escape attempt); keep the VM stopped",
      "severity": "critical",
      "match": { "kind": "vm.exit", "where": { "detail.reason": "seccomp" } },
      "response": { "action": "stop-vm", "target": "detail.vmId" }
    },
    {
      "id": "qemu-unexpected-exit",
      "description": "QEMU exited without being asked to (crash, signal, host OOM)",
      "severity": "medium",
      "match": {
        "kind": "vm.exit",
        "where": { "detail.expected": false, "detail.reason": { "ne": "seccomp" } }
      },
      "groupBy": ["detail.vmId"],
      "response": { "action": "alert" },
      "cooldownSeconds": 300
    },
    {
      "id": "vm-heartbeat-lost",
      "description": "The guest agent of a running VM stopped sending heartbeats",
      "severity": "medium",
      "match": { "kind": "vm.heartbeat_lost" },
      "groupBy": ["detail.vmId"],
      "response": { "action": "alert" },
      "cooldownSeconds": 900
    },
    {
      "id": "host-heartbeat-lost",
      "description": "A host agent stopped sending heartbeats",
      "severity": "high",
      "match": { "kind": "host.heartbeat_lost" },
      "groupBy": ["subjectId"],
      "response": { "action": "alert" },
      "cooldownSeconds": 900
    },
    {
      "id": "volume-copy-cross-tenant",
      "description": "A volume was cloned or snapshotted by someone outside its tenant (e.g. a platform admin)",
      "severity": "high",
      "match": {
        "kind": ["volume.cloned", "volume.snapshot_created"],
        "where": { "detail.crossTenant": true }
      },
      "groupBy": ["detail.actorId", "subjectId"],
      "response": { "action": "alert" },
      "cooldownSeconds": 3600
    },
    {
      "id": "volume-bulk-copy",
      "description": "One actor cloned or snapshotted 5 different volumes within an hour (bulk copy / exfiltration)",
      "severity": "high",
      "match": { "kind": ["volume.cloned", "volume.snapshot_created"] },
      "threshold": { "count": 5, "windowSeconds": 3600, "groupBy": ["detail.actorId"], "distinct": "subjectId" },
      "response": { "action": "alert" },
      "cooldownSeconds": 3600
    }
  ]
}
`;

/** The shipped rules' ids, in file order (kept in sync by a test). */
export const SHIPPED_RULE_IDS = [
  'auth-brute-force-source',
  'auth-brute-force-account',
  'auth-login-after-failures',
  'api-id-probing',
  'privilege-escalation-attempts',
  'image-verification-failed',
  'image-quarantined',
  'anti-spoofing-drops',
  'vm-port-scan',
  'vm-outbound-flood',
  'vm-crypto-mining',
  'guest-kernel-oops',
  'guest-segfault-oom',
  'qemu-seccomp-kill',
  'qemu-unexpected-exit',
  'vm-heartbeat-lost',
  'host-heartbeat-lost',
  'volume-copy-cross-tenant',
  'volume-bulk-copy',
] as const;
