import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect, Stream } from "effect"
import type * as Event from "../../src/log/Event.ts"
import * as LogRecord from "../../src/log/LogRecord.ts"
import * as Spool from "../../src/queue/Spool.ts"
import { concat, content, exists, flipByte, list, readFile, sha256, tempDirectory, truncate } from "./QueueFixtures.ts"

const partition = "p0"
const segmentFile = (root: string, segment: string) => Path.join(root, partition, `${segment}.spool`)

/** Writes `bytes` in pieces of `piece` bytes and commits. */
const store = (spool: Spool.Spool, bytes: Uint8Array, piece = bytes.length || 1) =>
  Effect.gen(function*() {
    const txn = yield* spool.begin
    for (let offset = 0; offset < bytes.length; offset += piece) {
      yield* txn.write(bytes.subarray(offset, offset + piece))
    }
    return yield* txn.commit
  })

const readAll = (spool: Spool.Spool, reference: Event.SpoolReference) =>
  Effect.map(Stream.runCollect(spool.read(reference)), concat)

const failureOf = <A>(effect: Effect.Effect<A, Spool.SpoolError>) =>
  Effect.flatMap(Effect.result(effect), (result) =>
    result._tag === "Failure" ? Effect.succeed(result.failure) : Effect.die("expected a SpoolError"))

