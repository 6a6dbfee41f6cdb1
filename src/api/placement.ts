/** Placement groups: a tenant's VMs kept on one host (affinity) or on different hosts (anti-affinity). */
import { Type, type Static } from 'typebox';
import { Id, Name, Timestamp } from './common.js';

export const PlacementPolicy = Type.Union([Type.Literal('affinity'), Type.Literal('anti-affinity')]);

export const PlacementGroupCreate = Type.Object(
  { name: Name, policy: PlacementPolicy },
  { additionalProperties: false },
);
export type PlacementGroupCreate = Static<typeof PlacementGroupCreate>;

export const PlacementGroup = Type.Object(
  {
    id: Id,
    name: Name,
    policy: PlacementPolicy,
    /** The VMs in the group. */
    members: Type.Array(Type.Object({ id: Id, name: Name, hostId: Type.Union([Id, Type.Null()]) })),
    createdAt: Timestamp,
  },
  { $id: 'PlacementGroup' },
);
export type PlacementGroup = Static<typeof PlacementGroup>;
