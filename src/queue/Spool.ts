/**
 * The spool: where accepted message content lives until every recipient is done.
 *
 * It is log-structured. Each partition appends the content of all its sessions to shared
 * segment files, `<directory>/<partition>/<8-digit sequence>.spool`, each starting with a
 * header record. A message is written in framed records (`LogRecord` framing: length, CRC-32,
 * payload) of at most `recordSize` bytes, so its content is never held whole in memory, and
 * its location is the list of those records (`SpoolReference`: segment and extents).
 *
 * Durability is group-committed, because an fsync costs far more than the append it protects
 * and fsyncs do not run in parallel: one writer per segment serialises the appends of every
 * transaction (coalescing what queued up into one `writev`), and a commit waits for an
 * fdatasync that starts after its last record was written. Every commit waiting when an
 * fdatasync starts is completed by it, so under load one fdatasync covers many messages.
 * Segment files are extended with zeros ahead of the appends (`preallocate`), so most of those
 * fdatasyncs need not journal a new file size; a segment therefore ends in zeros, and only
 * the extents of a reference say where content is (a scan for records would read the zeros
 * as empty records).
 *
 * Space is reclaimed a segment at a time: a segment that is no longer the current one and
 * holds no retained message (and no open transaction) is unlinked. A committed transaction
 * holds one retention, given back with `release` when the message is done; `retain` adds one
 * for references found again after a restart, and `sweep` then removes every segment that
 * nothing refers to.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Clock, Deferred, Effect, Schema, Semaphore, Stream } from "effect"
import type { Scope } from "effect"
import * as Crc32 from "../log/Crc32.ts"
import type * as Event from "../log/Event.ts"
import * as LogRecord from "../log/LogRecord.ts"

/** Why a spool operation failed. */
export const SpoolErrorReason = Schema.Literals([
  /** The operating system refused a read, write, fsync or directory operation. */
  "io",
  /** The segment or a record of the message is not there (deleted, or cut short by a crash). */
  "missing",
  /** A record is there but its frame, length, CRC or the message digest does not match. */
  "corrupt",
  /** The transaction was already committed or aborted, or the spool is closed. */
  "closed",
  /** An option or a reference is malformed. */
  "invalid"
])
export type SpoolErrorReason = typeof SpoolErrorReason.Type

/** A spool operation failed; the reason says whether retrying can help ("io") or not. */
export class SpoolError extends Schema.TaggedError<SpoolError>()("SpoolError", {
  reason: SpoolErrorReason,
  message: Schema.String
}) {}

/** The file format named in every segment's header record. */
export const format = "postern-spool"
/** The version of the segment layout. */
export const formatVersion = 1
/** The default `recordSize`: content buffered per message before it is appended. */
export const defaultRecordSize = 64 * 1024
/** The default `preallocate`. */
export const defaultPreallocate = 1024 * 1024

const segmentNamePattern = /^\d{8}$/
const segmentFilePattern = /^(\d{8})\.spool$/
const partitionPattern = /^[A-Za-z0-9_-]{1,64}$/
const initialBufferSize = 4096

/** Where a partition's spool lives and how it is cut into records and segments. */
export interface Options {
  /** The spool root; the partition's segments go in a sub-directory named after it. */
  readonly directory: string
  readonly partition: string
  /** Once the current segment reaches this many bytes, new messages go to a new segment. */
  readonly segmentSize: number
  /** Largest record of content; a message's content is buffered up to this much. Default 64 KiB. */
  readonly recordSize?: number | undefined
  /**
   * The segment file is extended with zeros this many bytes at a time ahead of the appends
   * (0: never), so that most fdatasyncs flush data only, not a new file size: on ext4 that
   * makes them two to three times cheaper. Default `defaultPreallocate`.
   */
  readonly preallocate?: number | undefined
}

