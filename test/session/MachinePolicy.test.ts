/**
 * The machine's side of policy: at each stage it asks (`Decide`) and waits (`Deciding`), and
 * each verdict it is given (`Decided`) leads to the reply and state the stage calls for.
 */
import { assert, describe, it } from "@effect/vitest"
import type * as Event from "../../src/log/Event.ts"
import * as Policy from "../../src/policy/Policy.ts"
import * as Rule from "../../src/policy/Rule.ts"
import * as Machine from "../../src/session/Machine.ts"
import * as Reply from "../../src/session/Reply.ts"
import { tlsFacts } from "../log/EventSamples.ts"
import { step } from "../support/MachineDrive.ts"
import { render } from "../support/MachineRender.ts"
import { settings } from "../support/Settings.ts"

type Verdict = Event.PolicyDecided["verdict"]

const line = (text: string): Machine.Input => ({ _tag: "Line", text, flaw: undefined })
const connected = (security: Event.Security = "none"): Machine.Input => ({ _tag: "Connected", admission: "ok", security, auth: false })
const decided = (stage: Event.PolicyStage, verdict: Verdict, reply?: Reply.Reply): Machine.Input => ({
  _tag: "Decided",
  stage,
  verdict,
  reply
})
const refusal = (verdict: Exclude<Verdict, "accept">): Reply.Reply =>
  verdict === "deny"
    ? Reply.make(550, "5.7.1", "No")
    : verdict === "tempfail"
    ? Reply.make(451, "4.7.1", "Later")
    : Reply.make(421, "4.7.0", "Bye now")

/** Steps raw inputs (no automatic decisions) and renders every action. */
const raw = (inputs: ReadonlyArray<Machine.Input>, start = Machine.initial(settings)) => {
  let state = start
  const log: Array<string> = []
  for (const input of inputs) {
    const next = Machine.step(state, input)
    state = next.state
    log.push(...next.actions.map(render))
  }
  return { state, log }
}

