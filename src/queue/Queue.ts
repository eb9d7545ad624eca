/**
 * The Queue service: durable acceptance and local delivery for one partition.
 *
 * Acceptance: a session streams content into a spool transaction (`begin`, `Txn.write`) and
 * `commit`s it with the envelope. `commit` returns only once the content is fsynced (the
 * spool's group commit) and the `MessageQueued` event is durable in the event log; the session
 * sends its 250 after that, so a 250 is never a lie. Each `commit` is uninterruptible from
 * there on, so a message whose event reached the log is always scheduled.
 *
 * Delivery runs on separate fibers and never slows acceptance: `commit` only appends the
 * queue id to an in-memory list and wakes the scheduler; the scheduler feeds a bounded queue
 * that `deliveryConcurrency` workers take from, and holds deferred messages on a timer heap.
 * Each recipient is routed by its domain's `LocalDomain.transport`: `maildir` (Maildir.deliver,
 * then `MessageDelivered` with the file path), `discard` (`MessageDelivered` "discard"), or
 * no local domain: outbound delivery, not implemented yet, so a temporary `DeliveryFailed`
 * with an exponential backoff, and the message stays queued. When every recipient is done,
 * `MessageCompleted` is made durable and only then is the spool space released.
 *
 * Recovery: the layer folds the partition's recovered events (QueueState), retains the spool
 * segments they still reference, deletes the others, and redelivers every pending recipient;
 * Maildir's idempotence makes that exactly once. The content of a recovered message is
 * verified (CRCs, size, SHA-256) before its first attempt: if it is missing or corrupt, the
 * message is never delivered in part; its remaining recipients fail permanently with "spool
 * content lost" (except Maildir copies already in place), then it completes. No delivery
 * status notification is sent for permanent failures yet.
 */
import * as Path from "node:path"
import { Clock, Context, Duration, Effect, Latch, Layer, Queue as EffectQueue, Schema, Stream } from "effect"
import type { Scope } from "effect"
import * as Event from "../log/Event.ts"
import { describe } from "../log/SystemError.ts"
import { EventLog } from "../log/EventLog.ts"
import type * as Policy from "../policy/Policy.ts"
import type * as Rule from "../policy/Rule.ts"
import * as Bytes from "../session/Bytes.ts"
import * as Headers from "../session/Headers.ts"
import * as PolicyContext from "../session/PolicyContext.ts"
import * as Checkpoint from "./Checkpoint.ts"
import * as Maildir from "./Maildir.ts"
import * as Quarantine from "./Quarantine.ts"
import * as QueueId from "./QueueId.ts"
import * as QueueState from "./QueueState.ts"
import { route } from "./Route.ts"
import * as Spool from "./Spool.ts"

/** Acceptance failed: the session must not send 250 (it answers 451). */
export class QueueError extends Schema.TaggedError<QueueError>()("QueueError", {
  /** "spool": the content could not be stored; "log": its event could not be made durable;
   * "closed": the transaction was already committed or aborted, or belongs to another queue;
   * "invalid": the options are unusable. */
  reason: Schema.Literals(["spool", "log", "closed", "invalid"]),
  message: Schema.String
}) {}

const encoder = new TextEncoder()

/** The default longest wait between two attempts (Postfix's maximal_backoff_time). */
export const defaultRetryMax = 4000 * 1000
/** The default capacity of the queue between the scheduler and the delivery workers. */
export const defaultDeliveryBacklog = 1024
/** How often, by default, the recovery checkpoint is brought up to date (when it moved). */
export const defaultCheckpointInterval = 10_000

/** An event read back from the partition's log at start, with the log file it was in. */
export interface Recovered {
  readonly event: Event.Event
  /** The sequence number of its log file. */
  readonly logFile: number
}

