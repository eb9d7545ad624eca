/**
 * Replay of recorded sessions: grouping the log into sessions, feeding a session's recorded
 * inputs back through `Machine.step`, and rendering transcripts. Pure: the CLI reads the log
 * and prints; this module only computes.
 */
import { Effect } from "effect"
import type * as Policy from "../policy/Policy.ts"
import * as Rule from "../policy/Rule.ts"
import * as QueueState from "../queue/QueueState.ts"
import * as Route from "../queue/Route.ts"
import * as Headers from "../session/Headers.ts"
import * as Machine from "../session/Machine.ts"
import * as PolicyContext from "../session/PolicyContext.ts"
import * as Reply from "../session/Reply.ts"
import type * as Event from "./Event.ts"

export interface RecordedSession {
  readonly id: string
  readonly opened: Event.SessionOpened | undefined
  readonly events: ReadonlyArray<Event.Event>
}

export interface SessionSummary {
  readonly id: string
  readonly at: number
  readonly peer: string
  readonly role: string
  readonly outcome: string
  readonly queued: ReadonlyArray<string>
}

/** Groups session events by session id, in order of first appearance. */
export const sessions = (events: Iterable<Event.Event>): ReadonlyArray<RecordedSession> => {
  const byId = new Map<string, { id: string; opened: Event.SessionOpened | undefined; events: Array<Event.Event> }>()
  for (const event of events) {
    if (!("session" in event)) continue
    let entry = byId.get(event.session)
    if (entry === undefined) {
      entry = { id: event.session, opened: undefined, events: [] }
      byId.set(event.session, entry)
    }
    if (event._tag === "SessionOpened") entry.opened = event
    entry.events.push(event)
  }
  return [...byId.values()]
}

/** Settings snapshots by digest, so each session is replayed with the settings it ran under. */
export const settingsByDigest = (events: Iterable<Event.Event>): ReadonlyMap<string, Event.MachineSettings> => {
  const map = new Map<string, Event.MachineSettings>()
  for (const event of events) if (event._tag === "SettingsRecorded") map.set(event.digest, event.settings)
  return map
}

/** The machine input an event records, if it records one. */
export const inputOf = (event: Event.Event): Machine.Input | undefined => {
  switch (event._tag) {
    case "SessionOpened":
      return { _tag: "Connected", admission: event.admission, security: event.security ?? "none", auth: event.auth ?? false }
    case "CommandReceived":
      return { _tag: "Line", text: event.line, flaw: event.flaw }
    case "LineRejected":
      return { _tag: event.reason === "too-long" ? "LineTooLong" : event.reason === "flood" ? "LineFlood" : "TlsRecord" }
    case "TlsEstablished":
      return { _tag: "TlsEstablished", facts: event.facts }
    case "TlsHandshakeFailed":
      return { _tag: "TlsFailed" }
    case "ContentReceived":
      return {
        _tag: "ContentEnd",
        size: event.size,
        bareLineEnding: event.bareLineEnding,
        ...(event.headers === undefined ? {} : { headers: event.headers })
      }
    case "MessageQueued":
      return { _tag: "Queued", queueId: event.queueId }
    case "QueueFailed":
      return { _tag: "QueueFailed", reason: event.reason }
    case "TimedOut":
      return { _tag: "TimedOut", phase: event.phase }
    case "ShutdownRequested":
      return { _tag: "Shutdown" }
    case "AuthResponseReceived":
      return { _tag: "AuthDecoded", outcome: event.outcome }
    case "AuthSucceeded":
      return { _tag: "AuthVerified", user: event.user }
    case "AuthFailed":
      return { _tag: "AuthVerified", user: undefined }
    case "PolicyDecided":
      // The queue's decisions (postq, delivery) come after the session's 250: not its inputs.
      return Rule.queueStages.has(event.stage) ? undefined : PolicyContext.decidedFrom(event)
    default:
      return undefined
  }
}

export interface Mismatch {
  readonly session: string
  /** Position of the reply within the session (0-based). */
  readonly index: number
  readonly recorded: string | undefined
  readonly replayed: string | undefined
}

export interface Verification {
  readonly session: string
  readonly replies: number
  readonly mismatches: ReadonlyArray<Mismatch>
  /** Why the session could not be replayed at all (no settings snapshot, for one). */
  readonly skipped: string | undefined
}

const recordedText = (event: Event.ReplySent): string =>
  Reply.format(Reply.make(event.code, event.enhanced, ...event.lines))

