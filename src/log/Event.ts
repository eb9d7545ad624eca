/**
 * Everything Postern records, as one Schema tagged union.
 *
 * Tags are stable: add new ones, never rename or reuse one. The log stores the encoded form
 * (`Schema.encodeSync(Event)`) so that the bytes outlive the classes. Every input the session
 * machine sees is an event here, together with the facts from outside that decided it, so
 * that `postern replay --verify` can feed a recorded session back through `Machine.step`.
 */
import { Schema } from "effect"

/** Bumped when an existing event's encoded shape changes incompatibly. */
export const schemaVersion = 1

const Millis = Schema.Number
const SessionId = Schema.String
const QueueId = Schema.String

export const Endpoint = Schema.Struct({ address: Schema.String, port: Schema.Number })
export type Endpoint = typeof Endpoint.Type

export const Role = Schema.Literals(["smtp", "submission", "submissions"])
export type Role = typeof Role.Type

export const Admission = Schema.Literals(["ok", "global-limit", "client-limit", "shutdown"])
export type Admission = typeof Admission.Type

/**
 * A listener's TLS: none (STARTTLS not offered), may (offered), encrypt (required before MAIL
 * and AUTH, RFC 3207 section 4), implicit (TLS from the first byte: submissions, port 465).
 */
export const Security = Schema.Literals(["none", "may", "encrypt", "implicit"])
export type Security = typeof Security.Type

export const LocalDomain = Schema.Struct({
  domain: Schema.String,
  /** Lower-cased local parts, or "*" for a catch-all domain. */
  users: Schema.Union([Schema.Literal("*"), Schema.Array(Schema.String)]),
  transport: Schema.Literals(["maildir", "discard"])
})
export type LocalDomain = typeof LocalDomain.Type

/** What the session machine's replies depend on besides its inputs. */
export const MachineSettings = Schema.Struct({
  hostname: Schema.String,
  maxMessageSize: Schema.Number,
  maxRecipients: Schema.Number,
  maxErrors: Schema.Number,
  localDomains: Schema.Array(LocalDomain),
  /** AUTH offered before TLS too; absent (false) in logs written before AUTH existed. */
  authPlaintext: Schema.optionalKey(Schema.Boolean),
  /** Failed AUTH attempts before the session is closed; absent: 3. */
  authMaxFailures: Schema.optionalKey(Schema.Number)
})
export type MachineSettings = typeof MachineSettings.Type

export const SessionCloseReason = Schema.Literals([
  "quit",
  "peer-closed",
  "timeout",
  "error-limit",
  "protocol",
  "admission",
  "shutdown",
  "io-error",
  "tls-failed",
  /** Too many failed AUTH attempts. */
  "auth-failures",
  /** A policy rule answered `disconnect`, or refused the connection at the connect stage. */
  "policy"
])
export type SessionCloseReason = typeof SessionCloseReason.Type

export const TimeoutPhase = Schema.Literals(["command", "data-block", "data-end"])
export type TimeoutPhase = typeof TimeoutPhase.Type

export const SpoolExtent = Schema.Struct({ offset: Schema.Number, length: Schema.Number })
export const SpoolReference = Schema.Struct({ segment: Schema.String, extents: Schema.Array(SpoolExtent) })
export type SpoolReference = typeof SpoolReference.Type

export const Envelope = Schema.Struct({
  /** RFC 5321 form without brackets; "" for the null reverse-path. */
  from: Schema.String,
  to: Schema.Array(Schema.String),
  smtputf8: Schema.Boolean,
  body: Schema.optionalKey(Schema.Literals(["7BIT", "8BITMIME", "BINARYMIME"])),
  /** Held in this quarantine (a policy verdict at data) instead of delivered. */
  quarantine: Schema.optionalKey(Schema.String)
})
export type Envelope = typeof Envelope.Type

/** The machine's settings in force for the sessions that follow, recorded once per start or reload. */
export const SettingsRecorded = Schema.TaggedStruct("SettingsRecorded", {
  at: Millis,
  digest: Schema.String,
  settings: MachineSettings
})
export type SettingsRecorded = typeof SettingsRecorded.Type

export const SessionOpened = Schema.TaggedStruct("SessionOpened", {
  session: SessionId,
  at: Millis,
  settingsDigest: Schema.String,
  role: Role,
  peer: Endpoint,
  local: Endpoint,
  /** The load balancer's address when the peer came through the PROXY protocol. */
  proxiedBy: Schema.optionalKey(Endpoint),
  /** The peer's reverse DNS name, when reverse lookups are on and one was found. */
  clientName: Schema.optionalKey(Schema.String),
  admission: Admission,
  /** The listener's TLS level; absent in logs written before TLS existed, meaning "none". */
  security: Schema.optionalKey(Security),
  /** The listener offers AUTH; absent (false) in logs written before AUTH existed. */
  auth: Schema.optionalKey(Schema.Boolean)
})
export type SessionOpened = typeof SessionOpened.Type

