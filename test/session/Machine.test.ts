import { assert, describe, it } from "@effect/vitest"
import type * as Event from "../../src/log/Event.ts"
import type * as Command from "../../src/session/Command.ts"
import * as Machine from "../../src/session/Machine.ts"
import * as Protocol from "../../src/session/Protocol.ts"
import * as Reply from "../../src/session/Reply.ts"
import { step } from "../support/MachineDrive.ts"
import { render } from "../support/MachineRender.ts"
import { settings } from "../support/Settings.ts"


// ---------------------------------------------------------------------------------------------
// Inputs

type Step = Machine.Input | string

const connect = (admission: Event.Admission = "ok", security: Event.Security = "none"): Machine.Input => ({
  _tag: "Connected",
  admission,
  security,
  auth: false
})
const line = (text: string): Machine.Input => ({ _tag: "Line", text, flaw: undefined })
const flawed = (text: string, flaw: "bare-lf" | "bare-cr" | "nul"): Machine.Input => ({ _tag: "Line", text, flaw })
const end = (size: number, bareLineEnding?: "lf" | "cr"): Machine.Input => ({
  _tag: "ContentEnd",
  size,
  bareLineEnding
})
const queued = (queueId: string): Machine.Input => ({ _tag: "Queued", queueId })
const queueFailed = (reason: string): Machine.Input => ({ _tag: "QueueFailed", reason })
const timedOut = (phase: Event.TimeoutPhase): Machine.Input => ({ _tag: "TimedOut", phase })
const shutdown: Machine.Input = { _tag: "Shutdown" }
const tooLong: Machine.Input = { _tag: "LineTooLong" }
const flood: Machine.Input = { _tag: "LineFlood" }

const toInput = (s: Step): Machine.Input => (typeof s === "string" ? line(s) : s)

// ---------------------------------------------------------------------------------------------
// Outputs: each reply as it goes on the wire (without its final CRLF), other actions in brackets.


interface Conversation {
  readonly state: Machine.State
  readonly actions: ReadonlyArray<Machine.Action>
  readonly log: ReadonlyArray<string>
  /** The actions of each step, in order. */
  readonly steps: ReadonlyArray<ReadonlyArray<Machine.Action>>
}

/** Feeds the inputs to the machine from its initial state and collects what it does. */
const converse = (s: Event.MachineSettings, inputs: ReadonlyArray<Step>): Conversation => {
  let state = Machine.initial(s)
  const steps: Array<ReadonlyArray<Machine.Action>> = []
  for (const input of inputs) {
    const next = step(state, toInput(input))
    state = next.state
    steps.push(next.actions)
  }
  const actions = steps.flat()
  return { state, actions, log: actions.map(render), steps }
}

const greeting = "220 mx.example.test ESMTP Postern"

/** A conversation after an accepted connection: the greeting is checked and left out of the log. */
const talk = (inputs: ReadonlyArray<Step>, s: Event.MachineSettings = settings): Conversation => {
  const all = converse(s, [connect(), ...inputs])
  assert.strictEqual(all.log[0], greeting.replace("mx.example.test", s.hostname))
  return { ...all, log: all.log.slice(1), actions: all.actions.slice(1), steps: all.steps.slice(1) }
}

const ehloReply = [
  "250-mx.example.test",
  "250-PIPELINING",
  "250-SIZE 1000",
  "250-8BITMIME",
  "250-ENHANCEDSTATUSCODES",
  "250-SMTPUTF8",
  "250 CHUNKING"
].join("\r\n")

const ok = "250 2.0.0 Ok"
const mailOk = "250 2.1.0 Ok"
const rcptOk = "250 2.1.5 Ok"
const startData = "354 End data with <CR><LF>.<CR><LF>"
const needHelo = "503 5.5.1 Error: send HELO/EHLO first"
const needMail = "503 5.5.1 Error: need MAIL command"
const nested = "503 5.5.1 Error: nested MAIL command"
const noRecipients = "554 5.5.1 Error: no valid recipients"
const unrecognized = "500 5.5.2 Error: command not recognized"
const tooManyErrors = "421 4.7.0 mx.example.test Error: too many errors"
const timeout = "421 4.4.2 mx.example.test Error: timeout exceeded"
const shuttingDown = "421 4.3.2 mx.example.test Service shutting down"
const tooBig = "552 5.3.4 Error: message file too big"

const EHLO = "EHLO client.test"
const FROM = "MAIL FROM:<sender@remote.test>"
const TO = "RCPT TO:<alice@example.test>"
/** A session with an open transaction and one accepted recipient. */
const ready = [EHLO, FROM, TO] as const
const readyLog = [ehloReply, mailOk, rcptOk] as const

interface Case {
  readonly name: string
  readonly inputs: ReadonlyArray<Step>
  readonly log: ReadonlyArray<string>
  readonly settings?: Event.MachineSettings
}

const table = (cases: ReadonlyArray<Case>): void => {
  for (const c of cases) {
    it(c.name, () => {
      assert.deepStrictEqual(talk(c.inputs, c.settings ?? settings).log, c.log)
    })
  }
}

// ---------------------------------------------------------------------------------------------

describe("Machine: connection", () => {
  it("greets with 220, the hostname and no enhanced code", () => {
    const c = converse(settings, [connect()])
    assert.deepStrictEqual(c.log, ["220 mx.example.test ESMTP Postern"])
    const action = c.actions[0]
    assert.strictEqual(action?._tag, "Reply")
    if (action?._tag === "Reply") assert.isUndefined(action.reply.enhanced)
    assert.isTrue(c.state.greeted)
    assert.isFalse(c.state.closed)
  })

  it("greets with the configured hostname", () => {
    const c = converse({ ...settings, hostname: "relay.other.test" }, [connect()])
    assert.deepStrictEqual(c.log, ["220 relay.other.test ESMTP Postern"])
  })

  const refusals: ReadonlyArray<readonly [Event.Admission, ReadonlyArray<string>]> = [
    ["global-limit", ["421 4.7.0 mx.example.test Error: too many connections", "[close admission]"]],
    ["client-limit", ["421 4.7.0 mx.example.test Error: too many connections", "[close admission]"]],
    ["shutdown", [shuttingDown, "[close shutdown]"]]
  ]
  for (const [admission, log] of refusals) {
    it(`refuses admission ${admission} and answers nothing after`, () => {
      const c = converse(settings, [connect(admission), EHLO, "QUIT"])
      assert.deepStrictEqual(c.log, log)
      assert.isTrue(c.state.closed)
    })
  }
})

