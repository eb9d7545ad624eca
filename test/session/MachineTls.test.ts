/**
 * The session machine's TLS: STARTTLS (RFC 3207) on the four listener levels, implicit TLS,
 * the reset after the handshake, the `encrypt` level's refusals, and plaintext that must never
 * be executed inside TLS (CVE-2011-0411). Table-driven, in the style of Machine.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import type * as Event from "../../src/log/Event.ts"
import * as Machine from "../../src/session/Machine.ts"
import * as Reply from "../../src/session/Reply.ts"
import { tlsFacts } from "../log/EventSamples.ts"
import { step } from "../support/MachineDrive.ts"
import { render } from "../support/MachineRender.ts"
import { settings } from "../support/Settings.ts"

// ---------------------------------------------------------------------------------------------
// Inputs

type Step = Machine.Input | string

const levels: ReadonlyArray<Event.Security> = ["none", "may", "encrypt", "implicit"]

const connect = (security: Event.Security, admission: Event.Admission = "ok"): Machine.Input => ({
  _tag: "Connected",
  admission,
  security,
  auth: false
})
const line = (text: string): Machine.Input => ({ _tag: "Line", text, flaw: undefined })
const end = (size: number): Machine.Input => ({ _tag: "ContentEnd", size, bareLineEnding: undefined })
const queued = (queueId: string): Machine.Input => ({ _tag: "Queued", queueId })
const shutdown: Machine.Input = { _tag: "Shutdown" }
const tlsFailed: Machine.Input = { _tag: "TlsFailed" }
const tlsRecord: Machine.Input = { _tag: "TlsRecord" }

const facts: Event.TlsFacts = tlsFacts
const secured: Machine.Input = { _tag: "TlsEstablished", facts }

const toInput = (s: Step): Machine.Input => (typeof s === "string" ? line(s) : s)

// ---------------------------------------------------------------------------------------------
// Outputs: each reply as it goes on the wire (without its final CRLF), other actions in brackets.


interface Conversation {
  readonly state: Machine.State
  readonly log: ReadonlyArray<string>
  /** The last step, for its `flush`. */
  readonly last: Machine.Step | undefined
}

const run = (state: Machine.State, inputs: ReadonlyArray<Step>): Conversation => {
  let current = state
  let last: Machine.Step | undefined
  const log: Array<string> = []
  for (const input of inputs) {
    last = step(current, toInput(input))
    current = last.state
    log.push(...last.actions.map(render))
  }
  return { state: current, log, last }
}

const greeting = "220 mx.example.test ESMTP Postern"

/**
 * The state after an accepted connection on `level`, with the greeting checked: plaintext
 * levels greet at once; implicit TLS starts the handshake and greets after it.
 */
const opened = (level: Event.Security, s: Event.MachineSettings = settings): Machine.State => {
  if (level === "implicit") {
    const c = run(Machine.initial(s), [connect(level), secured])
    assert.deepStrictEqual(c.log, ["[start tls]", greeting])
    return c.state
  }
  const c = run(Machine.initial(s), [connect(level)])
  assert.deepStrictEqual(c.log, [greeting])
  return c.state
}

/** A conversation after an accepted connection on `level` (greeting and, for implicit, handshake left out). */
const talk = (level: Event.Security, inputs: ReadonlyArray<Step>, s: Event.MachineSettings = settings): Conversation =>
  run(opened(level, s), inputs)

/** The state after EHLO, STARTTLS and a successful handshake on a STARTTLS level. */
const afterStartTls = (level: "may" | "encrypt", s: Event.MachineSettings = settings): Machine.State => {
  const c = talk(level, [EHLO, "STARTTLS", secured], s)
  assert.deepStrictEqual(c.log, [ehloWithStartTls, readyTls, "[start tls]"])
  return c.state
}

const ehlo = (startTls: boolean): string =>
  [
    "250-mx.example.test",
    "250-PIPELINING",
    "250-SIZE 1000",
    ...(startTls ? ["250-STARTTLS"] : []),
    "250-8BITMIME",
    "250-ENHANCEDSTATUSCODES",
    "250-SMTPUTF8",
    "250 CHUNKING"
  ].join("\r\n")
const ehloWithStartTls = ehlo(true)
const ehloPlain = ehlo(false)

