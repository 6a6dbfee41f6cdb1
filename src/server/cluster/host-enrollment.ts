/**
 * Remote hosts joining and leaving: one-time join tokens (random 32 bytes, shown once, stored only as
 * their SHA-256, with an expiry and the host name they are for), the join itself (the token consumed
 * atomically, a host id assigned, the CSR signed by the host CA), certificate checks for the agent
 * listener, renewal over the host's link (a new key made by the agent; the older certificates revoked
 * once the host presents the new one), and revocation (recorded, the host's connection closed at once).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  ConflictError,
  HostUnavailableError,
  InvalidInputError,
  NotFoundError,
  RateLimitedError,
  UnauthenticatedError,
} from '../../api/errors.js';
import { isUuid, newId } from '../../common/ids.js';
import { LoginThrottle } from '../iam/login-throttle.js';
import type { Db } from '../store/database.js';
import type { AgentChannel } from './agent-forwarding.js';
import {
  HOSTNAME_PATTERN,
  certificateFingerprint,
  normalizeSerial,
  type HostCa,
  type IssuedCertificate,
} from './host-ca.js';

export const DEFAULT_JOIN_TOKEN_TTL_SECONDS = 3600;

export interface HostCertificateRenewed {
  hostId: string;
  hostname: string;
  serial: string;
  notAfter: string;
}
export const MAX_JOIN_TOKEN_TTL_SECONDS = 7 * 86_400;
const TOKEN_PREFIX = 'rjt_';
/** The token's text: the prefix and 32 random bytes, base64url (43 characters). */
export const JOIN_TOKEN_PATTERN = '^rjt_[A-Za-z0-9_-]{43}$';
const HOSTNAME = new RegExp(HOSTNAME_PATTERN);

export function hashJoinToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export interface JoinTokenCreated {
  id: string;
  /** Shown once: the server keeps only its hash. */
  token: string;
  hostname: string | null;
  expiresAt: string;
  /** `sha256:<hex>` of the host CA certificate: `rampart agent join --ca-fingerprint` checks it. */
  caFingerprint: string;
}

export interface HostJoined {
  hostId: string;
  hostname: string;
  certificate: string;
  caCertificate: string;
  /** host:port the agent dials (TLS, mutual authentication). */
  agentEndpoint: string;
  /** Every live replica's agent listener, `agentEndpoint` first. */
  agentEndpoints: string[];
}

export interface HostEnrollmentOptions {
  db: Db;
  /** null: the agent listener is off (RAMPART_AGENT_LISTEN unset): nobody can join. */
  ca: HostCa | null;
  agentEndpoint: string | null;
  /** Closes the live connections of a host (revocation). */
  closeHost?: (hostId: string) => void;
  /** The link to a host's agent (this replica's, or forwarded through the one holding it). */
  channelFor?: (hostId: string) => AgentChannel | null;
  /** Server replicas: the agent listeners of all live replicas (this one's first). */
  agentEndpoints?: () => Promise<string[]>;
  now?: () => number;
}

export class HostEnrollment {
  /** Failed joins per source slow down like failed logins (same backoff, no permanent lock). */
  private readonly throttle = new LoginThrottle({ accountThreshold: 5, sourceThreshold: 5 });
  closeHost: (hostId: string) => void;

