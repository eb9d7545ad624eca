/**
 * Reads the event log back: one partition, every partition merged by time, or a live follow.
 *
 * Layout: `<root>/<partition>/<8-digit sequence>.plog`, each file a header record followed by
 * event records (see `LogRecord.ts` and `LogCodec.ts`). Reading never fails on bad data: a torn
 * or corrupt region, a bad header or an event that does not decode becomes a `Problem`, and
 * reading goes on with the next file.
 */
import { Duration, Effect, Stream } from "effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import type * as Event from "./Event.ts"
import { LogError } from "./EventLog.ts"
import * as LogCodec from "./LogCodec.ts"
import * as LogRecord from "./LogRecord.ts"
import { describe, isMissing } from "./SystemError.ts"

/** One event and where it is stored (`offset` is the start of its record's frame). */
export interface Entry {
  readonly event: Event.Event
  readonly file: string
  readonly offset: number
}

/** An entry of a named partition, as returned when several partitions are read together. */
export interface PartitionEntry extends Entry {
  readonly partition: string
}

/** Something that could not be read, and where. */
export interface Problem {
  readonly file: string
  readonly offset: number
  readonly reason: string
}

/** A log file of a partition directory. */
export interface LogFile {
  readonly sequence: number
  readonly path: string
}

const fileSuffix = ".plog"
const fileNamePattern = /^(\d{8})\.plog$/

/** The file name of sequence `sequence`: eight digits, so names sort like sequences. */
export const fileName = (sequence: number): string => `${String(sequence).padStart(8, "0")}${fileSuffix}`

/** The sequence of a log file name, or undefined for any other name. */
export const parseFileName = (name: string): number | undefined => {
  const match = fileNamePattern.exec(name)
  return match?.[1] === undefined ? undefined : Number(match[1])
}


const io = <A>(operation: string, thunk: () => Promise<A>): Effect.Effect<A, LogError> =>
  Effect.tryPromise({ try: thunk, catch: (error) => new LogError({ operation, message: describe(error) }) })

/** The log files of one partition directory in sequence order; none when it does not exist. */
export const listFiles = (dir: string): Effect.Effect<Array<LogFile>, LogError> =>
  io(`list ${dir}`, async () => {
    try {
      return await Fs.readdir(dir)
    } catch (error) {
      if (isMissing(error)) return []
      throw error
    }
  }).pipe(Effect.map((names) => {
    const files: Array<LogFile> = []
    for (const name of names) {
      const sequence = parseFileName(name)
      if (sequence !== undefined) files.push({ sequence, path: Path.join(dir, name) })
    }
    return files.sort((a, b) => a.sequence - b.sequence)
  }))

/** The partition names under `root` (its subdirectories), sorted; none when root does not exist. */
export const partitions = (root: string): Effect.Effect<Array<string>, LogError> =>
  io(`list ${root}`, async () => {
    try {
      const entries = await Fs.readdir(root, { withFileTypes: true })
      return entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort()
    } catch (error) {
      if (isMissing(error)) return []
      throw error
    }
  })

/** What one contiguous run of a file's bytes holds. */
export interface Decoded {
  readonly entries: Array<Entry>
  readonly problems: Array<Problem>
  /** File offset just after the last intact record: where reading resumes. */
  readonly validEnd: number
  /** Why decoding stopped before the end of the bytes, if it did. */
  readonly stop: Problem | undefined
  /** The stop is a record cut short (a torn tail, or one still being written), not a bad one. */
  readonly incomplete: boolean
  /** The header, when the bytes started at offset 0 and it was valid. */
  readonly header: LogCodec.Header | undefined
}

/**
 * Decodes records of `file`, where `bytes` are the file's contents from offset `base` on.
 * At `base` 0 the first record must be a valid header; without one nothing else is trusted.
 * Pure.
 */
export const decodeBytes = (file: string, bytes: Uint8Array, base: number): Decoded => {
  const scanned = LogRecord.scanAll(bytes)
  const entries: Array<Entry> = []
  const problems: Array<Problem> = []
  let header: LogCodec.Header | undefined
  let records = scanned.records
  const incomplete = scanned.stop !== undefined && LogRecord.scan(bytes, scanned.stop.offset)._tag === "Incomplete"
  if (base === 0) {
    const first = records[0]
    if (first === undefined) {
      const stop: Problem = {
        file,
        offset: scanned.stop?.offset ?? 0,
        reason: bytes.length === 0 ? "missing header (empty file)" : `no header: ${scanned.stop?.reason ?? "unknown"}`
      }
      return { entries, problems: [stop], validEnd: 0, stop, incomplete: incomplete || bytes.length === 0, header }
    }
    const decoded = LogCodec.decodeHeader(first.payload)
    if (decoded._tag === "Invalid") {
      const stop: Problem = { file, offset: 0, reason: `bad header: ${decoded.reason}` }
      return { entries, problems: [stop], validEnd: 0, stop, incomplete: false, header }
    }
    header = decoded.header
    records = records.slice(1)
  }
  for (const record of records) {
    try {
      entries.push({ event: LogCodec.decode(record.payload), file, offset: base + record.offset })
    } catch (error) {
      problems.push({ file, offset: base + record.offset, reason: `undecodable event: ${describe(error)}` })
    }
  }
  const stop = scanned.stop === undefined
    ? undefined
    : { file, offset: base + scanned.stop.offset, reason: scanned.stop.reason }
  if (stop !== undefined) problems.push(stop)
  return { entries, problems, validEnd: base + scanned.validEnd, stop, incomplete, header }
}