/** What a commit made durable. */
export interface Committed {
  readonly reference: Event.SpoolReference
  /** Content bytes. */
  readonly size: number
  /** SHA-256 of the content, hex. */
  readonly digest: string
}

/**
 * A transaction whose last record is written but not yet known durable: `committed` is final,
 * and `durable` completes when an fdatasync covered it. The fdatasync is requested at `seal`,
 * so the queue can make its acceptance event durable meanwhile instead of after.
 */
export interface Sealed {
  readonly committed: Committed
  readonly durable: Effect.Effect<void, SpoolError>
}

/** One message being written. Not safe to use from two fibers at once. */
export interface Txn {
  /** The segment this message's records go to. */
  readonly segment: string
  /**
   * Adds content. The bytes are copied, so the caller may reuse its buffer. Waits only when
   * the writer falls more than one record behind this message.
   */
  readonly write: (bytes: Uint8Array) => Effect.Effect<void, SpoolError>
  /**
   * Appends what is still buffered and waits until every record of the message is on disk.
   * The result holds one retention of the segment, for `release` when the message is done.
   * On failure or interruption the retention is given back.
   */
  /** Ends the content; see `Sealed`. */
  readonly seal: Effect.Effect<Sealed, SpoolError>
  /** `seal`, then waits until it is durable. */
  readonly commit: Effect.Effect<Committed, SpoolError>
  /** Forgets the message (its records stay in the segment as garbage). Idempotent. */
  readonly abort: Effect.Effect<void>
}

/** Counters since `make`, for benchmarks and tests. */
export interface Stats {
  readonly commits: number
  readonly fsyncs: number
  readonly writes: number
  readonly records: number
  readonly bytes: number
  readonly segmentsCreated: number
  readonly segmentsDeleted: number
}

/** One partition's spool, from `make`. */
export interface Spool {
  readonly partition: string
  /** The partition's directory. */
  readonly directory: string
  /** Starts a message in the current segment (rolling to a new one if it is full). */
  readonly begin: Effect.Effect<Txn, SpoolError>
  /**
   * The content of a committed message, one record at a time. Each record is checked (frame,
   * length, CRC) before it is emitted, and a missing or corrupt one fails the stream with a
   * typed `SpoolError`: a consumer must treat the content as lost whenever the stream fails.
   */
  readonly read: (reference: Event.SpoolReference) => Stream.Stream<Uint8Array, SpoolError>
  /** Reads the whole message and checks its size and SHA-256 digest as well. */
  readonly verify: (
    reference: Event.SpoolReference,
    expected: { readonly size: number; readonly digest: string }
  ) => Effect.Effect<void, SpoolError>
  /** Adds a retention of the reference's segment (unknown segments are ignored). */
  readonly retain: (reference: Event.SpoolReference) => Effect.Effect<void>
  /** Gives one back; a segment left with none that is not the current one is deleted. */
  readonly release: (reference: Event.SpoolReference) => Effect.Effect<void>
  /** Deletes every segment other than the current one that nothing retains; returns how many. */
  readonly sweep: Effect.Effect<number>
  /** The names of the segments on disk, oldest first. */
  readonly segments: Effect.Effect<ReadonlyArray<string>>
  /** The segment new messages go to. */
  readonly current: Effect.Effect<string>
  readonly stats: Effect.Effect<Stats>
}

interface MutableStats {
  commits: number
  fsyncs: number
  writes: number
  records: number
  bytes: number
  segmentsCreated: number
  segmentsDeleted: number
}

type Done = (error: SpoolError | undefined) => void

interface Waiter {
  readonly until: number
  readonly done: Done
}

const errnoReason = (error: NodeJS.ErrnoException): SpoolErrorReason => (error.code === "ENOENT" ? "missing" : "io")

const ioError = (operation: string, path: string, error: NodeJS.ErrnoException): SpoolError =>
  new SpoolError({ reason: errnoReason(error), message: `${operation} ${path}: ${error.message}` })