/** A command line as received. AUTH responses are redacted before they get here. */
export const CommandReceived = Schema.TaggedStruct("CommandReceived", {
  session: SessionId,
  at: Millis,
  line: Schema.String,
  flaw: Schema.optionalKey(Schema.Literals(["bare-lf", "bare-cr", "nul"]))
})
export type CommandReceived = typeof CommandReceived.Type

export const LineRejected = Schema.TaggedStruct("LineRejected", {
  session: SessionId,
  at: Millis,
  /** "tls-record": a TLS handshake record where a command line should start (a TLS client on a plaintext port). */
  reason: Schema.Literals(["too-long", "flood", "tls-record"])
})
export type LineRejected = typeof LineRejected.Type

/** The end of DATA content or of one BDAT chunk. */
export const ContentReceived = Schema.TaggedStruct("ContentReceived", {
  session: SessionId,
  at: Millis,
  size: Schema.Number,
  bareLineEnding: Schema.optionalKey(Schema.Literals(["lf", "cr"])),
  /**
   * The message's header fields (unfolded, at most 64 KiB of them), at the end of a whole
   * message (DATA, BDAT LAST): what the rules of the data stage saw, so that a replay shows them
   * the same.
   */
  headers: Schema.optionalKey(Schema.Array(Schema.Struct({ name: Schema.String, value: Schema.String })))
})
export type ContentReceived = typeof ContentReceived.Type

/** The message and this event are durable: the 250 that follows is true. */
export const QueueFailed = Schema.TaggedStruct("QueueFailed", {
  session: SessionId,
  at: Millis,
  reason: Schema.String
})
export type QueueFailed = typeof QueueFailed.Type

export const TimedOut = Schema.TaggedStruct("TimedOut", {
  session: SessionId,
  at: Millis,
  phase: TimeoutPhase
})
export type TimedOut = typeof TimedOut.Type

export const ShutdownRequested = Schema.TaggedStruct("ShutdownRequested", {
  session: SessionId,
  at: Millis
})
export type ShutdownRequested = typeof ShutdownRequested.Type

export const ReplySent = Schema.TaggedStruct("ReplySent", {
  session: SessionId,
  at: Millis,
  code: Schema.Number,
  enhanced: Schema.optionalKey(Schema.String),
  lines: Schema.Array(Schema.String)
})
export type ReplySent = typeof ReplySent.Type

export const SessionClosed = Schema.TaggedStruct("SessionClosed", {
  session: SessionId,
  at: Millis,
  reason: SessionCloseReason,
  detail: Schema.optionalKey(Schema.String)
})
export type SessionClosed = typeof SessionClosed.Type

export const MessageDelivered = Schema.TaggedStruct("MessageDelivered", {
  at: Millis,
  queueId: QueueId,
  recipient: Schema.String,
  /** Where it went: the Maildir file, or "discard". */
  destination: Schema.String
})
export type MessageDelivered = typeof MessageDelivered.Type

export const DeliveryFailed = Schema.TaggedStruct("DeliveryFailed", {
  at: Millis,
  queueId: QueueId,
  recipient: Schema.String,
  permanent: Schema.Boolean,
  reason: Schema.String,
  /** When the next attempt is due, for temporary failures. */
  retryAt: Schema.optionalKey(Millis)
})
export type DeliveryFailed = typeof DeliveryFailed.Type

/** Every recipient is done: the spool space can be reclaimed. */
export const MessageCompleted = Schema.TaggedStruct("MessageCompleted", {
  at: Millis,
  queueId: QueueId
})
export type MessageCompleted = typeof MessageCompleted.Type

/** The log found and cut a torn or corrupt tail when it opened a partition. */
export const LogRepaired = Schema.TaggedStruct("LogRepaired", {
  at: Millis,
  file: Schema.String,
  offset: Schema.Number,
  droppedBytes: Schema.Number
})
export type LogRepaired = typeof LogRepaired.Type

/** Why a handshake failed, as far as OpenSSL's error tells. */
export const TlsFailure = Schema.Literals([
  "timeout",
  "protocol-version",
  "no-shared-cipher",
  "unknown-sni",
  "bad-record",
  "client-alert",
  "plaintext-pending",
  "peer-closed",
  "other"
])
export type TlsFailure = typeof TlsFailure.Type

