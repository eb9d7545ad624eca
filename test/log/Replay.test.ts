import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Event from "../../src/log/Event.ts"
import * as Replay from "../../src/log/Replay.ts"
import * as Builtins from "../../src/policy/Builtins.ts"
import * as Policy from "../../src/policy/Policy.ts"
import * as Rule from "../../src/policy/Rule.ts"
import * as Headers from "../../src/session/Headers.ts"
import * as Machine from "../../src/session/Machine.ts"
import * as PolicyContext from "../../src/session/PolicyContext.ts"
import * as Reply from "../../src/session/Reply.ts"
import { step } from "../support/MachineDrive.ts"
import { samples, tlsFacts } from "./EventSamples.ts"
import { settings } from "../support/Settings.ts"

const digest = "d1"
const start = Date.UTC(2024, 0, 2, 3, 4, 5, 6)
const peer = { address: "192.0.2.7", port: 40512 }
const local = { address: "127.0.0.1", port: 25 }

type Step = Machine.Input | string

const line = (text: string): Machine.Input => ({ _tag: "Line", text, flaw: undefined })
const end = (size: number, bareLineEnding?: "lf" | "cr"): Machine.Input => ({ _tag: "ContentEnd", size, bareLineEnding })
const queued = (queueId: string): Machine.Input => ({ _tag: "Queued", queueId })

/**
 * Runs the machine over the inputs and records events the way Session.ts does: the input's own
 * event before the step (MessageQueued stands for the queue's record), a ReplySent per reply,
 * and SessionClosed when the machine closes.
 */
const record = (
  session: string,
  inputs: ReadonlyArray<Step>,
  options: {
    readonly admission?: Event.Admission
    readonly settings?: Event.MachineSettings
    readonly at?: number
    /** The live rules (default: none). */
    readonly policy?: Policy.PolicyShape
  } = {}
): ReadonlyArray<Event.Event> => {
  let at = options.at ?? start
  const events: Array<Event.Event> = []
  const admission = options.admission ?? "ok"
  events.push(Event.make("SessionOpened", { session, at, settingsDigest: digest, role: "smtp", peer, local, admission }))
  let state = Machine.initial(options.settings ?? settings)
  let envelope: Event.Envelope | undefined
  let closed: Event.SessionCloseReason | undefined
  const all: ReadonlyArray<Machine.Input> = [{ _tag: "Connected", admission, security: "none", auth: false }, ...inputs.map((s) => (typeof s === "string" ? line(s) : s))]
  for (const input of all) {
    at += 1
    switch (input._tag) {
      case "Connected":
        break
      case "Line":
        events.push(
          Event.make("CommandReceived", { session, at, line: input.text, ...(input.flaw === undefined ? {} : { flaw: input.flaw }) })
        )
        break
      case "LineTooLong":
      case "LineFlood":
        events.push(Event.make("LineRejected", { session, at, reason: input._tag === "LineTooLong" ? "too-long" : "flood" }))
        break
      case "ContentEnd":
        events.push(
          Event.make("ContentReceived", {
            session,
            at,
            size: input.size,
            ...(input.bareLineEnding === undefined ? {} : { bareLineEnding: input.bareLineEnding })
          })
        )
        break
      case "Queued":
        events.push(
          Event.make("MessageQueued", {
            session,
            at,
            queueId: input.queueId,
            envelope: envelope ?? { from: "", to: [], smtputf8: false },
            size: 10,
            digest: "0123456789abcdef0123456789abcdef",
            spool: { segment: "seg-1", extents: [{ offset: 0, length: 10 }] }
          })
        )
        break
      case "QueueFailed":
        events.push(Event.make("QueueFailed", { session, at, reason: input.reason }))
        break
      case "TimedOut":
        events.push(Event.make("TimedOut", { session, at, phase: input.phase }))
        break
      case "Shutdown":
        events.push(Event.make("ShutdownRequested", { session, at }))
        break
    }
    const next = step(state, input, {
      ...(options.policy === undefined ? {} : { policy: options.policy }),
      onDecision: (stage, decision) => {
        const input = PolicyContext.decidedInput(stage, decision)
        const reply = input.reply
        events.push(Event.make("PolicyDecided", {
          session,
          at,
          stage,
          verdict: input.verdict,
          ...(decision.rule === undefined ? {} : { rule: decision.rule }),
          ...(reply === undefined ? {} : { code: reply.code, enhanced: reply.enhanced ?? "", text: reply.lines[0] ?? "" })
        }))
      }
    })
    state = next.state
    for (const action of next.actions) {
      if (action._tag === "Reply") {
        const { code, enhanced, lines } = action.reply
        events.push(Event.make("ReplySent", { session, at, code, lines, ...(enhanced === undefined ? {} : { enhanced }) }))
      }
      if (action._tag === "Commit") envelope = action.envelope
      if (action._tag === "Close") closed = action.reason
    }
    if (closed !== undefined) break
  }
  if (closed !== undefined) events.push(Event.make("SessionClosed", { session, at: at + 1, reason: closed }))
  return events
}

