/**
 * The console's shell: finds out whether this server wants an API key (a call answered Unauthenticated
 * means keys mode without a valid key: show the login), then routes to the page whose path matches.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, apiKey, errorText, needsLogin, setApiKey } from "./api.js";
import { Login } from "./login.js";
import { pages } from "./registry.js";
import { onLinkClick, useLocation } from "./router.js";
import "./style.css";

type Session = { state: "checking" } | { state: "login"; problem?: string } | { state: "ready"; keyed: boolean } | { state: "down"; problem: string };

function App() {
  const url = useLocation();
  const [session, setSession] = useState<Session>({ state: "checking" });

  const check = async () => {
    try {
      await api.listWorkflows({});
      setSession({ state: "ready", keyed: apiKey() !== "" });
    } catch (error) {
      if (needsLogin(error)) {
        const hadKey = apiKey() !== "";
        setApiKey("");
        setSession({ state: "login", ...(hadKey ? { problem: errorText(error) } : {}) });
      } else setSession({ state: "down", problem: errorText(error) });
    }
  };
  useEffect(() => void check(), []);

  const nav = pages.flatMap((page) => (page.nav ? [page.nav] : [])).sort((a, b) => a.order - b.order);
  const match = pages.map((page) => ({ page, m: page.path.exec(url.pathname) })).find((candidate) => candidate.m);
  const Page = match?.page.component;

  return (
    <div class="shell" onClick={onLinkClick}>
      <header class="topbar">
        <a class="brand" href="/">
          <img src="/favicon.svg" alt="" width={20} height={20} />
          Cairn
        </a>
        {session.state === "ready" && (
          <nav>
            {nav.map((item) => (
              <a href={item.href} class={url.pathname === item.href || (item.href !== "/" && url.pathname.startsWith(item.href)) ? "active" : ""}>
                {item.label}
              </a>
            ))}
          </nav>
        )}
        <span class="spacer" />
        {session.state === "ready" && session.keyed && (
          <button
            class="link"
            onClick={() => {
              setApiKey("");
              setSession({ state: "login" });
            }}
          >
            Log out
          </button>
        )}
      </header>
      <main>
        {session.state === "checking" && <p class="muted">Connecting…</p>}
        {session.state === "down" && (
          <div class="error">
            The server did not answer: {session.problem} <button onClick={() => void check()}>Retry</button>
          </div>
        )}
        {session.state === "login" && (
          <Login
            problem={session.problem}
            onKey={(key) => {
              setApiKey(key);
              setSession({ state: "checking" });
              void check();
            }}
          />
        )}
        {session.state === "ready" && (Page && match?.m ? <Page params={match.m.slice(1)} query={url.searchParams} /> : <p>No page at {url.pathname}.</p>)}
      </main>
    </div>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