const callFs = <A>(
  operation: string,
  path: string,
  run: (callback: (error: NodeJS.ErrnoException | null, value: A) => void) => void
): Effect.Effect<A, SpoolError> =>
  Effect.callback<A, SpoolError>((resume) => {
    run((error, value) => resume(error ? Effect.fail(ioError(operation, path, error)) : Effect.succeed(value)))
  })

const callFsVoid = (
  operation: string,
  path: string,
  run: (callback: (error: NodeJS.ErrnoException | null) => void) => void
): Effect.Effect<void, SpoolError> => callFs<void>(operation, path, (callback) => run((error) => callback(error)))

/** Makes a directory entry (a created or removed file) durable. */
const fsyncDirectory = (path: string): Effect.Effect<void, SpoolError> =>
  Effect.acquireUseRelease(
    callFs<number>("open", path, (cb) => Fs.open(path, "r", cb)),
    (fd) => callFsVoid("fsync", path, (cb) => Fs.fsync(fd, cb)),
    (fd) => Effect.sync(() => Fs.close(fd, () => undefined))
  )

/** Writes `chunks` at `position`, continuing after short writes. */
const writeAll = (
  fd: number,
  chunks: ReadonlyArray<Uint8Array>,
  position: number,
  callback: (error: NodeJS.ErrnoException | null) => void
): void => {
  const total = chunks.reduce((sum, chunk) => sum + chunk.length, 0)
  Fs.writev(fd, chunks, position, (error, written) => {
    if (error) return callback(error)
    if (written >= total) return callback(null)
    if (written === 0) return callback(Object.assign(new Error("writev wrote nothing"), { code: "EIO" }))
    const rest: Array<Uint8Array> = []
    let skip = written
    for (const chunk of chunks) {
      if (skip >= chunk.length) {
        skip -= chunk.length
        continue
      }
      rest.push(skip > 0 ? chunk.subarray(skip) : chunk)
      skip = 0
    }
    writeAll(fd, rest, position + written, callback)
  })
}

/**
 * The single writer of one segment: appends at reserved offsets in reservation order, one
 * `writev` for everything queued, and one fdatasync for every commit waiting when it starts.
 * An I/O error poisons it for good (after a failed fsync the page cache may have dropped the
 * data, so nothing written to this file can be trusted again).
 */
class SegmentWriter {
  readonly fd: number
  readonly path: string
  readonly stats: MutableStats
  /** End of everything appended (written or queued). */
  reserved: number
  /** End of what the OS has accepted. */
  written: number
  /** End of what is known to be on disk. */
  synced: number
  /** The file's size: appends below it overwrite preallocated zeros. */
  private allocated: number
  private readonly zeros: Uint8Array
  failure: SpoolError | undefined = undefined
  private queued: Array<Uint8Array> = []
  private writeWaiters: Array<Waiter> = []
  private syncWaiters: Array<Waiter> = []
  private idleWaiters: Array<() => void> = []
  private busy = false

  constructor(fd: number, path: string, end: number, preallocate: number, stats: MutableStats) {
    this.fd = fd
    this.path = path
    this.reserved = end
    this.written = end
    this.synced = end
    this.allocated = end
    this.zeros = new Uint8Array(preallocate)
    this.stats = stats
  }

  /** Queues a framed record; returns its offset in the segment. */
  append(record: Uint8Array): number {
    const offset = this.reserved
    this.reserved += record.length
    this.queued.push(record)
    this.stats.records += 1
    this.pump()
    return offset
  }

  whenWritten(until: number): Effect.Effect<void, SpoolError> {
    if (this.failure !== undefined) return Effect.fail(this.failure)
    if (this.written >= until) return Effect.void
    return this.wait(this.writeWaiters, until)
  }

  /** Resolves once nothing is queued or in flight (then the fd may be closed). */
  whenIdle(): Effect.Effect<void> {
    if (!this.busy && this.queued.length === 0 && this.syncWaiters.length === 0) return Effect.void
    return Effect.callback<void>((resume) => {
      this.idleWaiters.push(() => resume(Effect.void))
    })
  }

