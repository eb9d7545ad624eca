/**
 * The load generator's reply reader: single and multi-line replies, replies split at every
 * byte, several replies in one read, and input that is not a reply.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ReplyReader from "../../src/bench/ReplyReader.ts"

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

const ehlo = "250-mail.example.org\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n"

describe("ReplyReader", () => {
  it("reads a one-line reply, with or without text", () => {
    const reader = ReplyReader.make()
    assert.deepStrictEqual(reader.feed(bytes("220 ready\r\n")), [{ code: 220, lines: ["ready"] }])
    assert.deepStrictEqual(reader.feed(bytes("250\r\n")), [{ code: 250, lines: [""] }])
    assert.strictEqual(reader.pending(), 0)
  })

  it("collects a multi-line reply until the line with a space", () => {
    const reader = ReplyReader.make()
    assert.deepStrictEqual(reader.feed(bytes(ehlo)), [
      { code: 250, lines: ["mail.example.org", "PIPELINING", "STARTTLS", "SMTPUTF8"] }
    ])
  })

  it("gives the same replies whatever the split, down to every byte", () => {
    const stream = `220 hi\r\n${ehlo}354 go ahead\r\n250-a\r\n250 b\r\n221 bye\r\n`
    const whole = ReplyReader.make().feed(bytes(stream))
    assert.strictEqual(whole.length, 5)
    const input = bytes(stream)
    for (let cut = 1; cut < input.length; cut++) {
      const reader = ReplyReader.make()
      const got = [...reader.feed(input.subarray(0, cut)), ...reader.feed(input.subarray(cut))]
      assert.deepStrictEqual(got, whole, `split at ${cut}`)
    }
    const reader = ReplyReader.make()
    const byteByByte = Array.from(input).flatMap((b) => reader.feed(Uint8Array.of(b)))
    assert.deepStrictEqual(byteByByte, whole)
  })

  it("counts the bytes of an unfinished reply as pending", () => {
    const reader = ReplyReader.make()
    assert.deepStrictEqual(reader.feed(bytes("250-first\r\n250 se")), [])
    assert.isAbove(reader.pending(), 0)
    assert.deepStrictEqual(reader.feed(bytes("cond\r\n")), [{ code: 250, lines: ["first", "second"] }])
    assert.strictEqual(reader.pending(), 0)
  })

  it("accepts a bare LF as a line end", () => {
    assert.deepStrictEqual(ReplyReader.make().feed(bytes("220 ok\n")), [{ code: 220, lines: ["ok"] }])
  })

  it("rejects a line without a reply code", () => {
    assert.throws(() => ReplyReader.make().feed(bytes("hello\r\n")), ReplyReader.MalformedReply)
    assert.throws(() => ReplyReader.make().feed(bytes("25x ok\r\n")), ReplyReader.MalformedReply)
    assert.throws(() => ReplyReader.make().feed(bytes("250+ok\r\n")), ReplyReader.MalformedReply)
  })

  it("rejects a code that changes inside a multi-line reply", () => {
    assert.throws(() => ReplyReader.make().feed(bytes("250-a\r\n251 b\r\n")), ReplyReader.MalformedReply)
  })

  it("rejects a line longer than the limit, even when it arrives in pieces", () => {
    const reader = ReplyReader.make(64)
    reader.feed(bytes(`250 ${"x".repeat(40)}`))
    assert.throws(() => reader.feed(bytes("x".repeat(40))), ReplyReader.MalformedReply)
    assert.throws(() => ReplyReader.make(64).feed(bytes(`250 ${"x".repeat(80)}\r\n`)), ReplyReader.MalformedReply)
  })
})