/** Feeds the session's inputs through the machine and compares every reply with the recorded one. */
export const verify = (session: RecordedSession, settings: Event.MachineSettings | undefined): Verification => {
  if (settings === undefined) {
    return { session: session.id, replies: 0, mismatches: [], skipped: "settings snapshot not found" }
  }
  const recorded: Array<string> = []
  const replayed: Array<string> = []
  let state = Machine.initial(settings)
  // A session recorded before Postern had policy has no decisions: every stage accepted then.
  const acceptEveryStage = !session.events.some((event) => event._tag === "PolicyDecided")
  const run = (input: Machine.Input): void => {
    const next = Machine.step(state, input)
    state = next.state
    for (const action of next.actions) {
      if (action._tag === "Reply") replayed.push(Reply.format(action.reply))
      if (action._tag === "Decide" && acceptEveryStage) {
        run({ _tag: "Decided", stage: action.decision.stage, verdict: "accept", reply: undefined })
      }
    }
  }
  for (const event of session.events) {
    if (event._tag === "ReplySent") {
      recorded.push(recordedText(event))
      continue
    }
    const input = inputOf(event)
    if (input !== undefined) run(input)
  }
  const mismatches: Array<Mismatch> = []
  const count = Math.max(recorded.length, replayed.length)
  for (let i = 0; i < count; i++) {
    if (recorded[i] !== replayed[i]) {
      mismatches.push({ session: session.id, index: i, recorded: recorded[i], replayed: replayed[i] })
    }
  }
  return { session: session.id, replies: recorded.length, mismatches, skipped: undefined }
}

/** A decision as `--rules` compares them: verdict, rule and reply. */
export interface DecisionSummary {
  readonly verdict: Event.PolicyDecided["verdict"]
  readonly rule: string | undefined
  readonly code: number | undefined
  readonly enhanced: string | undefined
  readonly text: string | undefined
}

/** A recorded decision that the other rules decide differently. */
export interface ChangedDecision {
  readonly session: string
  readonly at: number
  readonly stage: Event.PolicyStage
  readonly recorded: DecisionSummary
  readonly now: DecisionSummary
}

export interface Reevaluation {
  readonly session: string
  /** Decisions the session recorded and that were evaluated again. */
  readonly decisions: number
  readonly changed: ReadonlyArray<ChangedDecision>
  readonly skipped: string | undefined
}

const recordedSummary = (
  fields: Pick<Event.PolicyDecided, "verdict" | "rule" | "code" | "enhanced" | "text">
): DecisionSummary => ({
  verdict: fields.verdict,
  rule: fields.rule,
  code: fields.code,
  enhanced: fields.enhanced,
  text: fields.text
})

/** A decision as it would have been recorded. */
const decisionSummary = (stage: Event.PolicyStage, decision: Rule.Decision): DecisionSummary =>
  recordedSummary(PolicyContext.eventFields("", 0, stage, decision))

const sameDecision = (a: DecisionSummary, b: DecisionSummary): boolean =>
  a.verdict === b.verdict && a.rule === b.rule && a.code === b.code && a.enhanced === b.enhanced && a.text === b.text

/**
 * Re-evaluates a recorded session's policy decisions under `policy`, from the recorded facts:
 * the session is fed through the machine as it happened, and at each stage the other rules
 * are asked with the context the live rules saw (client, listener, TLS facts, HELO, envelope).
 * The recorded decision is what the machine goes on with, so every decision is compared on the
 * path the session really took; a changed decision may have changed what the client did next,
 * which no replay can know.
 *
 * The log does not record bodies: with `stored`, rules at data, postq and delivery see the start
 * of a message's body (up to `policy.bodyLimit`) as the live rules did, from its content where
 * the spool still holds it, and none where it does not (nor for a message refused at data).
 */
