/**
 * The VM state machine, in one place. User actions are checked here (an illegal one raises
 * IllegalStateError -> HTTP 409), and the agent's reports are mapped to states here.
 *
 *   pending --(agent accepted)--> starting --(first heartbeat)--> running <--> paused
 *   running/paused/starting --stop--> stopping --> stopped --start--> starting
 *   any --(QEMU died)--> error --start / restart policy--> starting;  error --stop--> stopped
 *   any --delete--> deleting --> (gone)
 */
import { IllegalStateError } from '../../api/errors.js';
import type { DesiredPower, VmPhase } from '../../api/agent-protocol.js';
import type { VmState } from '../../api/vm.js';

export type VmUserAction = 'start' | 'stop' | 'force-stop' | 'reboot' | 'pause' | 'resume' | 'delete';

interface ActionRule {
  from: readonly VmState[];
  /** State recorded when the action is accepted (before the agent confirms). */
  to: VmState;
  power: DesiredPower;
}

const ACTIONS: Record<VmUserAction, ActionRule> = {
  start: { from: ['stopped', 'error'], to: 'starting', power: 'running' },
  // A crashed VM (error) can be stopped too: its QEMU is gone, and the stop cancels a pending restart
  // (a person, or a detection rule keeping a seccomp-killed VM down).
  stop: { from: ['running', 'paused', 'starting', 'error'], to: 'stopping', power: 'stopped' },
  'force-stop': {
    from: ['running', 'paused', 'starting', 'stopping', 'pending', 'error'],
    to: 'stopping',
    power: 'stopped',
  },
  reboot: { from: ['running'], to: 'starting', power: 'running' },
  pause: { from: ['running'], to: 'paused', power: 'paused' },
  resume: { from: ['paused'], to: 'running', power: 'running' },
  delete: {
    from: ['pending', 'starting', 'running', 'paused', 'stopping', 'stopped', 'error'],
    to: 'deleting',
    power: 'stopped',
  },
};

/** Checks a user action against the current state; returns the state and desired power to record. */
export function planUserAction(action: VmUserAction, state: VmState): ActionRule {
  const rule = ACTIONS[action];
  if (!rule.from.includes(state))
    throw new IllegalStateError(action === 'force-stop' ? 'stop' : action, state);
  // A crashed VM has no QEMU to stop: it is stopped at once (its error message stays for the record).
  if (state === 'error' && (action === 'stop' || action === 'force-stop')) return { ...rule, to: 'stopped' };
  return rule;
}

export function isUserActionAllowed(action: VmUserAction, state: VmState): boolean {
  return ACTIONS[action].from.includes(state);
}

/** Maps an agent-reported phase onto the VM state, given what the server wants. */
export function stateFromPhase(phase: VmPhase, current: VmState): VmState {
  if (current === 'deleting') return 'deleting';
  switch (phase) {
    case 'starting':
      return 'starting';
    case 'running':
      return 'running';
    case 'paused':
      return 'paused';
    case 'stopping':
      return 'stopping';
    case 'stopped':
      return 'stopped';
    case 'crashed':
      // A crash report for a VM a person (or a rule) stopped since is old news: it stays stopped.
      return current === 'stopped' ? 'stopped' : 'error';
  }
}