const conversation: ReadonlyArray<Step> = [
  "EHLO client.test",
  "MAIL FROM:<sender@remote.test>",
  "RCPT TO:<alice@example.test>",
  "RCPT TO:<carol@example.test>",
  "DATA",
  end(120),
  queued("Q1"),
  "MAIL FROM:<>",
  "RCPT TO:<Postmaster>",
  "BDAT 10",
  end(10),
  "BDAT 5 LAST",
  end(15),
  queued("Q2"),
  "FOO",
  { _tag: "Line", text: "NOOP", flaw: "bare-cr" },
  { _tag: "LineTooLong" },
  "QUIT"
]

const one = (events: ReadonlyArray<Event.Event>): Replay.RecordedSession => {
  const all = Replay.sessions(events)
  assert.strictEqual(all.length, 1)
  const session = all[0]
  if (session === undefined) throw new Error("no session")
  return session
}

/** Replaces the n-th ReplySent (0-based) with `f` of it. */
const alterReply = (
  events: ReadonlyArray<Event.Event>,
  n: number,
  f: (e: Event.ReplySent) => Event.Event | undefined
): ReadonlyArray<Event.Event> => {
  let seen = -1
  return events.flatMap((e) => {
    if (e._tag !== "ReplySent") return [e]
    seen++
    if (seen !== n) return [e]
    const altered = f(e)
    return altered === undefined ? [] : [altered]
  })
}

const replyCount = (events: ReadonlyArray<Event.Event>): number => events.filter((e) => e._tag === "ReplySent").length

describe("Replay.verify", () => {
  it("a recorded conversation replays with zero mismatches", () => {
    const events = record("s1", conversation)
    const result = Replay.verify(one(events), settings)
    assert.deepStrictEqual(result, { session: "s1", replies: replyCount(events), mismatches: [], skipped: undefined })
    assert.strictEqual(result.replies, 15)
  })

  it("replays from the encoded form the log stores", () => {
    const events = record("s1", conversation).map((e) => Event.decode(Event.encode(e)))
    assert.deepStrictEqual(Replay.verify(one(events), settings).mismatches, [])
  })

  it("sessions refused at admission, timed out and shut down replay too", () => {
    const cases: ReadonlyArray<ReadonlyArray<Event.Event>> = [
      record("a", ["EHLO x"], { admission: "global-limit" }),
      record("b", ["EHLO x"], { admission: "shutdown" }),
      record("c", ["EHLO x", "MAIL FROM:<>", "RCPT TO:<bob@example.test>", "DATA", { _tag: "TimedOut", phase: "data-block" }]),
      record("d", ["EHLO x", "MAIL FROM:<>", "RCPT TO:<bob@example.test>", "DATA", { _tag: "Shutdown" }, end(9), queued("Q")]),
      record("e", ["FOO", "FOO", "FOO", "FOO", "FOO"]),
      record("f", [{ _tag: "LineFlood" }]),
      record("g", ["EHLO x", "MAIL FROM:<>", "RCPT TO:<bob@example.test>", "DATA", end(9), { _tag: "QueueFailed", reason: "disk" }, "QUIT"])
    ]
    for (const events of cases) {
      const result = Replay.verify(one(events), settings)
      assert.deepStrictEqual(result.mismatches, [], result.session)
      assert.isAbove(result.replies, 0)
      assert.strictEqual(events.at(-1)?._tag, "SessionClosed", result.session)
    }
  })

  for (const index of [0, 1, 5, 14]) {
    it(`one altered reply (#${index}) is exactly one mismatch at its index`, () => {
      const events = record("s1", conversation)
      const original = events.filter((e): e is Event.ReplySent => e._tag === "ReplySent")[index]
      if (original === undefined) throw new Error("no such reply")
      const altered = alterReply(events, index, (e) => Event.make("ReplySent", { ...e, code: 451, enhanced: "4.3.0", lines: ["Altered"] }))
      const result = Replay.verify(one(altered), settings)
      assert.strictEqual(result.replies, 15)
      assert.deepStrictEqual(result.mismatches, [
        {
          session: "s1",
          index,
          recorded: "451 4.3.0 Altered\r\n",
          replayed: Reply.format(Reply.make(original.code, original.enhanced, ...original.lines))
        }
      ])
    })
  }

  it("an altered enhanced code alone is a mismatch", () => {
    const events = alterReply(record("s1", conversation), 2, (e) => Event.make("ReplySent", { ...e, enhanced: "2.0.0" }))
    const result = Replay.verify(one(events), settings)
    assert.deepStrictEqual(result.mismatches.map((m) => [m.index, m.recorded, m.replayed]), [
      [2, "250 2.0.0 Ok\r\n", "250 2.1.0 Ok\r\n"]
    ])
  })

  it("a reply missing from the log at the end is a mismatch with nothing recorded", () => {
    const events = alterReply(record("s1", conversation), 14, () => undefined)
    const result = Replay.verify(one(events), settings)
    assert.strictEqual(result.replies, 14)
    assert.deepStrictEqual(result.mismatches, [
      { session: "s1", index: 14, recorded: undefined, replayed: "221 2.0.0 Bye\r\n" }
    ])
  })

  it("a reply the machine would not give is a mismatch with nothing replayed", () => {
    const events = [
      ...record("s1", ["QUIT"]),
      Event.make("ReplySent", { session: "s1", at: start + 99, code: 250, enhanced: "2.0.0", lines: ["Ok"] })
    ]
    assert.deepStrictEqual(Replay.verify(one(events), settings).mismatches, [
      { session: "s1", index: 2, recorded: "250 2.0.0 Ok\r\n", replayed: undefined }
    ])
  })

  it("other rules show what they would have done", () => {
    const events = record("s1", conversation)
    const stricter = { ...settings, localDomains: [{ domain: "example.test", users: ["bob"], transport: "maildir" as const }] }
    const result = Replay.verify(one(events), stricter)
    const first = result.mismatches[0]
    assert.deepStrictEqual(first, {
      session: "s1",
      index: 3,
      recorded: "250 2.1.5 Ok\r\n",
      replayed: "550 5.1.1 <alice@example.test>: Recipient address rejected: User unknown\r\n"
    })
  })

  it("a session without its settings snapshot is skipped", () => {
    const events = record("s1", conversation)
    assert.deepStrictEqual(Replay.verify(one(events), undefined), {
      session: "s1",
      replies: 0,
      mismatches: [],
      skipped: "settings snapshot not found"
    })
  })

  it("settings are found by the digest the session was opened with", () => {
    const events: ReadonlyArray<Event.Event> = [
      Event.make("SettingsRecorded", { at: start, digest: "old", settings: { ...settings, hostname: "old.example.test" } }),
      Event.make("SettingsRecorded", { at: start, digest, settings }),
      ...record("s1", conversation)
    ]
    const snapshots = Replay.settingsByDigest(events)
    assert.strictEqual(snapshots.size, 2)
    const session = one(events)
    const digestOf = session.opened?.settingsDigest
    assert.strictEqual(digestOf, digest)
    assert.deepStrictEqual(Replay.verify(session, digestOf === undefined ? undefined : snapshots.get(digestOf)).mismatches, [])
    assert.isAbove(Replay.verify(session, snapshots.get("old")).mismatches.length, 0)
    assert.isUndefined(snapshots.get("missing"))
  })

  it("random recorded sessions always replay identically", () => {
    const vocabulary = [
      "EHLO c",
      "HELO c",
      "MAIL FROM:<a@remote.test>",
      "MAIL FROM:<>",
      "RCPT TO:<alice@example.test>",
      "RCPT TO:<zed@example.test>",
      "RCPT TO:<x@remote.test>",
      "DATA",
      "BDAT 4",
      "BDAT 2 LAST",
      "RSET",
      "NOOP",
      "FOO",
      "VRFY a",
      "AUTH PLAIN"
    ]
    let seed = 12345
    const random = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      return seed / 4294967296
    }
    for (let run = 0; run < 300; run++) {
      const inputs: Array<Step> = []
      for (let i = 0; i < 30; i++) {
        const r = random()
        inputs.push(
          r < 0.15
            ? end(Math.floor(random() * 1200), r < 0.02 ? "lf" : undefined)
            : r < 0.22
            ? queued(`Q${run}-${i}`)
            : r < 0.24
            ? { _tag: "QueueFailed", reason: "x" }
            : vocabulary[Math.floor(random() * vocabulary.length)] ?? "NOOP"
        )
      }
      const events = record(`r${run}`, inputs)
      const result = Replay.verify(one(events), settings)
      assert.deepStrictEqual(result.mismatches, [], `run ${run}`)
      assert.strictEqual(result.replies, replyCount(events))
    }
  })
})