describe("Spool", () => {
  it.live("round trips 1 byte, 1 KiB and 5 MiB messages, with size and SHA-256", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 64 * 1024 * 1024 })
      for (const [length, piece] of [[1, 1], [1024, 100], [5 * 1024 * 1024, 100 * 1000]] as const) {
        const bytes = content(length, length)
        const committed = yield* store(spool, bytes, piece)
        assert.strictEqual(committed.size, length)
        assert.strictEqual(committed.digest, sha256(bytes))
        assert.deepStrictEqual(yield* readAll(spool, committed.reference), bytes)
        yield* spool.verify(committed.reference, { size: length, digest: sha256(bytes) })
        const expectedRecords = Math.ceil(length / Spool.defaultRecordSize)
        assert.strictEqual(committed.reference.extents.length, expectedRecords)
        for (const extent of committed.reference.extents) assert.isAtMost(extent.length, Spool.defaultRecordSize)
      }
    }))

  it.live("an empty message has no extents and reads back empty", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1 << 20 })
      const committed = yield* store(spool, new Uint8Array(0))
      assert.deepStrictEqual(committed.reference.extents, [])
      assert.strictEqual(committed.digest, sha256(new Uint8Array(0)))
      assert.strictEqual((yield* readAll(spool, committed.reference)).length, 0)
    }))

  it.live("each segment starts with a header record naming the format, then the content records", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1 << 20, preallocate: 0 })
      const committed = yield* store(spool, content(10, 1))
      const bytes = yield* readFile(segmentFile(root, committed.reference.segment))
      const scanned = LogRecord.scanAll(bytes)
      assert.isUndefined(scanned.stop)
      assert.strictEqual(scanned.records.length, 2)
      assert.strictEqual(scanned.validEnd, bytes.length)
      const header = JSON.parse(new TextDecoder().decode(scanned.records[0]?.payload))
      assert.strictEqual(header.format, Spool.format)
      assert.strictEqual(header.partition, partition)
      assert.strictEqual(scanned.records[1]?.offset, committed.reference.extents[0]?.offset)
      assert.deepStrictEqual(scanned.records[1]?.payload, content(10, 1))
    }))

  it.live("preallocates the segment in steps ahead of the appends", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1 << 20, preallocate: 4096 })
      const small = yield* store(spool, content(100, 1))
      const file = segmentFile(root, small.reference.segment)
      assert.strictEqual((yield* readFile(file)).length, 4096)
      const large = yield* store(spool, content(10_000, 2))
      assert.strictEqual((yield* readFile(file)).length, 3 * 4096)
      assert.deepStrictEqual(yield* readAll(spool, small.reference), content(100, 1))
      assert.deepStrictEqual(yield* readAll(spool, large.reference), content(10_000, 2))
    }))

  it.live("200 concurrent interleaved transactions each read back exactly, with fewer fsyncs than commits", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({
        directory: root,
        partition,
        segmentSize: 1 << 30,
        recordSize: 700
      })
      const messages = Array.from({ length: 200 }, (_, i) => content(500 + i * 13, i))
      const committed = yield* Effect.forEach(messages, (bytes) =>
        Effect.gen(function*() {
          const txn = yield* spool.begin
          for (let offset = 0; offset < bytes.length; offset += 300) {
            yield* txn.write(bytes.subarray(offset, offset + 300))
            yield* Effect.yieldNow
          }
          return yield* txn.commit
        }), { concurrency: "unbounded" })
      const offsets = new Set<number>()
      for (const [i, result] of committed.entries()) {
        const bytes = messages[i] ?? new Uint8Array(0)
        assert.deepStrictEqual(yield* readAll(spool, result.reference), bytes)
        assert.strictEqual(result.digest, sha256(bytes))
        for (const extent of result.reference.extents) offsets.add(extent.offset)
      }
      const records = committed.reduce((sum, c) => sum + c.reference.extents.length, 0)
      assert.strictEqual(offsets.size, records)
      const stats = yield* spool.stats
      assert.strictEqual(stats.commits, 200)
      assert.isBelow(stats.fsyncs, stats.commits)
      assert.isBelow(stats.writes, stats.records)
    }))

  it.live("a corrupt byte in a record fails the read with a typed corrupt error", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1 << 20, recordSize: 1024 })
      const bytes = content(3000, 7)
      const committed = yield* store(spool, bytes)
      const second = committed.reference.extents[1]
      assert.isDefined(second)
      yield* flipByte(segmentFile(root, committed.reference.segment), (second?.offset ?? 0) + 8 + 100)
      const error = yield* failureOf(readAll(spool, committed.reference))
      assert.strictEqual(error._tag, "SpoolError")
      assert.strictEqual(error.reason, "corrupt")
      const verified = yield* failureOf(spool.verify(committed.reference, { size: 3000, digest: sha256(bytes) }))
      assert.strictEqual(verified.reason, "corrupt")
    }))

  it.live("a corrupt length field is reported as corrupt, not read past", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1 << 20 })
      const committed = yield* store(spool, content(100, 3))
      yield* flipByte(segmentFile(root, committed.reference.segment), (committed.reference.extents[0]?.offset ?? 0) + 3)
      assert.strictEqual((yield* failureOf(readAll(spool, committed.reference))).reason, "corrupt")
    }))

  it.live("a truncated segment or a missing one fails the read as missing", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1 << 20, recordSize: 1024 })
      const committed = yield* store(spool, content(3000, 9))
      const last = committed.reference.extents[2]
      yield* truncate(segmentFile(root, committed.reference.segment), (last?.offset ?? 0) + 20)
      assert.strictEqual((yield* failureOf(readAll(spool, committed.reference))).reason, "missing")
      const gone = { ...committed.reference, segment: "99999999" }
      assert.strictEqual((yield* failureOf(readAll(spool, gone))).reason, "missing")
    }))

  it.live("a malformed reference is invalid, never a path outside the spool", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1 << 20 })
      const traversal = { segment: "../../etc/passwd", extents: [{ offset: 0, length: 1 }] }
      assert.strictEqual((yield* failureOf(readAll(spool, traversal))).reason, "invalid")
      const negative = { segment: "00000001", extents: [{ offset: -8, length: 1 }] }
      assert.strictEqual((yield* failureOf(readAll(spool, negative))).reason, "invalid")
    }))

  it.live("a transaction stays in its segment across a roll, and a segment is deleted once released", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      // Small records, so that written content counts toward the segment size at once.
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1000, recordSize: 256 })
      const first = yield* spool.begin
      yield* first.write(content(1500, 1))
      const second = yield* spool.begin
      assert.notStrictEqual(second.segment, first.segment)
      yield* first.write(content(1500, 2))
      const a = yield* first.commit
      assert.strictEqual(a.reference.segment, first.segment)
      assert.deepStrictEqual(yield* readAll(spool, a.reference), concat([content(1500, 1), content(1500, 2)]))
      yield* second.write(content(200, 3))
      const b = yield* second.commit
      const c = yield* store(spool, content(100, 4))
      assert.strictEqual(c.reference.segment, b.reference.segment)

      assert.isTrue(yield* exists(segmentFile(root, a.reference.segment)))
      yield* spool.release(a.reference)
      assert.isFalse(yield* exists(segmentFile(root, a.reference.segment)))
      assert.notInclude(yield* spool.segments, a.reference.segment)

      // The current segment stays while it is current, even with nothing retained.
      yield* spool.release(b.reference)
      yield* spool.release(c.reference)
      assert.isTrue(yield* exists(segmentFile(root, b.reference.segment)))
      assert.strictEqual(yield* spool.current, b.reference.segment)
      assert.strictEqual((yield* spool.stats).segmentsDeleted, 1)
    }))

  it.live("a segment with two messages goes when the second is released; an abort releases too", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1000, recordSize: 256 })
      const a = yield* store(spool, content(400, 1))
      const b = yield* store(spool, content(400, 2))
      const aborted = yield* spool.begin
      yield* aborted.write(content(400, 3))
      assert.strictEqual(aborted.segment, a.reference.segment)
      const c = yield* store(spool, content(10, 4))
      assert.notStrictEqual(c.reference.segment, a.reference.segment)
      const file = segmentFile(root, a.reference.segment)
      yield* spool.release(a.reference)
      yield* spool.release(b.reference)
      assert.isTrue(yield* exists(file))
      yield* aborted.abort
      yield* aborted.abort
      assert.isFalse(yield* exists(file))
    }))

  it.live("a finished transaction refuses further use", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1 << 20 })
      const txn = yield* spool.begin
      yield* txn.write(content(10, 1))
      yield* txn.commit
      assert.strictEqual((yield* failureOf(txn.commit)).reason, "closed")
      assert.strictEqual((yield* failureOf(txn.write(content(1, 1)))).reason, "closed")
    }))

  it.live("after a restart: old segments stay readable, retained ones survive the sweep, the rest go", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const options = { directory: root, partition, segmentSize: 1 }
      const [kept, dropped] = yield* Effect.scoped(Effect.gen(function*() {
        const spool = yield* Spool.make(options)
        return [yield* store(spool, content(100, 1)), yield* store(spool, content(100, 2))] as const
      }))
      assert.notStrictEqual(kept.reference.segment, dropped.reference.segment)
      const spool = yield* Spool.make(options)
      const current = yield* spool.current
      assert.isAbove(Number(current), Number(dropped.reference.segment))
      assert.deepStrictEqual(yield* readAll(spool, kept.reference), content(100, 1))
      yield* spool.retain(kept.reference)
      assert.strictEqual(yield* spool.sweep, 1)
      assert.deepStrictEqual(yield* list(Path.join(root, partition)), [
        `${kept.reference.segment}.spool`,
        `${current}.spool`
      ])
      yield* spool.release(kept.reference)
      assert.isFalse(yield* exists(segmentFile(root, kept.reference.segment)))
    }))

  it.live("a transaction left open when the spool closes fails as closed", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      const txn = yield* Effect.scoped(Effect.gen(function*() {
        const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1 << 20, recordSize: 16 })
        return yield* spool.begin
      }))
      assert.strictEqual((yield* failureOf(txn.write(content(100, 1)))).reason, "closed")
      assert.strictEqual((yield* failureOf(txn.commit)).reason, "closed")
    }))

  it.live("refuses unsafe partition names", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("spool")
      for (const bad of ["../x", "", "a/b", "."]) {
        const error = yield* failureOf(Effect.scoped(Spool.make({ directory: root, partition: bad, segmentSize: 1 })))
        assert.strictEqual(error.reason, "invalid")
      }
    }))
})

