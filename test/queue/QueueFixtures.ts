/**
 * Shared helpers of the queue tests: temporary directories on the real disk, deterministic
 * content, file listings, and a queue on them with an in-memory log.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect } from "effect"
import type * as Event from "../../src/log/Event.ts"
import { EventLog, type EventLogShape } from "../../src/log/EventLog.ts"
import * as Queue from "../../src/queue/Queue.ts"

/** A fresh directory, removed with everything in it when the test's scope closes. */
export const tempDirectory = (prefix: string) =>
  Effect.acquireRelease(
    Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), `postern-${prefix}-`))),
    (directory) => Effect.promise(() => Fs.rm(directory, { recursive: true, force: true }))
  )

/** `length` bytes that differ per `seed` and per position (so a misplaced record shows). */
export const content = (length: number, seed: number): Uint8Array => {
  const bytes = new Uint8Array(length)
  let state = (seed * 2654435761 + 1) >>> 0
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) >>> 0
    bytes[i] = state >>> 24
  }
  return bytes
}

export const sha256 = (bytes: Uint8Array): string => Crypto.createHash("sha256").update(bytes).digest("hex")

export { concat } from "../support/Bytes.ts"

/** The names in a directory, sorted; empty when it does not exist. */
export const list = (directory: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(() => Fs.readdir(directory).then((names) => names.sort(), () => []))

export const readFile = (path: string): Effect.Effect<Uint8Array> =>
  Effect.promise(() => Fs.readFile(path).then((buffer) => new Uint8Array(buffer)))

export const exists = (path: string): Effect.Effect<boolean> =>
  Effect.promise(() => Fs.stat(path).then(() => true, () => false))

/** Overwrites one byte of a file in place. */
export const flipByte = (path: string, offset: number): Effect.Effect<void> =>
  Effect.promise(async () => {
    const handle = await Fs.open(path, "r+")
    try {
      const byte = new Uint8Array(1)
      await handle.read(byte, 0, 1, offset)
      byte[0] = (byte[0] ?? 0) ^ 0xff
      await handle.write(byte, 0, 1, offset)
    } finally {
      await handle.close()
    }
  })

export const truncate = (path: string, length: number): Effect.Effect<void> =>
  Effect.promise(() => Fs.truncate(path, length))

export const hostname = "mx.test"
export const partition = "0"

export const optionsFor = (root: string, recovered: ReadonlyArray<Event.Event> = []): Queue.Options => ({
  spoolDirectory: Path.join(root, "spool"),
  partition,
  segmentSize: 1,
  maildirRoot: Path.join(root, "mail"),
  hostname,
  localDomains: () => [
    { domain: "mail.test", users: "*", transport: "maildir" },
    { domain: "list.test", users: ["only"], transport: "maildir" },
    { domain: "void.test", users: "*", transport: "discard" }
  ],
  deliveryConcurrency: 4,
  retryBase: 1000,
  retryMax: 60_000,
  recovered: recovered.map((event) => ({ event, logFile: 1 }))
})

export const start = (options: Queue.Options, log: EventLogShape) =>
  Queue.make(options).pipe(Effect.provideService(EventLog, EventLog.of(log)))

export const envelope = (to: ReadonlyArray<string>, from = "sender@remote.test"): Event.Envelope => ({ from, to, smtputf8: false })

/** Streams `bytes` into a transaction in 1000-byte pieces and commits it. */
export const accept = (
  queue: Queue.QueueShape,
  bytes: Uint8Array,
  to: ReadonlyArray<string>,
  origin?: Event.MessageOrigin,
  from?: string
) =>
  Effect.gen(function*() {
    const txn = yield* queue.begin()
    for (let offset = 0; offset < bytes.length; offset += 1000) yield* txn.write(bytes.subarray(offset, offset + 1000))
    return yield* queue.commit(txn, envelope(to, from), "session-1", undefined, origin)
  })

export const ofTag = <T extends Event.Event["_tag"]>(events: ReadonlyArray<Event.Event>, tag: T) =>
  events.filter((e): e is Extract<Event.Event, { readonly _tag: T }> => e._tag === tag)

export const mailbox = (root: string, domain: string, user: string) => Path.join(root, "mail", domain, user)

/** Every file of a mailbox (new/ and cur/), with its content. */
export const mailFiles = (root: string, domain: string, user: string) =>
  Effect.gen(function*() {
    const box = mailbox(root, domain, user)
    const files: Array<{ path: string; bytes: Uint8Array }> = []
    for (const sub of ["new", "cur"]) {
      for (const name of yield* list(Path.join(box, sub))) {
        const path = Path.join(box, sub, name)
        files.push({ path, bytes: yield* readFile(path) })
      }
    }
    return files
  })
