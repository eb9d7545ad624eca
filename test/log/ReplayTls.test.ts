/**
 * Replay of recorded TLS sessions: the logs are written out event by event, as Session.ts
 * records them (the input's event, then a ReplySent per reply; TlsHandshakeStarted is a fact,
 * not an input), and `Replay.verify` must reproduce every reply from them.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Event from "../../src/log/Event.ts"
import * as Replay from "../../src/log/Replay.ts"
import * as Reply from "../../src/session/Reply.ts"
import { settings } from "../support/Settings.ts"
import { tlsFacts } from "./EventSamples.ts"

const start = Date.UTC(2024, 0, 2, 3, 4, 5, 6)
const peer = { address: "192.0.2.7", port: 40512 }

const facts: Event.TlsFacts = tlsFacts

/** Builds one session's events with increasing times. */
const recorder = (session: string) => {
  let at = start
  const events: Array<Event.Event> = []
  const tick = () => (at += 1)
  return {
    events,
    opened: (role: Event.Role, security: Event.Security | undefined, admission: Event.Admission = "ok") =>
      events.push(Event.make("SessionOpened", {
        session,
        at: tick(),
        settingsDigest: "d1",
        role,
        peer,
        local: { address: "127.0.0.1", port: role === "smtp" ? 25 : role === "submission" ? 587 : 465 },
        admission,
        ...(security === undefined ? {} : { security })
      })),
    client: (line: string) => events.push(Event.make("CommandReceived", { session, at: tick(), line })),
    reply: (code: number, enhanced: string | undefined, ...lines: ReadonlyArray<string>) =>
      events.push(Event.make("ReplySent", { session, at: tick(), code, lines, ...(enhanced === undefined ? {} : { enhanced }) })),
    event: (make: (at: number) => Event.Event) => events.push(make(tick())),
    /** The rules-free policy accepted the stage. */
    accepted: (stage: Event.PolicyStage) => events.push(Event.make("PolicyDecided", { session, at: tick(), stage, verdict: "accept" }))
  }
}

const greeting = ["mx.example.test ESMTP Postern"] as const
const ehloLines = (startTls: boolean): ReadonlyArray<string> => [
  "mx.example.test",
  "PIPELINING",
  "SIZE 1000",
  ...(startTls ? ["STARTTLS"] : []),
  "8BITMIME",
  "ENHANCEDSTATUSCODES",
  "SMTPUTF8",
  "CHUNKING"
]
const envelope: Event.Envelope = { from: "sender@remote.test", to: ["alice@example.test"], smtputf8: false }

/** STARTTLS on an smtp listener, the handshake, EHLO again and a message queued inside TLS. */
const startTlsSession = (): ReadonlyArray<Event.Event> => {
  const r = recorder("starttls")
  r.opened("smtp", "may")
  r.accepted("connect")
  r.reply(220, undefined, ...greeting)
  r.client("EHLO client.test")
  r.accepted("helo")
  r.reply(250, undefined, ...ehloLines(true))
  r.client("STARTTLS")
  r.reply(220, "2.0.0", "Ready to start TLS")
  r.event((at) => Event.make("TlsHandshakeStarted", { session: "starttls", at, mode: "starttls", discardedBytes: 6 }))
  r.event((at) => Event.make("TlsEstablished", { session: "starttls", at, facts, durationMs: 4 }))
  r.client("EHLO client.test")
  r.accepted("helo")
  r.reply(250, undefined, ...ehloLines(false))
  r.client("MAIL FROM:<sender@remote.test>")
  r.accepted("mail")
  r.reply(250, "2.1.0", "Ok")
  r.client("RCPT TO:<alice@example.test>")
  r.accepted("rcpt")
  r.reply(250, "2.1.5", "Ok")
  r.client("DATA")
  r.reply(354, undefined, "End data with <CR><LF>.<CR><LF>")
  r.event((at) => Event.make("ContentReceived", { session: "starttls", at, size: 120 }))
  r.accepted("data")
  r.event((at) =>
    Event.make("MessageQueued", {
      session: "starttls",
      at,
      queueId: "Q1",
      envelope,
      size: 180,
      digest: "0123456789abcdef0123456789abcdef",
      spool: { segment: "seg-1", extents: [{ offset: 0, length: 180 }] }
    })
  )
  r.reply(250, "2.0.0", "Ok: queued as Q1")
  r.client("QUIT")
  r.reply(221, "2.0.0", "Bye")
  r.event((at) => Event.make("SessionClosed", { session: "starttls", at, reason: "quit" }))
  return r.events
}

