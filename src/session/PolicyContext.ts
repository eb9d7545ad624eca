/**
 * The context a policy rule sees, built from the machine's state and the stage it is deciding,
 * plus what the connection knows (peer, listener). One function for the live session and for
 * anything that re-evaluates recorded sessions, so that both give rules the same view. Pure.
 */
import type * as Event from "../log/Event.ts"
import type * as Rule from "../policy/Rule.ts"
import * as Address from "./Address.ts"
import * as Headers from "./Headers.ts"
import * as Machine from "./Machine.ts"
import * as Reply from "./Reply.ts"

/** What the session knows of its connection. */
export interface Connection {
  readonly session: string
  readonly peer: Event.Endpoint
  readonly local: Event.Endpoint
  readonly role: Event.Role
  readonly clientName: string | undefined
}

/** What the session checked or collected besides the machine's state. */
export interface Checks {
  readonly spf?: Rule.SpfView | undefined
  readonly spfHelo?: Rule.SpfView | undefined
  readonly message?: {
    readonly dkim: typeof Event.DkimResults.Type
    readonly dmarc: typeof Event.DmarcResult.Type | undefined
    readonly arc: typeof Event.ArcResult.Type | undefined
  } | undefined
  /** At data: the start of the body (see `Headers.collector`). */
  readonly body?: Body | undefined
}

export interface Body {
  readonly bytes: Uint8Array
  readonly truncated: boolean
}

export const make = (
  connection: Connection,
  state: Machine.State,
  decision: Machine.Deciding,
  at: number,
  checks: Checks = {}
): Rule.Context => {
  const transaction = state.transaction
  return {
    stage: decision.stage,
    session: connection.session,
    at,
    client: { address: connection.peer.address, ip: connection.peer.address, port: connection.peer.port, name: connection.clientName },
    listener: { role: connection.role, address: connection.local.address, port: connection.local.port },
    isSecured: Machine.isSecured(state),
    tls: state.tls,
    helo: decision.stage === "helo" ? decision.helo.domain : state.helo?.domain,
    authenticated: decision.stage === "auth" ? decision.user : state.authenticated,
    from: decision.stage === "mail"
      ? Address.format(decision.transaction.from)
      : transaction === undefined
      ? undefined
      : Address.format(transaction.from),
    recipients: transaction?.recipients ?? [],
    recipient: decision.stage === "rcpt" ? decision.recipient : undefined,
    recipientIsLocal: decision.stage === "rcpt" && decision.local,
    size: decision.stage === "data" ? decision.size : undefined,
    message: decision.stage === "data" ? messageView(decision.headers, checks.body) : undefined,
    queueId: undefined,
    attempts: undefined,
    spf: checks.spf,
    spfHelo: checks.spfHelo,
    dkim: decision.stage === "data" ? checks.message?.dkim : undefined,
    dmarc: decision.stage === "data" ? checks.message?.dmarc : undefined,
    arc: decision.stage === "data" ? arcView(checks.message?.arc) : undefined
  }
}

const decoder = new TextDecoder("utf-8")

export const messageView = (
  headers: ReadonlyArray<Headers.Header>,
  body: Body | undefined,
  content?: Rule.MessageView["content"]
): Rule.MessageView => ({
  headers,
  header: (name) => Headers.first(headers, name),
  body: body === undefined ? undefined : { ...body, text: () => decoder.decode(body.bytes) },
  content
})

/**
 * What the session knew when it queued a message (MessageQueued.origin), for the rules the
 * queue asks later: the same facts as the data stage's context.
 */
export const origin = (connection: Connection, state: Machine.State, checks: Checks): Event.MessageOrigin => ({
  peer: connection.peer,
  local: connection.local,
  role: connection.role,
  ...(connection.clientName === undefined ? {} : { clientName: connection.clientName }),
  ...(state.tls === undefined ? {} : { tls: state.tls }),
  ...(state.helo === undefined ? {} : { helo: state.helo.domain }),
  ...(state.authenticated === undefined ? {} : { authenticated: state.authenticated }),
  ...(checks.spf === undefined ? {} : { spf: spfFacts(checks.spf) }),
  ...(checks.spfHelo === undefined ? {} : { spfHelo: spfFacts(checks.spfHelo) }),
  ...(checks.message?.dkim === undefined ? {} : { dkim: checks.message.dkim }),
  ...(checks.message?.dmarc === undefined ? {} : { dmarc: checks.message.dmarc }),
  ...(checks.message?.arc === undefined ? {} : { arc: checks.message.arc })
})

const spfFacts = (view: Rule.SpfView) => ({
  result: view.result,
  domain: view.domain,
  ...(view.comment === undefined ? {} : { comment: view.comment })
})