describe("Machine: EHLO and HELO", () => {
  it("EHLO lists exactly the extensions, SIZE with the limit, no enhanced code", () => {
    const c = talk([EHLO])
    assert.deepStrictEqual(c.log, [ehloReply])
    const action = c.actions[0]
    assert.strictEqual(action?._tag, "Reply")
    if (action?._tag === "Reply") {
      assert.isUndefined(action.reply.enhanced)
      assert.deepStrictEqual(action.reply.lines, [
        "mx.example.test",
        "PIPELINING",
        "SIZE 1000",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "CHUNKING"
      ])
    }
    assert.deepStrictEqual(c.state.helo, { extended: true, domain: "client.test" })
  })

  it("EHLO advertises the configured size limit", () => {
    const c = talk([EHLO], { ...settings, maxMessageSize: 52_428_800 })
    assert.include(c.log[0] ?? "", "250-SIZE 52428800\r\n")
  })

  it("HELO answers 250 with the hostname and no enhanced code", () => {
    const c = talk(["HELO client.test"])
    assert.deepStrictEqual(c.log, ["250 mx.example.test"])
    assert.deepStrictEqual(c.state.helo, { extended: false, domain: "client.test" })
  })

  table([
    {
      name: "EHLO resets a transaction",
      inputs: [...ready, EHLO, TO, "DATA"],
      log: [...readyLog, ehloReply, needMail, needMail]
    },
    {
      name: "HELO resets a transaction",
      inputs: [...ready, "HELO client.test", TO],
      log: [...readyLog, "250 mx.example.test", needMail]
    },
    {
      name: "EHLO without a domain is a syntax error",
      inputs: ["EHLO", FROM],
      log: ["501 5.5.4 Syntax: EHLO hostname", needHelo]
    },
    { name: "HELO then MAIL", inputs: ["HELO client.test", FROM], log: ["250 mx.example.test", mailOk] }
  ])
})

describe("Machine: sequencing", () => {
  table([
    { name: "MAIL before HELO", inputs: [FROM], log: [needHelo] },
    { name: "nested MAIL", inputs: [EHLO, FROM, FROM], log: [ehloReply, mailOk, nested] },
    { name: "RCPT before MAIL", inputs: [EHLO, TO], log: [ehloReply, needMail] },
    { name: "RCPT before HELO", inputs: [TO], log: [needMail] },
    { name: "DATA before MAIL", inputs: [EHLO, "DATA"], log: [ehloReply, needMail] },
    { name: "DATA with no recipients", inputs: [EHLO, FROM, "DATA"], log: [ehloReply, mailOk, noRecipients] },
    {
      name: "DATA with only rejected recipients",
      inputs: [EHLO, FROM, "RCPT TO:<nobody@example.test>", "DATA"],
      log: [
        ehloReply,
        mailOk,
        "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown",
        noRecipients
      ]
    },
    {
      name: "DATA after BDAT",
      inputs: [...ready, "BDAT 10", end(10), "DATA"],
      log: [...readyLog, "[read bdat 10 first keep]", "250 2.0.0 Ok: 10 octets received", "503 5.5.1 Error: DATA not allowed after BDAT"]
    },
    {
      name: "BINARYMIME with DATA",
      inputs: [EHLO, "MAIL FROM:<sender@remote.test> BODY=BINARYMIME", TO, "DATA"],
      log: [ehloReply, mailOk, rcptOk, "503 5.5.1 Error: BINARYMIME requires BDAT"]
    },
    {
      name: "RSET clears the transaction and keeps the greeting",
      inputs: [...ready, "RSET", TO, FROM, TO],
      log: [...readyLog, ok, needMail, mailOk, rcptOk]
    },
    { name: "RSET before HELO", inputs: ["RSET", FROM], log: [ok, needHelo] },
    { name: "NOOP", inputs: ["NOOP", "NOOP anything"], log: [ok, ok] },
    {
      name: "VRFY",
      inputs: ["VRFY alice"],
      log: ["252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"]
    },
    { name: "VRFY without an argument", inputs: ["VRFY"], log: ["501 5.5.4 Syntax: VRFY address"] },
    {
      name: "HELP",
      inputs: ["HELP", "HELP MAIL"],
      log: [
        "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP; see RFC 5321",
        "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP; see RFC 5321"
      ]
    },
    { name: "EXPN", inputs: ["EXPN staff"], log: ["502 5.5.1 Error: command not implemented"] },
    { name: "STARTTLS (not offered yet)", inputs: [EHLO, "STARTTLS"], log: [ehloReply, "502 5.5.1 Error: command not implemented"] },
    { name: "AUTH", inputs: [EHLO, "AUTH PLAIN dGVzdA=="], log: [ehloReply, "503 5.5.1 Error: authentication not enabled"] },
    { name: "an unknown verb", inputs: ["FOO bar"], log: [unrecognized] },
    { name: "an empty line", inputs: [""], log: [unrecognized] },
    {
      name: "QUIT ends the session and nothing after it is answered",
      inputs: [...ready, "QUIT", "NOOP", "DATA", end(10), queued("Q"), timedOut("command"), shutdown],
      log: [...readyLog, "221 2.0.0 Bye", "[close quit]"]
    },
    { name: "QUIT with an argument is refused", inputs: ["QUIT now", "NOOP"], log: ["501 5.5.4 Syntax: QUIT", ok] },
    { name: "verbs are case-insensitive", inputs: ["ehlo client.test", "mail from:<a@remote.test>", "rcpt to:<bob@example.test>"], log: [ehloReply, mailOk, rcptOk] }
  ])

  it("QUIT leaves the machine closed", () => {
    const c = talk(["QUIT"])
    assert.isTrue(c.state.closed)
    assert.isUndefined(c.state.transaction)
  })
})

