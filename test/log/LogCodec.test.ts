import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { Packr } from "msgpackr"
import * as Event from "../../src/log/Event.ts"
import * as LogCodec from "../../src/log/LogCodec.ts"
import { samples } from "./EventSamples.ts"

describe("LogCodec", () => {
  it("the samples cover every event tag, once each", () => {
    for (const member of Event.Event.members) {
      assert.strictEqual(samples.filter(Schema.is(member)).length, 1, JSON.stringify(member.fields._tag.ast))
    }
    assert.strictEqual(samples.length, Event.Event.members.length)
  })

  it("Event.encode is Schema's encoding", () => {
    for (const event of samples) assert.deepStrictEqual(Event.encode(event), Schema.encodeSync(Event.Event)(event))
  })

  for (const event of samples) {
    it(`round-trips ${event._tag}`, () => {
      const bytes = LogCodec.encode(event)
      const back = LogCodec.decode(bytes)
      assert.deepStrictEqual(back, event)
      assert.strictEqual(Object.getPrototypeOf(back), Object.prototype)
    })
  }

  it("each record decodes alone, in any order", () => {
    const encoded = samples.map((event) => ({ event, bytes: LogCodec.encode(event).slice() }))
    for (const { event, bytes } of encoded.reverse()) {
      assert.deepStrictEqual(LogCodec.decode(bytes), event)
    }
  })

  it("stores plain maps, not records or class instances", () => {
    for (const event of samples) {
      const first = LogCodec.encode(event)[0] ?? 0
      // 0x80-0x8f fixmap, 0xde map16: a plain msgpack map; a msgpackr record would start 0xd4.
      assert.isTrue((first >= 0x80 && first <= 0x8f) || first === 0xde, event._tag)
    }
  })

  it("refuses bytes that are not an event", () => {
    const packr = new Packr({ useRecords: false })
    assert.throws(() => LogCodec.decode(packr.pack({ _tag: "NoSuchEvent", at: 1 })))
    assert.throws(() => LogCodec.decode(packr.pack({ _tag: "ReplySent", at: "soon" })))
    assert.throws(() => LogCodec.decode(new Uint8Array([0xc1])))
  })

  it("round-trips a header and rejects foreign ones", () => {
    const bytes = LogCodec.encodeHeader({ partition: "w0", sequence: 7, createdAt: 1_700_000_000_000 })
    assert.deepStrictEqual(LogCodec.decodeHeader(bytes), {
      _tag: "Header",
      header: {
        format: "postern-log",
        version: 1,
        eventSchema: Event.schemaVersion,
        partition: "w0",
        sequence: 7,
        createdAt: 1_700_000_000_000
      }
    })
    const packr = new Packr({ useRecords: false })
    assert.strictEqual(LogCodec.decodeHeader(packr.pack({ format: "other" }))._tag, "Invalid")
    assert.strictEqual(
      LogCodec.decodeHeader(packr.pack({ format: "postern-log", version: 2, eventSchema: 1, partition: "w0", sequence: 1, createdAt: 0 }))._tag,
      "Invalid"
    )
    assert.strictEqual(
      LogCodec.decodeHeader(packr.pack({ format: "postern-log", version: 1, eventSchema: Event.schemaVersion + 1, partition: "w0", sequence: 1, createdAt: 0 }))._tag,
      "Invalid"
    )
    assert.strictEqual(LogCodec.decodeHeader(new Uint8Array([0xc1]))._tag, "Invalid")
  })
})