/** What rules see of an SPF check (`ctx.spf`, `ctx.spfHelo`): live, recorded or kept with a message. */
export const spfView = (
  facts: { readonly result: Rule.SpfView["result"]; readonly domain: string; readonly comment?: string | undefined } | undefined
): Rule.SpfView | undefined =>
  facts === undefined ? undefined : { result: facts.result, domain: facts.domain, comment: facts.comment }

const arcView = (facts: typeof Event.ArcResult.Type | undefined): Rule.Context["arc"] =>
  facts === undefined ? undefined : {
    result: facts.result,
    instance: facts.instance,
    sealer: facts.sealer,
    recorded: facts.recorded === undefined ? undefined : { dmarc: facts.recorded.dmarc, from: facts.recorded.from }
  }

/** A recipient's delivery attempt, as the delivery stage's context gives it. */
export interface Delivery {
  readonly recipient: string
  readonly local: boolean
  readonly attempts: number
}

/**
 * The context of a stage the queue asks about (postq, delivery): the message's recorded origin
 * and envelope, its header fields and body start as read from the spool. A message queued
 * without an origin (no such rules then) has an unknown client, shown as address "".
 */
export const queued = (
  message: Event.MessageQueued,
  stage: "postq" | "delivery",
  at: number,
  view: Rule.MessageView | undefined,
  delivery: Delivery | undefined
): Rule.Context => {
  const from = message.origin
  return {
    stage,
    session: message.session,
    at,
    client: { address: from?.peer.address ?? "", ip: from?.peer.address ?? "", port: from?.peer.port ?? 0, name: from?.clientName },
    listener: { role: from?.role ?? "smtp", address: from?.local.address ?? "", port: from?.local.port ?? 0 },
    isSecured: from?.tls !== undefined,
    tls: from?.tls,
    helo: from?.helo,
    authenticated: from?.authenticated,
    from: message.envelope.from,
    recipients: message.envelope.to,
    recipient: delivery?.recipient,
    recipientIsLocal: delivery?.local ?? false,
    size: message.size,
    message: view,
    queueId: message.queueId,
    attempts: delivery?.attempts,
    spf: spfView(from?.spf),
    spfHelo: spfView(from?.spfHelo),
    dkim: from?.dkim,
    dmarc: from?.dmarc,
    arc: arcView(from?.arc)
  }
}

/**
 * The machine input a decision's recorded fields stand for: one mapping for the live session
 * (the fields it is about to record) and for replay (the fields it read back).
 */
export const decidedFrom = (
  fields: Omit<Event.PolicyDecided, "_tag" | "session" | "at">
): Extract<Machine.Input, { readonly _tag: "Decided" }> => ({
  _tag: "Decided",
  stage: fields.stage,
  verdict: fields.verdict,
  reply: fields.code === undefined ? undefined : Reply.make(fields.code, fields.enhanced, fields.text ?? ""),
  ...(fields.headers === undefined ? {} : { headers: fields.headers }),
  ...(fields.quarantine === undefined ? {} : { quarantine: fields.quarantine })
})

/** The machine input of a decision. */
export const decidedInput = (stage: Event.PolicyStage, decision: Rule.Decision): Extract<Machine.Input, { readonly _tag: "Decided" }> =>
  decidedFrom(eventFields("", 0, stage, decision))

/** A decision's fields as PolicyDecided and ShadowDecided record them. */
export const eventFields = (session: string, at: number, stage: Event.PolicyStage, decision: Rule.Decision) => {
  const verdict = decision.verdict
  const answer = verdict._tag === "Accept" || verdict._tag === "Quarantine" ? undefined : verdict.answer
  return {
    session,
    at,
    stage,
    verdict: verdictName(verdict),
    ...(verdict._tag === "Quarantine" ? { quarantine: verdict.name } : {}),
    ...(decision.rule === undefined ? {} : { rule: decision.rule }),
    ...(answer === undefined ? {} : { code: answer.code, enhanced: answer.enhanced, text: answer.text }),
    ...(decision.error === undefined ? {} : { error: decision.error }),
    ...(verdict.because === undefined ? {} : { because: verdict.because }),
    ...(decision.headers === undefined ? {} : { headers: decision.headers })
  }
}

export const verdictName = (verdict: Rule.Decision["verdict"]): Event.PolicyDecided["verdict"] => {
  switch (verdict._tag) {
    case "Accept":
      return "accept"
    case "Quarantine":
      return "quarantine"
    case "Deny":
      return "deny"
    case "Tempfail":
      return "tempfail"
    case "Disconnect":
      return "disconnect"
  }
}