describe("Machine: MAIL", () => {
  table([
    { name: "null reverse-path", inputs: [EHLO, "MAIL FROM:<>"], log: [ehloReply, mailOk] },
    { name: "SIZE at the limit", inputs: [EHLO, `${FROM} SIZE=1000`], log: [ehloReply, mailOk] },
    {
      name: "SIZE over the limit",
      inputs: [EHLO, `${FROM} SIZE=1001`, TO],
      log: [ehloReply, "552 5.3.4 Message size exceeds fixed limit", needMail]
    },
    {
      name: "a syntax error leaves no transaction",
      inputs: [EHLO, "MAIL FROM:sender@remote.test", TO],
      log: [ehloReply, "501 5.1.7 Bad sender address syntax", needMail]
    },
    {
      name: "an unsupported parameter",
      inputs: [EHLO, `${FROM} RET=FULL`],
      log: [ehloReply, "555 5.5.4 Unsupported option: RET"]
    },
    {
      name: "an international sender needs SMTPUTF8",
      inputs: [EHLO, "MAIL FROM:<üser@remote.test>", "MAIL FROM:<üser@remote.test> SMTPUTF8"],
      log: [ehloReply, "553 5.6.7 SMTPUTF8 is required for a non-ASCII address", mailOk]
    }
  ])
})

describe("Machine: recipients", () => {
  table([
    { name: "a local user", inputs: [EHLO, FROM, "RCPT TO:<bob@example.test>"], log: [ehloReply, mailOk, rcptOk] },
    {
      name: "a local user in another case, and the domain in upper case",
      inputs: [EHLO, FROM, "RCPT TO:<ALICE@EXAMPLE.TEST>"],
      log: [ehloReply, mailOk, rcptOk]
    },
    { name: "any user of a catch-all domain", inputs: [EHLO, FROM, "RCPT TO:<whoever@sink.test>"], log: [ehloReply, mailOk, rcptOk] },
    { name: "postmaster of a local domain", inputs: [EHLO, FROM, "RCPT TO:<postmaster@example.test>"], log: [ehloReply, mailOk, rcptOk] },
    { name: "postmaster in any case", inputs: [EHLO, FROM, "RCPT TO:<PostMaster@example.test>"], log: [ehloReply, mailOk, rcptOk] },
    { name: "bare <Postmaster>", inputs: [EHLO, FROM, "RCPT TO:<Postmaster>"], log: [ehloReply, mailOk, rcptOk] },
    { name: "bare <postmaster> in lower case", inputs: [EHLO, FROM, "RCPT TO:<postmaster>"], log: [ehloReply, mailOk, rcptOk] },
    {
      name: "bare <Postmaster> with no local domain",
      inputs: [EHLO, FROM, "RCPT TO:<Postmaster>"],
      settings: { ...settings, localDomains: [] },
      log: [ehloReply, mailOk, "550 5.1.1 <Postmaster>: Recipient address rejected: no local domain"]
    },
    {
      name: "an unknown user",
      inputs: [EHLO, FROM, "RCPT TO:<carol@example.test>"],
      log: [ehloReply, mailOk, "550 5.1.1 <carol@example.test>: Recipient address rejected: User unknown"]
    },
    {
      name: "relaying is denied",
      inputs: [EHLO, FROM, "RCPT TO:<alice@remote.test>"],
      log: [ehloReply, mailOk, "554 5.7.1 <alice@remote.test>: Relay access denied"]
    },
    {
      name: "a subdomain of a local domain is not local",
      inputs: [EHLO, FROM, "RCPT TO:<alice@sub.example.test>"],
      log: [ehloReply, mailOk, "554 5.7.1 <alice@sub.example.test>: Relay access denied"]
    },
    {
      name: "an international recipient needs SMTPUTF8 on MAIL",
      inputs: [EHLO, FROM, "RCPT TO:<ünï@sink.test>", "RSET", `${FROM} SMTPUTF8`, "RCPT TO:<ünï@sink.test>"],
      log: [ehloReply, mailOk, "553 5.6.7 SMTPUTF8 is required for a non-ASCII address", ok, mailOk, rcptOk]
    },
    {
      name: "a recipient syntax error",
      inputs: [EHLO, FROM, "RCPT TO:alice@example.test"],
      log: [ehloReply, mailOk, "501 5.1.3 Bad recipient address syntax"]
    },
    {
      name: "the recipient limit refuses the extras with 452 4.5.3",
      inputs: [EHLO, FROM, "RCPT TO:<a@sink.test>", "RCPT TO:<b@sink.test>", "RCPT TO:<c@sink.test>", "RCPT TO:<d@sink.test>", "RCPT TO:<alice@example.test>"],
      log: [ehloReply, mailOk, rcptOk, rcptOk, rcptOk, "452 4.5.3 Error: too many recipients", "452 4.5.3 Error: too many recipients"]
    }
  ])

  it("recipients over the limit are not counted as errors", () => {
    const extras = Array.from({ length: 10 }, (_, i) => `RCPT TO:<x${i}@sink.test>`)
    const c = talk([EHLO, FROM, ...extras, "DATA"], { ...settings, maxRecipients: 1, maxErrors: 2 })
    assert.deepStrictEqual(c.log, [
      ehloReply,
      mailOk,
      rcptOk,
      ...Array.from({ length: 9 }, () => "452 4.5.3 Error: too many recipients"),
      startData,
      "[read data]"
    ])
    assert.strictEqual(c.state.errors, 0)
  })

  it("accepted recipients are kept in order, as written, and <Postmaster> goes to the first local domain", () => {
    const c = talk([
      EHLO,
      FROM,
      "RCPT TO:<Alice@Example.Test>",
      "RCPT TO:<Postmaster>",
      "RCPT TO:<carol@example.test>",
      "RCPT TO:<\"odd user\"@sink.test>"
    ], { ...settings, maxRecipients: 10 })
    assert.deepStrictEqual(c.state.transaction?.recipients, [
      "Alice@example.test",
      "postmaster@example.test",
      "\"odd user\"@sink.test"
    ])
  })
})

describe("Machine: route", () => {
  it("is exported for policy code and agrees with RCPT", () => {
    assert.deepStrictEqual(Machine.route(settings, { _tag: "Postmaster" }), {
      _tag: "Local",
      recipient: "postmaster@example.test"
    })
    assert.deepStrictEqual(
      Machine.route(settings, { _tag: "Mailbox", local: "BOB", domain: "example.test", international: false }),
      { _tag: "Local", recipient: "BOB@example.test" }
    )
    assert.deepStrictEqual(
      Machine.route(settings, { _tag: "Mailbox", local: "bob", domain: "elsewhere.test", international: false }),
      { _tag: "Remote", recipient: "bob@elsewhere.test" }
    )
    assert.strictEqual(
      Machine.route(settings, { _tag: "Mailbox", local: "nobody", domain: "example.test", international: false })._tag,
      "Rejected"
    )
  })
})