/** How the served certificate was chosen. */
export const CertificateMatch = Schema.Literals(["exact", "wildcard", "default"])
export type CertificateMatch = typeof CertificateMatch.Type

export const ClientCertificate = Schema.Struct({
  subject: Schema.String,
  /** SHA-256 of the DER certificate, colon-separated upper-case hex as OpenSSL prints it. */
  fingerprint256: Schema.String,
  /** Whether it chains to the configured client CA. */
  verified: Schema.Boolean
})
export type ClientCertificate = typeof ClientCertificate.Type

/** The facts of an established TLS session, as the machine, policy and Received header see them. */
export const TlsFacts = Schema.Struct({
  version: Schema.String,
  cipher: Schema.String,
  /** The cipher's secret bits and the algorithm's bits, for the Received header. */
  bits: Schema.Number,
  algorithmBits: Schema.Number,
  group: Schema.optionalKey(Schema.String),
  sni: Schema.optionalKey(Schema.String),
  /** The configured name (or "default") whose certificate was served. */
  certificate: Schema.String,
  match: CertificateMatch,
  resumed: Schema.Boolean,
  clientCertificate: Schema.optionalKey(ClientCertificate)
})
export type TlsFacts = typeof TlsFacts.Type

/** The handshake began: after `220 Ready to start TLS`, or on connect for implicit TLS. */
export const TlsHandshakeStarted = Schema.TaggedStruct("TlsHandshakeStarted", {
  session: SessionId,
  at: Millis,
  mode: Schema.Literals(["starttls", "implicit"]),
  /** Plaintext that followed STARTTLS before the handshake and was dropped unread (CVE-2011-0411). */
  discardedBytes: Schema.Number
})
export type TlsHandshakeStarted = typeof TlsHandshakeStarted.Type

/** A machine input: the session is now encrypted and starts over (RFC 3207 section 4.2). */
export const TlsEstablished = Schema.TaggedStruct("TlsEstablished", {
  session: SessionId,
  at: Millis,
  facts: TlsFacts,
  durationMs: Schema.Number
})
export type TlsEstablished = typeof TlsEstablished.Type

export const TlsHandshakeFailed = Schema.TaggedStruct("TlsHandshakeFailed", {
  session: SessionId,
  at: Millis,
  reason: TlsFailure,
  detail: Schema.String,
  durationMs: Schema.Number
})
export type TlsHandshakeFailed = typeof TlsHandshakeFailed.Type

/** A certificate was read and checked at start or reload. */
export const CertificateLoaded = Schema.TaggedStruct("CertificateLoaded", {
  at: Millis,
  /** The configured name it serves, or "default". */
  name: Schema.String,
  file: Schema.String,
  subject: Schema.String,
  names: Schema.Array(Schema.String),
  notAfter: Millis,
  fingerprint256: Schema.String,
  reload: Schema.Boolean
})
export type CertificateLoaded = typeof CertificateLoaded.Type

/** A certificate failed its checks; the one in service (if any) stays. */
export const CertificateRejected = Schema.TaggedStruct("CertificateRejected", {
  at: Millis,
  name: Schema.String,
  file: Schema.String,
  reason: Schema.String
})
export type CertificateRejected = typeof CertificateRejected.Type

export const CertificateExpiring = Schema.TaggedStruct("CertificateExpiring", {
  at: Millis,
  name: Schema.String,
  file: Schema.String,
  notAfter: Millis
})
export type CertificateExpiring = typeof CertificateExpiring.Type

/** The SASL mechanisms Postern offers (RFC 4616 PLAIN, and LOGIN as clients still use it). */
export const AuthMechanism = Schema.Literals(["PLAIN", "LOGIN"])
export type AuthMechanism = typeof AuthMechanism.Type

/**
 * A client's line in an AUTH exchange, as what it meant: the line itself carries credentials
 * and is logged as "***". "answer": it decoded (the exchange goes on); "cancel": "*";
 * "malformed": not base64, or not what the mechanism expects.
 */
export const AuthResponseReceived = Schema.TaggedStruct("AuthResponseReceived", {
  session: SessionId,
  at: Millis,
  outcome: Schema.Literals(["answer", "cancel", "malformed"])
})
export type AuthResponseReceived = typeof AuthResponseReceived.Type

/** The credentials were checked against the users file: who, never the password. */
export const AuthSucceeded = Schema.TaggedStruct("AuthSucceeded", {
  session: SessionId,
  at: Millis,
  mechanism: AuthMechanism,
  user: Schema.String
})
export type AuthSucceeded = typeof AuthSucceeded.Type