/** STARTTLS on a submission listener (encrypt): MAIL refused first, then a handshake that fails. */
const failedSession = (): ReadonlyArray<Event.Event> => {
  const r = recorder("failed")
  r.opened("submission", "encrypt")
  r.accepted("connect")
  r.reply(220, undefined, ...greeting)
  r.client("EHLO client.test")
  r.accepted("helo")
  r.reply(250, undefined, ...ehloLines(true))
  r.client("MAIL FROM:<sender@remote.test>")
  r.reply(530, "5.7.0", "Must issue a STARTTLS command first")
  r.client("STARTTLS")
  r.reply(220, "2.0.0", "Ready to start TLS")
  r.event((at) => Event.make("TlsHandshakeStarted", { session: "failed", at, mode: "starttls", discardedBytes: 0 }))
  r.event((at) =>
    Event.make("TlsHandshakeFailed", {
      session: "failed",
      at,
      reason: "protocol-version",
      detail: "ERR_SSL_UNSUPPORTED_PROTOCOL: unsupported protocol",
      durationMs: 2
    })
  )
  r.event((at) => Event.make("SessionClosed", { session: "failed", at, reason: "tls-failed" }))
  return r.events
}

/** Implicit TLS: the handshake first, then the greeting. */
const implicitSession = (): ReadonlyArray<Event.Event> => {
  const r = recorder("implicit")
  r.opened("submissions", "implicit")
  r.event((at) => Event.make("TlsHandshakeStarted", { session: "implicit", at, mode: "implicit", discardedBytes: 0 }))
  r.event((at) => Event.make("TlsEstablished", { session: "implicit", at, facts: { ...facts, resumed: true }, durationMs: 1 }))
  r.accepted("connect")
  r.reply(220, undefined, ...greeting)
  r.client("EHLO client.test")
  r.accepted("helo")
  r.reply(250, undefined, ...ehloLines(false))
  r.client("STARTTLS")
  r.reply(554, "5.5.1", "Error: TLS already active")
  r.client("QUIT")
  r.reply(221, "2.0.0", "Bye")
  r.event((at) => Event.make("SessionClosed", { session: "implicit", at, reason: "quit" }))
  return r.events
}

/** A TLS client on the plaintext port: its ClientHello is refused and the connection closed. */
const clientHelloSession = (): ReadonlyArray<Event.Event> => {
  const r = recorder("hello")
  r.opened("smtp", "may")
  r.accepted("connect")
  r.reply(220, undefined, ...greeting)
  r.event((at) => Event.make("LineRejected", { session: "hello", at, reason: "tls-record" }))
  r.reply(500, "5.5.1", "Error: TLS handshake on a plaintext connection; use STARTTLS or the implicit TLS port")
  r.event((at) => Event.make("SessionClosed", { session: "hello", at, reason: "protocol" }))
  return r.events
}

/** Implicit TLS refused at admission: nothing is said. */
const refusedImplicitSession = (): ReadonlyArray<Event.Event> => {
  const r = recorder("refused")
  r.opened("submissions", "implicit", "client-limit")
  r.event((at) => Event.make("SessionClosed", { session: "refused", at, reason: "admission" }))
  return r.events
}

const one = (events: ReadonlyArray<Event.Event>): Replay.RecordedSession => {
  const all = Replay.sessions(events)
  assert.strictEqual(all.length, 1)
  const session = all[0]
  if (session === undefined) throw new Error("no session")
  return session
}