/** Options of `make` and `Queue.layer`. */
export interface Options {
  /** Spool root; the partition's segments go in `<spoolDirectory>/<partition>`. */
  readonly spoolDirectory: string
  readonly partition: string
  /** Bytes after which the spool starts a new segment. */
  readonly segmentSize: number
  /** Largest spool record; default `Spool.defaultRecordSize`. */
  readonly recordSize?: number | undefined
  /** Root of the Maildir tree: `<maildirRoot>/<domain>/<user>/`. */
  readonly maildirRoot: string
  /** Host name in Maildir file names. */
  readonly hostname: string
  /**
   * The local domains as they are now. A function, because SIGHUP may change them: delivery
   * must route with the same table the session used to accept the recipient.
   */
  readonly localDomains: () => ReadonlyArray<Event.LocalDomain>
  /** How many messages are delivered at once. */
  readonly deliveryConcurrency: number
  /** Wait after the first temporary failure, in ms; doubled after each further one. */
  readonly retryBase: number
  /** Longest wait between attempts, in ms; default `defaultRetryMax`. */
  readonly retryMax?: number | undefined
  /** Capacity of the queue in front of the workers; default `defaultDeliveryBacklog`. */
  readonly deliveryBacklog?: number | undefined
  /**
   * The partition's events, oldest first, as read from its log at start: those of every file
   * from the checkpoint's (see `Checkpoint`) on.
   */
  readonly recovered: ReadonlyArray<Recovered>
  /** The checkpoint's largest queue id, so that new ids sort after every earlier one. */
  readonly lastQueueId?: string | undefined
  /** How often the recovery checkpoint is brought up to date, in ms; default 10 s. */
  readonly checkpointInterval?: number | undefined
  /**
   * The policy asked after queueing (postq, once per message before its first delivery) and at
   * each recipient's delivery attempt (delivery). Without it, or without rules at those
   * stages, every queued message is delivered as accepted at data.
   */
  readonly policy?: Policy.PolicyShape | undefined
}

/** A message being received: stream its content in, then `Queue.commit` or `abort` it. */
export interface Txn {
  /** Assigned at `begin`, so that the session can put it in the Received header. */
  readonly queueId: string
  readonly write: (bytes: Uint8Array) => Effect.Effect<void, QueueError>
  /** Forgets the message. Idempotent; does nothing after `commit`. */
  readonly abort: Effect.Effect<void>
}

/** The name the session uses for `Txn`. */
export type QueueTxn = Txn

/** The Queue service. */
export interface QueueShape {
  readonly begin: () => Effect.Effect<Txn, QueueError>
  /**
   * Makes the message durable (content, then `MessageQueued`) and schedules its delivery.
   * When this succeeds, the 250 may be sent.
   */
  readonly commit: (
    txn: Txn,
    envelope: Event.Envelope,
    session: string,
    /** Header lines (CRLF-ended) to deliver above the message; kept in MessageQueued. */
    prepend?: string,
    /** The session's facts for the rules at postq and delivery; kept in MessageQueued. */
    origin?: Event.MessageOrigin
  ) => Effect.Effect<{ readonly queueId: string }, QueueError>
  /** Waits until no delivery is due or running (deferred retries do not count). */
  readonly drain: Effect.Effect<void>
  /** How many messages are queued and not completed. */
  readonly pending: () => Effect.Effect<number>
}

export { type Route, route } from "./Route.ts"

/** The reason given to recipients whose content is unreadable. */
export const contentLost = "spool content lost"

interface Entry {
  pending: QueueState.Pending
  /** Committed by this process and not attempted yet: no earlier attempt can have delivered it. */
  fresh: boolean
  /** The content is known to be intact (written by this process, or verified). */
  checked: boolean
  /** Why the content is unusable, once found to be. */
  lost: string | undefined
  /** The header fields and body start rules at postq and delivery see, once read. */
  view: Rule.MessageView | undefined
  /** Tempfails at postq so far, for its backoff. */
  postqDeferrals: number
}

interface Timer {
  readonly at: number
  readonly queueId: string
}