const readyTls = "220 2.0.0 Ready to start TLS"
const tlsActive = "554 5.5.1 Error: TLS already active"
const tlsInTransaction = "503 5.5.1 Error: MAIL transaction in progress"
const notImplemented = "502 5.5.1 Error: command not implemented"
const startTlsSyntax = "501 5.5.4 Syntax: STARTTLS"
const mustStartTls = "530 5.7.0 Must issue a STARTTLS command first"
const tlsRecordReply = "500 5.5.1 Error: TLS handshake on a plaintext connection; use STARTTLS or the implicit TLS port"
const needHelo = "503 5.5.1 Error: send HELO/EHLO first"
const tooManyErrors = "421 4.7.0 mx.example.test Error: too many errors"
const shuttingDown = "421 4.3.2 mx.example.test Service shutting down"
const ok = "250 2.0.0 Ok"
const mailOk = "250 2.1.0 Ok"
const rcptOk = "250 2.1.5 Ok"
const startData = "354 End data with <CR><LF>.<CR><LF>"

const EHLO = "EHLO client.test"
const FROM = "MAIL FROM:<sender@remote.test>"
const TO = "RCPT TO:<alice@example.test>"
const commit = "[commit <sender@remote.test> -> <alice@example.test>]"

/** Whether a Reply action is an EHLO reply that lists STARTTLS. */
const advertises = (log: ReadonlyArray<string>): boolean => log.some((l) => l.split("\r\n").includes("250-STARTTLS"))

// ---------------------------------------------------------------------------------------------

describe("MachineTls: connection", () => {
  for (const level of ["none", "may", "encrypt"] as const) {
    it(`${level}: Connected greets in plaintext and records the level`, () => {
      const c = run(Machine.initial(settings), [connect(level)])
      assert.deepStrictEqual(c.log, [greeting])
      assert.strictEqual(c.state.security, level)
      assert.isUndefined(c.state.tls)
      assert.strictEqual(c.state.reading._tag, "Commands")
    })
  }

  it("implicit: Connected says nothing and starts the handshake; TlsEstablished greets", () => {
    const connected = run(Machine.initial(settings), [connect("implicit")])
    assert.deepStrictEqual(connected.log, ["[start tls]"])
    assert.isFalse(connected.state.greeted)
    assert.strictEqual(connected.state.reading._tag, "Handshake")
    assert.strictEqual(Machine.timeoutPhase(connected.state), "command")
    const established = run(connected.state, [secured])
    assert.deepStrictEqual(established.log, [greeting])
    assert.isTrue(established.state.greeted)
    assert.deepStrictEqual(established.state.tls, facts)
    assert.strictEqual(established.state.reading._tag, "Commands")
  })

  const refusals: ReadonlyArray<readonly [Event.Admission, string]> = [
    ["global-limit", "[close admission]"],
    ["client-limit", "[close admission]"],
    ["shutdown", "[close shutdown]"]
  ]
  for (const [admission, closed] of refusals) {
    it(`implicit: admission ${admission} closes without any reply (a TLS client could not read one)`, () => {
      const c = run(Machine.initial(settings), [connect("implicit", admission), secured, EHLO])
      assert.deepStrictEqual(c.log, [closed])
      assert.isTrue(c.state.closed)
    })
  }
})

describe("MachineTls: EHLO advertises STARTTLS exactly on may and encrypt, before TLS", () => {
  const before: ReadonlyArray<readonly [Event.Security, boolean]> = [
    ["none", false],
    ["may", true],
    ["encrypt", true]
  ]
  for (const [level, offered] of before) {
    it(`${level}: ${offered ? "offered" : "not offered"} before TLS`, () => {
      const c = talk(level, [EHLO])
      assert.deepStrictEqual(c.log, [offered ? ehloWithStartTls : ehloPlain])
      assert.strictEqual(advertises(c.log), offered)
    })
  }

  for (const level of ["may", "encrypt"] as const) {
    it(`${level}: not offered after STARTTLS, to EHLO again or later`, () => {
      const c = run(afterStartTls(level), [EHLO, "RSET", EHLO])
      assert.deepStrictEqual(c.log, [ehloPlain, ok, ehloPlain])
    })
  }

  it("implicit: never offered", () => {
    const c = talk("implicit", [EHLO, EHLO])
    assert.deepStrictEqual(c.log, [ehloPlain, ehloPlain])
  })

  it("HELO lists nothing on any level", () => {
    for (const level of levels) assert.deepStrictEqual(talk(level, ["HELO client.test"]).log, ["250 mx.example.test"], level)
  })
})

