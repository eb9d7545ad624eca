import { assert, describe, it } from "@effect/vitest"
import * as Reply from "../../src/session/Reply.ts"

describe("Reply.make", () => {
  it("keeps code, enhanced code and lines", () => {
    assert.deepStrictEqual(Reply.make(250, "2.1.0", "Ok"), { code: 250, enhanced: "2.1.0", lines: ["Ok"] })
    assert.deepStrictEqual(Reply.make(220, undefined, "mx ESMTP"), { code: 220, enhanced: undefined, lines: ["mx ESMTP"] })
  })

  it("gives a reply without text one empty line", () => {
    assert.deepStrictEqual(Reply.make(250, undefined).lines, [""])
  })

  it("multiline carries no enhanced code", () => {
    assert.deepStrictEqual(Reply.multiline(250, ["mx", "PIPELINING"]), {
      code: 250,
      enhanced: undefined,
      lines: ["mx", "PIPELINING"]
    })
  })
})

describe("Reply.format", () => {
  const cases: ReadonlyArray<{ readonly name: string; readonly reply: Reply.Reply; readonly wire: string }> = [
    { name: "single line with enhanced code", reply: Reply.make(250, "2.0.0", "Ok"), wire: "250 2.0.0 Ok\r\n" },
    {
      name: "single line without enhanced code",
      reply: Reply.make(220, undefined, "mx.example.test ESMTP Postern"),
      wire: "220 mx.example.test ESMTP Postern\r\n"
    },
    {
      name: "multi-line with enhanced code on every line",
      reply: Reply.make(550, "5.7.1", "first", "second", "third"),
      wire: "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"
    },
    {
      name: "multi-line without enhanced code (EHLO)",
      reply: Reply.multiline(250, ["mx.example.test", "PIPELINING", "SIZE 1000", "CHUNKING"]),
      wire: "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 CHUNKING\r\n"
    },
    { name: "no text and no enhanced code: the code alone", reply: Reply.make(250, undefined), wire: "250\r\n" },
    { name: "no text with an enhanced code", reply: Reply.make(250, "2.0.0"), wire: "250 2.0.0\r\n" },
    { name: "trailing spaces are trimmed", reply: Reply.make(250, "2.0.0", "Ok   "), wire: "250 2.0.0 Ok\r\n" },
    { name: "an AUTH challenge keeps its space even when empty (RFC 4954 continue-req)", reply: Reply.make(334, undefined, ""), wire: "334 \r\n" },
    { name: "an AUTH challenge", reply: Reply.make(334, undefined, "VXNlcm5hbWU6"), wire: "334 VXNlcm5hbWU6\r\n" },
    {
      name: "an empty continuation line keeps its hyphen",
      reply: Reply.multiline(214, ["", "end"]),
      wire: "214-\r\n214 end\r\n"
    }
  ]
  for (const c of cases) {
    it(c.name, () => {
      assert.strictEqual(Reply.format(c.reply), c.wire)
    })
  }

  it("a multi-line reply has exactly one line with a space after the code, the last", () => {
    const lines = Reply.format(Reply.make(451, "4.3.0", "a", "b", "c", "d")).split("\r\n")
    assert.strictEqual(lines.pop(), "")
    assert.deepStrictEqual(lines.map((l) => l.charAt(3)), ["-", "-", "-", " "])
  })
})

describe("Reply.encode", () => {
  it("is the UTF-8 bytes of the formatted reply", () => {
    const reply = Reply.make(250, "2.0.0", "Ok: queued as Ünï")
    assert.deepStrictEqual(Reply.encode(reply), new TextEncoder().encode("250 2.0.0 Ok: queued as Ünï\r\n"))
  })
})

describe("Reply predicates", () => {
  it("closesConnection is true for 421 and 221 only", () => {
    const closing = [221, 421]
    for (const code of [211, 214, 220, 221, 250, 251, 252, 354, 421, 450, 451, 452, 500, 501, 502, 503, 550, 554]) {
      assert.strictEqual(Reply.closesConnection(Reply.make(code, undefined, "x")), closing.includes(code), `${code}`)
    }
  })

  it("isPositive is true below 400", () => {
    assert.isTrue(Reply.isPositive(Reply.make(250, "2.0.0", "Ok")))
    assert.isTrue(Reply.isPositive(Reply.make(354, undefined, "go")))
    assert.isFalse(Reply.isPositive(Reply.make(421, "4.7.0", "bye")))
    assert.isFalse(Reply.isPositive(Reply.make(550, "5.1.1", "no")))
  })
})