export const reevaluate = (
  session: RecordedSession,
  settings: Event.MachineSettings | undefined,
  policy: Policy.PolicyShape,
  stored?: StoredContent
): Effect.Effect<Reevaluation> =>
  Effect.gen(function*() {
    const opened = session.opened
    if (settings === undefined || opened === undefined) {
      return {
        session: session.id,
        decisions: 0,
        changed: [],
        skipped: opened === undefined ? "its opening is not in the log" : "settings snapshot not found"
      }
    }
    const connection: PolicyContext.Connection = {
      session: session.id,
      peer: opened.peer,
      local: opened.local,
      role: opened.role,
      clientName: opened.clientName
    }
    let state = Machine.initial(settings)
    // The question is put when its answer comes: the facts recorded in between (the SPF check
    // and its DNS answers) are part of what the live rules saw.
    let asked: { readonly decision: Machine.Deciding; readonly state: Machine.State } | undefined
    let spf: Rule.SpfView | undefined
    let spfHelo: Rule.SpfView | undefined
    let message: PolicyContext.Checks["message"]
    let decisions = 0
    const changed: Array<ChangedDecision> = []
    // For the queue's stages: each queued message, the header fields it was received with, and
    // the delivery decisions made so far per recipient (the attempts before the next one).
    const queued = new Map<string, Event.MessageQueued>()
    let received: ReadonlyArray<Headers.Header> = []
    // Each message's own fields as received, and those its postq decision added (delivery sees them).
    const receivedBy = new Map<string, ReadonlyArray<Headers.Header>>()
    const addedAtPostq = new Map<string, ReadonlyArray<Headers.Header>>()
    const viewed = new Map<string, Rule.MessageView>()
    const deliveries = new Map<string, number>()
    const content = storedContent(stored, policy.bodyLimit)
    let receivedSize = 0
    const queueContext = Effect.fnUntraced(function*(event: Event.PolicyDecided) {
      const recorded = event.queueId === undefined ? undefined : queued.get(event.queueId)
      if (recorded === undefined || !Rule.queueStages.has(event.stage)) return undefined
      const added = addedAtPostq.get(recorded.queueId)
      const message = added === undefined ? recorded : { ...recorded, prepend: QueueState.addedAbove(recorded, added) }
      const view = viewed.get(message.queueId) ?? (yield* content.view(message)) ??
        PolicyContext.messageView(receivedView(message, receivedBy.get(message.queueId) ?? []), undefined)
      viewed.set(message.queueId, view)
      if (event.stage === "postq") return PolicyContext.queued(message, "postq", event.at, view, undefined)
      const recipient = event.recipient ?? ""
      const key = `${message.queueId}\u0000${recipient}`
      const attempts = deliveries.get(key) ?? 0
      deliveries.set(key, attempts + 1)
      const local = Route.route(settings.localDomains, recipient)._tag !== "Remote"
      return PolicyContext.queued(message, "delivery", event.at, view, { recipient, local, attempts })
    })
    for (const [index, event] of session.events.entries()) {
      if (event._tag === "SpfChecked" && event.identity === "helo") spfHelo = PolicyContext.spfView(event)
      else if (event._tag === "SpfChecked") spf = PolicyContext.spfView(event)
      if (event._tag === "MessageAuthenticated") message = { dkim: event.dkim, dmarc: event.dmarc, arc: event.arc }
      if (event._tag === "ContentReceived") {
        received = event.headers ?? []
        receivedSize = event.size
      }
      if (event._tag === "MessageQueued") {
        queued.set(event.queueId, event)
        receivedBy.set(event.queueId, received)
      }
      // The data stage decides before the message is queued: its content is that of the
      // MessageQueued that follows, if the transaction got that far.
      const body = event._tag === "PolicyDecided" && event.stage === "data"
        ? yield* content.receivedBody(queuedAfter(session.events, index), receivedSize)
        : undefined
      const context = event._tag !== "PolicyDecided"
        ? undefined
        : asked !== undefined && !Rule.queueStages.has(event.stage)
        ? PolicyContext.make(connection, asked.state, asked.decision, event.at, { spf, spfHelo, message, body })
        : yield* queueContext(event)
      if (event._tag === "PolicyDecided" && context !== undefined) {
        const outcome = policy.decide(context)
        const now = decisionSummary(event.stage, Effect.isEffect(outcome) ? yield* outcome : outcome)
        if (!Rule.queueStages.has(event.stage)) asked = undefined
        decisions++
        const recorded = recordedSummary(event)
        if (!sameDecision(recorded, now)) changed.push({ session: session.id, at: event.at, stage: event.stage, recorded, now })
      }
      // The live postq decision's fields went above the message: delivery rules saw them.
      if (event._tag === "PolicyDecided" && event.stage === "postq" && event.queueId !== undefined && event.headers !== undefined) {
        addedAtPostq.set(event.queueId, event.headers)
        viewed.delete(event.queueId)
      }
      const input = inputOf(event)
      if (input === undefined) continue
      const next = Machine.step(state, input)
      state = next.state
      for (const action of next.actions) {
        if (action._tag !== "Decide") continue
        asked = { decision: action.decision, state }
        // Each MAIL checks SPF anew (both identities), as the live session does.
        if (action.decision.stage === "mail") {
          spf = undefined
          spfHelo = undefined
        }
      }
    }
    return { session: session.id, decisions, changed, skipped: undefined }
  })

