/**
 * The file-backed EventLog: msgpack records in framed, rotated files, written with group commit.
 *
 * One writer fiber per partition owns the files. `append` only encodes the event and hands it
 * to the next batch; the writer takes everything handed over since its last write, frames it
 * into one buffer, does one positioned write and, when the fsync policy or a waiting
 * `appendDurable`/`sync` asks for it, one fsync, then completes the batch's waiters. Files are
 * `<directory>/<partition>/<8-digit sequence>.plog`, each starting with a header record.
 *
 * On open the newest file is checked: a torn or corrupt tail is cut (and a `LogRepaired` event
 * is the first new event), a file without a valid header is left alone and a new one started.
 * A failed write fails every waiting `appendDurable`, is logged, and is retried at the same
 * offset after `retryDelayMs`; a failed fsync abandons the file for a new one, since what the
 * kernel held for it may be gone.
 */
import { Cause, Clock, Context, Deferred, Effect, Fiber, Latch, Layer, Scope } from "effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import * as Event from "./Event.ts"
import * as Fsync from "./Fsync.ts"
import { EventLog, type EventLogShape, LogError } from "./EventLog.ts"
import * as LogCodec from "./LogCodec.ts"
import * as LogReader from "./LogReader.ts"
import * as LogRecord from "./LogRecord.ts"
import { describe, errorCode } from "./SystemError.ts"

/** When ordinary batches are fsynced. `appendDurable` and `sync` always fsync. */
export type FsyncPolicy = "always" | "interval" | "never"

/** Options of the file-backed log. */
export interface Options {
  /** The log root; this writer owns `<directory>/<partition>`. */
  readonly directory: string
  /** One writer process (or worker) per partition, e.g. "w0". */
  readonly partition: string
  /** A file is finished, and the next one started, once it is at least this long. */
  readonly rotateBytes: number
  readonly fsync: FsyncPolicy
  /** With policy "interval": the longest time written events stay without an fsync. */
  readonly fsyncIntervalMs: number
  /** The pause before retrying after a failed write or file creation. Default 1000. */
  readonly retryDelayMs?: number
  /**
   * How long ordinary appends may wait in memory before they are written, so that one write
   * carries the events of many sessions. A durable append (or `sync`) writes at once, with
   * everything pending. Default: 2 ms with policy "interval" or "never" (their events are not
   * promised to survive a crash sooner anyway), 0 with "always".
   */
  readonly writeDelayMs?: number
}

/** Counters of one writer, for tests, benchmarks and status pages. */
export interface Stats {
  /** Events accepted by `append`/`appendDurable`. */
  readonly appended: number
  /** Events written to a file (not necessarily fsynced). */
  readonly written: number
  /** Write calls, one per batch. */
  readonly batches: number
  /** fsyncs of log files (directory fsyncs are not counted). */
  readonly fsyncs: number
  /** Bytes written, headers included. */
  readonly bytes: number
  /** Files created by this writer. */
  readonly files: number
  /** Failed writes, fsyncs and file creations. */
  readonly failures: number
  /** Events refused: appended after close, too large, or given up on at close. */
  readonly dropped: number
  /** The file appends go to now, if one is open. */
  readonly file: string | undefined
}

/** What opening a partition found wrong with its newest file, and did about it. */
export type RecoveryProblem =
  /** The file ended in a torn or corrupt record: it was truncated at `offset`. */
  | {
    readonly _tag: "TornTail"
    readonly file: string
    readonly offset: number
    readonly droppedBytes: number
    readonly reason: string
  }
  /** The file has no valid header: it was left as it is and a new file started after it. */
  | { readonly _tag: "BadHeader"; readonly file: string; readonly reason: string }

/** The state of a partition after `recover`. */
export interface Recovery {
  readonly partition: string
  /** The partition directory. */
  readonly dir: string
  /** Where appends continue; undefined when a new file must be created. */
  readonly resume: { readonly file: string; readonly sequence: number; readonly offset: number } | undefined
  /** The sequence for the next new file. */
  readonly nextSequence: number
  readonly problems: ReadonlyArray<RecoveryProblem>
}

/** The file-backed log: the EventLog operations plus what it found on open and its counters. */
export interface Writer extends EventLogShape {
  readonly recovery: Recovery
  readonly stats: Effect.Effect<Stats>
}

/** The writer behind the EventLog provided by `layer`, for its recovery report and counters. */
export class LogWriter extends Context.Service<LogWriter, Writer>()("postern/log/LogWriter") {}


const io = <A>(operation: string, thunk: () => Promise<A>): Effect.Effect<A, LogError> =>
  Effect.tryPromise({ try: thunk, catch: (error) => new LogError({ operation, message: describe(error) }) })