describe("MachineTls: STARTTLS", () => {
  for (const level of ["may", "encrypt"] as const) {
    it(`${level}: 220 2.0.0, a StartTls action, the group flushed, the handshake phase`, () => {
      const c = talk(level, [EHLO, "STARTTLS"])
      assert.deepStrictEqual(c.log, [ehloWithStartTls, readyTls, "[start tls]"])
      assert.isTrue(c.last?.flush)
      assert.strictEqual(c.state.reading._tag, "Handshake")
      assert.strictEqual(Machine.timeoutPhase(c.state), "command")
      assert.isUndefined(c.state.tls)
    })

    it(`${level}: the verb is case-insensitive`, () => {
      assert.deepStrictEqual(talk(level, [EHLO, "starttls"]).log, [ehloWithStartTls, readyTls, "[start tls]"])
    })
  }

  const cases: ReadonlyArray<{ readonly name: string; readonly state: () => Machine.State; readonly inputs: ReadonlyArray<Step>; readonly log: ReadonlyArray<string> }> = [
    { name: "none: not offered, 502 5.5.1", state: () => opened("none"), inputs: [EHLO, "STARTTLS"], log: [ehloPlain, notImplemented] },
    { name: "may: with an argument, 501 5.5.4", state: () => opened("may"), inputs: [EHLO, "STARTTLS now"], log: [ehloWithStartTls, startTlsSyntax] },
    { name: "encrypt: with an argument, 501 5.5.4", state: () => opened("encrypt"), inputs: [EHLO, "STARTTLS x"], log: [ehloWithStartTls, startTlsSyntax] },
    { name: "none: with an argument, 501 5.5.4", state: () => opened("none"), inputs: ["STARTTLS x"], log: [startTlsSyntax] },
    { name: "may: inside TLS, 554 5.5.1", state: () => afterStartTls("may"), inputs: [EHLO, "STARTTLS"], log: [ehloPlain, tlsActive] },
    { name: "encrypt: inside TLS, 554 5.5.1", state: () => afterStartTls("encrypt"), inputs: ["STARTTLS"], log: [tlsActive] },
    { name: "implicit: inside TLS, 554 5.5.1", state: () => opened("implicit"), inputs: [EHLO, "STARTTLS"], log: [ehloPlain, tlsActive] },
    { name: "implicit: with an argument inside TLS, 501 5.5.4", state: () => opened("implicit"), inputs: ["STARTTLS x"], log: [startTlsSyntax] },
    {
      name: "may: during a MAIL transaction, 503 5.5.1, and the transaction goes on",
      state: () => opened("may"),
      inputs: [EHLO, FROM, "STARTTLS", TO],
      log: [ehloWithStartTls, mailOk, tlsInTransaction, rcptOk]
    },
    {
      name: "may: during a transaction with recipients, 503 5.5.1",
      state: () => opened("may"),
      inputs: [EHLO, FROM, TO, "STARTTLS", "DATA"],
      log: [ehloWithStartTls, mailOk, rcptOk, tlsInTransaction, startData, "[read data]"]
    },
    {
      name: "may: after RSET the transaction is gone and STARTTLS is accepted",
      state: () => opened("may"),
      inputs: [EHLO, FROM, "RSET", "STARTTLS"],
      log: [ehloWithStartTls, mailOk, ok, readyTls, "[start tls]"]
    }
  ]
  for (const c of cases) {
    it(c.name, () => {
      const result = run(c.state(), c.inputs)
      assert.deepStrictEqual(result.log, c.log)
      assert.strictEqual(result.state.reading._tag === "Handshake", c.log.includes("[start tls]"))
    })
  }

  for (const [name, state] of [
    ["none", () => opened("none")],
    ["may inside TLS", () => afterStartTls("may")],
    ["implicit", () => opened("implicit")]
  ] as const) {
    it(`${name}: refusals of STARTTLS count toward the error limit`, () => {
      const c = run(state(), ["STARTTLS", "STARTTLS", "STARTTLS now", "STARTTLS", "STARTTLS", "NOOP"])
      assert.strictEqual(c.log.length, 7)
      assert.deepStrictEqual(c.log.slice(-2), [tooManyErrors, "[close error-limit]"])
      assert.isTrue(c.state.closed)
    })
  }
})