describe("Machine: DATA", () => {
  table([
    {
      name: "354, content, commit, queued",
      inputs: [...ready, "DATA", end(120), queued("4F2A1C3B0A")],
      log: [...readyLog, startData, "[read data]", "[commit <sender@remote.test> -> <alice@example.test>]", "250 2.0.0 Ok: queued as 4F2A1C3B0A"]
    },
    {
      name: "a second transaction after the first is queued",
      inputs: [...ready, "DATA", end(10), queued("Q1"), FROM, "RCPT TO:<bob@example.test>", "DATA", end(20), queued("Q2")],
      log: [
        ...readyLog,
        startData,
        "[read data]",
        "[commit <sender@remote.test> -> <alice@example.test>]",
        "250 2.0.0 Ok: queued as Q1",
        mailOk,
        rcptOk,
        startData,
        "[read data]",
        "[commit <sender@remote.test> -> <bob@example.test>]",
        "250 2.0.0 Ok: queued as Q2"
      ]
    },
    {
      name: "the transaction ends with the message",
      inputs: [...ready, "DATA", end(10), queued("Q1"), TO],
      log: [...readyLog, startData, "[read data]", "[commit <sender@remote.test> -> <alice@example.test>]", "250 2.0.0 Ok: queued as Q1", needMail]
    },
    {
      name: "the queue fails",
      inputs: [...ready, "DATA", end(10), queueFailed("disk full"), TO],
      log: [...readyLog, startData, "[read data]", "[commit <sender@remote.test> -> <alice@example.test>]", "451 4.3.0 Error: queue file write error", needMail]
    },
    {
      name: "content of exactly the limit",
      inputs: [...ready, "DATA", end(1000)],
      log: [...readyLog, startData, "[read data]", "[commit <sender@remote.test> -> <alice@example.test>]"]
    },
    {
      name: "oversize content",
      inputs: [...ready, "DATA", end(1001), TO, "NOOP"],
      log: [...readyLog, startData, "[read data]", "[abort]", tooBig, needMail, ok]
    },
    {
      name: "bare LF in the content",
      inputs: [...ready, "DATA", end(100, "lf"), "NOOP"],
      log: [...readyLog, startData, "[read data]", "[abort]", "550 5.5.2 Error: bare <LF> received in message content", ok]
    },
    {
      name: "bare CR in the content",
      inputs: [...ready, "DATA", end(100, "cr")],
      log: [...readyLog, startData, "[read data]", "[abort]", "550 5.5.2 Error: bare <CR> received in message content"]
    },
    {
      name: "lines, queue results and stray ends are not answered while content is read",
      inputs: [...ready, "DATA", "NOOP", queued("X"), queueFailed("x"), end(5), "NOOP", end(5), queued("Q"), "NOOP"],
      log: [...readyLog, startData, "[read data]", "[commit <sender@remote.test> -> <alice@example.test>]", "250 2.0.0 Ok: queued as Q", ok]
    },
    {
      name: "a queue result with no message in flight is ignored",
      inputs: [EHLO, queued("X"), queueFailed("x"), end(5), "NOOP"],
      log: [ehloReply, ok]
    }
  ])

  it("the commit carries the exact envelope", () => {
    const c = talk([
      EHLO,
      "MAIL FROM:<Sender@Remote.Test> SMTPUTF8 BODY=8BITMIME",
      "RCPT TO:<bob@example.test>",
      "RCPT TO:<ünï@sink.test>",
      "RCPT TO:<Postmaster>",
      "DATA",
      end(10)
    ])
    assert.deepStrictEqual(c.actions.at(-1), {
      _tag: "Commit",
      envelope: {
        from: "Sender@remote.test",
        to: ["bob@example.test", "ünï@sink.test", "postmaster@example.test"],
        smtputf8: true,
        body: "8BITMIME"
      }
    })
  })

  it("the envelope of a bounce has an empty sender and no body key", () => {
    const c = talk([EHLO, "MAIL FROM:<>", TO, "DATA", end(10)])
    const commit = c.actions.at(-1)
    assert.deepStrictEqual(commit, {
      _tag: "Commit",
      envelope: { from: "", to: ["alice@example.test"], smtputf8: false }
    })
    if (commit?._tag === "Commit") assert.isFalse("body" in commit.envelope)
  })

  it("BODY=7BIT is carried in the envelope", () => {
    const c = talk([EHLO, `${FROM} BODY=7BIT`, TO, "DATA", end(10)])
    const commit = c.actions.at(-1)
    assert.strictEqual(commit?._tag === "Commit" ? commit.envelope.body : undefined, "7BIT")
  })
})

