/**
 * A realistic ten-rule rcpt stage for the policy benchmarks: network and domain checks, the
 * relay built-in, a per-client rate limit. Synchronous rules only: what an administrator's
 * rcpt stage looks like when no rule needs DNS. `bench/policy.ts` times one evaluation;
 * `bench/bench.config.ts` installs the same rules (POSTERN_BENCH_POLICY=1) to measure sessions
 * per second with and without them.
 */
import { accept, deny, domains, inDomain, networks, next, rateLimit, relay, rule } from "../src/index.ts"
import type { Rule } from "../src/index.ts"

const internal = networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8")
const blockedNetworks = networks("198.51.100.0/24", "2001:db8:bad::/48")
const partnerNetworks = networks("203.0.113.0/24")
const blockedSenderDomains = domains("spam.example", "phish.example", "junk.example")
const roleAccounts = new Set(["abuse", "noc", "security"])

export const rcptRules: ReadonlyArray<Rule> = [
  rule("blocked networks", (ctx) => blockedNetworks.match(ctx.client.address) !== undefined ? deny(554, "5.7.1", "Access denied") : next),
  rule("blocked sender domains", (ctx) => inDomain(ctx.from, blockedSenderDomains) ? deny(550, "5.7.1", "Sender domain blocked") : next),
  rule("null sender to one recipient", (ctx) => ctx.from === "" && ctx.recipients.length > 0 ? deny(550, "5.5.3", "Bounces have one recipient") : next),
  rule("role accounts from outside", (ctx) => {
    const local = ctx.recipient?.slice(0, ctx.recipient.lastIndexOf("@")).toLowerCase() ?? ""
    return roleAccounts.has(local) && internal.match(ctx.client.address) === undefined ? deny(550, "5.7.1", "Internal only") : next
  }),
  rule("partners", (ctx) => partnerNetworks.match(ctx.client.address) !== undefined && ctx.recipientIsLocal ? accept : next),
  relay({ internalNetworks: internal.texts }),
  rule("no bare IP HELO", (ctx) => /^\[?\d+\.\d+\.\d+\.\d+\]?$/.test(ctx.helo ?? "") ? deny(550, "5.7.1", "Use your host name in HELO") : next),
  rule("too many recipients for bounces", (ctx) => ctx.recipients.length > 50 && ctx.from === "" ? deny(550, "5.5.3", "Too many") : next),
  rateLimit({ name: "recipient rate", limit: 1_000_000_000, per: "1m" }),
  rule("local only after here", (ctx) => ctx.recipientIsLocal ? next : deny(554, "5.7.1", "Relay access denied"))
]