describe("Replay.sessions", () => {
  it("groups interleaved sessions in order of first appearance and skips events of no session", () => {
    const a = record("A", ["EHLO a", "QUIT"], { at: start })
    const b = record("B", ["HELO b", "NOOP", "QUIT"], { at: start })
    const interleaved: Array<Event.Event> = [Event.make("SettingsRecorded", { at: start, digest, settings })]
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const eb = b[i]
      const ea = a[i]
      if (eb !== undefined) interleaved.push(eb)
      if (ea !== undefined) interleaved.push(ea)
      if (i === 1) interleaved.push(Event.make("MessageCompleted", { at: start, queueId: "Q0" }))
    }
    const grouped = Replay.sessions(interleaved)
    assert.deepStrictEqual(grouped.map((s) => s.id), ["B", "A"])
    assert.deepStrictEqual(grouped[0]?.events, b)
    assert.deepStrictEqual(grouped[1]?.events, a)
    assert.strictEqual(grouped[0]?.opened, b[0])
    assert.strictEqual(grouped[1]?.opened, a[0])
    for (const session of grouped) assert.deepStrictEqual(Replay.verify(session, settings).mismatches, [])
  })

  it("a session whose opening is not in the events has no opened event", () => {
    const tail = record("T", ["NOOP", "QUIT"]).slice(1)
    const session = one(tail)
    assert.isUndefined(session.opened)
    assert.strictEqual(session.events.length, tail.length)
  })

  it("no events, no sessions", () => {
    assert.deepStrictEqual(Replay.sessions([]), [])
  })
})

