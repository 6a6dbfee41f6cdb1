/** Tenant quotas: what a tenant may hold at most, and what it holds now. */
import { Type, type Static } from 'typebox';
import { Id, Name } from './common.js';

export const QUOTA_RESOURCES = [
  'vms',
  'vcpus',
  'memoryMiB',
  'diskGiB',
  'images',
  'imageStorageGiB',
  'networks',
  'securityGroups',
  'securityGroupRules',
  'snapshots',
  'apiTokens',
  'volumes',
  'volumeGiB',
  'backups',
] as const;
export type QuotaResource = (typeof QUOTA_RESOURCES)[number];

/** -1 means unlimited. */
export const QuotaLimit = Type.Integer({ minimum: -1, maximum: 1_000_000_000 });

const usageEntry = Type.Object({
  limit: QuotaLimit,
  usage: Type.Integer({ minimum: 0 }),
  /** true when the limit is the tenant's own override, false for the platform default. */
  overridden: Type.Boolean(),
});

export const Quota = Type.Object({
  tenant: Type.Object({ id: Id, name: Name }),
  resources: Type.Object({
    vms: usageEntry,
    vcpus: usageEntry,
    memoryMiB: usageEntry,
    diskGiB: usageEntry,
    images: usageEntry,
    imageStorageGiB: usageEntry,
    networks: usageEntry,
    securityGroups: usageEntry,
    securityGroupRules: usageEntry,
    snapshots: usageEntry,
    apiTokens: usageEntry,
    volumes: usageEntry,
    volumeGiB: usageEntry,
    backups: usageEntry,
  }),
});
export type Quota = Static<typeof Quota>;

/** A partial update: only the named limits change; null returns a limit to the platform default. */
export const QuotaUpdate = Type.Object(
  {
    vms: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    vcpus: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    memoryMiB: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    diskGiB: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    images: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    imageStorageGiB: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    networks: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    securityGroups: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    securityGroupRules: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    snapshots: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    apiTokens: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    volumes: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    volumeGiB: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
    backups: Type.Optional(Type.Union([QuotaLimit, Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type QuotaUpdate = Static<typeof QuotaUpdate>;

export const QuotaUpdateQuery = Type.Object(
  {
    /** "true": accept limits below current usage (nothing new is admitted until usage is under). */
    force: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])),
  },
  { additionalProperties: false },
);