/**
 * Every event of one partition directory, in the order written; with `fromFile`, only those of
 * the files with that sequence number or a later one. Never fails: see `problems`.
 */
export const readPartition = (dir: string, options?: { readonly fromFile?: number }): Effect.Effect<{
  entries: Array<Entry>
  problems: Array<Problem>
}> =>
  Effect.gen(function*() {
    const entries: Array<Entry> = []
    const problems: Array<Problem> = []
    const listed = yield* Effect.result(listFiles(dir))
    if (listed._tag === "Failure") return { entries, problems: [{ file: dir, offset: 0, reason: listed.failure.message }] }
    const fromFile = options?.fromFile ?? 0
    const files = listed.success.filter((file) => file.sequence >= fromFile)
    for (const [index, file] of files.entries()) {
      const read = yield* Effect.result(io(`read ${file.path}`, () => Fs.readFile(file.path)))
      if (read._tag === "Failure") {
        problems.push({ file: file.path, offset: 0, reason: read.failure.message })
        continue
      }
      const decoded = decodeBytes(file.path, read.success, 0)
      // Not push(...entries): a busy day's file holds more events than a call may take arguments.
      for (const entry of decoded.entries) entries.push(entry)
      const last = index === files.length - 1
      for (const problem of decoded.problems) {
        // The newest file may be mid-write while we read it; say so rather than cry corruption.
        problems.push(
          last && problem === decoded.stop && decoded.incomplete
            ? { ...problem, reason: `${problem.reason} (or still being written)` }
            : problem
        )
      }
      const header = decoded.header
      if (header !== undefined && (header.sequence !== file.sequence || header.partition !== Path.basename(dir))) {
        problems.push({
          file: file.path,
          offset: 0,
          reason: `header says partition ${header.partition}, sequence ${header.sequence}`
        })
      }
    }
    return { entries, problems }
  })

/**
 * Merges per-partition entry lists by event time. Within a partition the written order is
 * kept even where clocks stepped back; ties go to the earlier partition in the list.
 */
export const mergeByTime = (lists: ReadonlyArray<ReadonlyArray<PartitionEntry>>): Array<PartitionEntry> => {
  const heads = lists.map(() => 0)
  const out: Array<PartitionEntry> = []
  for (;;) {
    let best = -1
    let bestAt = Infinity
    for (let i = 0; i < lists.length; i++) {
      const entry = lists[i]?.[heads[i] ?? 0]
      if (entry !== undefined && (best === -1 || entry.event.at < bestAt)) {
        best = i
        bestAt = entry.event.at
      }
    }
    if (best === -1) return out
    const list = lists[best]
    const head = heads[best] ?? 0
    const entry = list?.[head]
    if (entry === undefined) return out
    out.push(entry)
    heads[best] = head + 1
  }
}

/** Every partition under `root`, merged by event time. Never fails: see `problems`. */
export const readAll = (root: string): Effect.Effect<{
  entries: Array<PartitionEntry>
  problems: Array<Problem>
}> =>
  Effect.gen(function*() {
    const listed = yield* Effect.result(partitions(root))
    if (listed._tag === "Failure") return { entries: [], problems: [{ file: root, offset: 0, reason: listed.failure.message }] }
    const problems: Array<Problem> = []
    const lists: Array<Array<PartitionEntry>> = []
    for (const partition of listed.success) {
      const read = yield* readPartition(Path.join(root, partition))
      lists.push(read.entries.map((entry) => ({ ...entry, partition })))
      for (const problem of read.problems) problems.push(problem)
    }
    return { entries: mergeByTime(lists), problems }
  })

/** Options of `follow`. */
export interface FollowOptions {
  /** How often file sizes are polled. Default 200 ms. */
  readonly pollInterval?: Duration.Input
}

