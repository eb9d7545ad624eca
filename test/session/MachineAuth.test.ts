/**
 * SMTP AUTH (RFC 4954) in the machine: when it is offered, the PLAIN and LOGIN exchanges,
 * cancel and malformed responses, failures up to the limit, the auth policy stage. The machine
 * never sees credentials: it asks the session to decode (DecodeAuth) and to check (VerifyAuth).
 */
import { assert, describe, it } from "@effect/vitest"
import type * as Event from "../../src/log/Event.ts"
import * as Builtins from "../../src/policy/Builtins.ts"
import * as Policy from "../../src/policy/Policy.ts"
import * as Rule from "../../src/policy/Rule.ts"
import type * as Machine from "../../src/session/Machine.ts"
import * as MachineModule from "../../src/session/Machine.ts"
import { tlsFacts } from "../log/EventSamples.ts"
import { step } from "../support/MachineDrive.ts"
import { render } from "../support/MachineRender.ts"
import { settings } from "../support/Settings.ts"

const line = (text: string): Machine.Input => ({ _tag: "Line", text, flaw: undefined })
const decoded = (outcome: Event.AuthResponseReceived["outcome"]): Machine.Input => ({ _tag: "AuthDecoded", outcome })
const verified = (user: string | undefined): Machine.Input => ({ _tag: "AuthVerified", user })
const secured: Machine.Input = { _tag: "TlsEstablished", facts: tlsFacts }

/** A session on a listener with the given TLS level and AUTH, driven with `policy` answering decisions. */
const converse = (
  inputs: ReadonlyArray<Machine.Input>,
  options: {
    readonly security?: Event.Security
    readonly auth?: boolean
    readonly settings?: Event.MachineSettings
    readonly policy?: Policy.PolicyShape
  } = {}
) => {
  let state = MachineModule.initial(options.settings ?? settings)
  const log: Array<string> = []
  const connected: Machine.Input = { _tag: "Connected", admission: "ok", security: options.security ?? "implicit", auth: options.auth ?? true }
  for (const input of [connected, ...inputs]) {
    const next = step(state, input, options.policy === undefined ? {} : { policy: options.policy })
    state = next.state
    log.push(...next.actions.map(render))
  }
  return { state, log }
}

/** On an implicit TLS listener with AUTH: handshake, greeting, EHLO; the log starts after those. */
const afterEhlo = (inputs: ReadonlyArray<Machine.Input>, options: Parameters<typeof converse>[1] = {}) => {
  const c = converse([secured, line("EHLO client.test"), ...inputs], options)
  return { ...c, log: c.log.slice(3) }
}

const ehloWith = (auth: boolean): string =>
  [
    "250-mx.example.test",
    "250-PIPELINING",
    "250-SIZE 1000",
    ...(auth ? ["250-AUTH PLAIN LOGIN"] : []),
    "250-8BITMIME",
    "250-ENHANCEDSTATUSCODES",
    "250-SMTPUTF8",
    "250 CHUNKING"
  ].join("\r\n")

describe("Machine: AUTH is offered", () => {
  it("in EHLO on an encrypted session of a listener with AUTH", () => {
    const c = converse([secured, line("EHLO client.test")])
    assert.strictEqual(c.log.at(-1), ehloWith(true))
  })

  it("not before TLS (STARTTLS listener): EHLO leaves it out and AUTH gets 538 5.7.11", () => {
    const c = converse([line("EHLO client.test"), line("AUTH PLAIN")], { security: "may" })
    assert.notInclude(c.log[1] ?? "", "AUTH")
    assert.strictEqual(c.log[2], "538 5.7.11 Encryption required for requested authentication mechanism")
  })

  it("before TLS when the settings allow plaintext", () => {
    const c = converse([line("EHLO client.test"), line("AUTH PLAIN")], { security: "none", settings: { ...settings, authPlaintext: true } })
    assert.include(c.log[1] ?? "", "250-AUTH PLAIN LOGIN")
    assert.strictEqual(c.log[2], "334 ")
  })

  it("on an encrypt listener before STARTTLS, AUTH gets the listener's 530 5.7.0", () => {
    const c = converse([line("EHLO client.test"), line("AUTH PLAIN")], { security: "encrypt" })
    assert.strictEqual(c.log[2], "530 5.7.0 Must issue a STARTTLS command first")
  })

  it("never on a listener without AUTH, even encrypted: 503 5.5.1", () => {
    const c = afterEhlo([line("AUTH PLAIN")], { auth: false })
    assert.strictEqual(c.log[0], "503 5.5.1 Error: authentication not enabled")
    assert.strictEqual(converse([secured, line("EHLO client.test")], { auth: false }).log.at(-1), ehloWith(false))
  })
})

