import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect } from "effect"
import type * as Event from "../../src/log/Event.ts"
import { EventLog } from "../../src/log/EventLog.ts"
import * as LogReader from "../../src/log/LogReader.ts"
import * as LogWriter from "../../src/log/LogWriter.ts"
import * as Checkpoint from "../../src/queue/Checkpoint.ts"
import * as Queue from "../../src/queue/Queue.ts"
import { eventually } from "../log/LogFixtures.ts"
import { content, tempDirectory } from "./QueueFixtures.ts"

const partition = "w0"

const paths = (root: string) => ({
  spoolDirectory: Path.join(root, "spool"),
  logDirectory: Path.join(root, "log"),
  partition
})

/**
 * One run of a partition as the worker runs it: the log (rotated every few events, so that the
 * checkpoint has files to skip), then the queue rebuilt from what `Checkpoint.recover` reads.
 */
const withPartition = <A, E>(
  root: string,
  use: (queue: Queue.QueueShape, recovered: ReadonlyArray<Event.Event>) => Effect.Effect<A, E>
) =>
  Effect.scoped(Effect.gen(function*() {
    const writer = yield* LogWriter.make({
      directory: paths(root).logDirectory,
      partition,
      rotateBytes: 1024,
      fsync: "never",
      fsyncIntervalMs: 50
    })
    const { recovered, lastQueueId } = yield* Checkpoint.recover(paths(root))
    const queue = yield* Queue.make({
      spoolDirectory: paths(root).spoolDirectory,
      partition,
      segmentSize: 1 << 20,
      maildirRoot: Path.join(root, "mail"),
      hostname: "mx.test",
      localDomains: () => [{ domain: "void.test", users: "*", transport: "discard" }],
      deliveryConcurrency: 2,
      retryBase: 60_000,
      recovered,
      lastQueueId,
      checkpointInterval: 10
    }).pipe(Effect.provideService(EventLog, writer))
    return yield* use(queue, recovered.map((r) => r.event))
  }))

const accept = (queue: Queue.QueueShape, to: string, seed: number) =>
  Effect.gen(function*() {
    const txn = yield* queue.begin()
    yield* txn.write(content(200, seed))
    return yield* queue.commit(txn, { from: "sender@remote.test", to: [to], smtputf8: false }, `s${seed}`)
  })

const logFileOf = (root: string, queueId: string) =>
  Effect.gen(function*() {
    const { entries } = yield* LogReader.readPartition(Path.join(paths(root).logDirectory, partition))
    const entry = entries.find((e) => e.event._tag === "MessageQueued" && e.event.queueId === queueId)
    assert.isDefined(entry, `MessageQueued ${queueId} is in the log`)
    return LogReader.parseFileName(Path.basename(entry?.file ?? "")) ?? -1
  })

describe("Checkpoint", () => {
  it.live("write then read gives the checkpoint back; none, or a damaged one, reads as undefined", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("checkpoint")
      const directory = Path.join(root, "spool")
      yield* Effect.promise(() => Fs.mkdir(Path.join(directory, partition), { recursive: true }))
      assert.isUndefined(yield* Effect.promise(() => Checkpoint.read(directory, partition)))
      yield* Effect.promise(() => Checkpoint.write(directory, partition, { logFile: 7, lastQueueId: "abc" }))
      assert.deepStrictEqual(yield* Effect.promise(() => Checkpoint.read(directory, partition)), {
        logFile: 7,
        lastQueueId: "abc"
      })
      for (const damaged of ["{\"logFile\":", "{\"logFile\":-1}", "{\"logFile\":\"7\"}", "[]", ""]) {
        yield* Effect.promise(() => Fs.writeFile(Path.join(directory, partition, Checkpoint.fileName), damaged))
        assert.isUndefined(yield* Effect.promise(() => Checkpoint.read(directory, partition)), damaged)
      }
    }))

  it.live("the checkpoint stays at the oldest pending message's log file; recovery from it skips older files and keeps that message", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("checkpoint")
      const first = yield* withPartition(root, (queue) =>
        Effect.gen(function*() {
          for (let i = 0; i < 20; i++) yield* accept(queue, `a${i}@void.test`, i)
          // Deferred: not a local domain, and nothing delivers elsewhere yet.
          const stuck = yield* accept(queue, "someone@remote.test", 100)
          for (let i = 0; i < 20; i++) yield* accept(queue, `b${i}@void.test`, 200 + i)
          yield* queue.drain
          return stuck.queueId
        }))
      const stuckFile = yield* logFileOf(root, first)
      assert.isAbove(stuckFile, 1, "the log rotated before the deferred message")
      const checkpoint = yield* Effect.promise(() => Checkpoint.read(paths(root).spoolDirectory, partition))
      // The queue notes the file before appending, so the event may land one rotation later:
      // the checkpoint may lag the message's file, never pass it.
      assert.isAtMost(checkpoint?.logFile ?? Infinity, stuckFile)
      assert.isAtLeast(checkpoint?.logFile ?? 0, stuckFile - 1)
      assert.isAbove(checkpoint?.logFile ?? 0, 1, "the checkpoint moved past the first file")

      yield* withPartition(root, (queue, recovered) =>
        Effect.gen(function*() {
          const files = new Set(
            (yield* LogReader.readPartition(Path.join(paths(root).logDirectory, partition))).entries
              .filter((e) => recovered.includes(e.event))
              .map((e) => LogReader.parseFileName(Path.basename(e.file)))
          )
          assert.notInclude([...files], 1, "recovery did not read the first file")
          assert.strictEqual(yield* queue.pending(), 1)
          const next = yield* queue.begin()
          assert.isTrue(next.queueId > first)
          yield* next.abort
        }))
    }))

  it.live("with nothing pending the checkpoint moves to the current file, and new ids still sort after the old ones", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("checkpoint")
      const last = yield* withPartition(root, (queue) =>
        Effect.gen(function*() {
          let id = ""
          for (let i = 0; i < 40; i++) id = (yield* accept(queue, `a${i}@void.test`, i)).queueId
          yield* queue.drain
          yield* eventually(
            "the checkpoint to reach the current file",
            Effect.promise(async () => (await Checkpoint.read(paths(root).spoolDirectory, partition))?.lastQueueId === id)
          )
          return id
        }))
      const files = yield* Effect.promise(() => Fs.readdir(Path.join(paths(root).logDirectory, partition)))
      const newest = Math.max(...files.flatMap((name) => LogReader.parseFileName(name) ?? []))
      assert.isAbove(newest, 2)
      const checkpoint = yield* Effect.promise(() => Checkpoint.read(paths(root).spoolDirectory, partition))
      assert.strictEqual(checkpoint?.logFile, newest)
      yield* withPartition(root, (queue, recovered) =>
        Effect.gen(function*() {
          // Only the newest file is read again: what is in it may include completed messages.
          const all = (yield* LogReader.readPartition(Path.join(paths(root).logDirectory, partition))).entries
          const newestOnly = all.filter((e) => LogReader.parseFileName(Path.basename(e.file)) === newest)
          assert.isAtMost(recovered.length, newestOnly.length)
          assert.isBelow(recovered.length, all.length)
          assert.strictEqual(yield* queue.pending(), 0)
          const next = yield* queue.begin()
          assert.isTrue(next.queueId > last)
          yield* next.abort
        }))
    }))
})