  /**
   * Waits until nothing is in flight, then closes the file. Any later use fails as "closed"
   * and never reaches the descriptor, whose number the OS may have handed to another file.
   */
  close(): Effect.Effect<void, SpoolError> {
    return Effect.andThen(
      this.whenIdle(),
      Effect.suspend(() => {
        if (this.failure?.reason === "closed") return Effect.void
        this.fail(new SpoolError({ reason: "closed", message: `${this.path} is closed` }))
        return callFsVoid("close", this.path, (cb) => Fs.close(this.fd, cb))
      })
    )
  }

  /**
   * Asks for an fdatasync covering `until` now, and returns the wait for it. The request does
   * not wait to be awaited: the fdatasync runs while the caller does other work (the queue
   * appends the acceptance event meanwhile).
   */
  requestSync(until: number): Effect.Effect<void, SpoolError> {
    if (this.failure !== undefined) return Effect.fail(this.failure)
    if (this.synced >= until) return Effect.void
    const done = Deferred.makeUnsafe<void, SpoolError>()
    this.syncWaiters.push({ until, done: (error) => Deferred.doneUnsafe(done, error === undefined ? Effect.void : Effect.fail(error)) })
    this.pump()
    return Deferred.await(done)
  }

  private wait(list: Array<Waiter>, until: number): Effect.Effect<void, SpoolError> {
    return Effect.callback<void, SpoolError>((resume) => {
      list.push({ until, done: (error) => resume(error === undefined ? Effect.void : Effect.fail(error)) })
      this.pump()
    })
  }

  private fail(error: SpoolError): void {
    this.failure = error
    this.queued = []
    const waiters = [...this.writeWaiters, ...this.syncWaiters]
    this.writeWaiters = []
    this.syncWaiters = []
    for (const waiter of waiters) waiter.done(error)
  }

  private pump(): void {
    if (this.busy) return
    // A commit whose records are written waits for the next fdatasync; writes that keep
    // arriving from other sessions must not put that fdatasync off (they used to, under load:
    // commits waited ten times the fdatasync's own latency).
    const syncDue = this.syncWaiters.some((w) => w.until <= this.written)
    if (this.failure === undefined && this.queued.length > 0 && !syncDue) {
      const chunks = this.queued
      const position = this.written
      const bytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0)
      const end = position + bytes
      if (this.zeros.length > 0 && end > this.allocated) {
        const extended = Math.ceil(end / this.zeros.length) * this.zeros.length
        if (extended > end) chunks.push(this.zeros.subarray(0, extended - end))
        this.allocated = extended
      }
      this.queued = []
      this.busy = true
      writeAll(this.fd, chunks, position, (error) => {
        this.busy = false
        if (error) {
          this.fail(ioError("write", this.path, error))
        } else {
          this.written = position + bytes
          this.stats.writes += 1
          this.stats.bytes += bytes
          const ready = this.writeWaiters.filter((w) => w.until <= this.written)
          this.writeWaiters = this.writeWaiters.filter((w) => w.until > this.written)
          for (const waiter of ready) waiter.done(undefined)
        }
        this.pump()
      })
      return
    }
    if (this.failure === undefined && this.syncWaiters.length > 0) {
      const target = this.written
      const batch = this.syncWaiters.filter((w) => w.until <= target)
      this.syncWaiters = this.syncWaiters.filter((w) => w.until > target)
      this.busy = true
      this.stats.fsyncs += 1
      Fs.fdatasync(this.fd, (error) => {
        this.busy = false
        if (error) {
          const failure = ioError("fdatasync", this.path, error)
          for (const waiter of batch) waiter.done(failure)
          this.fail(failure)
        } else {
          this.synced = Math.max(this.synced, target)
          for (const waiter of batch) waiter.done(undefined)
        }
        this.pump()
      })
      return
    }
    const idle = this.idleWaiters
    this.idleWaiters = []
    for (const resume of idle) resume()
  }
}