  constructor(private readonly options: HostEnrollmentOptions) {
    this.closeHost = options.closeHost ?? (() => undefined);
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /** The agent listener is up: hosts are told to dial `endpoint` (host:port). */
  setAgentEndpoint(endpoint: string): void {
    this.options.agentEndpoint = endpoint;
  }

  get enabled(): boolean {
    return this.options.ca !== null && this.options.agentEndpoint !== null;
  }

  async createJoinToken(input: {
    hostname?: string | undefined;
    ttlSeconds?: number | undefined;
    createdBy: string | null;
  }): Promise<JoinTokenCreated> {
    const ca = this.options.ca;
    if (!ca || !this.enabled)
      throw new ConflictError('the agent listener is off (set RAMPART_AGENT_LISTEN): hosts cannot join');
    const hostname = input.hostname ?? null;
    if (hostname !== null && !HOSTNAME.test(hostname)) throw new InvalidInputError('invalid host name');
    const ttl = input.ttlSeconds ?? DEFAULT_JOIN_TOKEN_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 60 || ttl > MAX_JOIN_TOKEN_TTL_SECONDS)
      throw new InvalidInputError(`ttlSeconds must be from 60 to ${MAX_JOIN_TOKEN_TTL_SECONDS}`);
    if (hostname !== null) {
      const taken = await this.options.db
        .selectFrom('hostCertificates')
        .select('hostId')
        .where('hostname', '=', hostname)
        .where('revokedAt', 'is', null)
        .executeTakeFirst();
      if (taken) throw new ConflictError(`host ${hostname} has already joined (revoke it first)`);
    }
    const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const now = this.now();
    const row = {
      id: newId(),
      tokenHash: hashJoinToken(token),
      hostname,
      createdBy: input.createdBy,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + ttl * 1000).toISOString(),
      usedAt: null,
      hostId: null,
    };
    await this.options.db.insertInto('hostJoinTokens').values(row).execute();
    return {
      id: row.id,
      token,
      hostname,
      expiresAt: row.expiresAt,
      caFingerprint: certificateFingerprint(ca.certificatePem),
    };
  }

  /**
   * A host joins: the token must exist, be unused and unexpired; the CSR is checked before the token is
   * consumed (a bad CSR leaves the token usable), then the token is consumed in one conditional update
   * (of two concurrent joins exactly one wins) and the certificate is issued.
   */
  async join(input: { token: string; csr: string }, source: string): Promise<HostJoined> {
    const ca = this.options.ca;
    const endpoint = this.options.agentEndpoint;
    if (!ca || !endpoint) throw new ConflictError('the agent listener is off: hosts cannot join');
    const gate = this.throttle.check(`join:${source}`, source);
    if (!gate.allowed)
      throw new RateLimitedError(
        'too many failed joins; try again later',
        Math.max(1, Math.ceil(gate.retryAfterMs / 1000)),
      );
    const refused = () => {
      this.throttle.recordFailure(`join:${source}`, source);
      return new UnauthenticatedError('invalid, expired or already used join token');
    };
    const hash = hashJoinToken(input.token);
    const nowIso = new Date(this.now()).toISOString();
    const row = await this.options.db
      .selectFrom('hostJoinTokens')
      .selectAll()
      .where('tokenHash', '=', hash)
      .executeTakeFirst();
    // Looked up by the hash: the token itself is never stored or compared.
    if (!row || row.usedAt !== null || row.expiresAt <= nowIso) throw refused();
    const hostId = newId();
    // Checks the CSR (key type, signature, CN) before the token is spent.
    const signed = await ca.signHostCsr(input.csr, hostId, row.hostname);
    const consumed = await this.options.db
      .updateTable('hostJoinTokens')
      .set({ usedAt: nowIso, hostId })
      .where('id', '=', row.id)
      .where('usedAt', 'is', null)
      .where('expiresAt', '>', nowIso)
      .executeTakeFirst();
    if (Number(consumed.numUpdatedRows) !== 1) throw refused();
    await this.recordCertificate(hostId, signed, nowIso);
    this.throttle.recordSuccess(`join:${source}`, source);
    const others = (await this.options.agentEndpoints?.().catch(() => [])) ?? [];
    return {
      agentEndpoints: [...new Set([endpoint, ...others])],
      hostId,
      hostname: signed.name,
      certificate: signed.certificate,
      caCertificate: ca.certificatePem,
      agentEndpoint: endpoint,
    };
  }

  /** True when the certificate `serial` was issued to `hostId`, is not revoked and has not expired. */
  async certificateValid(serial: string, hostId: string): Promise<boolean> {
    return (await this.certificateHost(serial, hostId)) !== null;
  }

  /** The host name a valid certificate was issued for (see certificateValid), or null. */
  async certificateHost(serial: string, hostId: string): Promise<string | null> {
    if (!isUuid(hostId)) return null;
    const row = await this.options.db
      .selectFrom('hostCertificates')
      .select(['hostId', 'hostname', 'revokedAt', 'notAfter'])
      .where('serial', '=', normalizeSerial(serial))
      .executeTakeFirst();
    const valid =
      !!row &&
      row.hostId === hostId &&
      row.revokedAt === null &&
      row.notAfter > new Date(this.now()).toISOString();
    return valid ? row.hostname : null;
  }

  /**
   * Renews a host's certificate over its authenticated link (`agent`, direct or through the replica
   * holding it): the agent makes a new key and sends a CSR, the CA signs it for the same host id and
   * name, the new serial is recorded, and the agent installs it and dials again with it. The older
   * certificates stay valid until the host presents the new one (supersede), so a renewal that fails
   * half-way never locks the host out.
   */
  async renew(hostId: string, agent: AgentChannel): Promise<HostCertificateRenewed> {
    const ca = this.options.ca;
    if (!ca) throw new ConflictError('the agent listener is off: no host CA to sign with');
    const current = await this.options.db
      .selectFrom('hostCertificates')
      .select(['hostname'])
      .where('hostId', '=', hostId)
      .where('revokedAt', 'is', null)
      .where('notAfter', '>', new Date(this.now()).toISOString())
      .orderBy('createdAt', 'desc')
      .executeTakeFirst();
    if (!current) throw new NotFoundError('valid host certificate');
    const { csr } = await agent.request('certificate.request', { subject: current.hostname }, 60_000);
    const signed = await ca.signHostCsr(csr, hostId, current.hostname);
    await this.recordCertificate(hostId, signed, new Date(this.now()).toISOString());
    const installed = await agent.request('certificate.install', { certificate: signed.certificate }, 60_000);
    if (normalizeSerial(installed.serial) !== signed.serial)
      throw new ConflictError('the agent installed another certificate than the one signed');
    return {
      hostId,
      hostname: signed.name,
      serial: signed.serial,
      notAfter: signed.notAfter.toISOString(),
    };
  }

  /**
   * The host connected with certificate `serial`: every certificate of the host issued before it is
   * revoked (superseded by a renewal). Answers how many.
   */
  async supersede(hostId: string, serial: string): Promise<number> {
    const presented = await this.options.db
      .selectFrom('hostCertificates')
      .select(['createdAt'])
      .where('serial', '=', normalizeSerial(serial))
      .where('hostId', '=', hostId)
      .executeTakeFirst();
    if (!presented) return 0;
    const result = await this.options.db
      .updateTable('hostCertificates')
      .set({ revokedAt: new Date(this.now()).toISOString() })
      .where('hostId', '=', hostId)
      .where('revokedAt', 'is', null)
      .where('createdAt', '<', presented.createdAt)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /** Renews the certificate of a connected host, by id or name (see renew). */
  async renewHost(ref: string): Promise<HostCertificateRenewed> {
    const { hostId } = await this.joinedHost(ref);
    const channel = this.options.channelFor?.(hostId) ?? null;
    if (!channel)
      throw new HostUnavailableError('the host is not connected: its certificate is renewed over its link');
    return this.renew(hostId, channel);
  }

  /** Records an issued certificate (its serial is what the listener checks and revocation marks). */
  private async recordCertificate(
    hostId: string,
    signed: IssuedCertificate & { name: string },
    createdAt: string,
  ): Promise<void> {
    await this.options.db
      .insertInto('hostCertificates')
      .values({
        serial: signed.serial,
        hostId,
        hostname: signed.name,
        notBefore: signed.notBefore.toISOString(),
        notAfter: signed.notAfter.toISOString(),
        createdAt,
        revokedAt: null,
      })
      .execute();
  }

  /** A host that joined, by id or name. */
  private async joinedHost(ref: string): Promise<{ hostId: string; hostname: string }> {
    const rows = await this.options.db
      .selectFrom('hostCertificates')
      .select(['hostId', 'hostname'])
      .where(
        isUuid(ref.toLowerCase()) ? 'hostId' : 'hostname',
        '=',
        isUuid(ref.toLowerCase()) ? ref.toLowerCase() : ref,
      )
      .execute();
    const hostIds = [...new Set(rows.map((r) => r.hostId))];
    if (hostIds.length === 0) throw new NotFoundError('host certificate');
    if (hostIds.length > 1) throw new ConflictError(`several hosts are named ${ref}: give the host id`);
    return { hostId: hostIds[0]!, hostname: rows[0]!.hostname };
  }

  /** Revokes every certificate of a host (by id or name) and closes its connection at once. */
  async revoke(ref: string): Promise<{ hostId: string; hostname: string; revoked: number }> {
    const { hostId, hostname } = await this.joinedHost(ref);
    const result = await this.options.db
      .updateTable('hostCertificates')
      .set({ revokedAt: new Date(this.now()).toISOString() })
      .where('hostId', '=', hostId)
      .where('revokedAt', 'is', null)
      .executeTakeFirst();
    this.closeHost(hostId);
    return { hostId, hostname, revoked: Number(result.numUpdatedRows) };
  }
}
