/** The live serial console: output in a <pre> (a log region), one input line that types into the VM. */
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { createAnsiStripper } from '../ansi.js';
import { openConsole } from '../api/console-socket.js';

const MAX_CHARS = 200_000;

export function Terminal({ vmRef, canType }: { vmRef: string; canType: boolean }) {
  const [output, setOutput] = useState('');
  const [state, setState] = useState('connecting');
  const [line, setLine] = useState('');
  const pre = useRef<HTMLPreElement>(null);
  const connection = useRef<ReturnType<typeof openConsole> | null>(null);

  useEffect(() => {
    setOutput('');
    const strip = createAnsiStripper();
    const socket = openConsole(vmRef, {
      onData: (text) => {
        const shown = strip(text);
        if (shown) setOutput((o) => (o + shown).slice(-MAX_CHARS));
      },
      onState: (s, reason) => setState(s === 'closed' ? `closed (${reason ?? ''})` : s),
    });
    connection.current = socket;
    return () => socket.close();
  }, [vmRef]);

  useEffect(() => {
    if (pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [output]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    connection.current?.send(`${line}\n`);
    setLine('');
  };

  return (
    <section className="terminal" aria-label="Serial console">
      <div className="terminal-head">
        <h3>Console</h3>
        <span className="muted" role="status">
          {state}
        </span>
      </div>
      <pre
        ref={pre}
        className="terminal-output"
        role="log"
        aria-live="off"
        tabIndex={0}
        data-testid="console-output"
      >
        {output}
      </pre>
      {canType && (
        <form onSubmit={submit} className="terminal-input">
          <label htmlFor="console-line" className="visually-hidden">
            Type into the console
          </label>
          <span aria-hidden="true">&gt;</span>
          <input
            id="console-line"
            value={line}
            onChange={(e) => setLine(e.target.value)}
            autoComplete="off"
            spellCheck={false}
            placeholder="type a line, Enter sends it"
          />
        </form>
      )}
    </section>
  );
}
