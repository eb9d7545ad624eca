/**
 * The queue's recovery checkpoint: from which log file a restart must read to rebuild the
 * queue, so that recovery reads the files that can still matter rather than the partition's
 * whole history (which grows by gigabytes a day on a busy server and is kept for replay).
 *
 * The checkpoint names the oldest log file that may hold the `MessageQueued` of a message not
 * yet completed; every later event of such a message is in that file or a later one. It also
 * carries the largest queue id given out, so that new ids keep sorting after old ones even if
 * the clock stepped back. It lives beside the spool segments, as `checkpoint.json` in the
 * partition's spool directory, and is replaced atomically (written to a temporary file,
 * fsynced, renamed, directory fsynced). A missing or unreadable checkpoint means "read
 * everything", which is always correct.
 */
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect } from "effect"
import type * as Event from "../log/Event.ts"
import * as Fsync from "../log/Fsync.ts"
import * as LogReader from "../log/LogReader.ts"

export interface Checkpoint {
  /** The sequence number of the first log file recovery must read. */
  readonly logFile: number
  /** The largest queue id this partition has given out, if any. */
  readonly lastQueueId: string | undefined
}

export const fileName = "checkpoint.json"

const pathOf = (spoolDirectory: string, partition: string): string => Path.join(spoolDirectory, partition, fileName)

const isCheckpoint = (value: unknown): value is { logFile: number; lastQueueId?: string } => {
  if (typeof value !== "object" || value === null) return false
  const logFile: unknown = Reflect.get(value, "logFile")
  const lastQueueId: unknown = Reflect.get(value, "lastQueueId")
  return Number.isSafeInteger(logFile) && typeof logFile === "number" && logFile >= 0 &&
    (lastQueueId === undefined || typeof lastQueueId === "string")
}

/**
 * The partition's checkpoint, or `undefined` when there is none or it cannot be trusted (then
 * recovery reads every log file). Never fails.
 */
export const read = async (spoolDirectory: string, partition: string): Promise<Checkpoint | undefined> => {
  try {
    const parsed: unknown = JSON.parse(await Fs.readFile(pathOf(spoolDirectory, partition), "utf8"))
    return isCheckpoint(parsed) ? { logFile: parsed.logFile, lastQueueId: parsed.lastQueueId } : undefined
  } catch {
    return undefined
  }
}

/** Replaces the partition's checkpoint; when this returns, a crash leaves the new one. */
export const write = (spoolDirectory: string, partition: string, checkpoint: Checkpoint): Promise<void> =>
  Fsync.replaceFile(pathOf(spoolDirectory, partition), JSON.stringify(checkpoint), 0o600)

/**
 * What `Queue.make` needs to rebuild a partition's queue: the events of its log files from the
 * checkpoint's on (every file without one), each with its file's sequence number, and the
 * checkpoint's largest queue id. Never fails: unreadable files are in `problems`.
 */
export const recover = (options: {
  readonly spoolDirectory: string
  readonly logDirectory: string
  readonly partition: string
}): Effect.Effect<{
  readonly recovered: ReadonlyArray<{ readonly event: Event.Event; readonly logFile: number }>
  readonly lastQueueId: string | undefined
  readonly problems: ReadonlyArray<LogReader.Problem>
}> =>
  Effect.gen(function*() {
    const checkpoint = yield* Effect.promise(() => read(options.spoolDirectory, options.partition))
    const { entries, problems } = yield* LogReader.readPartition(Path.join(options.logDirectory, options.partition), {
      fromFile: checkpoint?.logFile ?? 0
    })
    const recovered = entries.map((entry) => ({
      event: entry.event,
      logFile: LogReader.parseFileName(Path.basename(entry.file)) ?? 0
    }))
    return { recovered, lastQueueId: checkpoint?.lastQueueId, problems }
  })