describe("Replay.inputOf", () => {
  it("maps each recorded input to the machine input, and facts to nothing", () => {
    const expected: { readonly [K in Event.Event["_tag"]]: Machine.Input | undefined } = {
      SettingsRecorded: undefined,
      SessionOpened: { _tag: "Connected", admission: "ok", security: "encrypt", auth: false },
      CommandReceived: { _tag: "Line", text: "MAIL FROM:<alice@example.test> SIZE=1024", flaw: "bare-lf" },
      LineRejected: { _tag: "LineTooLong" },
      ContentReceived: { _tag: "ContentEnd", size: 4096, bareLineEnding: "cr" },
      MessageQueued: { _tag: "Queued", queueId: "Q1" },
      QueueFailed: { _tag: "QueueFailed", reason: "spool full" },
      TimedOut: { _tag: "TimedOut", phase: "data-block" },
      ShutdownRequested: { _tag: "Shutdown" },
      ReplySent: undefined,
      SessionClosed: undefined,
      MessageDelivered: undefined,
      DeliveryFailed: undefined,
      MessageCompleted: undefined,
      LogRepaired: undefined,
      TlsHandshakeStarted: undefined,
      TlsEstablished: { _tag: "TlsEstablished", facts: tlsFacts },
      TlsHandshakeFailed: { _tag: "TlsFailed" },
      CertificateLoaded: undefined,
      CertificateRejected: undefined,
      CertificateExpiring: undefined,
      ShadowDecided: undefined,
      DnsAnswered: undefined,
      SpfChecked: undefined,
      MessageAuthenticated: undefined,
      AuthResponseReceived: { _tag: "AuthDecoded", outcome: "answer" },
      AuthSucceeded: { _tag: "AuthVerified", user: "alice" },
      AuthFailed: { _tag: "AuthVerified", user: undefined },
      PolicyDecided: {
        _tag: "Decided",
        stage: "rcpt",
        verdict: "deny",
        reply: Reply.make(554, "5.7.1", "<bob@elsewhere.test>: Relay access denied")
      }
    }
    for (const event of samples) assert.deepStrictEqual(Replay.inputOf(event), expected[event._tag], event._tag)
  })

  it("a flood and an unflawed line", () => {
    assert.deepStrictEqual(Replay.inputOf(Event.make("LineRejected", { session: "s", at: 0, reason: "flood" })), { _tag: "LineFlood" })
    assert.deepStrictEqual(Replay.inputOf(Event.make("CommandReceived", { session: "s", at: 0, line: "NOOP" })), {
      _tag: "Line",
      text: "NOOP",
      flaw: undefined
    })
    assert.deepStrictEqual(Replay.inputOf(Event.make("ContentReceived", { session: "s", at: 0, size: 3 })), {
      _tag: "ContentEnd",
      size: 3,
      bareLineEnding: undefined
    })
  })
})

describe("Replay.transcript", () => {
  const t = "2024-01-02 03:04:05.006"

  it("renders client lines, server lines and facts", () => {
    const s = "s1"
    const at = start
    const session = one([
      Event.make("SessionOpened", { session: s, at, settingsDigest: digest, role: "submission", peer, local, proxiedBy: { address: "10.0.0.1", port: 3000 }, admission: "ok" }),
      Event.make("ReplySent", { session: s, at, code: 220, lines: ["mx.example.test ESMTP Postern"] }),
      Event.make("CommandReceived", { session: s, at, line: "EHLO client.test" }),
      Event.make("ReplySent", { session: s, at, code: 250, lines: ["mx.example.test", "PIPELINING", "CHUNKING"] }),
      Event.make("CommandReceived", { session: s, at, line: "NO\u0000OP\u001b", flaw: "nul" }),
      Event.make("ReplySent", { session: s, at, code: 500, enhanced: "5.5.2", lines: ["Error: NUL character received"] }),
      Event.make("LineRejected", { session: s, at, reason: "too-long" }),
      Event.make("ContentReceived", { session: s, at, size: 12, bareLineEnding: "lf" }),
      Event.make("ContentReceived", { session: s, at, size: 13 }),
      Event.make("MessageQueued", {
        session: s,
        at,
        queueId: "Q1",
        envelope: { from: "a@remote.test", to: ["alice@example.test", "bob@example.test"], smtputf8: false },
        size: 12,
        digest: "0123456789abcdef0123456789abcdef",
        spool: { segment: "seg", extents: [] }
      }),
      Event.make("QueueFailed", { session: s, at, reason: "disk full" }),
      Event.make("TimedOut", { session: s, at, phase: "command" }),
      Event.make("ShutdownRequested", { session: s, at }),
      Event.make("SessionClosed", { session: s, at, reason: "io-error", detail: "ECONNRESET" })
    ])
    assert.deepStrictEqual(Replay.transcript(session), [
      `${t} -- connection from 192.0.2.7:40512 to 127.0.0.1:25 (submission) via proxy 10.0.0.1:3000`,
      `${t} S: 220 mx.example.test ESMTP Postern`,
      `${t} C: EHLO client.test`,
      `${t} S: 250-mx.example.test`,
      `${t} S: 250-PIPELINING`,
      `${t} S: 250 CHUNKING`,
      `${t} C: NO\\x00OP\\x1b   [nul]`,
      `${t} S: 500 5.5.2 Error: NUL character received`,
      `${t} C: <line rejected: too-long>`,
      `${t} C: <content, 12 octets, bare LF>`,
      `${t} C: <content, 13 octets>`,
      `${t} -- queued as Q1: from <a@remote.test> to <alice@example.test>, <bob@example.test>, 12 octets, sha256 0123456789abcdef…`,
      `${t} -- queue failed: disk full`,
      `${t} -- timeout (command)`,
      `${t} -- shutdown requested`,
      `${t} -- closed: io-error (ECONNRESET)`
    ])
  })

  it("a refused connection and a recorded machine conversation", () => {
    const events = record("s2", ["EHLO c"], { admission: "client-limit" })
    assert.deepStrictEqual(Replay.transcript(one(events)), [
      `${t} -- connection from 192.0.2.7:40512 to 127.0.0.1:25 (smtp), refused: client-limit`,
      "2024-01-02 03:04:05.007 S: 421 4.7.0 mx.example.test Error: too many connections",
      "2024-01-02 03:04:05.008 -- closed: admission"
    ])
  })

  it("events of no session render as nothing", () => {
    const session: Replay.RecordedSession = {
      id: "x",
      opened: undefined,
      events: samples.filter((e) => !("session" in e))
    }
    assert.isAbove(session.events.length, 0)
    assert.deepStrictEqual(Replay.transcript(session), [])
  })
})

