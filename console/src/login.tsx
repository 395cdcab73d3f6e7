/** Keys mode: the API key is asked once per tab and kept in sessionStorage only. */
import { useState } from "preact/hooks";

export function Login({ problem, onKey }: { problem?: string | undefined; onKey: (key: string) => void }) {
  const [key, setKey] = useState("");
  return (
    <form
      class="card login"
      onSubmit={(event) => {
        event.preventDefault();
        if (key.trim()) onKey(key.trim());
      }}
    >
      <h1>Log in</h1>
      <p class="muted">This server requires an API key (create one with <code>cairn keys create</code>). It is kept in this tab only.</p>
      <label class="field">
        <span class="field-name">API key</span>
        <input name="api-key" type="password" autocomplete="off" value={key} onInput={(e) => setKey(e.currentTarget.value)} autofocus />
      </label>
      {problem && <div class="error">The key was refused: {problem}</div>}
      <button type="submit" class="primary">
        Log in
      </button>
    </form>
  );
}