describe("MachineTls: after the handshake the session starts over (RFC 3207 4.2)", () => {
  for (const level of ["may", "encrypt"] as const) {
    it(`${level}: TlsEstablished says nothing, keeps the facts and forgets HELO`, () => {
      const before = talk(level, [EHLO, "STARTTLS"])
      assert.deepStrictEqual(before.state.helo, { extended: true, domain: "client.test" })
      const after = run(before.state, [secured])
      assert.deepStrictEqual(after.log, [])
      assert.deepStrictEqual(after.state.tls, facts)
      assert.isUndefined(after.state.helo)
      assert.isUndefined(after.state.transaction)
      assert.strictEqual(after.state.reading._tag, "Commands")
      assert.isTrue(after.state.greeted)
    })

    it(`${level}: MAIL needs HELO/EHLO again`, () => {
      const c = run(afterStartTls(level), [FROM, TO, "HELO client.test", FROM])
      assert.deepStrictEqual(c.log, [needHelo, "503 5.5.1 Error: need MAIL command", "250 mx.example.test", mailOk])
    })

    it(`${level}: a full transaction commits inside TLS`, () => {
      const c = run(afterStartTls(level), [EHLO, FROM, TO, "DATA", end(120), queued("Q1"), "QUIT"])
      assert.deepStrictEqual(c.log, [
        ehloPlain,
        mailOk,
        rcptOk,
        startData,
        "[read data]",
        commit,
        "250 2.0.0 Ok: queued as Q1",
        "221 2.0.0 Bye",
        "[close quit]"
      ])
    })

    it(`${level}: BDAT works inside TLS`, () => {
      const c = run(afterStartTls(level), [EHLO, FROM, TO, "BDAT 7 LAST", end(7), queued("Q2")])
      assert.deepStrictEqual(c.log, [ehloPlain, mailOk, rcptOk, "[read bdat 7 first keep]", commit, "250 2.0.0 Ok: queued as Q2"])
    })
  }

  it("implicit: a full transaction after the greeting", () => {
    const c = talk("implicit", [EHLO, FROM, TO, "DATA", end(10), queued("Q3")])
    assert.deepStrictEqual(c.log, [ehloPlain, mailOk, rcptOk, startData, "[read data]", commit, "250 2.0.0 Ok: queued as Q3"])
  })

  it("may: a plaintext transaction needs no STARTTLS", () => {
    const c = talk("may", [EHLO, FROM, TO, "DATA", end(10), queued("Q4")])
    assert.deepStrictEqual(c.log, [ehloWithStartTls, mailOk, rcptOk, startData, "[read data]", commit, "250 2.0.0 Ok: queued as Q4"])
  })

  it("none: a plaintext transaction", () => {
    const c = talk("none", [EHLO, FROM, TO, "DATA", end(10), queued("Q5")])
    assert.deepStrictEqual(c.log, [ehloPlain, mailOk, rcptOk, startData, "[read data]", commit, "250 2.0.0 Ok: queued as Q5"])
  })

  it("a TlsEstablished with no handshake under way changes nothing", () => {
    for (const level of ["none", "may", "encrypt"] as const) {
      const state = run(opened(level), [EHLO, FROM]).state
      const next = step(state, secured)
      assert.deepStrictEqual(next.actions, [], level)
      assert.strictEqual(next.state, state, level)
    }
    const inside = opened("implicit")
    const again = step(inside, secured)
    assert.deepStrictEqual(again.actions, [])
    assert.strictEqual(again.state, inside)
  })
})

