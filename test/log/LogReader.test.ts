import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import type * as Event from "../../src/log/Event.ts"
import * as LogCodec from "../../src/log/LogCodec.ts"
import * as LogReader from "../../src/log/LogReader.ts"
import * as LogRecord from "../../src/log/LogRecord.ts"
import * as LogWriter from "../../src/log/LogWriter.ts"
import { numbered } from "./EventSamples.ts"
import { eventually, fileNames, options, tempDir } from "./LogFixtures.ts"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

/** Collects a stream's elements into an array in the background until the scope closes. */
const collect = <A>(stream: Stream.Stream<A>) =>
  Effect.gen(function*() {
    const seen: Array<A> = []
    const fiber = yield* Effect.forkScoped(Stream.runForEach(stream, (a) => Effect.sync(() => void seen.push(a))))
    return { seen, fiber }
  })

describe("LogReader", () => {
  it.live("readPartition reads a file of more events than a call takes arguments (a busy day's log)", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const dir = Path.join(root, "w0")
      const count = 300_000
      const record = LogRecord.frame(LogCodec.encode(numbered(0, 7)))
      const header = LogRecord.frame(LogCodec.encodeHeader({ partition: "w0", sequence: 1, createdAt: 0 }))
      const bytes = new Uint8Array(header.length + count * record.length)
      bytes.set(header, 0)
      for (let i = 0; i < count; i++) bytes.set(record, header.length + i * record.length)
      yield* Effect.promise(async () => {
        await Fs.mkdir(dir, { recursive: true })
        await Fs.writeFile(Path.join(dir, "00000001.plog"), bytes)
      })
      const read = yield* LogReader.readPartition(dir)
      assert.deepStrictEqual(read.problems, [])
      assert.strictEqual(read.entries.length, count)
    }))

  it.live("readPartition reports a corrupt middle file and goes on with the next", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const dir = Path.join(root, "w0")
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root, { rotateBytes: 512 }))
        for (const i of range(60)) {
          yield* log.append(numbered(0, i))
          yield* log.sync
        }
      }))
      const names = yield* fileNames(dir)
      assert.isAtLeast(names.length, 3)
      const intact = yield* LogReader.readPartition(dir)
      assert.deepStrictEqual(intact.problems, [])
      const victim = Path.join(dir, names[1] ?? "")
      const inVictim = intact.entries.filter((entry) => entry.file === victim)
      const second = inVictim[1]
      assert.isDefined(second)
      if (second === undefined) return
      yield* Effect.promise(async () => {
        const handle = await Fs.open(victim, "r+")
        await handle.write(new Uint8Array([0, 0, 0xff, 0xff]), 0, 4, second.offset)
        await handle.close()
      })
      const read = yield* LogReader.readPartition(dir)
      assert.strictEqual(read.problems.length, 1)
      assert.strictEqual(read.problems[0]?.file, victim)
      assert.strictEqual(read.problems[0]?.offset, second.offset)
      const lost = inVictim.slice(1).map((entry) => entry.event)
      assert.deepStrictEqual(
        read.entries.map((entry) => entry.event),
        intact.entries.map((entry) => entry.event).filter((event) => !lost.includes(event))
      )
      assert.strictEqual(read.entries.length, 60 - lost.length)
    }))

  it.live("an event that does not decode is a problem, not a crash", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      const dir = Path.join(root, "w0")
      yield* Effect.promise(async () => {
        await Fs.mkdir(dir, { recursive: true })
        const header = LogRecord.frame(LogCodec.encodeHeader({ partition: "w0", sequence: 1, createdAt: 0 }))
        const good = LogRecord.frame(LogCodec.encode(numbered(0, 0)))
        const bad = LogRecord.frame(new TextEncoder().encode("\x92\x01\x02"))
        const later = LogRecord.frame(LogCodec.encode(numbered(0, 1)))
        await Fs.writeFile(Path.join(dir, "00000001.plog"), Buffer.concat([header, good, bad, later]))
      })
      const read = yield* LogReader.readPartition(dir)
      assert.deepStrictEqual(read.entries.map((entry) => entry.event), [numbered(0, 0), numbered(0, 1)])
      assert.strictEqual(read.problems.length, 1)
      assert.include(read.problems[0]?.reason ?? "", "undecodable event")
    }))

  it.live("readPartition of a missing directory is empty", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      assert.deepStrictEqual(yield* LogReader.readPartition(Path.join(root, "nope")), { entries: [], problems: [] })
      assert.deepStrictEqual(yield* LogReader.partitions(Path.join(root, "nope")), [])
      assert.deepStrictEqual(yield* LogReader.readAll(Path.join(root, "nope")), { entries: [], problems: [] })
    }))

  it.live("readAll merges partitions by time and keeps each partition's own order", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      // w1's clock stepped back between its second and third event: its order must survive.
      const w0 = [numbered(0, 0, 10), numbered(0, 1, 20), numbered(0, 2, 30), numbered(0, 3, 40)]
      const w1 = [numbered(1, 0, 15), numbered(1, 1, 20), numbered(1, 2, 12), numbered(1, 3, 35)]
      for (const [partition, list] of [["w0", w0], ["w1", w1]] as const) {
        yield* Effect.scoped(Effect.gen(function*() {
          const log = yield* LogWriter.make(options(root, { partition }))
          for (const event of list) yield* log.append(event)
        }))
      }
      assert.deepStrictEqual(yield* LogReader.partitions(root), ["w0", "w1"])
      const read = yield* LogReader.readAll(root)
      assert.deepStrictEqual(read.problems, [])
      const order = read.entries.map((entry) => `${entry.partition}:${(entry.event as Event.CommandReceived).line}`)
      assert.deepStrictEqual(order, [
        "w0:NOOP 0",
        "w1:NOOP 0",
        "w0:NOOP 1",
        "w1:NOOP 1",
        "w1:NOOP 2",
        "w0:NOOP 2",
        "w1:NOOP 3",
        "w0:NOOP 3"
      ])
    }))

  it.live("follow from the end sees only later events, across rotations and new partitions", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root))
        for (const i of range(10)) yield* log.append(numbered(9, i))
      }))
      const { seen, fiber } = yield* collect(LogReader.followEntries(root, true, { pollInterval: "20 millis" }))
      // Let the follower take its starting position before anything new is written.
      yield* Effect.sleep(100)
      assert.deepStrictEqual(seen, [])
      const later = range(120).map((i) => numbered(0, i))
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root, { rotateBytes: 1024 }))
        for (const [index, event] of later.entries()) {
          yield* log.append(event)
          if (index % 10 === 0) yield* log.sync
          if (index % 40 === 0) yield* Effect.sleep(30)
        }
      }))
      assert.isAtLeast((yield* fileNames(Path.join(root, "w0"))).length, 3)
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root, { partition: "w1" }))
        yield* log.appendDurable(numbered(1, 0))
      }))
      yield* eventually("the follower to catch up", Effect.sync(() => seen.length >= later.length + 1))
      assert.deepStrictEqual(seen.filter((entry) => entry.partition === "w0").map((entry) => entry.event), later)
      assert.deepStrictEqual(seen.filter((entry) => entry.partition === "w1").map((entry) => entry.event), [numbered(1, 0)])
      yield* Fiber.interrupt(fiber)
      assert.isTrue(fiber.pollUnsafe() !== undefined)
    }))

  it.live("follow from the start replays what is there, then keeps going", () =>
    Effect.gen(function*() {
      const root = yield* tempDir
      yield* Effect.scoped(Effect.gen(function*() {
        const log = yield* LogWriter.make(options(root))
        yield* Effect.gen(function*() {
          for (const i of range(5)) yield* log.append(numbered(0, i))
          yield* log.sync
          const { seen, fiber } = yield* collect(LogReader.follow(root, false, { pollInterval: "20 millis" }))
          yield* eventually("the existing events", Effect.sync(() => seen.length === 5))
          yield* log.appendDurable(numbered(0, 5))
          yield* eventually("the new event", Effect.sync(() => seen.length === 6))
          assert.deepStrictEqual(seen, range(6).map((i) => numbered(0, i)))
          yield* Fiber.interrupt(fiber)
        }).pipe(Effect.scoped)
      }))
    }))
})