interface Segment {
  readonly name: string
  readonly path: string
  /** Open transactions plus retained messages. */
  holds: number
  /** Present for segments this process created. */
  writer: SegmentWriter | undefined
}

const segmentName = (sequence: number): string => String(sequence).padStart(8, "0")

const invalid = (message: string) => new SpoolError({ reason: "invalid", message })
const corrupt = (message: string) => new SpoolError({ reason: "corrupt", message })
const missing = (message: string) => new SpoolError({ reason: "missing", message })

const readRecord = (
  fd: number,
  path: string,
  extent: { readonly offset: number; readonly length: number }
): Effect.Effect<Uint8Array, SpoolError> => {
  const total = LogRecord.frameOverhead + extent.length
  const bytes = new Uint8Array(total)
  const fill = (from: number): Effect.Effect<void, SpoolError> =>
    callFs<number>("read", path, (cb) => Fs.read(fd, bytes, from, total - from, extent.offset + from, cb)).pipe(
      Effect.flatMap((count) => {
        if (count === 0) {
          return Effect.fail(missing(`${path}: record at ${extent.offset} is cut short (${from} of ${total} bytes)`))
        }
        return from + count < total ? fill(from + count) : Effect.void
      })
    )
  return fill(0).pipe(Effect.flatMap(() => {
    const declared = new DataView(bytes.buffer).getUint32(0)
    if (declared !== extent.length) {
      return Effect.fail(
        corrupt(`${path}: record at ${extent.offset} holds ${declared} bytes, the reference says ${extent.length}`)
      )
    }
    const scanned = LogRecord.scan(bytes, 0)
    if (scanned._tag !== "Record") {
      return Effect.fail(
        corrupt(`${path}: record at ${extent.offset}: ${scanned._tag === "Corrupt" ? scanned.reason : "incomplete"}`)
      )
    }
    return Effect.succeed(scanned.payload)
  }))
}

const checkReference = (reference: Event.SpoolReference): SpoolError | undefined => {
  if (!segmentNamePattern.test(reference.segment)) return invalid(`invalid segment name ${reference.segment}`)
  for (const extent of reference.extents) {
    if (
      !Number.isSafeInteger(extent.offset) || extent.offset < 0 || !Number.isSafeInteger(extent.length) ||
      extent.length < 0 || extent.length > LogRecord.maxPayload
    ) return invalid(`invalid extent ${extent.offset}+${extent.length} in segment ${reference.segment}`)
  }
  return undefined
}

/** The content of `reference` in the partition directory `directory`: see `Spool.read`. */
const readContent = (directory: string, reference: Event.SpoolReference): Stream.Stream<Uint8Array, SpoolError> => {
  const problem = checkReference(reference)
  if (problem !== undefined) return Stream.fail(problem)
  if (reference.extents.length === 0) return Stream.empty
  const path = Path.join(directory, `${reference.segment}.spool`)
  return Stream.unwrap(
    Effect.acquireRelease(
      callFs<number>("open", path, (cb) => Fs.open(path, "r", cb)),
      (fd) => Effect.sync(() => Fs.close(fd, () => undefined))
    ).pipe(Effect.map((fd) =>
      Stream.unfold(0, (index): Effect.Effect<readonly [Uint8Array, number] | undefined, SpoolError> => {
        const extent = reference.extents[index]
        if (extent === undefined) return Effect.succeed(undefined)
        return Effect.map(readRecord(fd, path, extent), (bytes) => [bytes, index + 1] as const)
      })
    ))
  )
}

/**
 * The first `limit` bytes of a committed message's content (all of it when shorter), read from
 * `<directory>/<partition>` without opening the spool, so also while the daemon runs. Every
 * record is checked as `read` checks it (frame, length, CRC-32); the answer is undefined, never
 * a failure, when the partition, the segment or a record is missing, cut short or corrupt.
 * `postern replay --rules` reads the body start of messages still in the spool with it.
 */