describe("MachineTls: the encrypt level before STARTTLS", () => {
  const refused: ReadonlyArray<string> = [
    FROM,
    "MAIL FROM:<>",
    TO,
    "DATA",
    "AUTH PLAIN dGVzdA==",
    "VRFY alice",
    "EXPN staff"
  ]
  for (const text of refused) {
    it(`${text}: 530 5.7.0, and nothing is read or opened`, () => {
      const c = talk("encrypt", [EHLO, text])
      assert.deepStrictEqual(c.log, [ehloWithStartTls, mustStartTls])
      assert.isUndefined(c.state.transaction)
      assert.strictEqual(c.state.reading._tag, "Commands")
      assert.strictEqual(c.state.errors, 1)
    })
  }

  for (const command of ["BDAT 10", "BDAT 10 LAST"]) {
    it(`${command}: its chunk is read and dropped (RFC 3030: it follows unasked), then 530 5.7.0`, () => {
      const c = talk("encrypt", [EHLO, command, end(10), "NOOP"])
      assert.deepStrictEqual(c.log, [ehloWithStartTls, "[read bdat 10 discard]", mustStartTls, ok])
      assert.isUndefined(c.state.transaction)
      assert.strictEqual(c.state.reading._tag, "Commands")
      assert.strictEqual(c.state.errors, 1)
    })
  }

  it("530 comes before any sequencing error (MAIL before HELO)", () => {
    assert.deepStrictEqual(talk("encrypt", [FROM, TO]).log, [mustStartTls, mustStartTls])
  })

  const allowed: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
    [EHLO, [ehloWithStartTls]],
    ["HELO client.test", ["250 mx.example.test"]],
    ["NOOP", [ok]],
    ["RSET", [ok]],
    ["HELP", ["214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP; see RFC 5321"]],
    ["STARTTLS", [readyTls, "[start tls]"]],
    ["QUIT", ["221 2.0.0 Bye", "[close quit]"]]
  ]
  for (const [text, log] of allowed) {
    it(`${text}: allowed`, () => {
      const c = talk("encrypt", [text])
      assert.deepStrictEqual(c.log, log)
      assert.strictEqual(c.state.errors, 0)
    })
  }

  it("530s count toward the error limit: the last one, then 421 4.7.0 and Close", () => {
    const c = talk("encrypt", [EHLO, FROM, TO, "DATA", "AUTH PLAIN dGVzdA==", "VRFY alice", "NOOP"])
    assert.deepStrictEqual(c.log, [
      ehloWithStartTls,
      mustStartTls,
      mustStartTls,
      mustStartTls,
      mustStartTls,
      mustStartTls,
      tooManyErrors,
      "[close error-limit]"
    ])
    assert.isTrue(c.state.closed)
  })

  it("EXPN and BDAT refusals count too", () => {
    const c = talk("encrypt", ["EXPN staff", "BDAT 1", end(1), "EXPN x"], { ...settings, maxErrors: 3 })
    assert.deepStrictEqual(c.log, [mustStartTls, "[read bdat 1 discard]", mustStartTls, mustStartTls, tooManyErrors, "[close error-limit]"])
  })

  it("after STARTTLS everything is allowed", () => {
    const c = run(afterStartTls("encrypt"), [EHLO, "VRFY alice", "AUTH PLAIN dGVzdA==", "EXPN staff", FROM, TO])
    assert.deepStrictEqual(c.log, [
      ehloPlain,
      "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
      "503 5.5.1 Error: authentication not enabled",
      notImplemented,
      mailOk,
      rcptOk
    ])
  })

  it("may and none refuse nothing for want of TLS", () => {
    for (const level of ["none", "may"] as const) {
      const c = talk(level, [EHLO, "VRFY alice", FROM, TO])
      assert.deepStrictEqual(c.log.slice(1), [
        "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
        mailOk,
        rcptOk
      ], level)
    }
  })
})

