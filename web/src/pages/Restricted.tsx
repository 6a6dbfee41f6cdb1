/**
 * A restricted session may only lift its restriction: choose a new password (first login), or enrol
 * TOTP where a policy requires MFA for administrators.
 */
import { useState, type FormEvent } from 'react';
import { api } from '../api/client.js';
import { setSession } from '../api/session.js';
import type { SessionTokens } from '../api/types.js';
import { useAuth } from '../auth.js';
import { Field } from '../components/Field.js';
import { Notice } from '../components/Notice.js';
import { useAction } from '../use-action.js';

export function Restricted() {
  const auth = useAuth();
  const restriction = auth.whoami?.restriction;
  return (
    <main id="main" className="login">
      <div className="card login-card">
        {restriction === 'password-change' ? (
          <PasswordChange />
        ) : (
          <MfaEnrolment onDone={() => void auth.reload()} />
        )}
        <button type="button" className="ghost" onClick={() => void auth.logout()}>
          Log out
        </button>
      </div>
    </main>
  );
}

function PasswordChange() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const action = useAction();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void action.run(async () =>
      setSession(
        await api<SessionTokens>(
          'POST',
          '/v1/auth/password',
          { currentPassword: current, newPassword: next },
          { tenant: false },
        ),
      ),
    );
  };
  return (
    <form onSubmit={submit}>
      <h1>Choose a new password</h1>
      <Field
        label="Current password"
        type="password"
        autoComplete="current-password"
        required
        value={current}
        onChange={setCurrent}
      />
      <Field
        label="New password"
        type="password"
        autoComplete="new-password"
        required
        minLength={12}
        value={next}
        onChange={setNext}
      />
      <Notice error={action.error} />
      <button type="submit" className="primary" disabled={action.busy}>
        Change password
      </button>
    </form>
  );
}

function MfaEnrolment({ onDone }: { onDone: () => void }) {
  const [enrolment, setEnrolment] = useState<{ secret: string; uri: string } | null>(null);
  const [code, setCode] = useState('');
  const [codes, setCodes] = useState<string[] | null>(null);
  const action = useAction();
  if (codes)
    return (
      <div>
        <h1>Recovery codes</h1>
        <p>Keep these somewhere safe; each works once and they are shown only now.</p>
        <ul className="codes">
          {codes.map((c) => (
            <li key={c}>
              <code>{c}</code>
            </li>
          ))}
        </ul>
        <button type="button" className="primary" onClick={onDone}>
          Continue
        </button>
      </div>
    );
  return (
    <div>
      <h1>Enrol MFA</h1>
      <p>Your role here requires an authenticator app (TOTP).</p>
      {!enrolment ? (
        <button
          type="button"
          className="primary"
          onClick={() =>
            void action.run(async () =>
              setEnrolment(await api('POST', '/v1/auth/mfa/totp', {}, { tenant: false })),
            )
          }
        >
          Start enrolment
        </button>
      ) : (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void action.run(async () =>
              setCodes(
                (
                  await api<{ recoveryCodes: string[] }>(
                    'POST',
                    '/v1/auth/mfa/totp/verify',
                    { code },
                    { tenant: false },
                  )
                ).recoveryCodes,
              ),
            );
          }}
        >
          <p>
            Secret: <code className="break">{enrolment.secret}</code>
          </p>
          <p className="muted break">{enrolment.uri}</p>
          <Field
            label="Code from the app"
            inputMode="numeric"
            pattern="[0-9]{6}"
            required
            value={code}
            onChange={setCode}
          />
          <button type="submit" className="primary" disabled={action.busy}>
            Verify
          </button>
        </form>
      )}
      <Notice error={action.error} />
    </div>
  );
}
