import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as Zlib from "node:zlib"
import * as Crc32 from "../../src/log/Crc32.ts"
import * as LogRecord from "../../src/log/LogRecord.ts"
import { concat } from "../support/Bytes.ts"

const bytesOf = (text: string) => new TextEncoder().encode(text)


const payloads = [bytesOf("first record"), new Uint8Array(0), bytesOf("the third and last record, a little longer")]
const framed = payloads.map(LogRecord.frame)
const file = concat(framed)
const lastStart = file.length - (framed[2]?.length ?? 0)

describe("LogRecord", () => {
  it("frames and scans a payload back", () => {
    const frame = LogRecord.frame(bytesOf("hello"))
    assert.strictEqual(frame.length, LogRecord.frameOverhead + 5)
    const result = LogRecord.scan(frame, 0)
    assert.strictEqual(result._tag, "Record")
    if (result._tag !== "Record") return
    assert.deepStrictEqual(Array.from(result.payload), Array.from(bytesOf("hello")))
    assert.strictEqual(result.next, frame.length)
  })

  it("writeFrameInto places frames back to back", () => {
    const target = new Uint8Array(file.length)
    let offset = 0
    for (const payload of payloads) offset = LogRecord.writeFrameInto(target, offset, payload)
    assert.strictEqual(offset, file.length)
    assert.deepStrictEqual(Array.from(target), Array.from(file))
  })

  it("scanAll returns every record with its offset", () => {
    const result = LogRecord.scanAll(file)
    assert.strictEqual(result.stop, undefined)
    assert.strictEqual(result.validEnd, file.length)
    assert.deepStrictEqual(result.records.map((r) => Array.from(r.payload)), payloads.map((p) => Array.from(p)))
    assert.deepStrictEqual(result.records.map((r) => r.offset), [0, framed[0]?.length, lastStart])
  })

  it("a cut anywhere inside the last record is a torn tail ending at the record before", () => {
    for (let cut = lastStart + 1; cut < file.length; cut++) {
      const result = LogRecord.scanAll(file.subarray(0, cut))
      assert.strictEqual(result.records.length, 2, `cut at ${cut}`)
      assert.strictEqual(result.validEnd, lastStart, `cut at ${cut}`)
      assert.strictEqual(result.stop?.offset, lastStart, `cut at ${cut}`)
      assert.strictEqual(LogRecord.scan(file.subarray(0, cut), lastStart)._tag, "Incomplete")
    }
    const clean = LogRecord.scanAll(file.subarray(0, lastStart))
    assert.strictEqual(clean.stop, undefined)
    assert.strictEqual(clean.validEnd, lastStart)
  })

  it("a flipped bit is never read as a record", () => {
    // The middle record is followed by another, so a length made longer can still land in the bytes.
    const start = framed[0]?.length ?? 0
    const target = concat([framed[0] ?? new Uint8Array(0), LogRecord.frame(bytesOf("middle")), framed[2] ?? new Uint8Array(0)])
    const end = start + LogRecord.frameOverhead + 6
    for (let byte = start; byte < end; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const copy = target.slice()
        copy[byte] = (copy[byte] ?? 0) ^ (1 << bit)
        const result = LogRecord.scan(copy, start)
        const where = `byte ${byte - start} bit ${bit}`
        if (byte - start >= 4) assert.strictEqual(result._tag, "Corrupt", where)
        else assert.notStrictEqual(result._tag, "Record", where)
        const all = LogRecord.scanAll(copy)
        assert.strictEqual(all.records.length, 1, where)
        assert.strictEqual(all.validEnd, start, where)
      }
    }
  })

  it("a length beyond the limit is corrupt, not incomplete", () => {
    const frame = LogRecord.frame(bytesOf("x"))
    new DataView(frame.buffer).setUint32(0, LogRecord.maxPayload + 1)
    assert.strictEqual(LogRecord.scan(frame, 0)._tag, "Corrupt")
  })
})

describe("Crc32", () => {
  it("matches known values", () => {
    assert.strictEqual(Crc32.compute(new Uint8Array(0)), 0)
    assert.strictEqual(Crc32.compute(bytesOf("123456789")), 0xcbf43926)
  })

  it.prop("equals node's zlib.crc32", { bytes: Schema.Uint8Array }, ({ bytes }) => {
    assert.strictEqual(Crc32.compute(bytes), Zlib.crc32(bytes))
  })

  it.prop("updates in pieces like in one go", { bytes: Schema.Uint8Array, split: Schema.Number }, ({ bytes, split }) => {
    const at = Number.isFinite(split) ? Math.abs(Math.trunc(split)) % (bytes.length + 1) : 0
    const whole = Crc32.compute(bytes)
    assert.strictEqual(Crc32.update(Crc32.compute(bytes, 0, at), bytes, at), whole)
    assert.strictEqual(Crc32.compute(bytes, at), Zlib.crc32(bytes.subarray(at)))
  })
})
