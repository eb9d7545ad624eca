/**
 * The EventLog service: where every event of this process goes.
 *
 * `append` hands an event to the current batch and returns at once; `appendDurable` returns
 * only when the event (and every event appended before it) is on disk and fsynced, whatever
 * the fsync policy says for ordinary batches. Acceptance events use it before their 250.
 *
 * Layers: `layerMemory` here (tests, replay of in-memory sessions); the file-backed layer with
 * group commit, rotation and torn-tail repair lives in `LogWriter.ts`.
 */
import { Context, Effect, Layer, Schema } from "effect"
import type * as Event from "./Event.ts"

export class LogError extends Schema.TaggedError<LogError>()("LogError", {
  operation: Schema.String,
  message: Schema.String
}) {}

export interface EventLogShape {
  readonly append: (event: Event.Event) => Effect.Effect<void>
  /**
   * `append` without an Effect, for the session's hot path (several events per command). It
   * never blocks and never throws; a refused event is reported as a process warning.
   */
  readonly appendUnsafe: (event: Event.Event) => void
  readonly appendDurable: (event: Event.Event) => Effect.Effect<void, LogError>
  /** Waits until everything appended so far is durable. */
  readonly sync: Effect.Effect<void, LogError>
  /**
   * The sequence number of the log file the next append lands in, or of an earlier one: an
   * event appended after this call is in that file or a later one (the queue's recovery
   * checkpoint relies on it). 0 where there are no files.
   */
  readonly currentFile: () => number
}

export class EventLog extends Context.Service<EventLog, EventLogShape>()("postern/log/EventLog") {
  /** Keeps events in an array the caller owns; nothing is ever lost or reordered. */
  static readonly layerMemory = (sink: Array<Event.Event>): Layer.Layer<EventLog> =>
    Layer.succeed(EventLog, EventLog.of(makeMemory(sink)))
}

export const makeMemory = (sink: Array<Event.Event>): EventLogShape => ({
  append: (event) => Effect.sync(() => void sink.push(event)),
  appendUnsafe: (event) => void sink.push(event),
  appendDurable: (event) => Effect.sync(() => void sink.push(event)),
  sync: Effect.void,
  currentFile: () => 0
})
