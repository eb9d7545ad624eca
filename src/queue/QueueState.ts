/**
 * The queue as a fold over the event log: which messages are still pending, which of their
 * recipients remain, and when each is next due.
 *
 * The same transition (`step`) serves recovery after a crash (`fromEvents` over the
 * partition's log) and the running queue (which applies each event it appends), so the two
 * can never disagree about what is left to do. The retry schedule (`retryDelay`) lives here
 * too. Pure: no I/O.
 */
import type * as Event from "../log/Event.ts"
import * as Headers from "../session/Headers.ts"

/** One recipient still to be delivered. */
export interface Recipient {
  readonly recipient: string
  /** Its position in `envelope.to` (the first, if it appears more than once). */
  readonly index: number
  /** Temporary failures so far. */
  readonly attempts: number
  /** Epoch milliseconds when it is due; the queue time until its first attempt. */
  readonly retryAt: number
  /** The reason of the last temporary failure. */
  readonly lastError: string | undefined
}

/** A queued message that is not completed. */
export interface Pending {
  readonly queued: Event.MessageQueued
  /** Recipients neither delivered nor failed permanently, in envelope order. */
  readonly remaining: ReadonlyArray<Recipient>
  /**
   * When the message next needs attention: the earliest `retryAt` of its remaining
   * recipients, or its queue time when none remain (it only waits for its completion).
   */
  readonly nextAttemptAt: number
  /**
   * The policy's decision after queueing (postq stage), once made: what becomes of the whole
   * message. A tempfail is no decision: the stage is asked again at the next attempt.
   */
  readonly postq: Event.PolicyDecided | undefined
  /**
   * Recipients whose copy a delivery decision sent to a quarantine, by recipient: after a crash
   * the copy goes where the decision said, without asking again.
   */
  readonly held: Readonly<Record<string, string>>
}

const nextAttemptAt = (queued: Event.MessageQueued, remaining: ReadonlyArray<Recipient>): number =>
  remaining.reduce((earliest, r) => Math.min(earliest, r.retryAt), remaining.length === 0 ? queued.at : Infinity)

/** The pending state of a message just queued: every distinct recipient, due at once. */
export const queued = (event: Event.MessageQueued): Pending => {
  const seen = new Set<string>()
  const remaining: Array<Recipient> = []
  event.envelope.to.forEach((recipient, index) => {
    if (seen.has(recipient)) return
    seen.add(recipient)
    remaining.push({ recipient, index, attempts: 0, retryAt: event.at, lastError: undefined })
  })
  return { queued: event, remaining, nextAttemptAt: nextAttemptAt(event, remaining), postq: undefined, held: {} }
}

/** The events that change a queued message. */
export type DeliveryEvent = Event.MessageDelivered | Event.DeliveryFailed | Event.MessageCompleted | Event.PolicyDecided

/** Whether `event` is the postq decision about a message (one that settles it, not a tempfail). */
const settlesPostq = (event: Event.PolicyDecided): boolean =>
  event.stage === "postq" && event.queueId !== undefined && event.verdict !== "tempfail"

/**
 * Applies one event to a pending message; `undefined` once the message is completed. Events
 * for recipients that are not (or no longer) remaining change nothing.
 */
export const step = (pending: Pending, event: DeliveryEvent): Pending | undefined => {
  switch (event._tag) {
    case "MessageCompleted":
      return undefined
    case "PolicyDecided":
      if (settlesPostq(event) && pending.postq === undefined) return { ...pending, postq: event }
      if (event.stage === "delivery" && event.recipient !== undefined && event.quarantine !== undefined) {
        return { ...pending, held: { ...pending.held, [event.recipient]: event.quarantine } }
      }
      return pending
    case "MessageDelivered":
      return without(pending, event.recipient)
    case "DeliveryFailed": {
      if (event.permanent) return without(pending, event.recipient)
      if (!pending.remaining.some((r) => r.recipient === event.recipient)) return pending
      const remaining = pending.remaining.map((r) =>
        r.recipient === event.recipient
          ? { ...r, attempts: r.attempts + 1, retryAt: event.retryAt ?? event.at, lastError: event.reason }
          : r
      )
      return { ...pending, remaining, nextAttemptAt: nextAttemptAt(pending.queued, remaining) }
    }
  }
}

const without = (pending: Pending, recipient: string): Pending => {
  if (!pending.remaining.some((r) => r.recipient === recipient)) return pending
  const remaining = pending.remaining.filter((r) => r.recipient !== recipient)
  return { ...pending, remaining, nextAttemptAt: nextAttemptAt(pending.queued, remaining) }
}

/**
 * Folds a partition's events, oldest first, into its pending messages by queue id (in queue
 * order). Events other than the queue's own (and its postq decisions) are ignored, and so are delivery events for
 * a queue id whose `MessageQueued` is not in `events`.
 */
export const fromEvents = (events: Iterable<Event.Event>): ReadonlyMap<string, Pending> => {
  const pending = new Map<string, Pending>()
  for (const event of events) {
    switch (event._tag) {
      case "MessageQueued": {
        if (!pending.has(event.queueId)) pending.set(event.queueId, queued(event))
        break
      }
      case "PolicyDecided":
      case "MessageDelivered":
      case "DeliveryFailed":
      case "MessageCompleted": {
        if (event.queueId === undefined) break
        const current = pending.get(event.queueId)
        if (current === undefined) break
        const next = step(current, event)
        if (next === undefined) pending.delete(event.queueId)
        else pending.set(event.queueId, next)
        break
      }
      default:
        break
    }
  }
  return pending
}

/**
 * How long to wait after the `attempts`-th temporary failure: `base` doubled per earlier
 * failure, never more than `max`.
 */
export const retryDelay = (attempts: number, base: number, max: number): number =>
  Math.min(max, base * 2 ** Math.max(0, attempts - 1))

/**
 * What goes above a queued message's content when it is delivered (and when rules at postq and
 * delivery read it): the fields its postq decision added, then those the session prepended.
 */
export const addedAbove = (queued: Event.MessageQueued, postqHeaders: ReadonlyArray<Headers.Header> | undefined): string =>
  (postqHeaders === undefined ? "" : Headers.format(postqHeaders)) + (queued.prepend ?? "")