describe("Machine: BDAT", () => {
  table([
    {
      name: "chunks, then LAST commits",
      inputs: [...ready, "BDAT 10", end(10), "BDAT 20", end(30), "BDAT 5 LAST", end(35), queued("Q7")],
      log: [
        ...readyLog,
        "[read bdat 10 first keep]",
        "250 2.0.0 Ok: 10 octets received",
        "[read bdat 20 keep]",
        "250 2.0.0 Ok: 30 octets received",
        "[read bdat 5 keep]",
        "[commit <sender@remote.test> -> <alice@example.test>]",
        "250 2.0.0 Ok: queued as Q7"
      ]
    },
    {
      name: "a single LAST chunk",
      inputs: [...ready, "BDAT 42 LAST", end(42), queued("Q8"), TO],
      log: [...readyLog, "[read bdat 42 first keep]", "[commit <sender@remote.test> -> <alice@example.test>]", "250 2.0.0 Ok: queued as Q8", needMail]
    },
    {
      name: "BDAT 0 LAST ends a chunked message",
      inputs: [...ready, "BDAT 7", end(7), "BDAT 0 LAST", end(7), queued("Q9")],
      log: [
        ...readyLog,
        "[read bdat 7 first keep]",
        "250 2.0.0 Ok: 7 octets received",
        "[read bdat 0 keep]",
        "[commit <sender@remote.test> -> <alice@example.test>]",
        "250 2.0.0 Ok: queued as Q9"
      ]
    },
    {
      name: "BDAT 0 LAST alone is an empty message",
      inputs: [...ready, "BDAT 0 LAST", end(0)],
      log: [...readyLog, "[read bdat 0 first keep]", "[commit <sender@remote.test> -> <alice@example.test>]"]
    },
    {
      name: "BDAT without MAIL is read and refused at the chunk end",
      inputs: [EHLO, "BDAT 4", end(4), "NOOP"],
      log: [ehloReply, "[read bdat 4 discard]", needMail, ok]
    },
    {
      name: "BDAT LAST before HELO is read and refused",
      inputs: ["BDAT 4 LAST", end(4), "NOOP"],
      log: ["[read bdat 4 discard]", needMail, ok]
    },
    {
      name: "BDAT without recipients is read and refused",
      inputs: [EHLO, FROM, "BDAT 4 LAST", end(4), TO, "BDAT 3 LAST", end(3)],
      log: [ehloReply, mailOk, "[read bdat 4 discard]", noRecipients, rcptOk, "[read bdat 3 first keep]", "[commit <sender@remote.test> -> <alice@example.test>]"]
    },
    {
      name: "oversize across chunks",
      inputs: [...ready, "BDAT 600", end(600), "BDAT 600", end(1200), TO, "BDAT 1 LAST", end(1)],
      log: [
        ...readyLog,
        "[read bdat 600 first keep]",
        "250 2.0.0 Ok: 600 octets received",
        "[read bdat 600 keep]",
        "[abort]",
        tooBig,
        needMail,
        "[read bdat 1 discard]",
        needMail
      ]
    },
    {
      name: "oversize on the LAST chunk",
      inputs: [...ready, "BDAT 600", end(600), "BDAT 600 LAST", end(1200)],
      log: [...readyLog, "[read bdat 600 first keep]", "250 2.0.0 Ok: 600 octets received", "[read bdat 600 keep]", "[abort]", tooBig]
    },
    {
      name: "bare LF in chunked text content is refused at LAST",
      inputs: [...ready, "BDAT 10", end(10, "lf"), "BDAT 10 LAST", end(20, "lf")],
      log: [
        ...readyLog,
        "[read bdat 10 first keep]",
        "250 2.0.0 Ok: 10 octets received",
        "[read bdat 10 keep]",
        "[abort]",
        "550 5.5.2 Error: bare <LF> received in message content"
      ]
    },
    {
      name: "BINARYMIME content may hold bare line endings",
      inputs: [EHLO, `${FROM} BODY=BINARYMIME`, TO, "BDAT 10 LAST", end(10, "cr")],
      log: [ehloReply, mailOk, rcptOk, "[read bdat 10 first keep]", "[commit <sender@remote.test> -> <alice@example.test>]"]
    },
    {
      name: "a BDAT syntax error",
      inputs: [...ready, "BDAT ten"],
      log: [...readyLog, "501 5.5.4 Syntax: BDAT size [LAST]"]
    },
    {
      name: "RSET between chunks drops the content received so far",
      inputs: [...ready, "BDAT 10", end(10), "RSET", FROM, TO, "BDAT 3 LAST", end(3)],
      log: [
        ...readyLog,
        "[read bdat 10 first keep]",
        "250 2.0.0 Ok: 10 octets received",
        "[abort]",
        ok,
        mailOk,
        rcptOk,
        "[read bdat 3 first keep]",
        "[commit <sender@remote.test> -> <alice@example.test>]"
      ]
    },
    {
      name: "EHLO between chunks drops the content received so far",
      inputs: [...ready, "BDAT 10", end(10), EHLO],
      log: [...readyLog, "[read bdat 10 first keep]", "250 2.0.0 Ok: 10 octets received", "[abort]", ehloReply]
    },
    {
      name: "RSET in a transaction without chunks has nothing to drop",
      inputs: [...ready, "RSET"],
      log: [...readyLog, ok]
    }
  ])

  it("a refused BDAT chunk counts toward the error limit (Protocol.table: Bdat counts)", () => {
    const c = talk(["BDAT 1", end(1), "BDAT 1", end(1)], { ...settings, maxErrors: 2 })
    assert.deepStrictEqual(c.log, [
      "[read bdat 1 discard]",
      needMail,
      "[read bdat 1 discard]",
      needMail,
      tooManyErrors,
      "[close error-limit]"
    ])
  })
})

describe("Machine: line flaws", () => {
  table([
    {
      name: "a bare LF closes the session",
      inputs: [flawed("NOOP", "bare-lf"), "NOOP"],
      log: ["500 5.5.2 Error: bare <LF> received", "[close protocol]"]
    },
    {
      name: "a bare CR is refused and the session goes on",
      inputs: [flawed("NOOP", "bare-cr"), "NOOP"],
      log: ["500 5.5.2 Error: bare <CR> received", ok]
    },
    {
      name: "a NUL is refused and the session goes on",
      inputs: [flawed("NO\u0000OP", "nul"), "NOOP"],
      log: ["500 5.5.2 Error: NUL character received", ok]
    },
    {
      name: "a flawed line is not executed",
      inputs: [EHLO, flawed(FROM, "bare-cr"), TO],
      log: [ehloReply, "500 5.5.2 Error: bare <CR> received", needMail]
    },
    { name: "a line too long", inputs: [tooLong, "NOOP"], log: ["500 5.5.2 Error: line too long", ok] },
    {
      name: "a line flood closes the session",
      inputs: [flood, "NOOP"],
      log: ["500 5.5.2 Error: line too long", "[close protocol]"]
    },
    {
      name: "control characters in an unflawed line",
      inputs: ["NOOP\tx", "HELO a\u0001b"],
      log: ["501 5.5.2 Error: control characters not allowed", "501 5.5.2 Error: control characters not allowed"]
    }
  ])

  it("bare CR, NUL and over-long lines count as errors", () => {
    const c = talk([flawed("A", "bare-cr"), flawed("B", "nul"), tooLong], { ...settings, maxErrors: 3 })
    assert.deepStrictEqual(c.log, [
      "500 5.5.2 Error: bare <CR> received",
      "500 5.5.2 Error: NUL character received",
      "500 5.5.2 Error: line too long",
      tooManyErrors,
      "[close error-limit]"
    ])
  })
})