/**
 * Where `reevaluate` finds a queued message's stored content (the spool, while it holds the
 * message): its first `limit` bytes, or all of it when shorter; undefined when it is gone.
 */
export type StoredContent = (message: Event.MessageQueued, limit: number) => Effect.Effect<Uint8Array | undefined>

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8")

/**
 * A session's messages as rules see them from their stored content, each read once. The content
 * starts with the trace fields Postern wrote (`Received`, naming the queue id: content that does
 * not is another message's, in a spool that is not this log's), then the message as received.
 */
const storedContent = (stored: StoredContent | undefined, bodyLimit: number) => {
  const starts = new Map<string, { readonly limit: number; readonly bytes: Uint8Array | undefined }>()
  const start = (message: Event.MessageQueued, limit: number): Effect.Effect<Uint8Array | undefined> => {
    const known = starts.get(message.queueId)
    if (stored === undefined || (known !== undefined && known.limit >= limit)) return Effect.succeed(known?.bytes)
    return Effect.map(stored(message, limit), (bytes) => {
      const ours = bytes !== undefined && decoder.decode(bytes.subarray(0, Headers.maxBytes)).includes(` id ${message.queueId}`)
      starts.set(message.queueId, { limit, bytes: ours ? bytes : undefined })
      return ours ? bytes : undefined
    })
  }
  // Enough to fill a collector: the header section it keeps, the body and one byte to tell a cut body.
  const enough = Headers.maxBytes + bodyLimit + 1
  return {
    /**
     * The body start the data stage saw, which the session collected from the message as
     * received: what follows the trace fields, `size` less the size received.
     */
    receivedBody: (message: Event.MessageQueued | undefined, receivedSize: number): Effect.Effect<PolicyContext.Body | undefined> => {
      const trace = message === undefined ? -1 : message.size - receivedSize
      if (message === undefined || bodyLimit === 0 || trace < 0) return Effect.succeed(undefined)
      return Effect.map(start(message, trace + enough), (bytes) => {
        // The message as received starts on a line of its own.
        if (bytes === undefined || trace > bytes.length || (trace > 0 && bytes[trace - 1] !== 0x0a)) return undefined
        const collector = Headers.collector(bodyLimit)
        collector.push(bytes.subarray(trace))
        return collector.body()
      })
    },
    /** The view of postq and delivery, collected as the queue does (`Queue.viewOf`): the fields Postern added, then the content. */
    view: (message: Event.MessageQueued): Effect.Effect<Rule.MessageView | undefined> =>
      Effect.map(start(message, enough), (bytes) => {
        if (bytes === undefined) return undefined
        const collector = Headers.collector(bodyLimit)
        if (message.prepend !== undefined) collector.push(encoder.encode(message.prepend))
        collector.push(bytes)
        return PolicyContext.messageView(collector.headers(), bodyLimit > 0 ? collector.body() : undefined)
      })
  }
}

/**
 * The message a data decision let into the queue: the session's MessageQueued right after it,
 * before any reply or input; none when the message was refused or could not be queued.
 */
const queuedAfter = (events: ReadonlyArray<Event.Event>, index: number): Event.MessageQueued | undefined => {
  for (let i = index + 1; i < events.length; i++) {
    const event = events[i]
    if (event?._tag === "MessageQueued") return event
    if (event === undefined || event._tag === "ReplySent" || inputOf(event) !== undefined) return undefined
  }
  return undefined
}

/**
 * The header fields a queued message was delivered with, as far as the log knows them: those
 * Postern added above it, then those it was received with (the Received field it wrote is not
 * recorded).
 */
const receivedView = (message: Event.MessageQueued, received: ReadonlyArray<Headers.Header>): ReadonlyArray<Headers.Header> =>
  message.prepend === undefined ? received : [...Headers.parse(message.prepend), ...received]

/** A stage where the shadow rules decided otherwise than the live ones. */
export interface ShadowDifference {
  readonly session: string
  readonly at: number
  readonly stage: Event.PolicyStage
  readonly live: DecisionSummary
  readonly shadow: DecisionSummary
}

/**
 * Pairs each live decision of a session with the shadow decision made at the same point (the
 * n-th of a stage with the n-th of that stage) and returns the pairs that differ, with how
 * many pairs there were.
 */
