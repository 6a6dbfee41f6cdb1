/**
 * The VM state machine, exhaustively: every (user action, state) pair is either allowed with a known
 * target state and desired power, or refused with IllegalStateError (RAMPART_ILLEGAL_STATE, 409).
 * Agent phases map onto states, and a VM being deleted stays `deleting` whatever the agent reports.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DesiredPower, VmPhase } from '../../api/agent-protocol.js';
import { IllegalStateError, RampartError } from '../../api/errors.js';
import { VM_STATES, type VmState } from '../../api/vm.js';
import {
  isUserActionAllowed,
  planUserAction,
  stateFromPhase,
  type VmUserAction,
} from './vm-state-machine.js';

interface Expected {
  to: VmState;
  power: DesiredPower;
}

const ALL_ACTIONS: readonly VmUserAction[] = [
  'start',
  'stop',
  'force-stop',
  'reboot',
  'pause',
  'resume',
  'delete',
];

/** The full table of allowed transitions; every pair not listed here must be refused. */
const ALLOWED: Record<VmUserAction, Partial<Record<VmState, Expected>>> = {
  start: {
    stopped: { to: 'starting', power: 'running' },
    error: { to: 'starting', power: 'running' },
  },
  stop: {
    running: { to: 'stopping', power: 'stopped' },
    paused: { to: 'stopping', power: 'stopped' },
    starting: { to: 'stopping', power: 'stopped' },
    error: { to: 'stopped', power: 'stopped' },
  },
  'force-stop': {
    running: { to: 'stopping', power: 'stopped' },
    paused: { to: 'stopping', power: 'stopped' },
    starting: { to: 'stopping', power: 'stopped' },
    stopping: { to: 'stopping', power: 'stopped' },
    pending: { to: 'stopping', power: 'stopped' },
    error: { to: 'stopped', power: 'stopped' },
  },
  reboot: {
    running: { to: 'starting', power: 'running' },
  },
  pause: {
    running: { to: 'paused', power: 'paused' },
  },
  resume: {
    paused: { to: 'running', power: 'running' },
  },
  delete: {
    pending: { to: 'deleting', power: 'stopped' },
    starting: { to: 'deleting', power: 'stopped' },
    running: { to: 'deleting', power: 'stopped' },
    paused: { to: 'deleting', power: 'stopped' },
    stopping: { to: 'deleting', power: 'stopped' },
    stopped: { to: 'deleting', power: 'stopped' },
    error: { to: 'deleting', power: 'stopped' },
  },
};

void describe('planUserAction over every (action, state) pair', () => {
  void test('the state list is the one the table was written for', () => {
    assert.deepEqual(
      [...VM_STATES].sort(),
      ['deleting', 'error', 'paused', 'pending', 'running', 'starting', 'stopped', 'stopping'].sort(),
    );
  });

  for (const action of ALL_ACTIONS) {
    for (const state of VM_STATES) {
      const expected = ALLOWED[action][state];
      if (expected) {
        void test(`${action} from ${state} -> ${expected.to} (power ${expected.power})`, () => {
          const rule = planUserAction(action, state);
          assert.equal(rule.to, expected.to);
          assert.equal(rule.power, expected.power);
          assert.equal(isUserActionAllowed(action, state), true);
        });
      } else {
        void test(`${action} from ${state} is refused with RAMPART_ILLEGAL_STATE`, () => {
          assert.equal(isUserActionAllowed(action, state), false);
          assert.throws(
            () => planUserAction(action, state),
            (error: unknown) => {
              assert.ok(
                error instanceof IllegalStateError,
                `expected IllegalStateError, got ${String(error)}`,
              );
              assert.ok(error instanceof RampartError);
              assert.equal(error.code, 'RAMPART_ILLEGAL_STATE');
              assert.equal(error.status, 409);
              assert.equal(error.state, state);
              // force-stop is reported to the user as the action they asked for: stop.
              assert.equal(error.action, action === 'force-stop' ? 'stop' : action);
              assert.deepEqual(error.details, { action: error.action, state });
              assert.match(error.message, new RegExp(`\\b${state}\\b`));
              return true;
            },
          );
        });
      }
    }
  }

  void test('nothing can be done to a VM that is being deleted', () => {
    for (const action of ALL_ACTIONS) {
      assert.throws(() => planUserAction(action, 'deleting'), IllegalStateError, action);
    }
  });

  void test('the table has the expected number of allowed pairs (a widened rule fails here)', () => {
    let allowed = 0;
    for (const action of ALL_ACTIONS)
      for (const state of VM_STATES) if (isUserActionAllowed(action, state)) allowed++;
    const expected = Object.values(ALLOWED).reduce((n, byState) => n + Object.keys(byState).length, 0);
    assert.equal(allowed, expected);
    assert.equal(expected, 2 + 4 + 6 + 1 + 1 + 1 + 7);
  });
});

void describe('stateFromPhase', () => {
  const PHASES: Record<VmPhase, VmState> = {
    starting: 'starting',
    running: 'running',
    paused: 'paused',
    stopping: 'stopping',
    stopped: 'stopped',
    crashed: 'error',
  };
  const CURRENT_STATES = VM_STATES.filter((s) => s !== 'deleting');

  for (const [phase, expected] of Object.entries(PHASES) as [VmPhase, VmState][]) {
    void test(`phase ${phase} -> state ${expected} from every state but deleting`, () => {
      for (const current of CURRENT_STATES) {
        if (phase === 'crashed' && current === 'stopped') continue; // below
        assert.equal(stateFromPhase(phase, current), expected, `from ${current}`);
      }
    });
  }

  void test('a crash report for a VM stopped since (a crashed VM that was stopped) keeps it stopped', () => {
    assert.equal(stateFromPhase('crashed', 'stopped'), 'stopped');
    assert.equal(stateFromPhase('crashed', 'stopping'), 'error', 'a crash while stopping is a crash');
  });

  void test('deleting sticks whatever the agent reports', () => {
    for (const phase of Object.keys(PHASES) as VmPhase[]) {
      assert.equal(stateFromPhase(phase, 'deleting'), 'deleting', phase);
    }
  });
});