describe("MachineTls: during the handshake", () => {
  const handshaking = (level: "may" | "encrypt" | "implicit"): Machine.State =>
    level === "implicit"
      ? run(Machine.initial(settings), [connect("implicit")]).state
      : talk(level, [EHLO, "STARTTLS"]).state

  for (const level of ["may", "encrypt", "implicit"] as const) {
    it(`${level}: lines are ignored (plaintext pipelined after STARTTLS is never executed)`, () => {
      const state = handshaking(level)
      for (const text of ["NOOP", EHLO, FROM, "QUIT", "STARTTLS", "DATA"]) {
        const next = step(state, line(text))
        assert.deepStrictEqual(next.actions, [], text)
        assert.strictEqual(next.state, state, text)
      }
    })

    it(`${level}: lines ignored during the handshake leave no trace after it`, () => {
      const c = run(handshaking(level), [FROM, TO, "DATA", secured, TO])
      assert.deepStrictEqual(c.log, [...(level === "implicit" ? [greeting] : []), "503 5.5.1 Error: need MAIL command"])
    })

    it(`${level}: TlsFailed closes with tls-failed and no reply`, () => {
      const c = run(handshaking(level), [tlsFailed, "NOOP", secured])
      assert.deepStrictEqual(c.log, ["[close tls-failed]"])
      assert.isTrue(c.state.closed)
    })

    it(`${level}: Shutdown waits for the handshake, then 421 4.3.2 and Close`, () => {
      const during = run(handshaking(level), [shutdown])
      assert.deepStrictEqual(during.log, [])
      assert.isTrue(during.state.draining)
      const after = run(during.state, [secured, "NOOP"])
      assert.deepStrictEqual(after.log, [shuttingDown, "[close shutdown]"])
      assert.isTrue(after.state.closed)
    })

    it(`${level}: Shutdown during the handshake, then TlsFailed: closed with tls-failed`, () => {
      const c = run(handshaking(level), [shutdown, tlsFailed])
      assert.deepStrictEqual(c.log, ["[close tls-failed]"])
    })

    it(`${level}: content ends and queue results are ignored`, () => {
      const state = handshaking(level)
      for (const input of [end(10), queued("Q"), { _tag: "QueueFailed", reason: "x" } as const]) {
        const next = step(state, input)
        assert.deepStrictEqual(next.actions, [], input._tag)
        assert.strictEqual(next.state, state, input._tag)
      }
    })
  }
})

describe("MachineTls: a TLS record on a plaintext connection", () => {
  for (const level of ["none", "may", "encrypt"] as const) {
    it(`${level}: 500 5.5.1 and Close(protocol), nothing after`, () => {
      const c = talk(level, [tlsRecord, "NOOP", secured])
      assert.deepStrictEqual(c.log, [tlsRecordReply, "[close protocol]"])
      assert.isTrue(c.state.closed)
    })
  }

  it("in the middle of a transaction, too", () => {
    const c = talk("may", [EHLO, FROM, TO, tlsRecord])
    assert.deepStrictEqual(c.log, [ehloWithStartTls, mailOk, rcptOk, tlsRecordReply, "[close protocol]"])
  })
})