export const shadowReport = (session: RecordedSession): { readonly compared: number; readonly differences: ReadonlyArray<ShadowDifference> } => {
  // The queue's decisions are about a message (and a recipient), and made in their own order.
  const key = (event: Event.PolicyDecided | Event.ShadowDecided) =>
    Rule.queueStages.has(event.stage) ? `${event.stage} ${event.queueId ?? ""} ${event.recipient ?? ""}` : event.stage
  const live = new Map<string, Array<Event.PolicyDecided>>()
  const shadow = new Map<string, Array<Event.ShadowDecided>>()
  for (const event of session.events) {
    if (event._tag === "PolicyDecided") live.set(key(event), [...(live.get(key(event)) ?? []), event])
    if (event._tag === "ShadowDecided") shadow.set(key(event), [...(shadow.get(key(event)) ?? []), event])
  }
  let compared = 0
  const differences: Array<ShadowDifference> = []
  for (const [group, decisions] of live) {
    const shadows = shadow.get(group) ?? []
    decisions.forEach((decision, index) => {
      // Recorded with the index of the decision it shadows; older logs, in order.
      const other = shadows.find((s) => s.index === index) ?? (shadows.some((s) => s.index !== undefined) ? undefined : shadows[index])
      if (other === undefined) return
      compared++
      const a = recordedSummary(decision)
      const b = recordedSummary(other)
      if (!sameDecision(a, b)) differences.push({ session: session.id, at: decision.at, stage: decision.stage, live: a, shadow: b })
    })
  }
  differences.sort((x, y) => x.at - y.at)
  return { compared, differences }
}

export const summarize = (session: RecordedSession): SessionSummary => {
  const queued: Array<string> = []
  let outcome = "open"
  for (const event of session.events) {
    if (event._tag === "MessageQueued") queued.push(event.queueId)
    if (event._tag === "SessionClosed") outcome = event.reason
  }
  const opened = session.opened
  return {
    id: session.id,
    at: opened?.at ?? session.events[0]?.at ?? 0,
    peer: opened === undefined ? "?" : `${opened.peer.address}:${opened.peer.port}`,
    role: opened?.role ?? "?",
    outcome,
    queued
  }
}

const time = (at: number): string => new Date(at).toISOString().replace("T", " ").replace("Z", "")

const visible = (text: string): string => text.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)

/** The TLS facts on one line: version, cipher, SNI, the certificate served and why, resumption, client certificate. */
export const describeTls = (facts: Event.TlsFacts): string =>
  [
    `${facts.version} ${facts.cipher} (${facts.bits} bits)`,
    facts.group === undefined ? undefined : `group ${facts.group}`,
    facts.sni === undefined ? "no SNI" : `SNI ${facts.sni}`,
    `certificate ${facts.certificate} (${facts.match})`,
    facts.resumed ? "resumed" : "full handshake",
    facts.clientCertificate === undefined
      ? undefined
      : `client certificate ${facts.clientCertificate.subject} ${facts.clientCertificate.fingerprint256}${
        facts.clientCertificate.verified ? "" : " (not verified)"
      }`
  ].filter((part) => part !== undefined).join(", ")

const verdictWords = {
  accept: "accepted",
  deny: "denied",
  tempfail: "deferred",
  disconnect: "disconnected",
  quarantine: "quarantined"
} as const

/**
 * "rcpt denied by rule 'relay' (554 5.7.1) [client 192.0.2.1]": which rule gave the reply the
 * client saw. Accepts by the stage's default are not worth a line.
 */
export const describeDecision = (event: Event.PolicyDecided | Event.ShadowDecided): string | undefined => {
  if (event.verdict === "accept" && event.rule === undefined) return undefined
  const subject = event.queueId === undefined ? "" : ` ${event.queueId}${event.recipient === undefined ? "" : ` to <${event.recipient}>`}`
  const by = event.rule === undefined ? `the ${event.stage} default` : `rule '${event.rule}'`
  const reply = event.quarantine !== undefined
    ? ` (into ${event.quarantine})`
    : event.code === undefined
    ? ""
    : ` (${event.code}${event.enhanced === undefined ? "" : ` ${event.enhanced}`})`
  const because = event.because === undefined
    ? ""
    : ` [${Object.entries(event.because).map(([key, value]) => `${key} ${value}`).join(", ")}]`
  const error = event.error === undefined ? "" : `; the rule ${event.error}`
  return `${event.stage}${subject} ${verdictWords[event.verdict]} by ${by}${reply}${because}${error}`
}