/** fsyncs a directory, so that entries created or removed in it survive a crash. */
const syncDirectory = (dir: string): Effect.Effect<void, LogError> =>
  io(`fsync directory ${dir}`, () => Fsync.directory(dir))

/** Creates `dir` and its missing parents, fsyncing each parent that gained an entry. */
const ensureDirectory = (dir: string): Effect.Effect<void, LogError> =>
  Effect.gen(function*() {
    const created = yield* io(`create ${dir}`, () => Fs.mkdir(dir, { recursive: true }))
    if (created === undefined) return
    const top = Path.resolve(created)
    for (let at = Path.resolve(dir);; at = Path.dirname(at)) {
      yield* syncDirectory(Path.dirname(at))
      if (at === top || Path.dirname(at) === at) return
    }
  })

/**
 * Opens a partition for writing: creates its directory if needed, checks its newest file and
 * cuts a torn or corrupt tail (truncate + fsync). Returns what it found so the daemon can say
 * so. The caller appends the `LogRepaired` event (`make` does).
 */
export const recover = (options: {
  readonly directory: string
  readonly partition: string
}): Effect.Effect<Recovery, LogError> =>
  Effect.gen(function*() {
    const dir = Path.join(options.directory, options.partition)
    yield* ensureDirectory(dir)
    const files = yield* LogReader.listFiles(dir)
    const last = files.at(-1)
    const base = { partition: options.partition, dir }
    if (last === undefined) return { ...base, resume: undefined, nextSequence: 1, problems: [] }
    const bytes = yield* io(`read ${last.path}`, () => Fs.readFile(last.path))
    const scanned = LogRecord.scanAll(bytes)
    const first = scanned.records[0]
    const header = first === undefined ? undefined : LogCodec.decodeHeader(first.payload)
    const headerProblem = header === undefined
      ? (bytes.length === 0 ? "missing header (empty file)" : `no header: ${scanned.stop?.reason ?? "unknown"}`)
      : header._tag === "Invalid"
      ? header.reason
      : header.header.partition !== options.partition
      ? `header names partition ${header.header.partition}`
      : header.header.sequence !== last.sequence
      ? `header says sequence ${header.header.sequence}`
      : undefined
    if (headerProblem !== undefined) {
      return {
        ...base,
        resume: undefined,
        nextSequence: last.sequence + 1,
        problems: [{ _tag: "BadHeader", file: last.path, reason: headerProblem }]
      }
    }
    const resume = { file: last.path, sequence: last.sequence, offset: scanned.validEnd }
    if (scanned.stop === undefined) return { ...base, resume, nextSequence: last.sequence + 1, problems: [] }
    yield* io(`truncate ${last.path}`, async () => {
      const handle = await Fs.open(last.path, "r+")
      try {
        await handle.truncate(scanned.validEnd)
        await handle.sync()
      } finally {
        await handle.close()
      }
    })
    return {
      ...base,
      resume,
      nextSequence: last.sequence + 1,
      problems: [{
        _tag: "TornTail",
        file: last.path,
        offset: scanned.validEnd,
        droppedBytes: bytes.length - scanned.validEnd,
        reason: scanned.stop.reason
      }]
    }
  })

interface OpenFile {
  readonly handle: Fs.FileHandle
  readonly path: string
  readonly sequence: number
  /** Where the next batch goes: just after the last whole write. */
  position: number
  /** Written since its last fsync. */
  dirty: boolean
}

/** Frames payloads one after the other into a single buffer. */
const frameAll = (payloads: ReadonlyArray<Uint8Array>): Uint8Array => {
  let size = 0
  for (const payload of payloads) size += LogRecord.frameOverhead + payload.length
  const buffer = Buffer.allocUnsafe(size)
  let offset = 0
  for (const payload of payloads) offset = LogRecord.writeFrameInto(buffer, offset, payload)
  return buffer
}

/**
 * Opens the partition (see `recover`) and starts its writer fiber. Closing the scope writes
 * and fsyncs whatever was appended before, then closes the file; later appends are refused.
 */
