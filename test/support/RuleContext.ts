/** Policy test helpers: a rule context (an rcpt stage with a local recipient) and what a call threw. */
import { assert } from "@effect/vitest"
import type * as Rule from "../../src/policy/Rule.ts"

export const context = (overrides: Partial<Rule.Context> = {}): Rule.Context => ({
  stage: "rcpt",
  session: "S1",
  at: 1_700_000_000_000,
  client: { address: "203.0.113.5", ip: "203.0.113.5", port: 40000, name: undefined },
  listener: { role: "smtp", address: "0.0.0.0", port: 25 },
  isSecured: false,
  tls: undefined,
  helo: "client.example",
  authenticated: undefined,
  from: "sender@remote.example",
  recipients: [],
  recipient: "user@local.test",
  recipientIsLocal: true,
  size: undefined,
  message: undefined,
  queueId: undefined,
  attempts: undefined,
  spf: undefined,
  spfHelo: undefined,
  dkim: undefined,
  dmarc: undefined,
  arc: undefined,
  ...overrides
})

/** What `f` threw; fails the test when it returned. */
export const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (error) {
    return error
  }
  return assert.fail("did not throw")
}
