/**
 * Postern's public entry, for configuration files:
 *
 * ```ts
 * import { defineConfig, deny, inNetwork, networks, next, relay, rule } from "postern"
 *
 * const internal = networks("10.0.0.0/8", "192.168.0.0/16")
 *
 * export default defineConfig({
 *   hostname: "mx.example.org",
 *   policy: {
 *     rules: {
 *       mail: [
 *         rule("deny unencrypted", (ctx) =>
 *           ctx.isSecured || inNetwork(ctx.client.address, internal)
 *             ? next
 *             : deny(451, "4.7.0", "Must issue a STARTTLS command first"))
 *       ],
 *       rcpt: [relay({ internalNetworks: internal.texts })]
 *     }
 *   }
 * })
 * ```
 */
export { defineConfig } from "./config/Config.ts"
export type { ConfigInput } from "./config/Config.ts"
export { rule as dkimSign } from "./policy/DkimSign.ts"
export { dkimVerify, dmarc, domains, inDomain, inNetwork, networks, rateLimit, relay, requireTls, spf } from "./policy/Builtins.ts"
export type { DmarcOptions, Domains, Networks, RateLimitOptions, RelayOptions, RequireTlsOptions, SpfOptions } from "./policy/Builtins.ts"
export { accept, acceptRelay, because, deny, disconnect, next, quarantine, rule, tempfail, withHeaders } from "./policy/Rule.ts"
export type { Context as RuleContext, Result as RuleResult, Rule, Stage, Verdict } from "./policy/Rule.ts"