/** A binary min-heap of timers by due time. */
const makeHeap = () => {
  const items: Array<Timer> = []
  const swap = (i: number, j: number) => {
    const a = items[i]
    const b = items[j]
    if (a === undefined || b === undefined) return
    items[i] = b
    items[j] = a
  }
  const at = (i: number): number => items[i]?.at ?? Infinity
  return {
    peek: (): Timer | undefined => items[0],
    push: (timer: Timer): void => {
      items.push(timer)
      let i = items.length - 1
      while (i > 0 && at((i - 1) >> 1) > at(i)) {
        swap(i, (i - 1) >> 1)
        i = (i - 1) >> 1
      }
    },
    pop: (): Timer | undefined => {
      const top = items[0]
      const last = items.pop()
      if (items.length === 0 || last === undefined) return top
      items[0] = last
      let i = 0
      for (;;) {
        const left = 2 * i + 1
        const right = left + 1
        let smallest = i
        if (at(left) < at(smallest)) smallest = left
        if (at(right) < at(smallest)) smallest = right
        if (smallest === i) return top
        swap(i, smallest)
        i = smallest
      }
    }
  }
}

/**
 * Whether an origin reads back as one: recovery drops a MessageQueued that does not decode, and
 * the message with it, so facts of an unexpected shape are left out rather than risk that.
 */
const isOrigin = Schema.is(Event.MessageOrigin)

const spoolFailure = (error: Spool.SpoolError) =>
  new QueueError({ reason: error.reason === "closed" ? "closed" : "spool", message: error.message })