const replyCount = (events: ReadonlyArray<Event.Event>): number => events.filter((e) => e._tag === "ReplySent").length

/** Replaces the n-th ReplySent (0-based) with `f` of it. */
const alterReply = (events: ReadonlyArray<Event.Event>, n: number, f: (e: Event.ReplySent) => Event.Event): ReadonlyArray<Event.Event> => {
  let seen = -1
  return events.map((e) => {
    if (e._tag !== "ReplySent") return e
    seen++
    return seen === n ? f(e) : e
  })
}

const wire = (code: number, enhanced: string | undefined, ...lines: ReadonlyArray<string>): string =>
  Reply.format(Reply.make(code, enhanced, ...lines))

const recorded: ReadonlyArray<readonly [string, () => ReadonlyArray<Event.Event>, number]> = [
  ["STARTTLS, handshake, EHLO again, a message queued inside TLS", startTlsSession, 9],
  ["a failed handshake after STARTTLS on an encrypt listener", failedSession, 4],
  ["implicit TLS with the greeting after the handshake", implicitSession, 4],
  ["a ClientHello on a plaintext port", clientHelloSession, 2],
  ["implicit TLS refused at admission", refusedImplicitSession, 0]
]

describe("Replay.verify: TLS sessions", () => {
  for (const [name, make, replies] of recorded) {
    it(`${name}: no mismatch`, () => {
      const events = make()
      const result = Replay.verify(one(events), settings)
      assert.deepStrictEqual(result.mismatches, [])
      assert.strictEqual(result.replies, replies)
      assert.strictEqual(replyCount(events), replies)
      assert.isUndefined(result.skipped)
    })

    it(`${name}: replays from the encoded form the log stores`, () => {
      const events = make().map((e) => Event.decode(Event.encode(e)))
      assert.deepStrictEqual(Replay.verify(one(events), settings).mismatches, [])
    })
  }

  it("an EHLO inside TLS recorded as offering STARTTLS is a mismatch", () => {
    const events = alterReply(startTlsSession(), 3, (e) => Event.make("ReplySent", { ...e, lines: ehloLines(true) }))
    assert.deepStrictEqual(Replay.verify(one(events), settings).mismatches, [
      {
        session: "starttls",
        index: 3,
        recorded: Reply.format(Reply.multiline(250, ehloLines(true))),
        replayed: Reply.format(Reply.multiline(250, ehloLines(false)))
      }
    ])
  })

  it("an altered 220 Ready to start TLS is a mismatch", () => {
    const events = alterReply(startTlsSession(), 2, (e) => Event.make("ReplySent", { ...e, code: 454, enhanced: "4.7.0", lines: ["TLS not available"] }))
    assert.deepStrictEqual(Replay.verify(one(events), settings).mismatches, [
      { session: "starttls", index: 2, recorded: wire(454, "4.7.0", "TLS not available"), replayed: wire(220, "2.0.0", "Ready to start TLS") }
    ])
  })

  it("an altered refusal of STARTTLS inside implicit TLS is a mismatch", () => {
    const events = alterReply(implicitSession(), 2, (e) => Event.make("ReplySent", { ...e, code: 220, enhanced: "2.0.0", lines: ["Ready to start TLS"] }))
    assert.deepStrictEqual(Replay.verify(one(events), settings).mismatches.map((m) => m.index), [2])
  })

  it("the ClientHello's reply altered is a mismatch", () => {
    const events = alterReply(clientHelloSession(), 1, (e) => Event.make("ReplySent", { ...e, enhanced: "5.5.2" }))
    assert.deepStrictEqual(Replay.verify(one(events), settings).mismatches.map((m) => [m.index, m.replayed]), [
      [1, wire(500, "5.5.1", "Error: TLS handshake on a plaintext connection; use STARTTLS or the implicit TLS port")]
    ])
  })

  it("without its TlsEstablished event, the replies after the handshake cannot be reproduced", () => {
    const events = startTlsSession().filter((e) => e._tag !== "TlsEstablished")
    const mismatches = Replay.verify(one(events), settings).mismatches
    // The machine waits for the handshake: the rest of the client's lines are not answered.
    assert.deepStrictEqual(mismatches.map((m) => m.index), [3, 4, 5, 6, 7, 8])
    assert.isTrue(mismatches.every((m) => m.replayed === undefined))
  })

  it("recorded as a plaintext listener, the session replays differently from the first EHLO", () => {
    const events = startTlsSession().map((e) => (e._tag === "SessionOpened" ? Event.make("SessionOpened", { ...e, security: "none" }) : e))
    const first = Replay.verify(one(events), settings).mismatches[0]
    assert.deepStrictEqual(first?.index, 1)
    assert.deepStrictEqual(first?.replayed, Reply.format(Reply.multiline(250, ehloLines(false))))
  })

  it("a log written before TLS existed (no security in SessionOpened) replays as none", () => {
    const r = recorder("old")
    r.opened("smtp", undefined)
    r.reply(220, undefined, ...greeting)
    r.client("EHLO client.test")
    r.reply(250, undefined, ...ehloLines(false))
    r.client("STARTTLS")
    r.reply(502, "5.5.1", "Error: command not implemented")
    assert.deepStrictEqual(Replay.verify(one(r.events), settings), { session: "old", replies: 3, mismatches: [], skipped: undefined })
  })
})