describe("Machine: error limit", () => {
  it("maxErrors rejected commands: the last rejection, then 421 4.7.0 and Close", () => {
    const c = talk(["FOO", "FOO", "FOO", "FOO", "FOO", "NOOP"])
    assert.deepStrictEqual(c.log, [unrecognized, unrecognized, unrecognized, unrecognized, unrecognized, tooManyErrors, "[close error-limit]"])
    assert.isTrue(c.state.closed)
    assert.strictEqual(c.state.errors, 5)
  })

  it("accepted commands do not reset the count", () => {
    const c = talk(["FOO", "NOOP", "FOO", EHLO, "FOO", "FOO", "RSET", "FOO"])
    assert.deepStrictEqual(c.log.slice(-3), [unrecognized, tooManyErrors, "[close error-limit]"])
  })

  it("maxErrors 1 closes at the first rejected command", () => {
    const c = talk(["FOO"], { ...settings, maxErrors: 1 })
    assert.deepStrictEqual(c.log, [unrecognized, tooManyErrors, "[close error-limit]"])
  })

  /** A line each verb's rejection comes from (an invalid form, or the verb out of sequence). */
  const rejectedLine: { readonly [V in Command.Verb]: string | undefined } = {
    Ehlo: "EHLO",
    Helo: "HELO",
    Starttls: "STARTTLS",
    Noop: undefined,
    Rset: "RSET now",
    Quit: "QUIT now",
    Help: undefined,
    Mail: "MAIL FROM:<sender@remote.test>",
    Rcpt: "RCPT TO:<alice@example.test>",
    Data: "DATA",
    Bdat: "BDAT many",
    Vrfy: "VRFY",
    Expn: "EXPN staff",
    Auth: "AUTH PLAIN"
  }

  for (const verb of Object.keys(Protocol.table) as ReadonlyArray<Command.Verb>) {
    const text = rejectedLine[verb]
    if (text === undefined) continue
    const counts = Protocol.flagsOf(verb).countsAsError
    it(`${verb}: rejections ${counts ? "count" : "do not count"} (Protocol.table)`, () => {
      const c = talk(Array.from({ length: 3 }, () => text), { ...settings, maxErrors: 3 })
      assert.strictEqual(c.log.length, counts ? 5 : 3)
      assert.isFalse(c.log.slice(0, 3).some((l) => l.startsWith("2")), `${verb} was not rejected: ${c.log.join(" | ")}`)
      if (counts) assert.deepStrictEqual(c.log.slice(3), [tooManyErrors, "[close error-limit]"])
      assert.strictEqual(c.state.closed, counts)
    })
  }

  it("NOOP and HELP are never rejected", () => {
    const c = talk(["NOOP x y z", "HELP what", "NOOP", "HELP"], { ...settings, maxErrors: 1 })
    assert.strictEqual(c.log.length, 4)
    assert.isFalse(c.state.closed)
  })
})

describe("Machine: timeouts", () => {
  const cases: ReadonlyArray<{ readonly name: string; readonly before: ReadonlyArray<Step>; readonly phase: Event.TimeoutPhase; readonly abort: boolean }> = [
    { name: "before HELO", before: [], phase: "command", abort: false },
    { name: "in a transaction", before: [...ready], phase: "command", abort: false },
    { name: "in DATA content", before: [...ready, "DATA"], phase: "data-block", abort: true },
    { name: "in a BDAT chunk", before: [...ready, "BDAT 100"], phase: "data-block", abort: true },
    { name: "in a refused BDAT chunk", before: [EHLO, "BDAT 100"], phase: "data-block", abort: true },
    { name: "between BDAT chunks", before: [...ready, "BDAT 10", end(10)], phase: "command", abort: false },
    { name: "while the queue stores the message", before: [...ready, "DATA", end(10)], phase: "data-end", abort: true }
  ]
  for (const c of cases) {
    it(`${c.name}: phase ${c.phase}, 421 4.4.2${c.abort ? " and Abort" : ""}`, () => {
      const before = talk(c.before)
      assert.strictEqual(Machine.timeoutPhase(before.state), c.phase)
      const after = step(before.state, timedOut(c.phase))
      assert.deepStrictEqual(after.actions.map(render), [...(c.abort ? ["[abort]"] : []), timeout, "[close timeout]"])
      assert.isTrue(after.state.closed)
      assert.deepStrictEqual(step(after.state, line("NOOP")).actions, [])
    })
  }

  it("timeoutPhase of the initial state is command", () => {
    assert.strictEqual(Machine.timeoutPhase(Machine.initial(settings)), "command")
  })

  it("timeoutPhase follows a whole message", () => {
    const phases: Array<Event.TimeoutPhase> = []
    let state = Machine.initial(settings)
    for (const input of [connect(), ...ready, "DATA", end(5), queued("Q"), FROM, TO, "BDAT 3", end(3), "BDAT 1 LAST", end(4), queued("R")]) {
      state = step(state, toInput(input)).state
      phases.push(Machine.timeoutPhase(state))
    }
    assert.deepStrictEqual(phases, [
      "command",
      "command",
      "command",
      "command",
      "data-block",
      "data-end",
      "command",
      "command",
      "command",
      "data-block",
      "command",
      "data-block",
      "data-end",
      "command"
    ])
  })
})

describe("Machine: shutdown", () => {
  table([
    { name: "idle", inputs: [shutdown, "NOOP"], log: [shuttingDown, "[close shutdown]"] },
    { name: "in a transaction", inputs: [...ready, shutdown], log: [...readyLog, shuttingDown, "[close shutdown]"] },
    {
      name: "during DATA: nothing until the message is answered",
      inputs: [...ready, "DATA", shutdown, end(10), queued("Q1"), "NOOP"],
      log: [...readyLog, startData, "[read data]", "[commit <sender@remote.test> -> <alice@example.test>]", "250 2.0.0 Ok: queued as Q1", shuttingDown, "[close shutdown]"]
    },
    {
      name: "while the queue stores the message",
      inputs: [...ready, "DATA", end(10), shutdown, queued("Q1")],
      log: [...readyLog, startData, "[read data]", "[commit <sender@remote.test> -> <alice@example.test>]", "250 2.0.0 Ok: queued as Q1", shuttingDown, "[close shutdown]"]
    },
    {
      name: "during DATA, the queue fails",
      inputs: [...ready, "DATA", shutdown, end(10), queueFailed("disk")],
      log: [...readyLog, startData, "[read data]", "[commit <sender@remote.test> -> <alice@example.test>]", "451 4.3.0 Error: queue file write error", shuttingDown, "[close shutdown]"]
    },
    {
      name: "during oversize DATA",
      inputs: [...ready, "DATA", shutdown, end(5000)],
      log: [...readyLog, startData, "[read data]", "[abort]", tooBig, shuttingDown, "[close shutdown]"]
    },
    {
      name: "during DATA with bare LF",
      inputs: [...ready, "DATA", shutdown, end(10, "lf")],
      log: [...readyLog, startData, "[read data]", "[abort]", "550 5.5.2 Error: bare <LF> received in message content", shuttingDown, "[close shutdown]"]
    },
    {
      name: "during a LAST chunk",
      inputs: [...ready, "BDAT 10 LAST", shutdown, end(10), queued("Q2")],
      log: [...readyLog, "[read bdat 10 first keep]", "[commit <sender@remote.test> -> <alice@example.test>]", "250 2.0.0 Ok: queued as Q2", shuttingDown, "[close shutdown]"]
    },
    {
      name: "during a refused chunk",
      inputs: [EHLO, "BDAT 10", shutdown, end(10)],
      log: [ehloReply, "[read bdat 10 discard]", needMail, shuttingDown, "[close shutdown]"]
    },
    {
      name: "during a chunk that is not the last: the chunk is answered, then 421",
      inputs: [...ready, "BDAT 10", shutdown, end(10), "NOOP"],
      log: [...readyLog, "[read bdat 10 first keep]", "250 2.0.0 Ok: 10 octets received", "[abort]", shuttingDown, "[close shutdown]"]
    },
    { name: "twice", inputs: [shutdown, shutdown], log: [shuttingDown, "[close shutdown]"] }
  ])
})

