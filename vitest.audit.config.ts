import { defineConfig } from "vitest/config"

/**
 * `npm run test:tls-audit`: testssl.sh against a running daemon's STARTTLS and implicit TLS
 * ports. It takes minutes, so it stays out of `npm test`; `.ci/run` runs both.
 */
export default defineConfig({
  test: {
    include: ["test-audit/**/*.test.ts"],
    testTimeout: 900_000,
    hookTimeout: 120_000,
    pool: "forks"
  }
})
