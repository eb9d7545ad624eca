import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import * as Event from "../../src/log/Event.ts"
import { EventLog } from "../../src/log/EventLog.ts"
import * as LogCodec from "../../src/log/LogCodec.ts"
import * as LogReader from "../../src/log/LogReader.ts"
import * as LogRecord from "../../src/log/LogRecord.ts"
import * as LogWriter from "../../src/log/LogWriter.ts"
import { numbered, numberOf, samples } from "./EventSamples.ts"
import { eventually, fileNames, fileSize, options, tempDir } from "./LogFixtures.ts"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

const events = (n: number, fiber = 0) => range(n).map((i) => numbered(fiber, i))

/** Writes `list` through a writer that is closed (flushed, fsynced) before this returns. */
const writeAll = (opts: LogWriter.Options, list: ReadonlyArray<Event.Event>) =>
  Effect.scoped(Effect.gen(function*() {
    const log = yield* LogWriter.make(opts)
    for (const event of list) yield* log.append(event)
    return log.recovery
  }))

const partitionDir = (root: string) => Path.join(root, "w0")

describe("LogWriter", () => {
  it.live("appends and reads back in order, appendDurable included", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const stats = yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root))
        for (const event of samples) yield* log.append(event)
        yield* log.appendDurable(numbered(1, 1))
        // Durable means on disk now, before the writer is closed.
        const read = yield* LogReader.readPartition(partitionDir(root))
        assert.deepStrictEqual(read.entries.map((entry) => entry.event), [...samples, numbered(1, 1)])
        assert.deepStrictEqual(read.problems, [])
        yield* log.append(numbered(1, 2))
        return yield* log.stats
      }))
      assert.strictEqual(stats.appended, samples.length + 2)
      const read = yield* LogReader.readPartition(partitionDir(root))
      assert.deepStrictEqual(read.entries.map((entry) => entry.event), [...samples, numbered(1, 1), numbered(1, 2)])
      assert.deepStrictEqual(read.problems, [])
      assert.deepStrictEqual(yield* fileNames(partitionDir(root)), ["00000001.plog"])
    }))

  it.live("groups concurrent appends into few batches and keeps each fiber's order", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const fibers = 50
      const perFiber = 200
      const stats = yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root))
        yield* Effect.forEach(
          range(fibers),
          (fiber) =>
            Effect.forEach(range(perFiber), (index) =>
              Effect.andThen(log.append(numbered(fiber, index)), Effect.yieldNow), { discard: true }),
          { concurrency: "unbounded", discard: true }
        )
        yield* log.sync
        return yield* log.stats
      }))
      assert.strictEqual(stats.appended, fibers * perFiber)
      assert.strictEqual(stats.written, fibers * perFiber)
      assert.isBelow(stats.batches, fibers * perFiber / 10, `batches ${stats.batches}`)
      const read = yield* LogReader.readPartition(partitionDir(root))
      assert.deepStrictEqual(read.problems, [])
      assert.strictEqual(read.entries.length, fibers * perFiber)
      const next = range(fibers).map(() => 0)
      for (const { event } of read.entries) {
        const number = numberOf(event)
        assert.isDefined(number)
        if (number === undefined) continue
        assert.strictEqual(number.index, next[number.fiber], `fiber ${number.fiber}`)
        next[number.fiber] = number.index + 1
      }
      assert.deepStrictEqual(next, range(fibers).map(() => perFiber))
    }))

  it.live("concurrent appendDurable calls share fsyncs", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const stats = yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root, { fsync: "always" }))
        const before = yield* log.stats
        yield* Effect.forEach(
          range(50),
          (fiber) => Effect.forEach(range(20), (index) => log.appendDurable(numbered(fiber, index)), { discard: true }),
          { concurrency: "unbounded", discard: true }
        )
        const after = yield* log.stats
        return { fsyncs: after.fsyncs - before.fsyncs, batches: after.batches - before.batches }
      }))
      assert.isBelow(stats.fsyncs, 1000 / 5, `fsyncs ${stats.fsyncs}`)
      assert.isAtMost(stats.fsyncs, stats.batches)
      const read = yield* LogReader.readPartition(partitionDir(root))
      assert.strictEqual(read.entries.length, 1000)
    }))

  it.live("ordinary appends wait writeDelayMs and go out in one write; a durable append takes them at once", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root, { fsync: "interval", fsyncIntervalMs: 1000, writeDelayMs: 200 }))
        const start = yield* log.stats
        // Appends spread over several turns of the event loop, all within the delay.
        for (let i = 0; i < 5; i++) {
          yield* log.append(numbered(0, i))
          yield* Effect.sleep("5 millis")
        }
        assert.strictEqual((yield* log.stats).written, start.written, "nothing written before the delay")
        yield* eventually("the delayed write", Effect.map(log.stats, (s) => s.written === start.written + 5), 2000)
        assert.strictEqual((yield* log.stats).batches, start.batches + 1, "one write for the five")
        yield* log.append(numbered(0, 5))
        yield* log.appendDurable(numbered(0, 6))
        const after = yield* log.stats
        assert.strictEqual(after.written, start.written + 7, "the pending append went with the durable one")
        assert.strictEqual(after.batches, start.batches + 2)
      }))
    }))

  it.live("appendDurable waits for the write and the fsync even with policy never", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root, { fsync: "never" }))
        const file = Path.join(partitionDir(root), "00000001.plog")
        const start = yield* log.stats
        yield* log.append(numbered(0, 0))
        yield* eventually("the plain append to be written", Effect.map(log.stats, (s) => s.written === 1))
        assert.strictEqual((yield* log.stats).fsyncs, start.fsyncs, "plain appends are not fsynced under never")
        const event = numbered(0, 1)
        const sizeBefore = yield* fileSize(file)
        yield* log.appendDurable(event)
        const after = yield* log.stats
        assert.strictEqual(after.fsyncs, start.fsyncs + 1)
        assert.strictEqual(
          yield* fileSize(file),
          sizeBefore + LogRecord.frameOverhead + LogCodec.encode(event).length
        )
        yield* log.sync
        assert.strictEqual((yield* log.stats).fsyncs, start.fsyncs + 1, "sync with nothing new does not fsync")
        yield* log.append(numbered(0, 2))
        yield* log.sync
        assert.strictEqual((yield* log.stats).fsyncs, start.fsyncs + 2)
      }))
    }))

  it.live("policy interval fsyncs written events within the interval without further appends", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root, { fsync: "interval", fsyncIntervalMs: 100 }))
        const start = yield* log.stats
        // Steady appends for about half a second: at most one fsync per interval (plus the edges).
        const began = Date.now()
        let i = 0
        while (Date.now() - began < 500) {
          yield* log.append(numbered(0, i++))
          yield* Effect.sleep(2)
        }
        const busy = yield* log.stats
        assert.isAtMost(busy.fsyncs - start.fsyncs, 8, `fsyncs ${busy.fsyncs - start.fsyncs}`)
        assert.isAtLeast(busy.fsyncs - start.fsyncs, 2)
        assert.isAbove(busy.batches, busy.fsyncs - start.fsyncs)
        yield* log.append(numbered(1, 0))
        const quiet = yield* log.stats
        yield* eventually("the interval fsync", Effect.map(log.stats, (s) => s.fsyncs > quiet.fsyncs && s.written === i + 1), 1000)
      }))
    }))

  it.live("rotates into several files, each with a valid header, and reads everything back", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const list = events(600)
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root, { rotateBytes: 4096 }))
        for (const [index, event] of list.entries()) {
          yield* log.append(event)
          if (index % 25 === 0) yield* log.sync
        }
      }))
      const names = yield* fileNames(partitionDir(root))
      assert.isAtLeast(names.length, 4)
      assert.deepStrictEqual(names, names.map((_, i) => LogReader.fileName(i + 1)))
      for (const [index, name] of names.entries()) {
        const bytes = yield* Effect.promise(() => Fs.readFile(Path.join(partitionDir(root), name)))
        const first = LogRecord.scan(bytes, 0)
        assert.strictEqual(first._tag, "Record")
        if (first._tag !== "Record") continue
        const header = LogCodec.decodeHeader(first.payload)
        assert.strictEqual(header._tag, "Header")
        if (header._tag !== "Header") continue
        assert.strictEqual(header.header.partition, "w0")
        assert.strictEqual(header.header.sequence, index + 1)
        assert.strictEqual(header.header.eventSchema, Event.schemaVersion)
        // A file is finished in the batch that takes it past the limit.
        if (index < names.length - 1) assert.isAtLeast(bytes.length, 4096)
      }
      const read = yield* LogReader.readPartition(partitionDir(root))
      assert.deepStrictEqual(read.problems, [])
      assert.deepStrictEqual(read.entries.map((entry) => entry.event), list)
      // Reopening resumes in the newest file.
      const recovery = yield* writeAll(options(root, { rotateBytes: 4096 }), [numbered(9, 0)])
      assert.strictEqual(recovery.resume?.file, Path.join(partitionDir(root), names.at(-1) ?? ""))
      assert.deepStrictEqual(recovery.problems, [])
    }))

  it.live("reopening cuts a torn tail, records LogRepaired and appends after it", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      yield* writeAll(options(root), events(20))
      const file = Path.join(partitionDir(root), "00000001.plog")
      const before = yield* LogReader.readPartition(partitionDir(root))
      const lastOffset = before.entries.at(-1)?.offset ?? 0
      const size = yield* fileSize(file)
      const cut = lastOffset + 5
      yield* Effect.promise(() => Fs.truncate(file, cut))
      const recovery = yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root))
        // The cut itself is proven below: LogRepaired lands exactly at lastOffset. Reading the
        // file size here raced the writer, which may already have appended LogRepaired.
        assert.isAtLeast(yield* fileSize(file), lastOffset, "the intact records are kept")
        yield* log.append(numbered(1, 0))
        return log.recovery
      }))
      assert.isTrue(size > cut)
      assert.strictEqual(recovery.problems.length, 1)
      const problem = recovery.problems[0]
      assert.strictEqual(problem?._tag, "TornTail")
      if (problem?._tag !== "TornTail") return
      assert.strictEqual(problem.file, file)
      assert.strictEqual(problem.offset, lastOffset)
      assert.strictEqual(problem.droppedBytes, 5)
      const read = yield* LogReader.readPartition(partitionDir(root))
      assert.deepStrictEqual(read.problems, [])
      const got = read.entries.map((entry) => entry.event)
      assert.deepStrictEqual(got.slice(0, 19), events(19))
      const repaired = got[19]
      assert.strictEqual(repaired?._tag, "LogRepaired")
      if (repaired?._tag === "LogRepaired") {
        assert.deepStrictEqual(
          { file: repaired.file, offset: repaired.offset, droppedBytes: repaired.droppedBytes },
          { file, offset: lastOffset, droppedBytes: 5 }
        )
      }
      assert.deepStrictEqual(got.slice(20), [numbered(1, 0)])
      assert.strictEqual(read.entries[19]?.offset, lastOffset)
    }))

  it.live("reopening cuts from corrupt bytes in the middle of the last file", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      yield* writeAll(options(root), events(30))
      const file = Path.join(partitionDir(root), "00000001.plog")
      const before = yield* LogReader.readPartition(partitionDir(root))
      const victim = before.entries[12]?.offset ?? 0
      const size = yield* fileSize(file)
      yield* Effect.promise(async () => {
        const handle = await Fs.open(file, "r+")
        await handle.write(new Uint8Array([0xff]), 0, 1, victim + LogRecord.frameOverhead + 3)
        await handle.close()
      })
      const broken = yield* LogReader.readPartition(partitionDir(root))
      assert.strictEqual(broken.entries.length, 12)
      assert.deepStrictEqual(broken.problems.map((p) => [p.offset, p.reason]), [[victim, "CRC mismatch"]])
      const recovery = yield* writeAll(options(root), [numbered(1, 0)])
      assert.deepStrictEqual(recovery.problems, [{
        _tag: "TornTail",
        file,
        offset: victim,
        droppedBytes: size - victim,
        reason: "CRC mismatch"
      }])
      const read = yield* LogReader.readPartition(partitionDir(root))
      assert.deepStrictEqual(read.problems, [])
      assert.deepStrictEqual(read.entries.map((entry) => entry.event._tag), [
        ...range(12).map(() => "CommandReceived"),
        "LogRepaired",
        "CommandReceived"
      ])
      assert.deepStrictEqual(read.entries.slice(0, 12).map((entry) => entry.event), events(12))
    }))

  it.live("a last file without a valid header is left alone and a new file started", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      yield* writeAll(options(root), events(3))
      const bad = Path.join(partitionDir(root), "00000002.plog")
      yield* Effect.promise(() => Fs.writeFile(bad, "not a log file at all"))
      const recovery = yield* writeAll(options(root), [numbered(1, 0)])
      assert.strictEqual(recovery.problems.length, 1)
      assert.strictEqual(recovery.problems[0]?._tag, "BadHeader")
      assert.strictEqual(recovery.problems[0]?.file, bad)
      assert.strictEqual(yield* Effect.promise(() => Fs.readFile(bad, "utf8")), "not a log file at all")
      assert.deepStrictEqual(yield* fileNames(partitionDir(root)), ["00000001.plog", "00000002.plog", "00000003.plog"])
      const read = yield* LogReader.readPartition(partitionDir(root))
      assert.deepStrictEqual(read.entries.map((entry) => entry.event), [...events(3), numbered(1, 0)])
      assert.deepStrictEqual(read.problems.map((p) => p.file), [bad])
    }))

  it.live("an empty last file (a crash before its header) is reported and a new file started", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      yield* writeAll(options(root), events(2))
      yield* Effect.promise(() => Fs.writeFile(Path.join(partitionDir(root), "00000002.plog"), ""))
      const recovery = yield* writeAll(options(root), [numbered(1, 0)])
      assert.deepStrictEqual(recovery.problems.map((p) => p._tag), ["BadHeader"])
      assert.strictEqual(recovery.resume, undefined)
      assert.strictEqual(recovery.nextSequence, 3)
      const read = yield* LogReader.readPartition(partitionDir(root))
      assert.deepStrictEqual(read.entries.map((entry) => entry.event), [...events(2), numbered(1, 0)])
    }))

  it.live("a failed write fails waiting appendDurable calls, and is retried", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const dir = partitionDir(root)
      const aside = Path.join(root, "aside")
      yield* Effect.scoped(Effect.gen(function*() {
        // Rotation after every batch, so every batch needs a new file in the partition directory.
        const log = yield* LogWriter.make(options(root, { rotateBytes: 1 }))
        yield* log.appendDurable(numbered(0, 0))
        // Take the directory away: creating the next file fails until it is back.
        yield* Effect.promise(() => Fs.rename(dir, aside))
        yield* Effect.promise(() => Fs.writeFile(dir, "in the way"))
        yield* log.append(numbered(0, 1))
        const failed = yield* Effect.exit(log.appendDurable(numbered(0, 2)))
        assert.isTrue(Exit.isFailure(failed))
        const error = Exit.isFailure(failed) ? failed.cause : undefined
        assert.include(String(error), "LogError")
        assert.isAtLeast((yield* log.stats).failures, 1)
        yield* Effect.promise(async () => {
          await Fs.rm(dir)
          await Fs.rename(aside, dir)
        })
        yield* log.appendDurable(numbered(0, 3))
      }))
      const read = yield* LogReader.readPartition(dir)
      assert.deepStrictEqual(read.problems, [])
      // Nothing appended while the disk was failing is lost.
      assert.deepStrictEqual(read.entries.map((entry) => entry.event), events(4))
    }))

  it.live("after close, appendDurable fails and append is dropped", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const log = yield* Effect.scoped(LogWriter.make(options(root)))
      const failed = yield* Effect.flip(log.appendDurable(numbered(0, 0)))
      assert.strictEqual(failed._tag, "LogError")
      assert.isTrue(Exit.isFailure(yield* Effect.exit(log.sync)))
      yield* log.append(numbered(0, 1))
      const stats = yield* log.stats
      assert.strictEqual(stats.dropped, 1)
      assert.strictEqual(stats.file, undefined)
    }))

  it.live("the layer provides EventLog and flushes on scope close", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const list = events(100)
      yield* Effect.gen(function*() {
        const log = yield* EventLog
        for (const event of list) yield* log.append(event)
        const writer = yield* LogWriter.LogWriter
        assert.strictEqual(writer.recovery.partition, "w0")
      }).pipe(Effect.provide(LogWriter.layer(options(root))))
      const read = yield* LogReader.readPartition(partitionDir(root))
      assert.deepStrictEqual(read.entries.map((entry) => entry.event), list)
    }))

  it.live("recover on a missing root creates the partition directory", () =>
    Effect.gen(function*() {
      const root = Path.join(yield* tempDir, "a", "b")
      const recovery = yield* LogWriter.recover({ directory: root, partition: "w7" })
      assert.deepStrictEqual(
        { resume: recovery.resume, nextSequence: recovery.nextSequence, problems: recovery.problems },
        { resume: undefined, nextSequence: 1, problems: [] }
      )
      assert.isTrue((yield* Effect.promise(() => Fs.stat(Path.join(root, "w7")))).isDirectory())
      assert.deepStrictEqual(yield* LogReader.partitions(root), ["w7"])
      yield* Layer.build(LogWriter.layer(options(root, { partition: "w7" })))
    }))
})