describe("Spool.readStart (replay reads content without opening the spool)", () => {
  /** A 3000-byte message in records of 1 KiB, and where its segment is. */
  const stored = Effect.gen(function*() {
    const root = yield* tempDirectory("spool-start")
    const spool = yield* Spool.make({ directory: root, partition, segmentSize: 1 << 20, recordSize: 1024 })
    const bytes = content(3000, 7)
    const committed = yield* store(spool, bytes, 100)
    assert.strictEqual(committed.reference.extents.length, 3)
    return { root, bytes, reference: committed.reference, file: segmentFile(root, committed.reference.segment) }
  })

  it.live("the whole content, or its first bytes only", () =>
    Effect.gen(function*() {
      const { bytes, reference, root } = yield* stored
      assert.deepStrictEqual(yield* Spool.readStart(root, partition, reference, 10_000), bytes)
      assert.deepStrictEqual(yield* Spool.readStart(root, partition, reference, 3000), bytes)
      assert.deepStrictEqual(yield* Spool.readStart(root, partition, reference, 1500), bytes.slice(0, 1500))
      assert.deepStrictEqual(yield* Spool.readStart(root, partition, { segment: reference.segment, extents: [] }, 100), new Uint8Array(0))
    }))

  it.live("a truncated segment gives nothing, unless the cut is past the start asked for", () =>
    Effect.gen(function*() {
      const { bytes, reference, root, file } = yield* stored
      const last = reference.extents[2]
      if (last === undefined) return assert.fail("no third record")
      yield* truncate(file, last.offset + 10)
      assert.isUndefined(yield* Spool.readStart(root, partition, reference, 10_000))
      assert.deepStrictEqual(yield* Spool.readStart(root, partition, reference, 2048), bytes.slice(0, 2048))
    }))

  it.live("a flipped byte in a record gives nothing (its CRC does not match), nor does a wrong length", () =>
    Effect.gen(function*() {
      const { reference, root, file } = yield* stored
      const second = reference.extents[1]
      if (second === undefined) return assert.fail("no second record")
      yield* flipByte(file, second.offset + LogRecord.frameOverhead + 5)
      assert.isUndefined(yield* Spool.readStart(root, partition, reference, 10_000))
      const first = reference.extents[0]
      if (first === undefined) return assert.fail("no first record")
      const misread = { segment: reference.segment, extents: [{ offset: first.offset, length: first.length - 1 }] }
      assert.isUndefined(yield* Spool.readStart(root, partition, misread, 10_000))
    }))

  it.live("a missing segment, partition or spool, or an unsafe name, gives nothing", () =>
    Effect.gen(function*() {
      const { reference, root, file } = yield* stored
      assert.isUndefined(yield* Spool.readStart(root, "p1", reference, 100))
      assert.isUndefined(yield* Spool.readStart(Path.join(root, "nowhere"), partition, reference, 100))
      assert.isUndefined(yield* Spool.readStart(root, "../p0", reference, 100))
      assert.isUndefined(yield* Spool.readStart(root, partition, { ...reference, segment: "../x" }, 100))
      yield* Effect.promise(() => Fs.rm(file))
      assert.isUndefined(yield* Spool.readStart(root, partition, reference, 100))
    }))
})
