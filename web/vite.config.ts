// Builds the web console (web/) into dist/web/, which the server serves at / (src/server/http/web-console.ts).
// No inline scripts or styles end up in index.html: the server's Content-Security-Policy forbids them.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const root = new URL('./', import.meta.url).pathname;

export default defineConfig({
  root,
  base: '/',
  plugins: [react()],
  publicDir: false,
  build: {
    outDir: new URL('../dist/web/', import.meta.url).pathname,
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    // Inlined assets would become data: URLs (scripts/styles the CSP refuses); keep every asset a file.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1024,
  },
});
