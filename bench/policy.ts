/**
 * The rule hot path: `node bench/policy.ts` (also `npm run bench -- --only policy`).
 *
 * Times `Policy.decide` on the ten-rule rcpt stage of `policyRules.ts` for three kinds of
 * recipient: local (every rule runs and says next; the default accepts), remote from an
 * internal network (relay accepts at rule 6), remote from outside (relay denies at rule 6).
 * Prints one JSON line per case with nanoseconds per evaluation (best of five runs).
 */
import * as Policy from "../src/policy/Policy.ts"
import type * as Rule from "../src/policy/Rule.ts"
import { rcptRules } from "./policyRules.ts"

const policy = Policy.make({ ...Policy.defaultRuleSet, rules: { rcpt: rcptRules } })

const base: Rule.Context = {
  stage: "rcpt",
  session: "bench",
  at: Date.now(),
  client: { address: "203.0.113.9", ip: "203.0.113.9", port: 40000, name: undefined },
  listener: { role: "smtp", address: "0.0.0.0", port: 25 },
  isSecured: true,
  tls: undefined,
  helo: "mail.client.example",
  authenticated: undefined,
  from: "someone@client.example",
  recipients: ["first@example.org"],
  recipient: "alice@example.org",
  recipientIsLocal: true,
  size: undefined,
  message: undefined,
  queueId: undefined,
  attempts: undefined,
  spf: undefined,
  spfHelo: undefined,
  dkim: undefined,
  dmarc: undefined,
  arc: undefined
}

const cases: ReadonlyArray<readonly [string, Rule.Context, string]> = [
  ["local recipient, all ten rules run", { ...base, client: { ...base.client, address: "198.18.0.1", ip: "198.18.0.1" } }, "Accept"],
  ["remote recipient from an internal network", { ...base, client: { ...base.client, address: "10.1.2.3", ip: "10.1.2.3" }, recipient: "bob@elsewhere.example", recipientIsLocal: false }, "Accept"],
  ["remote recipient from outside (denied)", { ...base, client: { ...base.client, address: "198.18.0.1", ip: "198.18.0.1" }, recipient: "bob@elsewhere.example", recipientIsLocal: false }, "Deny"]
]

const iterations = 1_000_000

export interface PolicyResult {
  readonly case: string
  readonly rules: number
  readonly nsPerEvaluation: number
}

export const run = (): Array<PolicyResult> =>
  cases.map(([name, context, expected]) => {
    const first = policy.decide(context)
    if ("pipe" in first || first.verdict._tag !== expected) throw new Error(`${name}: expected ${expected}, got ${JSON.stringify(first)}`)
    let best = Infinity
    for (let run = 0; run < 5; run++) {
      const started = process.hrtime.bigint()
      for (let i = 0; i < iterations; i++) policy.decide(context)
      best = Math.min(best, Number(process.hrtime.bigint() - started) / iterations)
    }
    return { case: name, rules: rcptRules.length, nsPerEvaluation: Number(best.toFixed(1)) }
  })

if (import.meta.main) {
  for (const result of run()) process.stdout.write(`${JSON.stringify({ scenario: "policy", ...result })}\n`)
}