const ehloReply = Reply.format(Reply.multiline(250, ["mx.example.test", "PIPELINING", "SIZE 1000", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"])).slice(0, -2)

/** A policy whose rule at `stage` always gives `verdict`. */
const policyGiving = (stage: Rule.Stage, verdict: Rule.Verdict): Policy.PolicyShape =>
  Policy.make({ ...Policy.defaultRuleSet, rules: { [stage]: [Rule.rule("fixed", () => verdict)] } })

/** Drives a whole conversation with `policy` answering every Decide. */
const converse = (policy: Policy.PolicyShape, inputs: ReadonlyArray<Machine.Input>) => {
  let state = Machine.initial(settings)
  const log: Array<string> = []
  for (const input of inputs) {
    const next = step(state, input, { policy })
    state = next.state
    log.push(...next.actions.map(render))
  }
  return { state, log }
}

describe("Machine: asking the policy", () => {
  it("each stage asks once and waits in Deciding; a Decided for another stage, or when not deciding, changes nothing", () => {
    const asked = raw([connected()])
    assert.deepStrictEqual(asked.log, ["[decide connect]"])
    assert.deepStrictEqual(asked.state.reading, { _tag: "Deciding", decision: { stage: "connect" } })
    assert.isFalse(asked.state.greeted)
    const wrongStage = Machine.step(asked.state, decided("helo", "accept"))
    assert.deepStrictEqual(wrongStage.actions, [])
    assert.strictEqual(wrongStage.state, asked.state)
    const greeted = raw([decided("connect", "accept")], asked.state)
    assert.deepStrictEqual(greeted.log, ["220 mx.example.test ESMTP Postern"])
    const stray = Machine.step(greeted.state, decided("connect", "accept"))
    assert.deepStrictEqual(stray.actions, [])
  })

  it("a line that arrives while deciding is not taken as a command (the session holds it until the decision)", () => {
    const deciding = raw([connected(), decided("connect", "accept"), line("EHLO client.test")])
    assert.deepStrictEqual(deciding.log.slice(2), ["[decide helo]"])
    assert.deepStrictEqual(Machine.step(deciding.state, line("NOOP")).actions, [])
  })

  it("the stages in order, each accepted: connect, helo, mail, rcpt, data, then the commit", () => {
    const all = raw([
      connected(),
      decided("connect", "accept"),
      line("EHLO client.test"),
      decided("helo", "accept"),
      line("MAIL FROM:<sender@remote.test>"),
      decided("mail", "accept"),
      line("RCPT TO:<alice@example.test>"),
      decided("rcpt", "accept"),
      line("DATA"),
      { _tag: "ContentEnd", size: 120, bareLineEnding: undefined },
      decided("data", "accept")
    ])
    assert.deepStrictEqual(all.log, [
      "[decide connect]",
      "220 mx.example.test ESMTP Postern",
      "[decide helo]",
      ehloReply,
      "[decide mail]",
      "250 2.1.0 Ok",
      "[decide rcpt]",
      "250 2.1.5 Ok",
      "354 End data with <CR><LF>.<CR><LF>",
      "[read data]",
      "[decide data]",
      "[commit <sender@remote.test> -> <alice@example.test>]"
    ])
  })

  it("while the data stage is decided the DATA-end timeout applies; elsewhere the command timeout", () => {
    const atData = raw([
      connected(),
      decided("connect", "accept"),
      line("EHLO client.test"),
      decided("helo", "accept"),
      line("MAIL FROM:<a@remote.test>"),
      decided("mail", "accept"),
      line("RCPT TO:<alice@example.test>"),
      decided("rcpt", "accept"),
      line("DATA"),
      { _tag: "ContentEnd", size: 10, bareLineEnding: undefined }
    ])
    assert.strictEqual(Machine.timeoutPhase(atData.state), "data-end")
    assert.strictEqual(Machine.timeoutPhase(raw([connected()]).state), "command")
  })

  it("a remote recipient is asked about as not local, a local one as local; an unknown local user is refused before asking", () => {
    const base = raw([connected(), decided("connect", "accept"), line("EHLO c.test"), decided("helo", "accept"), line("MAIL FROM:<a@remote.test>"), decided("mail", "accept")])
    const remote = Machine.step(base.state, line("RCPT TO:<carol@elsewhere.test>"))
    assert.deepStrictEqual(remote.actions, [{ _tag: "Decide", decision: { stage: "rcpt", recipient: "carol@elsewhere.test", local: false } }])
    const local = Machine.step(base.state, line("RCPT TO:<alice@example.test>"))
    assert.deepStrictEqual(local.actions, [{ _tag: "Decide", decision: { stage: "rcpt", recipient: "alice@example.test", local: true } }])
    const unknown = Machine.step(base.state, line("RCPT TO:<nobody@example.test>"))
    assert.deepStrictEqual(unknown.actions.map(render), ["550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown"])
  })
})

describe("Machine: verdicts", () => {
  const refusals: ReadonlyArray<Exclude<Verdict, "accept">> = ["deny", "tempfail", "disconnect"]

  for (const verdict of refusals) {
    it(`connect ${verdict}: the verdict's reply instead of the greeting, then close (policy)`, () => {
      const c = raw([connected(), decided("connect", verdict, refusal(verdict))])
      assert.deepStrictEqual(c.log.slice(1), [Reply.format(refusal(verdict)).slice(0, -2), "[close policy]"])
      assert.isTrue(c.state.closed)
      assert.isFalse(c.state.greeted)
    })
  }

  it("implicit TLS: the connect stage is decided after the handshake, with the session secured", () => {
    const c = raw([connected("implicit"), { _tag: "TlsEstablished", facts: tlsFacts }])
    assert.deepStrictEqual(c.log, ["[start tls]", "[decide connect]"])
    assert.isTrue(Machine.isSecured(c.state))
    const denied = raw([decided("connect", "deny", refusal("deny"))], c.state)
    assert.deepStrictEqual(denied.log, ["550 5.7.1 No", "[close policy]"])
  })

  it("helo deny: the reply, the EHLO name forgotten (MAIL needs a new EHLO), counted as an error", () => {
    const c = converse(policyGiving("helo", Rule.deny(550, "5.7.1", "Bad HELO")), [
      connected(),
      line("EHLO bad.test"),
      line("MAIL FROM:<a@remote.test>")
    ])
    assert.deepStrictEqual(c.log.slice(1), ["550 5.7.1 Bad HELO", "503 5.5.1 Error: send HELO/EHLO first"])
    assert.isUndefined(c.state.helo)
    assert.strictEqual(c.state.errors, 2)
  })

  it("mail deny and tempfail: the reply and no transaction; the client may try again", () => {
    for (const [verdict, text] of [[Rule.deny(550, "5.7.1", "Blocked"), "550 5.7.1 Blocked"], [Rule.tempfail(451, "4.7.1", "Later"), "451 4.7.1 Later"]] as const) {
      const c = converse(policyGiving("mail", verdict), [connected(), line("EHLO c.test"), line("MAIL FROM:<a@remote.test>")])
      assert.deepStrictEqual(c.log.slice(2), [text])
      assert.isUndefined(c.state.transaction)
      assert.isFalse(c.state.closed)
    }
  })

  it("policy refusals count toward the error limit: the last one is followed by 421 4.7.0 and a close", () => {
    const refusals = Array.from({ length: settings.maxErrors }, () => line("MAIL FROM:<a@remote.test>"))
    const c = converse(policyGiving("mail", Rule.deny(550, "5.7.1", "Blocked")), [connected(), line("EHLO c.test"), ...refusals])
    assert.deepStrictEqual(c.log.slice(-2), ["421 4.7.0 mx.example.test Error: too many errors", "[close error-limit]"])
  })

  it("rcpt deny: the reply, the recipient not added, the transaction kept", () => {
    const c = converse(
      Policy.make({
        ...Policy.defaultRuleSet,
        rules: { rcpt: [Rule.rule("no bob", (ctx) => (ctx.recipient === "bob@example.test" ? Rule.deny(550, "5.1.1", "Bob left") : Rule.next))] }
      }),
      [connected(), line("EHLO c.test"), line("MAIL FROM:<a@remote.test>"), line("RCPT TO:<bob@example.test>"), line("RCPT TO:<alice@example.test>")]
    )
    assert.deepStrictEqual(c.log.slice(3), ["550 5.1.1 Bob left", "250 2.1.5 Ok"])
    assert.deepStrictEqual(c.state.transaction?.recipients, ["alice@example.test"])
  })

  it("rcpt: a plain accept of a remote recipient is still the relay refusal", () => {
    const c = converse(policyGiving("rcpt", Rule.accept), [
      connected(),
      line("EHLO c.test"),
      line("MAIL FROM:<a@remote.test>"),
      line("RCPT TO:<carol@elsewhere.test>")
    ])
    assert.deepStrictEqual(c.log.slice(3), ["554 5.7.1 <carol@elsewhere.test>: Relay access denied"])
  })

  it("rcpt: a remote recipient accepted by a rule that relays joins the envelope", () => {
    const c = converse(policyGiving("rcpt", Rule.acceptRelay), [
      connected(),
      line("EHLO c.test"),
      line("MAIL FROM:<a@remote.test>"),
      line("RCPT TO:<carol@elsewhere.test>")
    ])
    assert.deepStrictEqual(c.log.slice(3), ["250 2.1.5 Ok"])
    assert.deepStrictEqual(c.state.transaction?.recipients, ["carol@elsewhere.test"])
  })

  const dataCases: ReadonlyArray<readonly [string, Rule.Verdict, ReadonlyArray<string>, boolean]> = [
    ["deny", Rule.deny(554, "5.7.1", "Content refused"), ["[abort]", "554 5.7.1 Content refused"], false],
    ["tempfail", Rule.tempfail(451, "4.7.1", "Scanner busy"), ["[abort]", "451 4.7.1 Scanner busy"], false],
    ["disconnect", Rule.disconnect(421, "4.7.0", "Go away"), ["[abort]", "421 4.7.0 Go away", "[close policy]"], true]
  ]
  for (const [name, verdict, expected, closes] of dataCases) {
    it(`data ${name}: the content is dropped (abort), never committed`, () => {
      const c = converse(policyGiving("data", verdict), [
        connected(),
        line("EHLO c.test"),
        line("MAIL FROM:<a@remote.test>"),
        line("RCPT TO:<alice@example.test>"),
        line("DATA"),
        { _tag: "ContentEnd", size: 100, bareLineEnding: undefined }
      ])
      assert.deepStrictEqual(c.log.slice(6), expected)
      assert.isUndefined(c.state.transaction)
      assert.strictEqual(c.state.closed, closes)
      assert.isFalse(c.log.some((entry) => entry.startsWith("[commit")))
    })
  }

  it("disconnect at rcpt: the reply and a close, whatever was accepted before", () => {
    const c = converse(policyGiving("rcpt", Rule.disconnect(421, "4.7.0", "Enough")), [
      connected(),
      line("EHLO c.test"),
      line("MAIL FROM:<a@remote.test>"),
      line("RCPT TO:<alice@example.test>")
    ])
    assert.deepStrictEqual(c.log.slice(3), ["421 4.7.0 Enough", "[close policy]"])
    assert.isTrue(c.state.closed)
  })

  it("a disconnect with no reply recorded closes with 421 4.7.0", () => {
    const c = raw([connected(), decided("connect", "accept"), line("EHLO c.test"), decided("helo", "disconnect")])
    assert.deepStrictEqual(c.log.slice(-2), ["421 4.7.0 Error: closing connection", "[close policy]"])
  })
})

/** A transaction accepted at every stage up to the end of its content: the data stage is next. */
const throughData: ReadonlyArray<Machine.Input> = [
  connected(),
  decided("connect", "accept"),
  line("EHLO c.test"),
  decided("helo", "accept"),
  line("MAIL FROM:<a@remote.test>"),
  decided("mail", "accept"),
  line("RCPT TO:<alice@example.test>"),
  decided("rcpt", "accept"),
  line("DATA"),
  { _tag: "ContentEnd", size: 10, bareLineEnding: undefined }
]

describe("Machine: headers added at data", () => {
  it("an accepting data decision with headers commits with them", () => {
    const c = raw([
      ...throughData,
      { _tag: "Decided", stage: "data", verdict: "accept", reply: undefined, headers: [{ name: "X-Tag", value: "yes" }] }
    ])
    const last = Machine.step(c.state, { _tag: "Queued", queueId: "Q" })
    assert.deepStrictEqual(last.actions.map(render), ["250 2.0.0 Ok: queued as Q"])
    const commit = raw(throughData)
    const next = Machine.step(commit.state, { _tag: "Decided", stage: "data", verdict: "accept", reply: undefined, headers: [{ name: "X-Tag", value: "yes" }] })
    assert.deepStrictEqual(next.actions, [{
      _tag: "Commit",
      envelope: { from: "a@remote.test", to: ["alice@example.test"], smtputf8: false },
      headers: [{ name: "X-Tag", value: "yes" }]
    }])
  })
})

describe("Machine: quarantine at data", () => {
  it("a quarantine decision commits the message with the quarantine in its envelope; the client gets the usual 250", () => {
    const c = raw(throughData)
    const next = Machine.step(c.state, { _tag: "Decided", stage: "data", verdict: "quarantine", reply: undefined, quarantine: "spam" })
    assert.deepStrictEqual(next.actions, [{
      _tag: "Commit",
      envelope: { from: "a@remote.test", to: ["alice@example.test"], smtputf8: false, quarantine: "spam" }
    }])
    assert.deepStrictEqual(Machine.step(next.state, { _tag: "Queued", queueId: "Q" }).actions.map(render), ["250 2.0.0 Ok: queued as Q"])
  })
})
