/** One sample of every event tag, with optional fields filled in, for round-trip tests. */
import * as Event from "../../src/log/Event.ts"

const at = 1_700_000_000_123
const session = "s-01HZY3"
const peer = { address: "192.0.2.7", port: 40512 }
const local = { address: "127.0.0.1", port: 25 }

/** The facts of a TLS session with every optional field present. */
export const tlsFacts: Event.TlsFacts = {
  version: "TLSv1.3",
  cipher: "TLS_AES_256_GCM_SHA384",
  bits: 256,
  algorithmBits: 256,
  group: "X25519",
  sni: "mx.example.test",
  certificate: "mx.example.test",
  match: "exact",
  resumed: false,
  clientCertificate: { subject: "CN=client.example.test", fingerprint256: "AB:CD", verified: true }
}

/** Every tag of `Event.Event`, once; the tests check that none is missing. */
export const samples: ReadonlyArray<Event.Event> = [
  Event.make("SettingsRecorded", {
    at,
    digest: "9f86d081884c7d65",
    settings: {
      hostname: "mx.example.test",
      maxMessageSize: 10_485_760,
      maxRecipients: 100,
      maxErrors: 10,
      localDomains: [
        { domain: "example.test", users: ["alice", "bob"], transport: "maildir" },
        { domain: "sink.test", users: "*", transport: "discard" }
      ]
    }
  }),
  Event.make("SessionOpened", {
    session,
    at,
    settingsDigest: "9f86d081884c7d65",
    role: "submission",
    peer,
    local,
    proxiedBy: { address: "10.0.0.1", port: 3000 },
    admission: "ok",
    security: "encrypt"
  }),
  Event.make("CommandReceived", { session, at, line: "MAIL FROM:<alice@example.test> SIZE=1024", flaw: "bare-lf" }),
  Event.make("LineRejected", { session, at, reason: "too-long" }),
  Event.make("ContentReceived", { session, at, size: 4096, bareLineEnding: "cr" }),
  Event.make("MessageQueued", {
    session,
    at,
    queueId: "Q1",
    envelope: { from: "", to: ["bob@example.test", "ünï@example.test"], smtputf8: true, body: "8BITMIME" },
    size: 4096,
    digest: "e3b0c44298fc1c149afbf4c8996fb924",
    spool: { segment: "seg-0001", extents: [{ offset: 0, length: 2048 }, { offset: 8192, length: 2048 }] }
  }),
  Event.make("QueueFailed", { session, at, reason: "spool full" }),
  Event.make("TimedOut", { session, at, phase: "data-block" }),
  Event.make("ShutdownRequested", { session, at }),
  Event.make("ReplySent", { session, at, code: 250, enhanced: "2.0.0", lines: ["mx.example.test", "PIPELINING", "8BITMIME"] }),
  Event.make("SessionClosed", { session, at, reason: "io-error", detail: "ECONNRESET" }),
  Event.make("MessageDelivered", { at, queueId: "Q1", recipient: "bob@example.test", destination: "/var/mail/bob/new/1" }),
  Event.make("DeliveryFailed", {
    at,
    queueId: "Q1",
    recipient: "carol@remote.test",
    permanent: false,
    reason: "451 4.7.1 try later",
    retryAt: at + 60_000
  }),
  Event.make("MessageCompleted", { at, queueId: "Q1" }),
  Event.make("LogRepaired", { at, file: "/var/log/postern/w0/00000001.plog", offset: 4096, droppedBytes: 17 }),
  Event.make("TlsHandshakeStarted", { session, at, mode: "starttls", discardedBytes: 6 }),
  Event.make("TlsEstablished", { session, at, facts: tlsFacts, durationMs: 3 }),
  Event.make("TlsHandshakeFailed", { session, at, reason: "timeout", detail: "no complete handshake within 10000 ms", durationMs: 10_000 }),
  Event.make("CertificateLoaded", {
    at,
    name: "mx.example.test",
    file: "/etc/postern/mx.pem",
    subject: "CN=mx.example.test",
    names: ["mx.example.test"],
    notAfter: at + 86_400_000,
    fingerprint256: "AB:CD",
    reload: false
  }),
  Event.make("CertificateRejected", { at, name: "default", file: "/etc/postern/default.pem", reason: "key does not match" }),
  Event.make("CertificateExpiring", { at, name: "default", file: "/etc/postern/default.pem", notAfter: at + 86_400_000 }),
  Event.make("PolicyDecided", {
    session,
    at,
    stage: "rcpt",
    verdict: "deny",
    rule: "relay",
    code: 554,
    enhanced: "5.7.1",
    text: "<bob@elsewhere.test>: Relay access denied",
    because: { client: "192.0.2.1", recipient: "not in a local domain" }
  }),
  Event.make("ShadowDecided", { session, at, stage: "mail", verdict: "deny", rule: "stricter", code: 550, enhanced: "5.7.1", text: "No" }),
  Event.make("DnsAnswered", { session, at, name: "example.test", type: "TXT", records: [["v=spf1 -all"]] }),
  Event.make("SpfChecked", { session, at, result: "fail", domain: "example.test", header: "Received-SPF: fail (example.test: 192.0.2.1 is not allowed) client-ip=192.0.2.1;" }),
  Event.make("MessageAuthenticated", {
    session,
    at,
    dkim: [{ domain: "example.test", selector: "s1", result: "pass" }],
    dmarc: { result: "pass", domain: "example.test", policy: "reject" },
    header: "Authentication-Results: mx.example.test; dkim=pass header.d=example.test"
  }),
  Event.make("AuthResponseReceived", { session, at, outcome: "answer" }),
  Event.make("AuthSucceeded", { session, at, mechanism: "PLAIN", user: "alice" }),
  Event.make("AuthFailed", { session, at, mechanism: "LOGIN", failures: 2 })
]

/** A small event with a recognisable position, for ordering tests. */
export const numbered = (fiber: number, index: number, time = at): Event.Event =>
  Event.make("CommandReceived", { session: `f${fiber}`, at: time, line: `NOOP ${index}` })

/** The `(fiber, index)` of an event made by `numbered`, if it is one. */
export const numberOf = (event: Event.Event): { fiber: number; index: number } | undefined => {
  if (event._tag !== "CommandReceived" || !event.session.startsWith("f")) return undefined
  const match = /^NOOP (\d+)$/.exec(event.line)
  return match?.[1] === undefined ? undefined : { fiber: Number(event.session.slice(1)), index: Number(match[1]) }
}
