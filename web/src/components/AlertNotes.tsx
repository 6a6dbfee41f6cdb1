/**
 * Notes and assignee of an alert: the notes so far, and (with the respond permission) a form that
 * assigns or unassigns it and adds a note, in one PATCH (SecurityAlertUpdate).
 */
import { useState, type FormEvent } from 'react';
import type { SecurityAlert } from '../api/types.js';
import { when } from '../format.js';

const ASSIGNEE = '[a-z0-9][a-z0-9._@\\-]*';

export function AlertNotes({
  alert,
  editable,
  busy,
  save,
}: {
  alert: SecurityAlert;
  editable: boolean;
  busy: boolean;
  save: (body: { assignee?: string | null; note?: string }) => Promise<boolean>;
}) {
  const [assignee, setAssignee] = useState(alert.assignee ?? '');
  const [note, setNote] = useState('');
  const assigneeChanged = assignee.trim() !== (alert.assignee ?? '');
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const body: { assignee?: string | null; note?: string } = {};
    if (assigneeChanged) body.assignee = assignee.trim() || null;
    if (note.trim()) body.note = note.trim();
    if (await save(body)) setNote('');
  };
  const prefix = `alert-${alert.id}`;
  return (
    <div className="alert-notes">
      <p>
        Assignee: <strong>{alert.assignee ?? 'nobody'}</strong>
      </p>
      {alert.notes.length > 0 && (
        <ul className="plain">
          {alert.notes.map((n, i) => (
            <li key={`${n.at}-${i}`}>
              <span className="muted">
                {when(n.at)} {n.author}:
              </span>{' '}
              {n.text}
            </li>
          ))}
        </ul>
      )}
      {editable && (
        <form className="inline-form" onSubmit={(e) => void submit(e)} aria-label="Assign and add a note">
          <label htmlFor={`${prefix}-assignee`}>
            Assignee
            <input
              id={`${prefix}-assignee`}
              value={assignee}
              pattern={ASSIGNEE}
              maxLength={64}
              placeholder="username (empty: nobody)"
              onChange={(e) => setAssignee(e.target.value)}
            />
          </label>
          <label htmlFor={`${prefix}-note`} className="grow">
            Note
            <textarea
              id={`${prefix}-note`}
              value={note}
              maxLength={4096}
              rows={2}
              onChange={(e) => setNote(e.target.value)}
            />
          </label>
          <button type="submit" disabled={busy || (!assigneeChanged && !note.trim())}>
            Save
          </button>
        </form>
      )}
    </div>
  );
}
