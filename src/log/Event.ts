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
  localDomains: Schema.Array(LocalDomain)
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
  "io-error"
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
  body: Schema.optionalKey(Schema.Literals(["7BIT", "8BITMIME", "BINARYMIME"]))
})
export type Envelope = typeof Envelope.Type

/** The machine's settings in force for the sessions that follow, recorded once per start or reload. */
export class SettingsRecorded extends Schema.TaggedClass<SettingsRecorded>()("SettingsRecorded", {
  at: Millis,
  digest: Schema.String,
  settings: MachineSettings
}) {}

export class SessionOpened extends Schema.TaggedClass<SessionOpened>()("SessionOpened", {
  session: SessionId,
  at: Millis,
  settingsDigest: Schema.String,
  role: Role,
  peer: Endpoint,
  local: Endpoint,
  /** The load balancer's address when the peer came through the PROXY protocol. */
  proxiedBy: Schema.optionalKey(Endpoint),
  admission: Admission
}) {}

/** A command line as received. AUTH responses are redacted before they get here. */
export class CommandReceived extends Schema.TaggedClass<CommandReceived>()("CommandReceived", {
  session: SessionId,
  at: Millis,
  line: Schema.String,
  flaw: Schema.optionalKey(Schema.Literals(["bare-lf", "bare-cr", "nul"]))
}) {}

export class LineRejected extends Schema.TaggedClass<LineRejected>()("LineRejected", {
  session: SessionId,
  at: Millis,
  reason: Schema.Literals(["too-long", "flood"])
}) {}

/** The end of DATA content or of one BDAT chunk. */
export class ContentReceived extends Schema.TaggedClass<ContentReceived>()("ContentReceived", {
  session: SessionId,
  at: Millis,
  size: Schema.Number,
  bareLineEnding: Schema.optionalKey(Schema.Literals(["lf", "cr"]))
}) {}

/** The message and this event are durable: the 250 that follows is true. */
export class MessageQueued extends Schema.TaggedClass<MessageQueued>()("MessageQueued", {
  session: SessionId,
  at: Millis,
  queueId: QueueId,
  envelope: Envelope,
  size: Schema.Number,
  /** SHA-256 of the stored message (Received header included), hex. */
  digest: Schema.String,
  spool: SpoolReference
}) {}

export class QueueFailed extends Schema.TaggedClass<QueueFailed>()("QueueFailed", {
  session: SessionId,
  at: Millis,
  reason: Schema.String
}) {}

export class TimedOut extends Schema.TaggedClass<TimedOut>()("TimedOut", {
  session: SessionId,
  at: Millis,
  phase: TimeoutPhase
}) {}

export class ShutdownRequested extends Schema.TaggedClass<ShutdownRequested>()("ShutdownRequested", {
  session: SessionId,
  at: Millis
}) {}

export class ReplySent extends Schema.TaggedClass<ReplySent>()("ReplySent", {
  session: SessionId,
  at: Millis,
  code: Schema.Number,
  enhanced: Schema.optionalKey(Schema.String),
  lines: Schema.Array(Schema.String)
}) {}

export class SessionClosed extends Schema.TaggedClass<SessionClosed>()("SessionClosed", {
  session: SessionId,
  at: Millis,
  reason: SessionCloseReason,
  detail: Schema.optionalKey(Schema.String)
}) {}

export class MessageDelivered extends Schema.TaggedClass<MessageDelivered>()("MessageDelivered", {
  at: Millis,
  queueId: QueueId,
  recipient: Schema.String,
  /** Where it went: the Maildir file, or "discard". */
  destination: Schema.String
}) {}

export class DeliveryFailed extends Schema.TaggedClass<DeliveryFailed>()("DeliveryFailed", {
  at: Millis,
  queueId: QueueId,
  recipient: Schema.String,
  permanent: Schema.Boolean,
  reason: Schema.String,
  /** When the next attempt is due, for temporary failures. */
  retryAt: Schema.optionalKey(Millis)
}) {}

/** Every recipient is done: the spool space can be reclaimed. */
export class MessageCompleted extends Schema.TaggedClass<MessageCompleted>()("MessageCompleted", {
  at: Millis,
  queueId: QueueId
}) {}

/** The log found and cut a torn or corrupt tail when it opened a partition. */
export class LogRepaired extends Schema.TaggedClass<LogRepaired>()("LogRepaired", {
  at: Millis,
  file: Schema.String,
  offset: Schema.Number,
  droppedBytes: Schema.Number
}) {}

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
  LogRepaired
])
export type Event = typeof Event.Type
export type EncodedEvent = typeof Event.Encoded

export const encode = Schema.encodeSync(Event)
export const decode = Schema.decodeUnknownSync(Event)

/** The session an event belongs to, if any. */
export const sessionOf = (event: Event): string | undefined => ("session" in event ? event.session : undefined)