describe("Machine: AUTH exchanges", () => {
  it("PLAIN without an initial response: 334, the response to decode, the check, the auth stage, 235 2.7.0", () => {
    const c = afterEhlo([line("AUTH PLAIN"), line("AGFsaWNlAHNlY3JldA=="), decoded("answer"), verified("alice")])
    assert.deepStrictEqual(c.log, [
      "334 ",
      "[decode auth plain AGFsaWNlAHNlY3JldA==]",
      "[verify auth PLAIN after 0 failures]",
      "235 2.7.0 Authentication successful"
    ])
    assert.strictEqual(c.state.authenticated, "alice")
    assert.deepStrictEqual(c.state.reading, { _tag: "Commands" })
  })

  it("PLAIN with an initial response goes straight to decoding; the mechanism is case-insensitive", () => {
    const c = afterEhlo([line("auth plain AGFsaWNlAHNlY3JldA=="), decoded("answer"), verified("alice")])
    assert.deepStrictEqual(c.log, [
      "[decode auth plain AGFsaWNlAHNlY3JldA==]",
      "[verify auth PLAIN after 0 failures]",
      "235 2.7.0 Authentication successful"
    ])
  })

  it("LOGIN: Username: and Password: challenges, each response decoded", () => {
    const c = afterEhlo([line("AUTH LOGIN"), line("YWxpY2U="), decoded("answer"), line("c2VjcmV0"), decoded("answer"), verified("alice")])
    assert.deepStrictEqual(c.log, [
      "334 VXNlcm5hbWU6",
      "[decode auth login-username YWxpY2U=]",
      "334 UGFzc3dvcmQ6",
      "[decode auth login-password c2VjcmV0]",
      "[verify auth LOGIN after 0 failures]",
      "235 2.7.0 Authentication successful"
    ])
  })

  it("LOGIN with the name as initial response asks for the password next", () => {
    const c = afterEhlo([line("AUTH LOGIN YWxpY2U="), decoded("answer")])
    assert.deepStrictEqual(c.log, ["[decode auth login-username YWxpY2U=]", "334 UGFzc3dvcmQ6"])
  })

  it("a cancel (*) gives 501 5.7.0 and is not an error; a malformed response gives 501 5.5.2 and is one", () => {
    const cancelled = afterEhlo([line("AUTH PLAIN"), line("*"), decoded("cancel")])
    assert.deepStrictEqual(cancelled.log.slice(-1), ["501 5.7.0 Authentication cancelled"])
    assert.strictEqual(cancelled.state.errors, 0)
    const malformed = afterEhlo([line("AUTH PLAIN"), line("!!"), decoded("malformed")])
    assert.deepStrictEqual(malformed.log.slice(-1), ["501 5.5.2 Error: cannot decode the authentication response"])
    assert.strictEqual(malformed.state.errors, 1)
    assert.deepStrictEqual(malformed.state.reading, { _tag: "Commands" })
  })

  it("an unknown mechanism: 504 5.5.4; a second AUTH once authenticated, or one inside a transaction: 503 5.5.1", () => {
    assert.deepStrictEqual(afterEhlo([line("AUTH CRAM-MD5")]).log, ["504 5.5.4 Error: unsupported authentication mechanism"])
    const twice = afterEhlo([line("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), decoded("answer"), verified("alice"), line("AUTH PLAIN")])
    assert.strictEqual(twice.log.at(-1), "503 5.5.1 Error: already authenticated")
    const inTransaction = afterEhlo([line("MAIL FROM:<a@remote.test>"), line("AUTH PLAIN")])
    assert.strictEqual(inTransaction.log.at(-1), "503 5.5.1 Error: MAIL transaction in progress")
    const withoutEhlo = converse([secured, line("HELO client.test"), line("AUTH PLAIN")])
    assert.strictEqual(withoutEhlo.log.at(-1), "503 5.5.1 Error: send EHLO first")
  })

  it("failed checks: 535 5.7.8, the failure count goes to the next check, and the third closes with 421 4.7.0", () => {
    const attempt = [line("AUTH PLAIN AGFsaWNlAHdyb25n"), decoded("answer"), verified(undefined)]
    const c = afterEhlo([...attempt, ...attempt, ...attempt])
    assert.deepStrictEqual(c.log, [
      "[decode auth plain AGFsaWNlAHdyb25n]",
      "[verify auth PLAIN after 0 failures]",
      "535 5.7.8 Error: authentication failed",
      "[decode auth plain AGFsaWNlAHdyb25n]",
      "[verify auth PLAIN after 1 failures]",
      "535 5.7.8 Error: authentication failed",
      "[decode auth plain AGFsaWNlAHdyb25n]",
      "[verify auth PLAIN after 2 failures]",
      "535 5.7.8 Error: authentication failed",
      "421 4.7.0 mx.example.test Error: too many authentication failures",
      "[close auth-failures]"
    ])
    assert.isTrue(c.state.closed)
    assert.isUndefined(c.state.authenticated)
  })

  it("the failure limit comes from the settings", () => {
    const c = afterEhlo([line("AUTH PLAIN AGFsaWNlAHdyb25n"), decoded("answer"), verified(undefined)], { settings: { ...settings, authMaxFailures: 1 } })
    assert.strictEqual(c.log.at(-1), "[close auth-failures]")
  })

  it("the auth stage: a rule that refuses the user gives its reply and the session stays unauthenticated", () => {
    const policy = Policy.make({
      ...Policy.defaultRuleSet,
      rules: { auth: [Rule.rule("no bob", (ctx) => (ctx.authenticated === "bob" ? Rule.deny(535, "5.7.8", "Bob may not send") : Rule.next))] }
    })
    const c = afterEhlo([line("AUTH PLAIN AGJvYgBzZWNyZXQ="), decoded("answer"), verified("bob")], { policy })
    assert.strictEqual(c.log.at(-1), "535 5.7.8 Bob may not send")
    assert.isUndefined(c.state.authenticated)
  })

  it("a line too long inside the exchange: 500 5.5.6, back to commands", () => {
    const c = afterEhlo([line("AUTH PLAIN"), { _tag: "LineTooLong" }])
    assert.strictEqual(c.log.at(-1), "500 5.5.6 Authentication Exchange line is too long")
    assert.deepStrictEqual(c.state.reading, { _tag: "Commands" })
  })

  it("a bare LF inside the exchange closes like one in a command; a bare CR is a malformed response", () => {
    const lf = afterEhlo([line("AUTH PLAIN"), { _tag: "Line", text: "AGFsaWNl", flaw: "bare-lf" }])
    assert.deepStrictEqual(lf.log.slice(-2), ["500 5.5.2 Error: bare <LF> received", "[close protocol]"])
    const cr = afterEhlo([line("AUTH PLAIN"), { _tag: "Line", text: "AGFsaWNl", flaw: "bare-cr" }])
    assert.strictEqual(cr.log.at(-1), "501 5.5.2 Error: cannot decode the authentication response")
  })

  it("SIGTERM while the client is to answer a challenge: 421 4.3.2 and close", () => {
    const c = afterEhlo([line("AUTH PLAIN"), { _tag: "Shutdown" }])
    assert.deepStrictEqual(c.log.slice(-2), ["421 4.3.2 mx.example.test Service shutting down", "[close shutdown]"])
  })

  it("STARTTLS forgets an authentication made before it (allowed in plaintext)", () => {
    const c = converse(
      [line("EHLO client.test"), line("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), decoded("answer"), verified("alice"), line("STARTTLS"), secured],
      { security: "may", settings: { ...settings, authPlaintext: true } }
    )
    assert.isUndefined(c.state.authenticated)
  })

  it("the relay built-in accepts a remote recipient from the authenticated user", () => {
    const policy = Policy.make({ ...Policy.defaultRuleSet, rules: { rcpt: [] } })
    const relayPolicy = Policy.make({ ...Policy.defaultRuleSet, rules: { rcpt: [Builtins.relay()] } })
    const before = afterEhlo([line("MAIL FROM:<alice@example.test>"), line("RCPT TO:<carol@elsewhere.test>")], { policy })
    assert.strictEqual(before.log.at(-1), "554 5.7.1 <carol@elsewhere.test>: Relay access denied")
    const after = afterEhlo(
      [line("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), decoded("answer"), verified("alice"), line("MAIL FROM:<alice@example.test>"), line("RCPT TO:<carol@elsewhere.test>")],
      { policy: relayPolicy }
    )
    assert.strictEqual(after.log.at(-1), "250 2.1.5 Ok")
  })
})