describe("Machine: closed state", () => {
  const everything: ReadonlyArray<Machine.Input> = [
    connect(),
    connect("global-limit"),
    line(EHLO),
    line("QUIT"),
    flawed("NOOP", "bare-lf"),
    tooLong,
    flood,
    end(10),
    end(10, "lf"),
    queued("Q"),
    queueFailed("x"),
    timedOut("command"),
    timedOut("data-block"),
    timedOut("data-end"),
    shutdown
  ]
  const closers: ReadonlyArray<readonly [string, ReadonlyArray<Step>]> = [
    ["QUIT", ["QUIT"]],
    ["admission", []],
    ["timeout", [timedOut("command")]],
    ["flood", [flood]],
    ["shutdown", [shutdown]],
    ["error limit", ["FOO", "FOO", "FOO", "FOO", "FOO"]]
  ]
  for (const [name, inputs] of closers) {
    it(`after ${name}, every input is ignored and the state is unchanged`, () => {
      const start = name === "admission" ? converse(settings, [connect("client-limit")]) : talk(inputs)
      assert.isTrue(start.state.closed)
      for (const input of everything) {
        const next = step(start.state, input)
        assert.deepStrictEqual(next.actions, [])
        assert.strictEqual(next.state, start.state)
      }
    })
  }
})

// ---------------------------------------------------------------------------------------------
// Property: random conversations