interface Cursor {
  readonly partition: string
  readonly dir: string
  /** The file being followed; undefined until the partition has one. */
  file: LogFile | undefined
  /** Offset of the next unread record in `file`. */
  position: number
  /** Skip what is read until the first poll is over (following from the end). */
  discard: boolean
}

const readFrom = (path: string, position: number): Effect.Effect<Uint8Array, LogError> =>
  Effect.acquireUseRelease(
    io(`open ${path}`, () => Fs.open(path, "r")),
    (handle) =>
      io(`read ${path}`, async () => {
        const { size } = await handle.stat()
        if (size <= position) return new Uint8Array(0)
        const buffer = Buffer.allocUnsafe(size - position)
        let done = 0
        while (done < buffer.length) {
          const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done)
          if (bytesRead === 0) break
          done += bytesRead
        }
        return buffer.subarray(0, done)
      }),
    (handle) => Effect.promise(() => handle.close()).pipe(Effect.ignore)
  )

/** Reads what is new in one partition, moving across rotations. */
const pollPartition = (
  cursor: Cursor,
  warned: Set<string>
): Effect.Effect<Array<PartitionEntry>, LogError> =>
  Effect.gen(function*() {
    const out: Array<PartitionEntry> = []
    const warn = (problem: Problem) => {
      const key = `${problem.file}:${problem.offset}:${problem.reason}`
      if (warned.has(key)) return Effect.void
      warned.add(key)
      return Effect.logWarning(`event log: ${problem.file} at ${problem.offset}: ${problem.reason}`)
    }
    // List before reading: a file listed as newer means the current one was finished first.
    const files = yield* listFiles(cursor.dir)
    for (;;) {
      const current = cursor.file ?? files[0]
      if (current === undefined) return out
      cursor.file = current
      const next = files.find((file) => file.sequence > current.sequence)
      if (!files.some((file) => file.sequence === current.sequence)) {
        // Removed (by retention, say): nothing more can come from it.
        if (next === undefined) return out
        cursor.file = next
        cursor.position = 0
        continue
      }
      const hasNewer = next !== undefined
      const bytes = yield* readFrom(current.path, cursor.position)
      const decoded = decodeBytes(current.path, bytes, cursor.position)
      if (!cursor.discard) for (const entry of decoded.entries) out.push({ ...entry, partition: cursor.partition })
      for (const problem of decoded.problems) {
        if (problem !== decoded.stop) yield* warn(problem)
      }
      cursor.position = decoded.validEnd
      // With no newer file a record cut short is one still being written: wait for the rest.
      if (decoded.stop !== undefined && !(next === undefined && decoded.incomplete)) yield* warn(decoded.stop)
      if (next === undefined) return out
      cursor.file = next
      cursor.position = 0
    }
  })

/**
 * Every event of every partition under `root`, with where it is stored, as it is appended:
 * from the start of the log, or only what comes after the call with `fromEnd`. Polls file
 * sizes, follows rotations and picks up partitions created later; problems are logged as
 * warnings and never end the stream. Interrupting the stream stops it.
 */
export const followEntries = (
  root: string,
  fromEnd: boolean,
  options?: FollowOptions
): Stream.Stream<PartitionEntry> =>
  Stream.suspend(() => {
    const interval = Duration.fromInputUnsafe(options?.pollInterval ?? "200 millis")
    const cursors = new Map<string, Cursor>()
    const warned = new Set<string>()
    let first = true
    const poll = Effect.gen(function*() {
      if (!first) yield* Effect.sleep(interval)
      const initial = first
      first = false
      const names = yield* partitions(root).pipe(
        Effect.catch((error) => Effect.as(Effect.logWarning(`event log: ${error.message}`), []))
      )
      const lists: Array<Array<PartitionEntry>> = []
      for (const partition of names) {
        let cursor = cursors.get(partition)
        if (cursor === undefined) {
          const dir = Path.join(root, partition)
          const files = initial && fromEnd ? yield* listFiles(dir).pipe(Effect.orElseSucceed(() => [])) : []
          cursor = { partition, dir, file: files.at(-1), position: 0, discard: initial && fromEnd }
          cursors.set(partition, cursor)
        }
        const read = yield* pollPartition(cursor, warned).pipe(
          Effect.catch((error) => Effect.as(Effect.logWarning(`event log: ${error.message}`), []))
        )
        cursor.discard = false
        lists.push(read)
      }
      return mergeByTime(lists)
    })
    return Stream.fromEffectRepeat(poll).pipe(Stream.flattenIterable)
  })

/** The events of `followEntries`, without where they are stored. */
export const follow = (root: string, fromEnd: boolean, options?: FollowOptions): Stream.Stream<Event.Event> =>
  Stream.map(followEntries(root, fromEnd, options), (entry) => entry.event)