describe("Replay.summarize", () => {
  it("peer, role, time, outcome and queued messages", () => {
    const events = record("s1", conversation)
    assert.deepStrictEqual(Replay.summarize(one(events)), {
      id: "s1",
      at: start,
      peer: "192.0.2.7:40512",
      role: "smtp",
      outcome: "quit",
      queued: ["Q1", "Q2"]
    })
  })

  it("a session still open, seen without its opening", () => {
    const events = record("s3", ["EHLO c", "NOOP"]).slice(1)
    assert.deepStrictEqual(Replay.summarize(one(events)), {
      id: "s3",
      at: start + 1,
      peer: "?",
      role: "?",
      outcome: "open",
      queued: []
    })
  })

  it("the outcome of a timed-out session", () => {
    const events = record("s4", ["EHLO c", { _tag: "TimedOut", phase: "command" }])
    assert.strictEqual(Replay.summarize(one(events)).outcome, "timeout")
  })
})

describe("Replay.reevaluate (replay --rules)", () => {
  const rulesAt = (rules: Policy.RuleSet["rules"]): Policy.PolicyShape => Policy.make({ ...Policy.defaultRuleSet, rules })
  const blockSpammer = Rule.rule("blocked sender", (ctx) => (ctx.from === "spammer@evil.test" ? Rule.deny(550, "5.7.1", "Sender blocked") : Rule.next))
  const traffic = [
    "EHLO client.test",
    "MAIL FROM:<sender@remote.test>",
    "RCPT TO:<alice@example.test>",
    "RCPT TO:<carol@elsewhere.test>",
    "RSET",
    "MAIL FROM:<spammer@evil.test>",
    "RCPT TO:<bob@example.test>",
    "QUIT"
  ]
  const run = (events: ReadonlyArray<Event.Event>, policy: Policy.PolicyShape) =>
    Effect.runSync(Replay.reevaluate(one(events), settings, policy))

  it("the rules the session ran under change nothing; every recorded decision was evaluated", () => {
    const live = rulesAt({ mail: [blockSpammer] })
    const result = run(record("same", traffic, { policy: live }), live)
    assert.deepStrictEqual(result.changed, [])
    // connect, helo, two MAIL, two RCPT (the spammer's MAIL was refused, so bob's RCPT got 503)
    assert.strictEqual(result.decisions, 6)
    assert.isUndefined(result.skipped)
  })

  it("a stricter rule: the decisions that would change, with the recorded and the new verdict, rule and reply", () => {
    const result = run(record("stricter", traffic), rulesAt({ mail: [blockSpammer] }))
    assert.deepStrictEqual(result.changed.map(({ stage, recorded, now }) => ({ stage, recorded, now })), [{
      stage: "mail",
      recorded: { verdict: "accept", rule: undefined, code: undefined, enhanced: undefined, text: undefined },
      now: { verdict: "deny", rule: "blocked sender", code: 550, enhanced: "5.7.1", text: "Sender blocked" }
    }])
    assert.strictEqual(result.changed[0]?.session, "stricter")
  })

  it("a more open rule: the relay denial an internal network would now accept (the client's recorded address decides)", () => {
    const result = run(record("relaxed", traffic), rulesAt({ rcpt: [Builtins.relay({ internalNetworks: ["192.0.2.0/24"] })] }))
    assert.deepStrictEqual(result.changed.map(({ stage, recorded, now }) => ({ stage, recorded, now })), [{
      stage: "rcpt",
      recorded: { verdict: "deny", rule: undefined, code: 554, enhanced: "5.7.1", text: "<carol@elsewhere.test>: Relay access denied" },
      now: { verdict: "accept", rule: "relay", code: undefined, enhanced: undefined, text: undefined }
    }])
  })

  it("rules see what the session recorded: not encrypted, so requireTls would refuse both MAIL commands", () => {
    const result = run(record("plain", traffic), rulesAt({ mail: [Builtins.requireTls()] }))
    assert.deepStrictEqual(result.changed.map((c) => [c.stage, c.now.verdict, c.now.code]), [["mail", "deny", 530], ["mail", "deny", 530]])
  })

  it("a rule that needs I/O (returns an Effect) is run too", () => {
    const slow = Rule.rule("lookup", (ctx) => Effect.succeed(ctx.stage === "helo" ? Rule.tempfail(450, "4.7.1", "Try later") : Rule.next))
    const result = run(record("io", traffic), rulesAt({ helo: [slow] }))
    assert.deepStrictEqual(result.changed.map((c) => [c.stage, c.now.verdict, c.now.rule, c.now.code]), [["helo", "tempfail", "lookup", 450]])
  })

  describe("the queue's stages (postq, delivery)", () => {
    // A session that queued Q1 for alice and bob, then the queue's decisions about it,
    // interleaved with the session's next command as they are in a log.
    const queuedSession = () => {
      const events = [...record("queue", ["EHLO client.test", "MAIL FROM:<sender@remote.test>", "RCPT TO:<alice@example.test>", "RCPT TO:<bob@example.test>", "DATA", end(120), queued("Q1"), "QUIT"])]
      const at = events.findIndex((e) => e._tag === "MessageQueued")
      const message = events[at]
      if (message?._tag !== "MessageQueued") return assert.fail("no MessageQueued")
      events[at] = { ...message, origin: { peer, local, role: "smtp", helo: "client.test" } }
      const decision = (stage: "postq" | "delivery", recipient?: string) =>
        Event.make("PolicyDecided", { session: "queue", at: start + 50, stage, verdict: "accept", queueId: "Q1", ...(recipient === undefined ? {} : { recipient }) })
      events.splice(at + 2, 0, decision("postq"), decision("delivery", "alice@example.test"), decision("delivery", "bob@example.test"), decision("delivery", "bob@example.test"))
      return events
    }

    it("are not machine inputs, so verify still reproduces every reply", () => {
      assert.deepStrictEqual(Replay.verify(one(queuedSession()), settings).mismatches, [])
    })

    it("are evaluated again with the recorded origin and envelope, the recipient, and the attempts before", () => {
      const seen: Array<string> = []
      const look = Rule.rule("look", (ctx) => {
        seen.push(`${ctx.stage} ${ctx.queueId} ${ctx.client.address} ${ctx.helo} ${ctx.recipients.join(",")} ${ctx.recipient ?? "-"} ${ctx.attempts ?? "-"} ${ctx.recipientIsLocal}`)
        return ctx.stage === "delivery" && ctx.recipient === "bob@example.test" ? Rule.deny(550, "5.7.1", "Not bob") : Rule.next
      })
      const result = run(queuedSession(), rulesAt({ postq: [look], delivery: [look] }))
      assert.deepStrictEqual(seen, [
        "postq Q1 192.0.2.7 client.test alice@example.test,bob@example.test - - false",
        "delivery Q1 192.0.2.7 client.test alice@example.test,bob@example.test alice@example.test 0 true",
        "delivery Q1 192.0.2.7 client.test alice@example.test,bob@example.test bob@example.test 0 true",
        "delivery Q1 192.0.2.7 client.test alice@example.test,bob@example.test bob@example.test 1 true"
      ])
      assert.deepStrictEqual(result.changed.map((c) => [c.stage, c.recorded.verdict, c.now.verdict, c.now.rule]), [
        ["delivery", "accept", "deny", "look"],
        ["delivery", "accept", "deny", "look"]
      ])
    })

    it("each message keeps its own header fields, and delivery sees the fields its postq decision added (review findings)", () => {
      const events = [...record("two", [
        "EHLO client.test",
        "MAIL FROM:<sender@remote.test>",
        "RCPT TO:<alice@example.test>",
        "DATA",
        end(120),
        queued("Q1"),
        "MAIL FROM:<sender@remote.test>",
        "RCPT TO:<bob@example.test>",
        "DATA",
        end(130),
        queued("Q2"),
        "QUIT"
      ])]
      // The recorded fields of each message, as the session records them with ContentReceived.
      let nth = 0
      events.forEach((event, index) => {
        if (event._tag !== "ContentReceived") return
        nth += 1
        events[index] = { ...event, headers: [{ name: "Subject", value: `message ${nth}` }] }
      })
      // Q1's decisions are logged after Q2 was received.
      events.push(
        Event.make("PolicyDecided", { session: "two", at: start + 90, stage: "postq", verdict: "accept", queueId: "Q1", headers: [{ name: "X-Score", value: "7" }] }),
        Event.make("PolicyDecided", { session: "two", at: start + 91, stage: "delivery", verdict: "accept", queueId: "Q1", recipient: "alice@example.test" })
      )
      const seen: Array<string> = []
      const look = Rule.rule("look", (ctx) => (seen.push(`${ctx.stage} ${ctx.message?.header("subject")} ${ctx.message?.header("x-score")}`), Rule.next))
      run(events, rulesAt({ postq: [look], delivery: [look] }))
      assert.deepStrictEqual(seen, ["postq message 1 undefined", "delivery message 1 7"])
    })

    it("the HELO name's SPF result is the one checked for the current MAIL, as live: none after an EHLO with an address literal (review finding)", () => {
      const events = [...record("helo", [
        "EHLO mail.example.test",
        "MAIL FROM:<sender@remote.test>",
        "RSET",
        "EHLO [192.0.2.7]",
        "MAIL FROM:<sender@remote.test>",
        "QUIT"
      ])]
      const firstMail = events.findIndex((e) => e._tag === "CommandReceived" && e.line.startsWith("MAIL"))
      events.splice(firstMail + 1, 0, Event.make("SpfChecked", { session: "helo", at: start + 2, identity: "helo", result: "fail", domain: "mail.example.test", header: "Received-SPF: fail" }))
      const seen: Array<string | undefined> = []
      run(events, rulesAt({ mail: [Rule.rule("look", (ctx) => (seen.push(ctx.spfHelo?.result), Rule.next))] }))
      assert.deepStrictEqual(seen, ["fail", undefined])
    })

    it("transcripts name the message and the recipient", () => {
      const line = Replay.describeDecision(Event.make("PolicyDecided", {
        session: "queue",
        at: start,
        stage: "delivery",
        verdict: "deny",
        rule: "closed",
        code: 550,
        enhanced: "5.7.1",
        text: "Closed",
        queueId: "Q1",
        recipient: "carol@example.test"
      }))
      assert.strictEqual(line, "delivery Q1 to <carol@example.test> denied by rule 'closed' (550 5.7.1)")
    })
  })

  describe("the body, read from the spool where it still holds the message", () => {
    const encoder = new TextEncoder()
    const body = "Hello,\r\nplease verify your password here.\r\n"
    const received = encoder.encode(`From: sender@remote.test\r\nSubject: account\r\n\r\n${body}`)
    /** What the spool holds: the trace field Postern wrote, naming the queue id, then the message as received. */
    const storedFor = (queueId: string) =>
      new Uint8Array([
        ...encoder.encode(`Received: from client.test (unknown [192.0.2.7])\r\n\tby mx.example.test (Postern) with ESMTP id ${queueId}; Tue, 2 Jan 2024 03:04:05 +0000\r\n`),
        ...received
      ])
    const phishing = Rule.rule("phishing body", (ctx) =>
      /verify your password/.test(ctx.message?.body?.text() ?? "") ? Rule.deny(554, "5.7.1", "Phishing") : Rule.next)
    /** A session that queued Q7 (its content `stored` long) and the queue's postq decision about it. */
    const session = (stored: Uint8Array, live?: Policy.PolicyShape) => {
      const events = record("body", ["EHLO client.test", "MAIL FROM:<sender@remote.test>", "RCPT TO:<alice@example.test>", "DATA", end(received.length), queued("Q7"), "QUIT"], live === undefined ? {} : { policy: live })
      const at = events.findIndex((e) => e._tag === "MessageQueued")
      const message = events[at]
      if (message?._tag !== "MessageQueued") return one(events)
      const withSize: Array<Event.Event> = [...events]
      withSize[at] = { ...message, size: stored.length, prepend: "X-Added: by postern\r\n" }
      withSize.splice(at + 2, 0, Event.make("PolicyDecided", { session: "body", at: start + 50, stage: "postq", verdict: "accept", queueId: "Q7" }))
      return one(withSize)
    }
    /** A spool holding `contents` by queue id, and the queue ids it was asked about. */
    const spool = (contents: Record<string, Uint8Array>) => {
      const asked: Array<string> = []
      const stored: Replay.StoredContent = (message, limit) =>
        Effect.sync(() => {
          asked.push(message.queueId)
          return contents[message.queueId]?.slice(0, limit)
        })
      return { asked, stored }
    }
    const changes = (result: Replay.Reevaluation) => result.changed.map((c) => [c.stage, c.recorded.verdict, c.now.verdict, c.now.rule])

    it("a data rule matching the body changes its decision only when the spool still has the message", () => {
      const policy = rulesAt({ data: [phishing] })
      const stored = storedFor("Q7")
      const { asked, stored: lookup } = spool({ Q7: stored })
      const withBody = Effect.runSync(Replay.reevaluate(session(stored), settings, policy, lookup))
      assert.deepStrictEqual(changes(withBody), [["data", "accept", "deny", "phishing body"]])
      assert.deepStrictEqual(asked, ["Q7"])
      // Without the spool, or with the message gone from it: no body, so no change.
      assert.deepStrictEqual(changes(Effect.runSync(Replay.reevaluate(session(stored), settings, policy))), [])
      assert.deepStrictEqual(changes(Effect.runSync(Replay.reevaluate(session(stored), settings, policy, spool({}).stored))), [])
      // Content that is not this message's (its trace field names another queue id) is not used.
      const other = spool({ Q7: storedFor("Q8") }).stored
      assert.deepStrictEqual(changes(Effect.runSync(Replay.reevaluate(session(stored), settings, policy, other))), [])
    })

    it("rules see the bytes the live session collected: the body after the header section, cut at the replaying policy's bodyLimit", () => {
      const seen: Array<unknown> = []
      const look = Rule.rule("look", (ctx) => {
        const view = ctx.message?.body
        seen.push([ctx.stage, view === undefined ? undefined : [view.text(), view.truncated], ctx.message?.header("x-added"), ctx.message?.header("received") !== undefined])
        return Rule.next
      })
      const policy = Policy.make({ ...Policy.defaultRuleSet, rules: { data: [look], postq: [look] }, bodyLimit: 10 })
      const stored = storedFor("Q7")
      const result = Effect.runSync(Replay.reevaluate(session(stored), settings, policy, spool({ Q7: stored }).stored))
      assert.deepStrictEqual(result.changed, [])
      const live = Headers.collector(10)
      live.push(received)
      assert.deepStrictEqual(live.body(), { bytes: encoder.encode(body.slice(0, 10)), truncated: true })
      // At data, the fields as received (recorded); at postq those Postern added and the trace field too, as the queue reads them.
      assert.deepStrictEqual(seen, [
        ["data", [body.slice(0, 10), true], undefined, false],
        ["postq", [body.slice(0, 10), true], "by postern", true]
      ])
    })

    it("a message refused at data was never queued: no body, and the spool is not asked", () => {
      const live = rulesAt({ data: [Rule.rule("closed", () => Rule.deny(554, "5.7.1", "Closed"))] })
      const events = record("refused", ["EHLO client.test", "MAIL FROM:<sender@remote.test>", "RCPT TO:<alice@example.test>", "DATA", end(received.length), "QUIT"], { policy: live })
      const { asked, stored } = spool({ Q7: storedFor("Q7") })
      const result = Effect.runSync(Replay.reevaluate(one(events), settings, rulesAt({ data: [phishing] }), stored))
      assert.deepStrictEqual(changes(result), [["data", "deny", "accept", undefined]])
      assert.deepStrictEqual(asked, [])
    })
  })

  it("a session whose opening or settings are missing is skipped with the reason", () => {
    const events = record("partial", traffic)
    const withoutOpening = { id: "partial", opened: undefined, events: events.slice(1) }
    assert.strictEqual(Effect.runSync(Replay.reevaluate(withoutOpening, settings, Policy.make(Policy.defaultRuleSet))).skipped, "its opening is not in the log")
    assert.strictEqual(Effect.runSync(Replay.reevaluate(one(events), undefined, Policy.make(Policy.defaultRuleSet))).skipped, "settings snapshot not found")
  })
})