describe("MachineTls: TlsFailed", () => {
  it("closes with tls-failed and no reply; every later input is ignored", () => {
    const failed = run(talk("may", [EHLO, "STARTTLS"]).state, [tlsFailed]).state
    assert.isTrue(failed.closed)
    for (const input of [line("NOOP"), secured, tlsFailed, tlsRecord, shutdown, connect("may")]) {
      const next = step(failed, input)
      assert.deepStrictEqual(next.actions, [])
      assert.strictEqual(next.state, failed)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Property: random conversations with TLS

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

const pick = <A>(random: () => number, items: ReadonlyArray<A>): A => {
  const item = items[Math.floor(random() * items.length)]
  if (item === undefined) throw new Error("empty choice")
  return item
}

const vocabulary: ReadonlyArray<string> = [
  EHLO,
  "HELO client.test",
  "STARTTLS",
  "STARTTLS",
  "starttls",
  "STARTTLS now",
  FROM,
  "MAIL FROM:<>",
  TO,
  "RCPT TO:<any@sink.test>",
  "RCPT TO:<x@remote.test>",
  "DATA",
  "BDAT 10",
  "BDAT 3 LAST",
  "RSET",
  "NOOP",
  "HELP",
  "VRFY alice",
  "EXPN list",
  "AUTH PLAIN dGVzdA==",
  "QUIT",
  "FOO",
  ""
]

/**
 * Inputs as the session could give them. While a handshake is under way the session reads
 * nothing through the framer and runs no command timer, so the only inputs then are the
 * handshake's outcome, a shutdown, and (to test that they are ignored) plaintext lines.
 */
const randomInput = (random: () => number, state: Machine.State): Machine.Input => {
  const r = random()
  if (state.reading._tag === "Handshake") {
    if (r < 0.45) return secured
    if (r < 0.6) return tlsFailed
    if (r < 0.7) return shutdown
    return line(pick(random, vocabulary))
  }
  if (r < 0.02) return shutdown
  if (r < 0.03) return tlsRecord
  if (r < 0.05) return secured
  if (r < 0.06) return tlsFailed
  if (r < 0.07) return { _tag: "TimedOut", phase: Machine.timeoutPhase(state) }
  switch (state.reading._tag) {
    case "Data":
    case "Bdat":
      if (random() < 0.85) return end(Math.floor(random() * 1200))
      break
    case "Queueing":
      if (random() < 0.85) return queued(`Q${Math.floor(random() * 1000)}`)
      break
    case "Commands":
      break
  }
  return line(pick(random, vocabulary))
}

const isHelo = (input: Machine.Input): boolean => input._tag === "Line" && /^\s*(EHLO|HELO)\s/i.test(input.text)

/** Fails with a message built only when the condition does not hold. */
const check = (condition: boolean, message: () => string): void => {
  if (!condition) assert.fail(message())
}

describe("MachineTls: random conversations", () => {
  it("replies carry enhanced codes, StartTls only before TLS, nothing in plaintext on implicit, no STARTTLS inside TLS", () => {
    const runs = 4000
    const seen = new Set<string>()
    for (let seed = 1; seed <= runs; seed++) {
      const random = prng(seed)
      const level = pick(random, levels)
      const admission = random() < 0.9 ? "ok" : pick(random, ["global-limit", "client-limit", "shutdown"] as const)
      let state = Machine.initial({ ...settings, maxErrors: pick(random, [3, 5, 1000]) })
      const length = 1 + Math.floor(random() * 50)
      for (let i = 0; i < length; i++) {
        const input = i === 0 ? connect(level, admission) : randomInput(random, state)
        const next = step(state, input)
        const where = () => `seed ${seed} level ${level} step ${i} input ${JSON.stringify(input)} actions ${JSON.stringify(next.actions.map(render))}`
        const replies = next.actions.filter((a): a is Extract<Machine.Action, { _tag: "Reply" }> => a._tag === "Reply")
        for (const action of next.actions) {
          seen.add(action._tag === "Close" ? `close ${action.reason}` : action._tag === "Reply" ? `${action.reply.code}` : action._tag)
        }
        for (const { reply } of replies) {
          if (reply.enhanced === undefined) {
            const greetingReply = reply.code === 220 && (input._tag === "Connected" || input._tag === "TlsEstablished")
            check(greetingReply || reply.code === 354 || (reply.code === 250 && isHelo(input)), () => `reply ${reply.code} without enhanced code: ${where()}`)
          } else {
            check(/^[245]\.\d{1,3}\.\d{1,3}$/.test(reply.enhanced), () => `enhanced ${reply.enhanced}: ${where()}`)
            check(reply.enhanced.charAt(0) === String(reply.code).charAt(0), () => `class of ${reply.code} ${reply.enhanced}: ${where()}`)
          }
          if (state.tls !== undefined || next.state.tls !== undefined) {
            check(!reply.lines.includes("STARTTLS"), () => `STARTTLS advertised inside TLS: ${where()}`)
          }
        }
        if (next.actions.some((a) => a._tag === "StartTls")) {
          check(state.tls === undefined, () => `StartTls inside TLS: ${where()}`)
          check(level !== "none", () => `StartTls on a none listener: ${where()}`)
          check(next.state.reading._tag === "Handshake", () => `StartTls without the handshake phase: ${where()}`)
        }
        if (state.reading._tag === "Handshake" && input._tag === "Line") {
          check(next.actions.length === 0 && next.state === state, () => `a line was acted on during the handshake: ${where()}`)
        }
        if (level === "implicit" && next.state.tls === undefined) {
          check(replies.length === 0, () => `plaintext reply on an implicit TLS listener: ${where()}`)
        }
        if (level === "encrypt" && state.tls === undefined) {
          check(
            !next.actions.some((a) => a._tag === "ReadData" || (a._tag === "ReadBdat" && a.keep) || a._tag === "Commit"),
            () => `content accepted before TLS on an encrypt listener: ${where()}`
          )
        }
        state = next.state
      }
    }
    for (const expected of ["StartTls", "Commit", "close tls-failed", "close protocol", "close shutdown", "close error-limit", "220", "530", "554", "503", "501", "502", "500"]) {
      assert.isTrue(seen.has(expected), `never reached: ${expected}`)
    }
  })
})

describe("MachineTls: isSecured", () => {
  it("is false before the handshake and true after it, on every level that has TLS", () => {
    for (const level of ["may", "encrypt"] as const) {
      const before = talk(level, [EHLO, "STARTTLS"])
      assert.isFalse(Machine.isSecured(before.state), level)
      assert.isTrue(Machine.isSecured(run(afterStartTls(level), []).state), level)
    }
  })
})