/** The credentials did not match; `failures` counts this session's failed attempts so far. */
export const AuthFailed = Schema.TaggedStruct("AuthFailed", {
  session: SessionId,
  at: Millis,
  mechanism: AuthMechanism,
  failures: Schema.Number
})
export type AuthFailed = typeof AuthFailed.Type

/** A DNS question a policy check asked, and its answer or error: what a replay answers from. */
export const DnsAnswered = Schema.TaggedStruct("DnsAnswered", {
  session: SessionId,
  at: Millis,
  name: Schema.String,
  type: Schema.String,
  records: Schema.optionalKey(Schema.Array(Schema.Union([Schema.String, Schema.Array(Schema.String)]))),
  error: Schema.optionalKey(Schema.String)
})
export type DnsAnswered = typeof DnsAnswered.Type

/** The SPF check of a transaction's sender (RFC 7208), as rules saw it (`ctx.spf`). */
export const SpfResult = Schema.Literals(["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"])

export const SpfChecked = Schema.TaggedStruct("SpfChecked", {
  session: SessionId,
  at: Millis,
  /** Which identity (RFC 7208 2.3, 2.4) was checked: the HELO name at helo, the sender at mail (absent: mail). */
  identity: Schema.optionalKey(Schema.Literals(["helo", "mail"])),
  result: SpfResult,
  domain: Schema.String,
  comment: Schema.optionalKey(Schema.String),
  /** The Received-SPF header field added to the message. */
  header: Schema.String
})
export type SpfChecked = typeof SpfChecked.Type

/**
 * DKIM and DMARC (with SPF) of a whole message (RFC 6376, RFC 7489), as rules saw them at the
 * data stage (`ctx.dkim`, `ctx.dmarc`), and the Authentication-Results field added above it.
 */
export const DkimResults = Schema.Array(Schema.Struct({
  domain: Schema.String,
  selector: Schema.String,
  result: Schema.Literals(["pass", "fail", "neutral", "none", "temperror", "permerror", "policy"])
}))

export const DmarcResult = Schema.Struct({
  result: Schema.Literals(["pass", "fail", "none", "temperror", "permerror"]),
  domain: Schema.String,
  /** The policy the domain asks for: none, quarantine, reject. */
  policy: Schema.String
})

/**
 * The message's ARC chain (RFC 8617): its validation and newest instance (`none` and 0 without
 * a chain); for a passing chain, the domain that sealed the newest set (its ARC-Seal's d=) and
 * what that set's ARC-Authentication-Results recorded of DMARC (result, From domain).
 */
export const ArcResult = Schema.Struct({
  result: Schema.Literals(["pass", "fail", "none", "temperror", "permerror"]),
  instance: Schema.Number,
  sealer: Schema.optionalKey(Schema.String),
  recorded: Schema.optionalKey(Schema.Struct({ dmarc: Schema.optionalKey(Schema.String), from: Schema.optionalKey(Schema.String) }))
})

export const MessageAuthenticated = Schema.TaggedStruct("MessageAuthenticated", {
  session: SessionId,
  at: Millis,
  dkim: DkimResults,
  dmarc: Schema.optionalKey(DmarcResult),
  arc: Schema.optionalKey(ArcResult),
  header: Schema.String
})
export type MessageAuthenticated = typeof MessageAuthenticated.Type

const SpfFacts = Schema.Struct({ result: SpfResult, domain: Schema.String, comment: Schema.optionalKey(Schema.String) })

/** The session facts of a queued message, as rules at postq and delivery see them. */
export const MessageOrigin = Schema.Struct({
  peer: Endpoint,
  local: Endpoint,
  role: Role,
  clientName: Schema.optionalKey(Schema.String),
  tls: Schema.optionalKey(TlsFacts),
  helo: Schema.optionalKey(Schema.String),
  authenticated: Schema.optionalKey(Schema.String),
  spf: Schema.optionalKey(SpfFacts),
  spfHelo: Schema.optionalKey(SpfFacts),
  dkim: Schema.optionalKey(DkimResults),
  dmarc: Schema.optionalKey(DmarcResult),
  arc: Schema.optionalKey(ArcResult)
})
export type MessageOrigin = typeof MessageOrigin.Type