describe("Replay.shadowReport", () => {
  const decided = (tag: "PolicyDecided" | "ShadowDecided", at: number, stage: Event.PolicyStage, verdict: Event.PolicyDecided["verdict"], rule?: string) =>
    Event.make(tag, { session: "S", at, stage, verdict, ...(rule === undefined ? {} : { rule }) })
  const session = (events: ReadonlyArray<Event.Event>): Replay.RecordedSession => ({ id: "S", opened: undefined, events })

  it("pairs the n-th live decision of a stage with the n-th shadow one and keeps those that differ", () => {
    const report = Replay.shadowReport(session([
      decided("ShadowDecided", 1, "connect", "accept"),
      decided("PolicyDecided", 1, "connect", "accept"),
      decided("ShadowDecided", 2, "rcpt", "accept"),
      decided("PolicyDecided", 2, "rcpt", "accept"),
      decided("ShadowDecided", 3, "rcpt", "deny", "strict"),
      decided("PolicyDecided", 3, "rcpt", "accept"),
      decided("ShadowDecided", 4, "mail", "accept", "named"),
      decided("PolicyDecided", 4, "mail", "accept")
    ]))
    assert.strictEqual(report.compared, 4)
    assert.deepStrictEqual(report.differences.map((d) => [d.at, d.stage, d.live.verdict, d.shadow.verdict, d.shadow.rule]), [
      [3, "rcpt", "accept", "deny", "strict"],
      [4, "mail", "accept", "accept", "named"]
    ])
  })

  it("shadow decisions recorded late (they needed I/O) pair with the decision they shadow, by index", () => {
    const shadowAt = (at: number, stage: Event.PolicyStage, verdict: Event.PolicyDecided["verdict"], index: number) =>
      Event.make("ShadowDecided", { session: "S", at, stage, verdict, index })
    const report = Replay.shadowReport(session([
      decided("PolicyDecided", 1, "rcpt", "accept"),
      decided("PolicyDecided", 2, "rcpt", "deny"),
      // The second shadow decision came back first.
      shadowAt(3, "rcpt", "deny", 1),
      shadowAt(4, "rcpt", "deny", 0)
    ]))
    assert.strictEqual(report.compared, 2)
    assert.deepStrictEqual(report.differences.map((d) => [d.at, d.live.verdict, d.shadow.verdict]), [[1, "accept", "deny"]])
  })

  it("the queue's decisions pair per message and recipient, whatever came between them", () => {
    const queueDecision = (tag: "PolicyDecided" | "ShadowDecided", at: number, recipient: string, verdict: Event.PolicyDecided["verdict"]) =>
      Event.make(tag, { session: "S", at, stage: "delivery", verdict, queueId: "Q1", recipient })
    const report = Replay.shadowReport(session([
      queueDecision("ShadowDecided", 1, "a@example.test", "accept"),
      queueDecision("PolicyDecided", 1, "a@example.test", "accept"),
      queueDecision("ShadowDecided", 2, "b@example.test", "deny"),
      queueDecision("PolicyDecided", 2, "b@example.test", "accept"),
      queueDecision("ShadowDecided", 3, "a@example.test", "deny"),
      queueDecision("PolicyDecided", 3, "a@example.test", "deny")
    ]))
    assert.strictEqual(report.compared, 3)
    assert.deepStrictEqual(report.differences.map((d) => [d.at, d.stage, d.live.verdict, d.shadow.verdict]), [[2, "delivery", "accept", "deny"]])
  })

  it("a session without shadow decisions compares nothing", () => {
    assert.deepStrictEqual(Replay.shadowReport(session([decided("PolicyDecided", 1, "connect", "accept")])), { compared: 0, differences: [] })
  })
})