/** mulberry32: a small seeded generator, so a failure names the seed that reproduces it. */
const prng = (seed: number) => {
  let a = seed >>> 0
  return (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const vocabulary: ReadonlyArray<string> = [
  EHLO,
  "HELO client.test",
  "EHLO",
  "ehlo x",
  FROM,
  "MAIL FROM:<>",
  `${FROM} SIZE=500`,
  `${FROM} SIZE=99999`,
  `${FROM} BODY=BINARYMIME`,
  `${FROM} BODY=8BITMIME SMTPUTF8`,
  `${FROM} FOO=BAR`,
  "MAIL FROM:sender",
  "MAIL",
  TO,
  "RCPT TO:<bob@example.test>",
  "RCPT TO:<carol@example.test>",
  "RCPT TO:<x@remote.test>",
  "RCPT TO:<Postmaster>",
  "RCPT TO:<ünï@sink.test>",
  "RCPT TO:<any@sink.test>",
  "RCPT TO:<\uFFFD@sink.test>",
  "RCPT",
  "DATA",
  "DATA now",
  "BDAT 10",
  "BDAT 0 LAST",
  "BDAT 5 LAST",
  "BDAT 999999999999999",
  "BDAT -1",
  "BDAT 1 LASTLY",
  "RSET",
  "RSET x",
  "NOOP",
  "QUIT",
  "QUIT x",
  "VRFY alice",
  "VRFY",
  "EXPN list",
  "HELP",
  "STARTTLS",
  "STARTTLS x",
  "AUTH PLAIN dGVzdA==",
  "AUTH",
  "FOO",
  "",
  "   ",
  "\u0000",
  "MAIL FROM:<a\u0001b@x>",
  "x".repeat(600)
]

const pick = <A>(random: () => number, items: ReadonlyArray<A>): A => {
  const item = items[Math.floor(random() * items.length)]
  if (item === undefined) throw new Error("empty choice")
  return item
}

const randomBare = (random: () => number): "lf" | "cr" | undefined => {
  const r = random()
  return r < 0.1 ? "lf" : r < 0.2 ? "cr" : undefined
}

/** A line that moves the conversation toward a message, so random runs reach DATA and BDAT. */
const progressLine = (random: () => number, state: Machine.State): string => {
  const transaction = state.transaction
  if (state.helo === undefined) return pick(random, [EHLO, "HELO client.test"])
  if (transaction === undefined) {
    return pick(random, [FROM, "MAIL FROM:<>", `${FROM} BODY=BINARYMIME`, `${FROM} SMTPUTF8`, `${FROM} SIZE=800`])
  }
  if (transaction.recipients.length === 0 || random() < 0.3) {
    return pick(random, [TO, "RCPT TO:<any@sink.test>", "RCPT TO:<Postmaster>", "RCPT TO:<ünï@sink.test>"])
  }
  return pick(random, ["DATA", "DATA", "BDAT 10", "BDAT 200", "BDAT 5 LAST", "BDAT 0 LAST"])
}

/** Inputs biased toward what the session would really send in the machine's current state. */
const randomInput = (random: () => number, state: Machine.State): Machine.Input => {
  const r = random()
  if (r < 0.02) return timedOut(Machine.timeoutPhase(state))
  if (r < 0.035) return shutdown
  if (r < 0.04) return flood
  if (r < 0.05) return tooLong
  if (r < 0.06) return connect(pick(random, ["ok", "ok", "global-limit", "shutdown"] as const))
  switch (Machine.timeoutPhase(state)) {
    case "data-block":
      if (random() < 0.85) return end(Math.floor(random() * 1200), randomBare(random))
      break
    case "data-end":
      if (random() < 0.85) return random() < 0.7 ? queued(`Q${Math.floor(random() * 1000)}`) : queueFailed("disk full")
      break
    case "command":
      break
  }
  const s = random()
  if (s < 0.04) return end(Math.floor(random() * 100), undefined)
  if (s < 0.06) return queued("stray")
  if (s < 0.1) return flawed(pick(random, vocabulary), pick(random, ["bare-lf", "bare-cr", "nul"] as const))
  if (s < 0.55) return line(progressLine(random, state))
  return line(pick(random, vocabulary))
}

const withoutEnhanced = (input: Machine.Input, reply: Reply.Reply): boolean =>
  (reply.code === 220 && input._tag === "Connected") ||
  reply.code === 354 ||
  (reply.code === 250 && input._tag === "Line" && /^\s*(EHLO|HELO)\s/i.test(input.text))

/** Fails with a message built only when the condition does not hold (the loop runs 100k steps). */
const check = (condition: boolean, message: () => string): void => {
  if (!condition) assert.fail(message())
}

describe("Machine: random conversations", () => {
  const variants: ReadonlyArray<Event.MachineSettings> = [
    settings,
    { ...settings, maxErrors: 2, maxRecipients: 1 },
    { ...settings, maxErrors: 1000, maxRecipients: 50, localDomains: [] }
  ]

  it("never throw, every reply is well formed, and nothing follows a Close", () => {
    const runs = 3000
    let conversations = 0
    // What the runs reached, so the generator is known to exercise the interesting paths.
    const seen = new Set<string>()
    for (let seed = 1; seed <= runs; seed++) {
      const random = prng(seed)
      const s = pick(random, variants)
      let state = Machine.initial(s)
      let closed = false
      const length = 1 + Math.floor(random() * 60)
      for (let i = 0; i < length; i++) {
        const input = i === 0 ? connect() : randomInput(random, state)
        const commandsBefore = !state.closed && state.reading._tag === "Commands"
        const next = step(state, input)
        const where = () => `seed ${seed} step ${i} input ${JSON.stringify(input)} actions ${JSON.stringify(next.actions)}`
        if (closed) {
          check(next.actions.length === 0, () => `action after Close: ${where()}`)
          check(next.state === state, () => `state changed after Close: ${where()}`)
        }
        const closeIndex = next.actions.findIndex((a) => a._tag === "Close")
        if (closeIndex >= 0) {
          check(closeIndex === next.actions.length - 1, () => `Close is not last: ${where()}`)
          check(next.state.closed, () => `Close without closed state: ${where()}`)
          closed = true
        }
        check(next.state.closed === closed, () => `closed without a Close action: ${where()}`)
        if (input._tag === "Line" && commandsBefore) {
          check(
            next.actions.some((a) => a._tag === "Reply" || a._tag === "ReadBdat"),
            () => `a command line went unanswered: ${where()}`
          )
        }
        for (const action of next.actions) {
          seen.add(action._tag === "Close" ? `close ${action.reason}` : action._tag === "Reply" ? `${action.reply.code}` : action._tag)
          if (action._tag === "ReadData") {
            check(next.actions.some((a) => a._tag === "Reply" && a.reply.code === 354), () => `ReadData without 354: ${where()}`)
          }
          if (action._tag !== "Reply") continue
          const { code, enhanced, lines } = action.reply
          check(Number.isInteger(code) && code >= 200 && code <= 599, () => `code ${code}: ${where()}`)
          check(lines.length >= 1, () => `no lines: ${where()}`)
          if (enhanced === undefined) {
            check(withoutEnhanced(input, action.reply), () => `reply ${code} without enhanced code: ${where()}`)
          } else {
            check(/^[245]\.\d{1,3}\.\d{1,3}$/.test(enhanced), () => `enhanced ${enhanced}: ${where()}`)
            check(enhanced.charAt(0) === String(code).charAt(0), () => `class of ${code} ${enhanced}: ${where()}`)
          }
        }
        state = next.state
      }
      conversations++
    }
    assert.strictEqual(conversations, runs)
    for (const expected of [
      "ReadData",
      "ReadBdat",
      "Commit",
      "Abort",
      "close quit",
      "close timeout",
      "close error-limit",
      "close protocol",
      "close shutdown",
      "close admission",
      "250",
      "354",
      "421",
      "451",
      "452",
      "501",
      "503",
      "550",
      "552",
      "553",
      "554"
    ]) {
      assert.isTrue(seen.has(expected), `never reached: ${expected}`)
    }
  })

  it("the machine is deterministic: the same inputs give the same actions", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = prng(seed)
      const inputs: Array<Machine.Input> = [connect()]
      let state = step(Machine.initial(settings), connect()).state
      for (let i = 0; i < 40; i++) {
        const input = randomInput(random, state)
        inputs.push(input)
        state = step(state, input).state
      }
      assert.deepStrictEqual(converse(settings, inputs).actions, converse(settings, inputs).actions)
    }
  })
})

describe("Machine: pipelined groups (RFC 2920)", () => {
  const afterGreeting = step(Machine.initial(settings), connect()).state
  const afterEhlo = step(afterGreeting, line("EHLO client.example")).state
  const withMail = step(afterEhlo, line("MAIL FROM:<a@b.example>")).state
  const withRecipient = step(withMail, line("RCPT TO:<alice@example.test>")).state

  const table: ReadonlyArray<readonly [string, Machine.State, string, boolean]> = [
    ["EHLO", afterGreeting, "EHLO client.example", true],
    ["HELO", afterGreeting, "HELO client.example", true],
    ["NOOP", afterEhlo, "NOOP", true],
    ["QUIT", afterEhlo, "QUIT", true],
    ["VRFY", afterEhlo, "VRFY alice", true],
    ["DATA", withRecipient, "DATA", true],
    ["MAIL", afterEhlo, "MAIL FROM:<a@b.example>", false],
    ["RCPT", withMail, "RCPT TO:<alice@example.test>", false],
    ["RSET", withMail, "RSET", false],
    ["BDAT (the reply comes at the chunk's end)", withRecipient, "BDAT 10 LAST", false],
    ["an unknown command", afterEhlo, "FROB", false]
  ]

  for (const [name, state, text, flush] of table) {
    it(`${name} ${flush ? "ends" : "does not end"} a group: its replies are ${flush ? "written at once" : "held for the group"}`, () => {
      const next = step(state, line(text))
      assert.strictEqual(next.flush, flush)
    })
  }
})
