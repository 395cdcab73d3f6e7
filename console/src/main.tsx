/**
 * The console's shell: routes to the page whose path matches. It does not ask first whether this server
 * wants an API key: pages load at once, and the first call answered Unauthenticated (keys mode without a
 * valid key) swaps the page for the login; open mode never sees one.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { apiKey, loginNeededEvent, setApiKey } from "./api.js";
import { Login } from "./login.js";
import { pages } from "./registry.js";
import { onLinkClick, useLocation } from "./router.js";
import "./style.css";

type Session = { state: "ready"; attempt: number } | { state: "login"; refused: boolean; attempt: number };

function App() {
  const url = useLocation();
  const [session, setSession] = useState<Session>({ state: "ready", attempt: 0 });

  useEffect(() => {
    const onRefused = () =>
      setSession((current) => (current.state === "login" ? current : { state: "login", refused: apiKey() !== "", attempt: current.attempt }));
    addEventListener(loginNeededEvent, onRefused);
    return () => removeEventListener(loginNeededEvent, onRefused);
  }, []);

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
        {session.state === "ready" && apiKey() !== "" && (
          <button
            class="link"
            onClick={() => {
              setApiKey("");
              setSession({ state: "login", refused: false, attempt: session.attempt });
            }}
          >
            Log out
          </button>
        )}
      </header>
      <main>
        {session.state === "login" && (
          <Login
            problem={session.refused ? "this key was not accepted" : undefined}
            onKey={(key) => {
              setApiKey(key);
              // A new attempt remounts the page, which calls the API again with the key.
              setSession({ state: "ready", attempt: session.attempt + 1 });
            }}
          />
        )}
        {session.state === "ready" &&
          (Page && match?.m ? <Page key={`${session.attempt}`} params={match.m.slice(1)} query={url.searchParams} /> : <p>No page at {url.pathname}.</p>)}
      </main>
    </div>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