export const MessageQueued = Schema.TaggedStruct("MessageQueued", {
  session: SessionId,
  at: Millis,
  queueId: QueueId,
  envelope: Envelope,
  size: Schema.Number,
  /** SHA-256 of the stored message (Received header included), hex. */
  digest: Schema.String,
  /** Header lines (CRLF-ended) delivered above the stored message: those the rules added. */
  prepend: Schema.optionalKey(Schema.String),
  spool: SpoolReference,
  /**
   * What the session knew when it queued the message, for the rules the queue asks (postq,
   * delivery), also after a restart. Recorded only when there are such rules.
   */
  origin: Schema.optionalKey(MessageOrigin)
})
export type MessageQueued = typeof MessageQueued.Type

/**
 * The stages at which the policy is asked: the session's, in session order, then the queue's:
 * `postq` once a message is queued (before its first delivery), `delivery` for each recipient's
 * delivery attempt.
 */
export const PolicyStage = Schema.Literals(["connect", "helo", "auth", "mail", "rcpt", "data", "postq", "delivery"])
export type PolicyStage = typeof PolicyStage.Type

/**
 * The policy decided a stage: the verdict, the rule that gave it (absent: the stage's
 * default), the reply it gives, and what mattered. It is the machine's `Decided` input, so a
 * replay reproduces the session's replies from it without the rules that made it.
 */
const decisionFields = {
  session: SessionId,
  at: Millis,
  stage: PolicyStage,
  verdict: Schema.Literals(["accept", "deny", "tempfail", "disconnect", "quarantine"]),
  /** The quarantine an accepted message goes to instead of its recipients (data stage). */
  quarantine: Schema.optionalKey(Schema.String),
  rule: Schema.optionalKey(Schema.String),
  code: Schema.optionalKey(Schema.Number),
  enhanced: Schema.optionalKey(Schema.String),
  text: Schema.optionalKey(Schema.String),
  /** A rule that threw, failed or overran its budget: what happened (the verdict is tempfail). */
  error: Schema.optionalKey(Schema.String),
  because: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)),
  /** Header fields the rules add to an accepted message (data and postq stages). */
  headers: Schema.optionalKey(Schema.Array(Schema.Struct({ name: Schema.String, value: Schema.String }))),
  /** The message decided about (postq and delivery stages). */
  queueId: Schema.optionalKey(QueueId),
  /** The recipient whose delivery was decided (delivery stage). */
  recipient: Schema.optionalKey(Schema.String)
}

export const PolicyDecided = Schema.TaggedStruct("PolicyDecided", decisionFields)
export type PolicyDecided = typeof PolicyDecided.Type

/**
 * What the shadow rule set would have decided at the same point (`policy.shadow`): recorded,
 * never enforced, never a machine input. `postern replay --shadow-report` compares the two.
 */
export const ShadowDecided = Schema.TaggedStruct("ShadowDecided", {
  ...decisionFields,
  /**
   * Which decision of its stage in the session it shadows (0 for the first): a shadow decision
   * that needs I/O is recorded when it is done, which may be after later live ones.
   */
  index: Schema.optionalKey(Schema.Number)
})
export type ShadowDecided = typeof ShadowDecided.Type

export const Event = Schema.Union([
  SettingsRecorded,
  SessionOpened,
  CommandReceived,
  LineRejected,
  ContentReceived,
  MessageQueued,
  QueueFailed,
  TimedOut,
  ShutdownRequested,
  ReplySent,
  SessionClosed,
  MessageDelivered,
  DeliveryFailed,
  MessageCompleted,
  LogRepaired,
  TlsHandshakeStarted,
  TlsEstablished,
  TlsHandshakeFailed,
  CertificateLoaded,
  CertificateRejected,
  CertificateExpiring,
  PolicyDecided,
  ShadowDecided,
  DnsAnswered,
  SpfChecked,
  MessageAuthenticated,
  AuthResponseReceived,
  AuthSucceeded,
  AuthFailed
])
export type Event = typeof Event.Type
export type EncodedEvent = typeof Event.Encoded

/**
 * Builds an event. Events are plain objects whose encoded form is the object itself (every
 * field is a primitive, an array or a plain struct of them), so the hot path skips Schema
 * construction and encoding; `decode` validates everything read back, and a test checks that
 * `Schema.encodeSync(Event)` is the identity on a sample of every tag.
 */
export const make = <T extends Event["_tag"]>(
  tag: T,
  fields: Omit<Extract<Event, { readonly _tag: T }>, "_tag">
): Extract<Event, { readonly _tag: T }> => ({ _tag: tag, ...fields }) as Extract<Event, { readonly _tag: T }>

/** The encoded form, for msgpack: identity by construction (see `make`). */
export const encode = (event: Event): EncodedEvent => event

export const decode = Schema.decodeUnknownSync(Event)

/** The session an event belongs to, if any. */
export const sessionOf = (event: Event): string | undefined => ("session" in event ? event.session : undefined)