describe("Replay.inputOf: TLS events", () => {
  it("maps the TLS inputs, and the handshake start to nothing", () => {
    const session = "s"
    const at = start
    assert.deepStrictEqual(Replay.inputOf(Event.make("TlsEstablished", { session, at, facts, durationMs: 3 })), { _tag: "TlsEstablished", facts })
    assert.deepStrictEqual(
      Replay.inputOf(Event.make("TlsHandshakeFailed", { session, at, reason: "timeout", detail: "x", durationMs: 10_000 })),
      { _tag: "TlsFailed" }
    )
    assert.deepStrictEqual(Replay.inputOf(Event.make("LineRejected", { session, at, reason: "tls-record" })), { _tag: "TlsRecord" })
    assert.isUndefined(Replay.inputOf(Event.make("TlsHandshakeStarted", { session, at, mode: "starttls", discardedBytes: 0 })))
    assert.deepStrictEqual(
      Replay.inputOf(Event.make("SessionOpened", { session, at, settingsDigest: "d", role: "submissions", peer, local: peer, admission: "ok", security: "implicit" })),
      { _tag: "Connected", admission: "ok", security: "implicit", auth: false }
    )
  })
})

describe("Replay.transcript: TLS events", () => {
  it("shows the handshake, the plaintext discarded, the facts and the failure", () => {
    const lines = Replay.transcript(one(startTlsSession())).map((l) => l.replace(/^\S+ \S+ /, ""))
    assert.include(lines, "-- TLS handshake (starttls); 6 octets of plaintext after STARTTLS discarded")
    assert.include(
      lines,
      "-- TLS established in 4 ms: TLSv1.3 TLS_AES_256_GCM_SHA384 (256 bits), group X25519, SNI mx.example.test, certificate mx.example.test (exact), full handshake, client certificate CN=client.example.test AB:CD"
    )
    const failed = Replay.transcript(one(failedSession())).map((l) => l.replace(/^\S+ \S+ /, ""))
    assert.include(failed, "-- TLS handshake (starttls)")
    assert.include(failed, "-- TLS handshake failed after 2 ms: protocol-version (ERR_SSL_UNSUPPORTED_PROTOCOL: unsupported protocol)")
    const hello = Replay.transcript(one(clientHelloSession())).map((l) => l.replace(/^\S+ \S+ /, ""))
    assert.include(hello, "C: <line rejected: tls-record>")
  })
})
