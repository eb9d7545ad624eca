/**
 * Postern's public entry, for configuration files:
 *
 * ```ts
 * import { defineConfig } from "postern"
 *
 * export default defineConfig({ hostname: "mx.example.org" })
 * ```
 */
export { defineConfig } from "./config/Config.ts"
export type { ConfigInput } from "./config/Config.ts"