export const make = (options: Options): Effect.Effect<Writer, LogError, Scope.Scope> =>
  Effect.gen(function*() {
    const retryDelayMs = options.retryDelayMs ?? 1000
    const recovery = yield* recover(options)
    const dir = recovery.dir

    const stats = {
      appended: 0,
      written: 0,
      batches: 0,
      fsyncs: 0,
      bytes: 0,
      files: 0,
      failures: 0,
      dropped: 0
    }
    let pendingPayloads: Array<Uint8Array> = []
    let pendingWaiters: Array<Deferred.Deferred<void, LogError>> = []
    /** Payloads of a batch whose write failed, written again before anything newer. */
    let carry: Array<Uint8Array> = []
    let current: OpenFile | undefined
    let nextSequence = recovery.nextSequence
    let lastSyncAt = yield* Clock.currentTimeMillis
    /** The scope is closing: drain, then stop. */
    let closing = false
    /** Nothing more is accepted. */
    let closed = false
    let warnedClosed = false
    const work = Latch.makeUnsafe(false)
    const closeSignal = Latch.makeUnsafe(false)

    /**
     * Wakes the writer once per turn of the event loop rather than at every append: opening the
     * latch resumes the writer synchronously, so waking it per event wrote (and fsynced) each
     * event on its own, which halved the daemon's throughput. Deferred with setImmediate, every
     * session served in the same turn has appended before the batch is cut: that is what makes
     * the commit a group commit.
     */
    let wakeScheduled = false
    const wakeWriter = () => {
      if (wakeScheduled) return
      wakeScheduled = true
      setImmediate(() => {
        wakeScheduled = false
        work.openUnsafe()
      })
    }

    /**
     * Ordinary appends wake the writer after `writeDelay`: under load a wake per turn of the
     * event loop meant a write (and its promise round trip through the thread pool) for every
     * few events, which cost the daemon more than encoding them.
     */
    const writeDelay = options.writeDelayMs ?? (options.fsync === "always" ? 0 : Math.min(2, options.fsyncIntervalMs))
    let delayedWake: ReturnType<typeof setTimeout> | undefined
    const wakeWriterSoon = () => {
      if (writeDelay <= 0) return wakeWriter()
      if (delayedWake !== undefined || wakeScheduled) return
      delayedWake = setTimeout(() => {
        delayedWake = undefined
        wakeWriter()
      }, writeDelay)
    }

    const closedError = () => new LogError({ operation: "append", message: "the event log is closed" })

    const writeAt = (file: OpenFile, bytes: Uint8Array): Effect.Effect<void, LogError> =>
      io(`write ${file.path}`, async () => {
        let done = 0
        while (done < bytes.length) {
          const { bytesWritten } = await file.handle.write(bytes, done, bytes.length - done, file.position + done)
          if (bytesWritten === 0) throw new Error("the file took no bytes")
          done += bytesWritten
        }
      }).pipe(Effect.tap(() =>
        Effect.sync(() => {
          file.position += bytes.length
          file.dirty = true
          stats.bytes += bytes.length
        })
      ))

    const syncFile = Effect.fnUntraced(function*(file: OpenFile) {
      yield* io(`fsync ${file.path}`, () => file.handle.sync())
      file.dirty = false
      stats.fsyncs++
      lastSyncAt = yield* Clock.currentTimeMillis
    })

    const closeFile = (file: OpenFile): Effect.Effect<void> =>
      io(`close ${file.path}`, () => file.handle.close()).pipe(
        Effect.catch((error) => Effect.logError(`event log: ${error.message}`))
      )

    /** Stops writing to a file: it is finished, or its fsync failed and its unsynced pages may be gone. */
    const abandon = (file: OpenFile): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (current === file) current = undefined
        return closeFile(file)
      })

    const createExclusive = (
      first: number
    ): Effect.Effect<{ handle: Fs.FileHandle; path: string; sequence: number }, LogError> =>
      io(`create a log file in ${dir}`, async () => {
        // A sequence taken by a file this writer did not expect is skipped, never overwritten.
        for (let sequence = first; sequence < first + 1000; sequence++) {
          const path = Path.join(dir, LogReader.fileName(sequence))
          try {
            return { handle: await Fs.open(path, "wx"), path, sequence }
          } catch (error) {
            if (errorCode(error) !== "EEXIST") throw error
          }
        }
        throw new Error(`sequences ${first} to ${first + 999} are all taken`)
      })

    /** Creates the next file with its header, fsynced together with the directory. */
    const openNext: Effect.Effect<OpenFile, LogError> = Effect.gen(function*() {
      const created = yield* createExclusive(nextSequence)
      nextSequence = created.sequence + 1
      stats.files++
      const file: OpenFile = { ...created, position: 0, dirty: false }
      const createdAt = yield* Clock.currentTimeMillis
      const header = LogRecord.frame(
        LogCodec.encodeHeader({ partition: options.partition, sequence: created.sequence, createdAt })
      )
      const ready = yield* Effect.result(
        Effect.andThen(writeAt(file, header), Effect.andThen(syncFile(file), syncDirectory(dir)))
      )
      if (ready._tag === "Failure") {
        // Remove the headless file and reuse its sequence, so that retries do not pile up files.
        yield* closeFile(file)
        const removed = yield* Effect.result(io(`remove ${file.path}`, () => Fs.unlink(file.path)))
        if (removed._tag === "Success") nextSequence = created.sequence
        return yield* Effect.fail(ready.failure)
      }
      return file
    })

    const fail = (error: LogError) =>
      Effect.andThen(Effect.sync(() => stats.failures++), Effect.logError(`event log: ${error.message}`))

    /** Writes one batch; on failure decides what happens to its payloads and returns the error. */
    const writeBatch = Effect.fnUntraced(
      function*(payloads: Array<Uint8Array>, durable: boolean): Effect.fn.Return<LogError | undefined> {
        if (current === undefined) {
          const opened = yield* Effect.result(openNext)
          if (opened._tag === "Failure") {
            carry = payloads
            return opened.failure
          }
          current = opened.success
        }
        const file = current
        if (payloads.length > 0) {
          stats.batches++
          const written = yield* Effect.result(writeAt(file, frameAll(payloads)))
          if (written._tag === "Failure") {
            // Rewritten at the same offset next time, over whatever part of it reached the file.
            carry = payloads
            return written.failure
          }
          stats.written += payloads.length
        }
        const now = yield* Clock.currentTimeMillis
        const due = options.fsync === "always" ||
          (options.fsync === "interval" && now - lastSyncAt >= options.fsyncIntervalMs)
        if (file.dirty && (durable || due)) {
          const synced = yield* Effect.result(syncFile(file))
          if (synced._tag === "Failure") {
            yield* abandon(file)
            return synced.failure
          }
        }
        return undefined
      },
      Effect.catchDefect((defect) =>
        Effect.succeed(new LogError({ operation: "write batch", message: `defect: ${describe(defect)}` }))
      )
    )

    /** Finishes the current file and starts the next once it is long enough. */
    const rotateIfFull: Effect.Effect<void> = Effect.suspend(() => {
      const file = current
      if (file === undefined || file.position < options.rotateBytes) return Effect.void
      return Effect.gen(function*() {
        const finished = file.dirty ? yield* Effect.result(syncFile(file)) : undefined
        if (finished?._tag === "Failure") yield* fail(finished.failure)
        yield* abandon(file)
        const opened = yield* Effect.result(openNext)
        if (opened._tag === "Failure") yield* fail(opened.failure)
        else current = opened.success
      })
    })

    /** Waits for appends, or for the interval fsync to fall due while events are unsynced. */
    const waitForWork: Effect.Effect<void> = Effect.gen(function*() {
      if (closing) return
      if (options.fsync === "interval" && current?.dirty === true) {
        const remaining = lastSyncAt + options.fsyncIntervalMs - (yield* Clock.currentTimeMillis)
        if (remaining > 0) yield* Effect.timeoutOption(work.await, remaining)
        return
      }
      yield* work.await
    })

    const failAll = (waiters: ReadonlyArray<Deferred.Deferred<void, LogError>>, error: LogError) => {
      for (const waiter of waiters) Deferred.doneUnsafe(waiter, Effect.fail(error))
    }

    const loop: Effect.Effect<void> = Effect.gen(function*() {
      for (;;) {
        yield* waitForWork
        work.closeUnsafe()
        const payloads = carry.length > 0 ? carry.concat(pendingPayloads) : pendingPayloads
        const waiters = pendingWaiters
        pendingPayloads = []
        pendingWaiters = []
        carry = []
        if (payloads.length === 0 && waiters.length === 0) {
          if (closing) {
            closed = true
            break
          }
          // Woken by the interval: fsync what the last batches left unsynced.
          const error = options.fsync === "interval" && current?.dirty === true
            ? yield* writeBatch([], false)
            : undefined
          if (error !== undefined) yield* fail(error)
          continue
        }
        const error = yield* writeBatch(payloads, waiters.length > 0)
        if (error === undefined) {
          for (const waiter of waiters) Deferred.doneUnsafe(waiter, Effect.void)
          yield* rotateIfFull
          continue
        }
        failAll(waiters, error)
        yield* fail(error)
        if (closing) {
          // Already retried once since close began: give up rather than hold the shutdown.
          closed = true
          const lost = carry.length + pendingPayloads.length
          stats.dropped += lost
          carry = []
          pendingPayloads = []
          if (lost > 0) yield* Effect.logError(`event log: ${lost} events lost at close of ${dir}`)
          break
        }
        yield* Effect.raceFirst(Effect.sleep(retryDelayMs), closeSignal.await)
      }
      const file = current
      if (file !== undefined) {
        if (file.dirty) {
          const synced = yield* Effect.result(syncFile(file))
          if (synced._tag === "Failure") yield* fail(synced.failure)
        }
        current = undefined
        yield* closeFile(file)
      }
    })

    const stop: Effect.Effect<void> = Effect.suspend(() => {
      closed = true
      stats.dropped += pendingPayloads.length + carry.length
      pendingPayloads = []
      carry = []
      const waiters = pendingWaiters
      pendingWaiters = []
      failAll(waiters, new LogError({ operation: "append", message: "the event log writer stopped" }))
      const file = current
      current = undefined
      return file === undefined ? Effect.void : closeFile(file)
    })

    if (recovery.resume !== undefined) {
      const resume = recovery.resume
      const handle = yield* io(`open ${resume.file}`, () => Fs.open(resume.file, "r+"))
      current = { handle, path: resume.file, sequence: resume.sequence, position: resume.offset, dirty: false }
    } else {
      current = yield* openNext
    }

    const fiber = yield* Effect.forkScoped(
      loop.pipe(
        Effect.onExit((exit) =>
          exit._tag === "Failure" && !Cause.hasInterruptsOnly(exit.cause)
            ? Effect.logError(`event log writer died: ${Cause.pretty(exit.cause)}`)
            : Effect.void
        ),
        Effect.ensuring(stop)
      )
    )
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closing = true
        if (delayedWake !== undefined) clearTimeout(delayedWake)
        work.openUnsafe()
        closeSignal.openUnsafe()
        return Effect.asVoid(Fiber.await(fiber))
      })
    )

    const tooLarge = (payload: Uint8Array) =>
      new LogError({
        operation: "append",
        message: `event of ${payload.length} bytes exceeds the record limit of ${LogRecord.maxPayload}`
      })

    /** Queues the event; returns what went wrong, if anything, for the caller to report. */
    const enqueue = (event: Event.Event): string | undefined => {
      if (closed) {
        stats.dropped++
        if (warnedClosed) return undefined
        warnedClosed = true
        return `event log: ${event._tag} appended after close of ${dir}, dropped`
      }
      const payload = LogCodec.encode(event)
      if (payload.length > LogRecord.maxPayload) {
        stats.dropped++
        return `event log: ${tooLarge(payload).message}, dropped`
      }
      pendingPayloads.push(payload)
      stats.appended++
      wakeWriterSoon()
      return undefined
    }

    const append = (event: Event.Event): Effect.Effect<void> =>
      Effect.suspend(() => {
        const problem = enqueue(event)
        return problem === undefined ? Effect.void : Effect.logWarning(problem)
      })

    const appendUnsafe = (event: Event.Event): void => {
      const problem = enqueue(event)
      if (problem !== undefined) process.emitWarning(problem)
    }

    const enqueueWaiter = (payload: Uint8Array | undefined): Effect.Effect<void, LogError> =>
      Effect.suspend(() => {
        if (closed) return Effect.fail(closedError())
        if (payload !== undefined) {
          pendingPayloads.push(payload)
          stats.appended++
        }
        const waiter = Deferred.makeUnsafe<void, LogError>()
        pendingWaiters.push(waiter)
        wakeWriter()
        return Deferred.await(waiter)
      })

    const appendDurable = (event: Event.Event): Effect.Effect<void, LogError> =>
      Effect.suspend(() => {
        const payload = LogCodec.encode(event)
        return payload.length > LogRecord.maxPayload ? Effect.fail(tooLarge(payload)) : enqueueWaiter(payload)
      })

    for (const problem of recovery.problems) {
      if (problem._tag !== "TornTail") continue
      const at = yield* Clock.currentTimeMillis
      yield* append(
        Event.make("LogRepaired", { at, file: problem.file, offset: problem.offset, droppedBytes: problem.droppedBytes })
      )
    }

    return {
      append,
      appendUnsafe,
      appendDurable,
      sync: enqueueWaiter(undefined),
      currentFile: () => current?.sequence ?? nextSequence,
      recovery,
      stats: Effect.sync(() => ({ ...stats, file: current?.path }))
    }
  })

/**
 * The EventLog backed by files (and the `LogWriter` behind it). Closing the layer's scope
 * flushes, fsyncs and closes the current file.
 */
export const layer = (options: Options): Layer.Layer<EventLog | LogWriter, LogError> =>
  Layer.effectContext(
    Effect.map(make(options), (writer) => Context.add(Context.make(EventLog, writer), LogWriter, writer))
  )