/** Builds the queue; its fibers and spool files live as long as the scope. */
export const make = Effect.fnUntraced(function*(
  options: Options
): Effect.fn.Return<QueueShape, QueueError, EventLog | Scope.Scope> {
  if (!QueueId.isValidPartition(options.partition)) {
    return yield* new QueueError({ reason: "invalid", message: `partition must be 1 to 16 letters or digits` })
  }
  if (!Number.isSafeInteger(options.deliveryConcurrency) || options.deliveryConcurrency < 1) {
    return yield* new QueueError({ reason: "invalid", message: "deliveryConcurrency must be a positive integer" })
  }
  const log = yield* EventLog
  const retryMax = options.retryMax ?? defaultRetryMax
  const spool = yield* Spool.make({
    directory: options.spoolDirectory,
    partition: options.partition,
    segmentSize: options.segmentSize,
    recordSize: options.recordSize
  }).pipe(Effect.mapError(spoolFailure))

  const messages = new Map<string, Entry>()
  // For each message not completed (and each being committed), the log file its MessageQueued
  // is in or an earlier one: the checkpoint may move no further than the smallest.
  const logFiles = new Map<string, number>()
  let lastId = options.lastQueueId
  for (const { event, logFile } of options.recovered) {
    if (event._tag !== "MessageQueued") continue
    if (lastId === undefined || event.queueId > lastId) lastId = event.queueId
    if (!logFiles.has(event.queueId)) logFiles.set(event.queueId, logFile)
  }
  const ids = QueueId.generator({ partition: options.partition, after: lastId })

  // Scheduling: every pending message is in exactly one place: `waiting` (due, in order),
  // `ready` (handed to the workers), a worker, or `timers` (deferred).
  const ready = yield* EffectQueue.bounded<string>(options.deliveryBacklog ?? defaultDeliveryBacklog)
  const waiting: Array<string> = []
  let waitingHead = 0
  const timers = makeHeap()
  const wake = Latch.makeUnsafe(false)
  let outstanding = 0
  let idleWaiters: Array<() => void> = []

  const enqueue = (queueId: string): void => {
    outstanding += 1
    waiting.push(queueId)
    wake.openUnsafe()
  }
  const takeWaiting = (): string | undefined => {
    if (waitingHead >= waiting.length) return undefined
    const queueId = waiting[waitingHead]
    waitingHead += 1
    if (waitingHead > 1024 && waitingHead * 2 > waiting.length) {
      waiting.splice(0, waitingHead)
      waitingHead = 0
    }
    return queueId
  }
  const schedule = (queueId: string, at: number, now: number): void => {
    if (at <= now) return enqueue(queueId)
    timers.push({ at, queueId })
    wake.openUnsafe()
  }
  const releaseDue = (now: number): void => {
    for (let timer = timers.peek(); timer !== undefined && timer.at <= now; timer = timers.peek()) {
      timers.pop()
      enqueue(timer.queueId)
    }
  }
  const finished = (): void => {
    outstanding -= 1
    if (outstanding > 0) return
    const waiters = idleWaiters
    idleWaiters = []
    for (const resume of waiters) resume()
  }

  const stepEntry = (entry: Entry, event: QueueState.DeliveryEvent) =>
    Effect.sync(() => {
      entry.pending = QueueState.step(entry.pending, event) ?? entry.pending
    })
  const record = (entry: Entry, event: QueueState.DeliveryEvent) => Effect.andThen(log.append(event), stepEntry(entry, event))
  /** `record`, once the event is on disk: for a decision that must never be asked again after a crash. */
  const recordDurably = (entry: Entry, event: QueueState.DeliveryEvent) =>
    Effect.andThen(log.appendDurable(event), stepEntry(entry, event))

  /**
   * The message as delivered: the fields the postq rules added, those Postern added at
   * acceptance, then the spooled content.
   */
  const contentOf = (pending: QueueState.Pending) => {
    const added = QueueState.addedAbove(pending.queued, pending.postq?.headers)
    return added === ""
      ? spool.read(pending.queued.spool)
      : Stream.concat(Stream.make(encoder.encode(added)), spool.read(pending.queued.spool))
  }

  /**
   * The message as rules at postq and delivery see it: its header fields (added ones included)
   * and the start of its body, read from the spool once per attempt (and again once postq has
   * added fields), so that a message waiting in the queue holds none of it in memory.
   */
  const viewOf = (entry: Entry, bodyLimit: number): Effect.Effect<Rule.MessageView, Spool.SpoolError> => {
    if (entry.view !== undefined) return Effect.succeed(entry.view)
    const collector = Headers.collector(bodyLimit)
    const enough = Headers.maxBytes + bodyLimit
    let read = 0
    return contentOf(entry.pending).pipe(
      // One byte past what is kept, so that a longer body is known to be cut.
      Stream.takeUntil((chunk) => {
        collector.push(chunk)
        read += chunk.length
        return read > enough
      }),
      Stream.runDrain,
      Effect.map(() => {
        const pending = entry.pending
        const view = PolicyContext.messageView(
          collector.headers(),
          bodyLimit > 0 ? collector.body() : undefined,
          () => Effect.map(Stream.runCollect(contentOf(pending)), Bytes.concat)
        )
        entry.view = view
        return view
      })
    )
  }

  /**
   * Asks the policy about a queue stage: the live rules, whose decision is returned as its event
   * for the caller to record, and the shadow rules beside them (recorded only; one that needs
   * I/O runs on its own, as in the session, so it never holds up a delivery).
   */
  const decideQueued = Effect.fnUntraced(function*(
    policy: Policy.PolicyShape,
    context: Rule.Context,
    subject: { readonly queueId: string; readonly recipient?: string }
  ) {
    const stage = context.stage
    const asked = yield* Clock.currentTimeMillis
    const shadowed = policy.shadow(context)
    const recordShadow = (decision: Rule.Decision) =>
      log.appendUnsafe(Event.make("ShadowDecided", { ...PolicyContext.eventFields(context.session, asked, stage, decision), ...subject }))
    if (Effect.isEffect(shadowed)) Effect.runFork(Effect.map(shadowed, recordShadow))
    else if (shadowed !== undefined) recordShadow(shadowed)
    const outcome = policy.decide(context)
    const decision = Effect.isEffect(outcome) ? yield* outcome : outcome
    const at = yield* Clock.currentTimeMillis
    return Event.make("PolicyDecided", { ...PolicyContext.eventFields(context.session, at, stage, decision), ...subject })
  })

  /** A refusal at postq or delivery as a delivery failure's reason. */
  const refusal = (decided: Event.PolicyDecided): string =>
    `${decided.code ?? 550} ${decided.enhanced ?? "5.7.1"} ${decided.text ?? ""} (${decided.stage} ${
      decided.rule === undefined ? "default" : `rule '${decided.rule}'`
    })`

  const deliverOne = Effect.fnUntraced(function*(entry: Entry, recipient: QueueState.Recipient) {
    const queued = entry.pending.queued
    const target = route(options.localDomains(), recipient.recipient)
    const maildirTarget = (domain: string, user: string): Maildir.Target => ({
      root: options.maildirRoot,
      domain,
      user,
      name: Maildir.messageName({
        at: queued.at,
        queueId: queued.queueId,
        index: recipient.index,
        hostname: options.hostname
      })
    })
    const delivered = (destination: string) =>
      Effect.map(
        Clock.currentTimeMillis,
        (at) => Event.make("MessageDelivered", { at, queueId: queued.queueId, recipient: recipient.recipient, destination })
      )
    const failed = (permanent: boolean, reason: string) =>
      Effect.map(Clock.currentTimeMillis, (at) =>
        Event.make("DeliveryFailed", {
          at,
          queueId: queued.queueId,
          recipient: recipient.recipient,
          permanent,
          reason,
          ...(permanent
            ? {}
            : { retryAt: at + QueueState.retryDelay(recipient.attempts + 1, options.retryBase, retryMax) })
        }))

    if (entry.lost !== undefined) {
      if (target._tag === "Maildir") {
        const found = yield* Maildir.find(maildirTarget(target.domain, target.user)).pipe(
          Effect.orElseSucceed(() => undefined)
        )
        if (found !== undefined) return yield* delivered(found)
      }
      return yield* failed(true, `${contentLost}: ${entry.lost}`)
    }
    const postq = entry.pending.postq
    if (postq?.verdict === "deny") return yield* failed(true, refusal(postq))
    let held = queued.envelope.quarantine ?? postq?.quarantine ?? entry.pending.held[recipient.recipient]
    const policy = options.policy
    if (held === undefined && target._tag !== "Rejected" && policy !== undefined && policy.asks("delivery")) {
      const view = yield* Effect.result(viewOf(entry, policy.bodyLimit))
      if (view._tag === "Failure") return yield* failed(false, `spool read: ${view.failure.message}`)
      const context = PolicyContext.queued(
        queued,
        "delivery",
        yield* Clock.currentTimeMillis,
        view.success,
        { recipient: recipient.recipient, local: target._tag !== "Remote", attempts: recipient.attempts }
      )
      const decided = yield* decideQueued(policy, context, { queueId: queued.queueId, recipient: recipient.recipient })
      // A copy held in a quarantine must never meet a different answer after a crash (and a
      // copy in the mailbox too): that decision is on disk before the copy is made.
      if (decided.verdict !== "quarantine") yield* log.append(decided)
      else if ((yield* Effect.result(recordDurably(entry, decided)))._tag === "Failure") {
        return yield* failed(false, "the delivery decision could not be logged")
      }
      if (decided.verdict === "deny") return yield* failed(true, refusal(decided))
      if (decided.verdict === "tempfail") return yield* failed(false, refusal(decided))
      held = decided.quarantine
    }
    if (held !== undefined) {
      // Held, not delivered: one copy per recipient in the quarantine's Maildirs.
      const quarantined = yield* Effect.result(Maildir.deliver({
        ...maildirTarget(held, recipient.recipient),
        // Held copies: a Maildir per quarantine and recipient, beside the Maildir root.
        root: Quarantine.defaultRoot(options.maildirRoot),
        content: contentOf(entry.pending),
        scanCur: !entry.fresh
      }))
      if (quarantined._tag === "Success") return yield* delivered(quarantined.success.path)
      return yield* failed(false, `quarantine ${held}: ${quarantined.failure.message}`)
    }
    switch (target._tag) {
      case "Discard":
        return yield* delivered("discard")
      case "Rejected":
        return yield* failed(true, target.reason)
      case "Remote":
        return yield* failed(false, `no route to ${target.domain}: outbound delivery is not implemented`)
      case "Maildir": {
        const outcome = yield* Effect.result(Maildir.deliver({
          ...maildirTarget(target.domain, target.user),
          content: contentOf(entry.pending),
          scanCur: !entry.fresh
        }))
        if (outcome._tag === "Success") return yield* delivered(outcome.success.path)
        const error = outcome.failure
        if (error._tag === "MaildirError") {
          return yield* failed(error.operation === "resolve", `maildir ${error.operation}: ${error.message}`)
        }
        if (error.reason === "io") return yield* failed(false, `spool read: ${error.message}`)
        entry.lost = error.message
        return yield* failed(true, `${contentLost}: ${error.message}`)
      }
    }
  })

  /** A postq question that could not be answered now: asked again after the retry delay. */
  const postqDeferred = Effect.fnUntraced(function*(entry: Entry, queueId: string, reason: string) {
    entry.postqDeferrals += 1
    entry.view = undefined
    const at = yield* Clock.currentTimeMillis
    yield* Effect.logWarning(`queue ${queueId}: postq deferred (${entry.postqDeferrals} times): ${reason}`)
    return schedule(queueId, at + QueueState.retryDelay(entry.postqDeferrals, options.retryBase, retryMax), at)
  })

  const attempt = Effect.fnUntraced(function*(queueId: string) {
    const entry = messages.get(queueId)
    if (entry === undefined) return
    const now = yield* Clock.currentTimeMillis
    const due = entry.pending.remaining.filter((r) => r.retryAt <= now)
    if (due.length > 0 && !entry.checked && entry.lost === undefined) {
      const queued = entry.pending.queued
      const verified = yield* Effect.result(spool.verify(queued.spool, { size: queued.size, digest: queued.digest }))
      if (verified._tag === "Failure" && verified.failure.reason === "io") {
        yield* Effect.logWarning(`queue ${queueId}: spool unreadable, will retry: ${verified.failure.message}`)
        return schedule(queueId, now + options.retryBase, now)
      }
      entry.checked = true
      if (verified._tag === "Failure") entry.lost = verified.failure.message
    }
    // After queueing, before any recipient was tried: what becomes of the whole message. Rules
    // added later (a reload) do not reach a message whose delivery has begun.
    const policy = options.policy
    const untried = () =>
      entry.pending.remaining.length === new Set(entry.pending.queued.envelope.to).size &&
      entry.pending.remaining.every((r) => r.attempts === 0)
    if (due.length > 0 && entry.lost === undefined && entry.pending.postq === undefined && policy?.asks("postq") === true && untried()) {
      const later = (reason: string) => postqDeferred(entry, queueId, reason)
      const view = yield* Effect.result(viewOf(entry, policy.bodyLimit))
      if (view._tag === "Failure") return yield* later(`spool read: ${view.failure.message}`)
      const decided = yield* decideQueued(policy, PolicyContext.queued(entry.pending.queued, "postq", now, view.success, undefined), { queueId })
      // Durable before any delivery it governs, so that a crash never asks again a question
      // whose answer already put copies somewhere.
      const written = yield* Effect.result(recordDurably(entry, decided))
      if (written._tag === "Failure") return yield* later(`decision not logged: ${written.failure.message}`)
      if (decided.verdict === "tempfail") return yield* later(refusal(decided) + (decided.error === undefined ? "" : `: ${decided.error}`))
      // Delivery rules see the fields postq added.
      entry.view = undefined
    }
    for (const recipient of due) {
      const event = yield* deliverOne(entry, recipient)
      yield* record(entry, event)
    }
    entry.fresh = false
    // Nothing of the message stays in memory while it waits.
    entry.view = undefined
    const after = yield* Clock.currentTimeMillis
    if (entry.pending.remaining.length > 0) return schedule(queueId, entry.pending.nextAttemptAt, after)
    const completed = yield* Effect.result(
      log.appendDurable(Event.make("MessageCompleted", { at: after, queueId }))
    )
    if (completed._tag === "Failure") {
      yield* Effect.logWarning(`queue ${queueId}: completion not logged, will retry: ${completed.failure.message}`)
      return schedule(queueId, after + options.retryBase, after)
    }
    messages.delete(queueId)
    logFiles.delete(queueId)
    yield* spool.release(entry.pending.queued.spool)
  })

  const worker = Effect.forever(
    Effect.gen(function*() {
      const queueId = yield* EffectQueue.take(ready)
      yield* attempt(queueId).pipe(
        Effect.catchDefect((defect) =>
          Effect.gen(function*() {
            yield* Effect.logError(`queue ${queueId}: delivery attempt died`, defect)
            const now = yield* Clock.currentTimeMillis
            if (messages.has(queueId)) schedule(queueId, now + options.retryBase, now)
          })
        ),
        Effect.ensuring(Effect.sync(finished))
      )
    })
  )

  const scheduler = Effect.forever(
    Effect.gen(function*() {
      wake.closeUnsafe()
      const now = yield* Clock.currentTimeMillis
      releaseDue(now)
      const next = takeWaiting()
      if (next !== undefined) return yield* EffectQueue.offer(ready, next)
      const timer = timers.peek()
      if (timer === undefined) return yield* wake.await
      yield* Effect.timeoutOption(wake.await, Duration.millis(Math.max(1, timer.at - now)))
    })
  )

  // Recovery.
  const recoveredAt = yield* Clock.currentTimeMillis
  for (const [queueId, pending] of QueueState.fromEvents(options.recovered.map((r) => r.event))) {
    messages.set(queueId, { pending, fresh: false, checked: false, lost: undefined, view: undefined, postqDeferrals: 0 })
    yield* spool.retain(pending.queued.spool)
  }
  for (const queueId of logFiles.keys()) if (!messages.has(queueId)) logFiles.delete(queueId)
  yield* spool.sweep
  for (const [queueId, entry] of messages) schedule(queueId, entry.pending.nextAttemptAt, recoveredAt)

  // The checkpoint moves forward as messages complete; rewritten only when it changed.
  let written: Checkpoint.Checkpoint | undefined
  const updateCheckpoint = Effect.suspend(() => {
    let logFile = log.currentFile()
    for (const file of logFiles.values()) if (file < logFile) logFile = file
    if (written !== undefined && written.logFile === logFile && written.lastQueueId === lastId) return Effect.void
    const next: Checkpoint.Checkpoint = { logFile, lastQueueId: lastId }
    return Effect.tryPromise({
      try: () => Checkpoint.write(options.spoolDirectory, options.partition, next),
      catch: describe
    }).pipe(
      Effect.tap(() =>
        Effect.sync(() => {
          written = next
        })
      ),
      Effect.catch((reason) => Effect.logWarning(`queue: recovery checkpoint not written: ${reason}`))
    )
  })
  yield* Effect.addFinalizer(() => updateCheckpoint)
  yield* Effect.forkScoped(
    Effect.forever(Effect.andThen(Effect.sleep(options.checkpointInterval ?? defaultCheckpointInterval), updateCheckpoint))
  )

  yield* Effect.forkScoped(scheduler)
  for (let i = 0; i < options.deliveryConcurrency; i++) yield* Effect.forkScoped(worker)

  const txns = new WeakMap<Txn, Spool.Txn>()

  const begin = Effect.fnUntraced(function*() {
    const spoolTxn = yield* Effect.mapError(spool.begin, spoolFailure)
    const queueId = ids.next(yield* Clock.currentTimeMillis)
    lastId = queueId
    const txn: Txn = {
      queueId,
      write: (bytes) => Effect.mapError(spoolTxn.write(bytes), spoolFailure),
      abort: Effect.suspend(() => {
        if (!txns.delete(txn)) return Effect.void
        return spoolTxn.abort
      })
    }
    txns.set(txn, spoolTxn)
    return txn
  })

  const commit = Effect.fnUntraced(
    function*(txn: Txn, envelope: Event.Envelope, session: string, prepend?: string, origin?: Event.MessageOrigin) {
      const spoolTxn = txns.get(txn)
      if (spoolTxn === undefined) {
        return yield* new QueueError({ reason: "closed", message: `transaction ${txn.queueId} is not open` })
      }
      txns.delete(txn)
      const { committed: stored, durable } = yield* Effect.mapError(spoolTxn.seal, spoolFailure)
      const at = yield* Clock.currentTimeMillis
      const keptOrigin = origin !== undefined && isOrigin(origin) ? origin : undefined
      if (origin !== undefined && keptOrigin === undefined) {
        yield* Effect.logWarning(`queue ${txn.queueId}: session facts left out of MessageQueued (they would not read back): ${JSON.stringify(origin)}`)
      }
      const queued = Event.make("MessageQueued", {
        session,
        at,
        queueId: txn.queueId,
        envelope,
        size: stored.size,
        digest: stored.digest,
        spool: stored.reference,
        ...(prepend === undefined || prepend === "" ? {} : { prepend }),
        ...(keptOrigin === undefined ? {} : { origin: keptOrigin })
      })
      logFiles.set(txn.queueId, log.currentFile())
      // The content's fdatasync (requested at seal) and the acceptance event's fsync run at
      // once, without a fiber for either: the 250 waits for both. Should a crash land the event
      // without the content, no 250 was sent, and recovery finds the content missing (CRC,
      // size, digest) and never delivers a partial message.
      yield* log.appendDurable(queued).pipe(
        Effect.mapError((error) => new QueueError({ reason: "log", message: error.message })),
        // The spool's wait is settled either way, so that its hold is dropped if it failed.
        Effect.tapError(() => Effect.ignore(durable)),
        Effect.andThen(Effect.mapError(durable, spoolFailure)),
        Effect.onError(() =>
          Effect.andThen(
            Effect.sync(() => logFiles.delete(txn.queueId)),
            spool.release(stored.reference)
          )
        )
      )
      messages.set(txn.queueId, {
        pending: QueueState.queued(queued),
        fresh: true,
        checked: true,
        lost: undefined,
        view: undefined,
        postqDeferrals: 0
      })
      enqueue(txn.queueId)
      return { queueId: txn.queueId }
    },
    Effect.uninterruptible
  )

  const drain = Effect.gen(function*() {
    releaseDue(yield* Clock.currentTimeMillis)
    if (outstanding === 0) return
    yield* Effect.callback<void>((resume) => {
      idleWaiters.push(() => resume(Effect.void))
    })
  })

  return {
    begin,
    commit,
    drain,
    pending: () => Effect.sync(() => messages.size)
  }
})

/** The Queue service of one partition. */
export class Queue extends Context.Service<Queue, QueueShape>()("postern/queue/Queue") {
  /** The file-backed queue of one partition (spool, Maildir delivery, recovery at start). */
  static readonly layer = (options: Options): Layer.Layer<Queue, QueueError, EventLog> =>
    Layer.effect(Queue, Effect.map(make(options), (shape) => Queue.of(shape)))
}