export const readStart = (
  directory: string,
  partition: string,
  reference: Event.SpoolReference,
  limit: number
): Effect.Effect<Uint8Array | undefined> =>
  Effect.suspend(() => {
    if (!partitionPattern.test(partition)) return Effect.succeed(undefined)
    const start = new Uint8Array(Math.max(0, limit))
    let kept = 0
    return readContent(Path.join(directory, partition), reference).pipe(
      Stream.takeUntil((bytes) => {
        const part = bytes.subarray(0, start.length - kept)
        start.set(part, kept)
        kept += part.length
        return kept >= start.length
      }),
      Stream.runDrain,
      Effect.map(() => start.slice(0, kept)),
      Effect.orElseSucceed(() => undefined),
      Effect.catchDefect(() => Effect.succeed(undefined))
    )
  })

/** Opens the partition's spool; closing the scope closes its files (their content stays). */
export const make = Effect.fnUntraced(function*(options: Options): Effect.fn.Return<Spool, SpoolError, Scope.Scope> {
  const recordSize = options.recordSize ?? defaultRecordSize
  const preallocate = options.preallocate ?? defaultPreallocate
  if (!partitionPattern.test(options.partition)) return yield* invalid(`invalid partition name ${options.partition}`)
  if (!Number.isSafeInteger(options.segmentSize) || options.segmentSize <= 0) {
    return yield* invalid(`segmentSize must be a positive integer, not ${options.segmentSize}`)
  }
  if (!Number.isSafeInteger(recordSize) || recordSize <= 0 || recordSize > LogRecord.maxPayload) {
    return yield* invalid(`recordSize must be between 1 and ${LogRecord.maxPayload}, not ${recordSize}`)
  }
  if (!Number.isSafeInteger(preallocate) || preallocate < 0 || preallocate > 1024 * 1024 * 1024) {
    return yield* invalid(`preallocate must be between 0 and 1 GiB, not ${preallocate}`)
  }
  const directory = Path.join(options.directory, options.partition)
  const created = yield* callFs<string | undefined>(
    "mkdir",
    directory,
    (cb) => Fs.mkdir(directory, { recursive: true, mode: 0o700 }, cb)
  )
  if (created !== undefined) yield* fsyncDirectory(Path.dirname(directory))

  const stats: MutableStats = {
    commits: 0,
    fsyncs: 0,
    writes: 0,
    records: 0,
    bytes: 0,
    segmentsCreated: 0,
    segmentsDeleted: 0
  }
  const segments = new Map<string, Segment>()
  let lastSequence = 0
  const existing = yield* callFs<Array<string>>("readdir", directory, (cb) => Fs.readdir(directory, cb))
  for (const file of existing.sort()) {
    const match = segmentFilePattern.exec(file)
    if (match === null || match[1] === undefined) continue
    segments.set(match[1], { name: match[1], path: Path.join(directory, file), holds: 0, writer: undefined })
    lastSequence = Math.max(lastSequence, Number(match[1]))
  }

  let closed = false

  const createSegment = Effect.fnUntraced(function*() {
    lastSequence += 1
    const name = segmentName(lastSequence)
    const path = Path.join(directory, `${name}.spool`)
    const createdAt = yield* Clock.currentTimeMillis
    const header = LogRecord.frame(
      new TextEncoder().encode(
        JSON.stringify({ format, version: formatVersion, partition: options.partition, segment: name, createdAt })
      )
    )
    const fd = yield* callFs<number>("open", path, (cb) => Fs.open(path, "wx", 0o600, cb))
    const ready = Effect.gen(function*() {
      yield* callFsVoid("write", path, (cb) => writeAll(fd, [header], 0, cb))
      yield* callFsVoid("fdatasync", path, (cb) => Fs.fdatasync(fd, cb))
      yield* fsyncDirectory(directory)
    })
    yield* Effect.onError(ready, () => Effect.sync(() => Fs.close(fd, () => undefined)))
    const segment: Segment = { name, path, holds: 0, writer: new SegmentWriter(fd, path, header.length, preallocate, stats) }
    segments.set(name, segment)
    stats.segmentsCreated += 1
    return segment
  })

  const deleteSegment = (segment: Segment): Effect.Effect<void> =>
    Effect.gen(function*() {
      segments.delete(segment.name)
      const writer = segment.writer
      if (writer !== undefined) yield* writer.close()
      yield* callFsVoid("unlink", segment.path, (cb) => Fs.unlink(segment.path, cb))
      yield* fsyncDirectory(directory)
      stats.segmentsDeleted += 1
    }).pipe(
      Effect.catch((error) => Effect.logWarning(`spool segment ${segment.path} not deleted: ${error.message}`))
    )

  let current = yield* createSegment()
  const rollLock = yield* Semaphore.make(1)

  const dropHold = (segment: Segment): Effect.Effect<void> =>
    Effect.suspend(() => {
      segment.holds = Math.max(0, segment.holds - 1)
      return segment.holds === 0 && segment !== current && segments.get(segment.name) === segment
        ? deleteSegment(segment)
        : Effect.void
    })

  const openTxn = (segment: Segment, writer: SegmentWriter): Txn => {
    segment.holds += 1
    let state: "open" | "committed" | "aborted" = "open"
    let buffer = new Uint8Array(0)
    let filled = 0
    let size = 0
    const extents: Array<{ offset: number; length: number }> = []
    const hash = Crypto.createHash("sha256")
    let lastEnd = 0
    let previousEnd = 0

    const flush = (): void => {
      const record = buffer.subarray(0, LogRecord.frameOverhead + filled)
      const view = new DataView(record.buffer, record.byteOffset, record.byteLength)
      view.setUint32(0, filled)
      view.setUint32(4, Crc32.compute(record, LogRecord.frameOverhead, record.length))
      const offset = writer.append(record)
      extents.push({ offset, length: filled })
      previousEnd = lastEnd
      lastEnd = offset + record.length
      buffer = new Uint8Array(0)
      filled = 0
    }

    const room = (wanted: number): void => {
      const capacity = buffer.length - LogRecord.frameOverhead
      if (capacity - filled >= wanted || capacity >= recordSize) return
      const grown = new Uint8Array(
        LogRecord.frameOverhead + Math.min(recordSize, Math.max(initialBufferSize, capacity * 2, filled + wanted))
      )
      grown.set(buffer.subarray(0, LogRecord.frameOverhead + filled))
      buffer = grown
    }

    const closedError = () => new SpoolError({ reason: "closed", message: `transaction already ${state}` })

    const write = (bytes: Uint8Array): Effect.Effect<void, SpoolError> => {
      if (state !== "open") return Effect.fail(closedError())
      if (writer.failure !== undefined) return Effect.fail(writer.failure)
      hash.update(bytes)
      size += bytes.length
      let position = 0
      let flushed = false
      while (position < bytes.length) {
        room(bytes.length - position)
        const count = Math.min(buffer.length - LogRecord.frameOverhead - filled, bytes.length - position)
        buffer.set(bytes.subarray(position, position + count), LogRecord.frameOverhead + filled)
        filled += count
        position += count
        if (filled === recordSize) {
          flush()
          flushed = true
        }
      }
      return flushed && previousEnd > 0 ? writer.whenWritten(previousEnd) : Effect.void
    }

    const seal = Effect.suspend((): Effect.Effect<Sealed, SpoolError> => {
      if (state !== "open") return Effect.fail(closedError())
      const failure = writer.failure
      if (failure !== undefined) {
        state = "aborted"
        return Effect.andThen(dropHold(segment), Effect.fail(failure))
      }
      state = "committed"
      if (filled > 0) flush()
      const committed: Committed = {
        reference: { segment: segment.name, extents },
        size,
        digest: hash.digest("hex")
      }
      stats.commits += 1
      const durable = (extents.length === 0 ? Effect.void : writer.requestSync(lastEnd)).pipe(
        Effect.onExit((exit) => (exit._tag === "Success" ? Effect.void : dropHold(segment)))
      )
      return Effect.succeed({ committed, durable })
    })

    const commit = Effect.flatMap(seal, ({ committed, durable }) => Effect.as(durable, committed))

    const abort = Effect.suspend(() => {
      if (state !== "open") return Effect.void
      state = "aborted"
      buffer = new Uint8Array(0)
      return dropHold(segment)
    })

    return { segment: segment.name, write, seal, commit, abort }
  }

  const needsRoll = (segment: Segment): boolean =>
    segment.writer === undefined || segment.writer.failure !== undefined ||
    segment.writer.reserved >= options.segmentSize

  const begin = Effect.suspend((): Effect.Effect<Txn, SpoolError> => {
    if (closed) return Effect.fail(new SpoolError({ reason: "closed", message: "spool is closed" }))
    const segment = current
    if (!needsRoll(segment) && segment.writer !== undefined) return Effect.succeed(openTxn(segment, segment.writer))
    return rollLock.withPermit(Effect.gen(function*() {
      if (needsRoll(current)) {
        const previous = current
        current = yield* createSegment()
        if (previous.holds === 0) yield* deleteSegment(previous)
      }
      const writer = current.writer
      if (writer === undefined) return yield* invalid("current segment has no writer")
      return openTxn(current, writer)
    }))
  })

  const read = (reference: Event.SpoolReference): Stream.Stream<Uint8Array, SpoolError> => readContent(directory, reference)

  const verify = (
    reference: Event.SpoolReference,
    expected: { readonly size: number; readonly digest: string }
  ): Effect.Effect<void, SpoolError> =>
    Effect.suspend(() => {
      const hash = Crypto.createHash("sha256")
      let size = 0
      return read(reference).pipe(
        Stream.runForEach((bytes) =>
          Effect.sync(() => {
            hash.update(bytes)
            size += bytes.length
          })
        ),
        Effect.flatMap(() => {
          const digest = hash.digest("hex")
          if (size !== expected.size) {
            return Effect.fail(corrupt(`segment ${reference.segment}: ${size} bytes, expected ${expected.size}`))
          }
          if (digest !== expected.digest) {
            return Effect.fail(corrupt(`segment ${reference.segment}: SHA-256 ${digest}, expected ${expected.digest}`))
          }
          return Effect.void
        })
      )
    })

  const retain = (reference: Event.SpoolReference): Effect.Effect<void> =>
    Effect.sync(() => {
      const segment = segments.get(reference.segment)
      if (segment !== undefined) segment.holds += 1
    })

  const release = (reference: Event.SpoolReference): Effect.Effect<void> =>
    Effect.suspend(() => {
      const segment = segments.get(reference.segment)
      return segment === undefined ? Effect.void : dropHold(segment)
    })

  const sweep = Effect.suspend(() => {
    const idle = [...segments.values()].filter((segment) => segment !== current && segment.holds === 0)
    return Effect.as(Effect.forEach(idle, deleteSegment, { discard: true }), idle.length)
  })

  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      closed = true
      for (const segment of segments.values()) {
        const writer = segment.writer
        if (writer === undefined) continue
        segment.writer = undefined
        yield* Effect.ignore(writer.close())
      }
    })
  )

  return {
    partition: options.partition,
    directory,
    begin,
    read,
    verify,
    retain,
    release,
    sweep,
    segments: Effect.sync(() => [...segments.keys()].sort()),
    current: Effect.sync(() => current.name),
    stats: Effect.sync(() => ({ ...stats }))
  }
})