/** One line per event, as an administrator reads a session: client lines, server lines, facts. */
export const transcript = (session: RecordedSession): ReadonlyArray<string> =>
  session.events.flatMap((event): ReadonlyArray<string> => {
    const at = time(event.at)
    switch (event._tag) {
      case "SessionOpened":
        return [
          `${at} -- connection from ${event.peer.address}:${event.peer.port} to ${event.local.address}:${event.local.port} (${event.role})` +
          (event.proxiedBy === undefined ? "" : ` via proxy ${event.proxiedBy.address}:${event.proxiedBy.port}`) +
          (event.security === undefined || event.security === "none" ? "" : `, TLS ${event.security}`) +
          (event.admission === "ok" ? "" : `, refused: ${event.admission}`)
        ]
      case "CommandReceived":
        return [`${at} C: ${visible(event.line)}${event.flaw === undefined ? "" : `   [${event.flaw}]`}`]
      case "LineRejected":
        return [`${at} C: <line rejected: ${event.reason}>`]
      case "ContentReceived":
        return [
          `${at} C: <content, ${event.size} octets${event.bareLineEnding === undefined ? "" : `, bare ${event.bareLineEnding.toUpperCase()}`}>`
        ]
      case "ReplySent":
        return Reply.format(Reply.make(event.code, event.enhanced, ...event.lines)).split("\r\n").filter((l) => l.length > 0)
          .map((l) => `${at} S: ${l}`)
      case "MessageQueued":
        return [
          `${at} -- queued as ${event.queueId}: from <${event.envelope.from}> to ${event.envelope.to.map((t) => `<${t}>`).join(", ")}, ${event.size} octets, sha256 ${event.digest.slice(0, 16)}…`
        ]
      case "QueueFailed":
        return [`${at} -- queue failed: ${event.reason}`]
      case "TimedOut":
        return [`${at} -- timeout (${event.phase})`]
      case "ShutdownRequested":
        return [`${at} -- shutdown requested`]
      case "SessionClosed":
        return [`${at} -- closed: ${event.reason}${event.detail === undefined ? "" : ` (${event.detail})`}`]
      case "TlsHandshakeStarted":
        return [
          `${at} -- TLS handshake (${event.mode})` +
          (event.discardedBytes === 0 ? "" : `; ${event.discardedBytes} octets of plaintext after STARTTLS discarded`)
        ]
      case "TlsEstablished":
        return [`${at} -- TLS established in ${event.durationMs} ms: ${describeTls(event.facts)}`]
      case "TlsHandshakeFailed":
        return [`${at} -- TLS handshake failed after ${event.durationMs} ms: ${event.reason} (${event.detail})`]
      case "AuthResponseReceived":
        return event.outcome === "answer" ? [] : [`${at} -- AUTH response: ${event.outcome}`]
      case "SpfChecked":
        return [
          `${at} -- SPF${event.identity === "helo" ? " (HELO)" : ""} ${event.result} for ${event.domain || "-"}${
            event.comment === undefined ? "" : ` (${event.comment})`
          }`
        ]
      case "MessageAuthenticated":
        return [
          `${at} -- DKIM ${event.dkim.length === 0 ? "none (not signed)" : event.dkim.map((d) => `${d.result} (${d.domain} ${d.selector})`).join(", ")}` +
          (event.arc === undefined || event.arc.instance === 0
            ? ""
            : `; ARC ${event.arc.result} (i=${event.arc.instance}${event.arc.sealer === undefined ? "" : ` by ${event.arc.sealer}`})`) +
          (event.dmarc === undefined ? "" : `; DMARC ${event.dmarc.result} for ${event.dmarc.domain} (p=${event.dmarc.policy})`)
        ]
      case "DnsAnswered":
        return [
          `${at} -- DNS ${event.type} ${event.name}: ${
            event.error === undefined ? JSON.stringify(event.records ?? []) : event.error
          }`
        ]
      case "AuthSucceeded":
        return [`${at} -- AUTH ${event.mechanism} succeeded: ${event.user}`]
      case "AuthFailed":
        return [`${at} -- AUTH ${event.mechanism} failed (${event.failures} so far)`]
      case "PolicyDecided": {
        const decision = describeDecision(event)
        return decision === undefined ? [] : [`${at} -- ${decision}`]
      }
      case "ShadowDecided": {
        const decision = describeDecision(event)
        return decision === undefined ? [] : [`${at} -- shadow: ${decision}`]
      }
      default:
        return []
    }
  })
