/// <reference types="vitest/config" />
import { defineConfig, type ProxyOptions } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` (and `npm run preview`) forward /api to a running pingap admin listener:
// PINGAP_ADMIN=http://127.0.0.1:9180 npm run dev
const admin = process.env.PINGAP_ADMIN ?? 'http://127.0.0.1:9180';

// The admin API refuses cookie-authenticated changes whose Origin is not its own; the dev server
// is another origin, so the proxy presents the admin's.
const apiProxy: Record<string, ProxyOptions> = {
  '/api': {
    target: admin,
    changeOrigin: true,
    configure: (proxy) => {
      proxy.on('proxyReq', (req) => {
        if (req.getHeader('origin')) req.setHeader('origin', admin);
      });
    },
  },
};

export default defineConfig({
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
    chunkSizeWarningLimit: 1024,
  },
  server: { proxy: apiProxy },
  preview: { proxy: apiProxy },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
