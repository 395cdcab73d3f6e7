// Builds the console into console/dist, which is committed and served by the server (server/http/console.ts).
// Reproducible: the same sources give the same bytes (content hashes in names, no timestamps, no source maps
// pointing at this machine), which `.ci/run` checks by building again into a temp folder and diffing.
import { defineConfig } from "vite";

export default defineConfig({
  root: import.meta.dirname,
  base: "/",
  // Preact's automatic JSX runtime, without the preset's dev-only extras (HMR, devtools).
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  resolve: { alias: { react: "preact/compat", "react-dom": "preact/compat" } },
  build: {
    outDir: process.env.CONSOLE_OUT_DIR ?? "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    // Inline nothing: the Content-Security-Policy allows only the console's own files, no data: scripts.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  // `npm run dev:console`: the sources with reload, API calls passed on to a running server (CAIRN_URL).
  server: {
    host: "127.0.0.1",
    proxy: { "/cairn.v1.WorkflowService": { target: process.env.CAIRN_URL ?? "http://127.0.0.1:8080", changeOrigin: true } },
  },
});
