import { assert, describe, it } from "@effect/vitest"
import * as Headers from "../../src/session/Headers.ts"

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

/** `check` runs on a collector given `message` in two chunks, once for every split point. */
const atEverySplit = (message: string, bodyLimit: number | undefined, check: (collector: Headers.Collector, at: string) => void) => {
  const all = bytes(message)
  for (let split = 0; split <= all.length; split++) {
    const collector = Headers.collector(bodyLimit)
    collector.push(all.subarray(0, split))
    collector.push(all.subarray(split))
    check(collector, `split at ${split}`)
  }
}

describe("Headers.parse", () => {
  const cases: ReadonlyArray<readonly [string, string, ReadonlyArray<Headers.Header>]> = [
    ["fields up to the empty line", "From: a@b.test\r\nSubject: hello\r\n\r\nSubject: not a header\r\n", [
      { name: "From", value: "a@b.test" },
      { name: "Subject", value: "hello" }
    ]],
    ["folded lines are unfolded", "Subject: a long\r\n  subject\r\n\tline\r\nTo: x@y.test\r\n\r\n", [
      { name: "Subject", value: "a long subject line" },
      { name: "To", value: "x@y.test" }
    ]],
    ["a message without headers", "\r\nbody only\r\n", []],
    // As verifiers read them (mailauth): fields up to the empty line, whatever is between.
    ["a line without a colon is skipped, the fields after it count", "From: a@b.test\r\nnot a header\r\nTo: x@y.test\r\n\r\n", [
      { name: "From", value: "a@b.test" },
      { name: "To", value: "x@y.test" }
    ]],
    ["a continuation before any field is skipped", " folded\r\nFrom: a@b.test\r\n\r\n", [{ name: "From", value: "a@b.test" }]],
    ["LF line ends (as BINARYMIME may carry)", "From: a@b.test\nSubject: hi\n\n", [
      { name: "From", value: "a@b.test" },
      { name: "Subject", value: "hi" }
    ]],
    ["an empty value and spaces around the name", "X-Empty:\r\nX-Spaced :  v  \r\n\r\n", [
      { name: "X-Empty", value: "" },
      { name: "X-Spaced", value: "v" }
    ]]
  ]
  for (const [name, text, expected] of cases) {
    it(name, () => {
      assert.deepStrictEqual(Headers.parse(text), expected)
    })
  }

  it(`keeps at most ${Headers.maxHeaders} fields`, () => {
    const text = Array.from({ length: Headers.maxHeaders + 10 }, (_, i) => `X-N: ${i}\r\n`).join("") + "\r\n"
    assert.strictEqual(Headers.parse(text).length, Headers.maxHeaders)
  })

  it("first finds a field by name, ignoring case", () => {
    const headers = Headers.parse("Subject: one\r\nsubject: two\r\n\r\n")
    assert.strictEqual(Headers.first(headers, "SUBJECT"), "one")
    assert.isUndefined(Headers.first(headers, "From"))
  })
})

describe("Headers.collector", () => {
  const message = "From: a@b.test\r\nSubject: split\r\n  folded\r\n\r\nBody: not a header\r\n"
  const expected = [{ name: "From", value: "a@b.test" }, { name: "Subject", value: "split folded" }]

  it("gives the same fields whatever the chunking: every split point", () => {
    atEverySplit(message, undefined, (collector, at) => {
      assert.deepStrictEqual(collector.headers(), expected, at)
    })
  })

  it("byte by byte", () => {
    const collector = Headers.collector()
    for (const byte of bytes(message)) collector.push(new Uint8Array([byte]))
    assert.deepStrictEqual(collector.headers(), expected)
  })

  it("stops keeping bytes after the empty line, and at most maxBytes of a message that never ends its header", () => {
    const collector = Headers.collector()
    collector.push(bytes("From: a@b.test\r\n\r\n"))
    collector.push(bytes("Subject: after the body started\r\n\r\n"))
    assert.deepStrictEqual(collector.headers(), [{ name: "From", value: "a@b.test" }])
    const endless = Headers.collector()
    const line = bytes(`X-Filler: ${"x".repeat(1000)}\r\n`)
    for (let i = 0; i < 200; i++) endless.push(line)
    const kept = endless.headers()
    assert.isAtMost(kept.length, Math.ceil(Headers.maxBytes / line.length))
    assert.isAbove(kept.length, 0)
  })

  describe("the body's start (bodyLimit)", () => {
    const body = "Body: not a header\r\n"
    const text = (collected: { readonly bytes: Uint8Array }) => new TextDecoder().decode(collected.bytes)

    it("keeps what follows the empty line, the same whatever the chunking: every split point", () => {
      atEverySplit(message, 1000, (collector, at) => {
        assert.deepStrictEqual(collector.headers(), expected, at)
        assert.strictEqual(text(collector.body()), body, at)
        assert.isFalse(collector.body().truncated, at)
      })
    })

    it("byte by byte", () => {
      const collector = Headers.collector(1000)
      for (const byte of bytes(message)) collector.push(new Uint8Array([byte]))
      assert.strictEqual(text(collector.body()), body)
    })

    it("at most bodyLimit bytes, and says the body goes on: every limit around the body's length", () => {
      for (let limit = 1; limit <= body.length + 1; limit++) {
        const collector = Headers.collector(limit)
        collector.push(bytes(message))
        assert.strictEqual(text(collector.body()), body.slice(0, limit), `limit ${limit}`)
        assert.strictEqual(collector.body().truncated, limit < body.length, `limit ${limit}`)
      }
    })

    it("nothing with bodyLimit 0 (the default)", () => {
      const none = Headers.collector()
      none.push(bytes(message))
      assert.deepStrictEqual(none.body(), { bytes: new Uint8Array(), truncated: false })
    })

    it("a header section padded past maxBytes ends there: what follows is the body rules see (review finding)", () => {
      const padded = Headers.collector(100_000)
      padded.push(bytes("Subject: padded\r\n"))
      const line = bytes(`X-Pad: ${"x".repeat(1000)}\r\n`)
      for (let i = 0; i < 70; i++) padded.push(line)
      padded.push(bytes("\r\nBuy cheap pills\r\n"))
      assert.strictEqual(padded.headers()[0]?.value, "padded")
      assert.isAtMost(padded.headers().length, Math.ceil(Headers.maxBytes / line.length) + 1)
      assert.include(text(padded.body()), "Buy cheap pills")
    })

    it("without an empty line the section ends at the first line that is neither a field nor a fold, which starts the body (review finding)", () => {
      atEverySplit("Subject: hi\r\n folded on\r\nBuy cheap pills now\r\nmore\r\n", 1000, (collector, at) => {
        assert.deepStrictEqual(collector.headers(), [{ name: "Subject", value: "hi folded on" }], at)
        assert.strictEqual(text(collector.body()), "Buy cheap pills now\r\nmore\r\n", at)
      })
    })

    it("a field name with a space or a control character is not a field: the body starts there", () => {
      const collector = Headers.collector(1000)
      collector.push(bytes("From: a@b.test\r\nNot A Field: x\r\n\r\n"))
      assert.deepStrictEqual(collector.headers(), [{ name: "From", value: "a@b.test" }])
      assert.strictEqual(text(collector.body()), "Not A Field: x\r\n\r\n")
    })

    it("white space before the colon is a field (RFC 5322 4.5.3), not the body's start (review finding)", () => {
      const collector = Headers.collector(1000)
      collector.push(bytes("X-Mailer : foo\r\nFrom: ceo@bank.test\r\n\r\nbody\r\n"))
      assert.deepStrictEqual(collector.headers(), [{ name: "X-Mailer", value: "foo" }, { name: "From", value: "ceo@bank.test" }])
      assert.strictEqual(text(collector.body()), "body\r\n")
    })

    it("a line that is no field before the empty line: body rules see from it on, header rules still see the fields after it (review finding)", () => {
      atEverySplit("Subject: hi\r\nBuy cheap pills\r\nFrom: ceo@bank.test\r\n\r\nmore\r\n", 1000, (collector, at) => {
        assert.deepStrictEqual(collector.headers(), [{ name: "Subject", value: "hi" }, { name: "From", value: "ceo@bank.test" }], at)
        assert.strictEqual(text(collector.body()), "Buy cheap pills\r\nFrom: ceo@bank.test\r\n\r\nmore\r\n", at)
      })
    })

    it("more fields than the old limit of 500: a From after 600 fields is still seen (review finding)", () => {
      const collector = Headers.collector()
      for (let i = 0; i < 600; i++) collector.push(bytes(`X-Pad-${i}: x\r\n`))
      collector.push(bytes("From: ceo@bank.test\r\n\r\n"))
      assert.strictEqual(Headers.first(collector.headers(), "from"), "ceo@bank.test")
    })

    it("a last field without its line end still counts; LF-only lines are lines too", () => {
      const unterminated = Headers.collector(1000)
      unterminated.push(bytes("From: a@b.test\nSubject: last"))
      assert.deepStrictEqual(unterminated.headers(), [{ name: "From", value: "a@b.test" }, { name: "Subject", value: "last" }])
      assert.strictEqual(unterminated.body().bytes.length, 0)
      const lf = Headers.collector(1000)
      lf.push(bytes("From: a@b.test\n\nbody\n"))
      assert.strictEqual(text(lf.body()), "body\n")
    })

    it("keeps a copy: the chunks it was given may be reused", () => {
      const collector = Headers.collector(1000)
      const chunk = bytes(message)
      collector.push(chunk)
      chunk.fill(0x41)
      assert.strictEqual(text(collector.body()), body)
    })
  })
})

describe("Headers.addressDomain: the domain of a From field's address", () => {
  const cases: ReadonlyArray<readonly [string | undefined, string | undefined]> = [
    ["alice@Example.TEST", "example.test"],
    ["Alice <alice@example.test>", "example.test"],
    ["\"Alice Example\" <alice@example.test>", "example.test"],
    // A display name that holds an address is not the address (review finding).
    ["\"ceo <ceo@our.test>\" <attacker@other.test>", "other.test"],
    ["\"quoted \\\" <x@our.test>\" <a@other.test>", "other.test"],
    ["no address here", undefined],
    ["<>", undefined],
    [undefined, undefined]
  ]
  for (const [value, domain] of cases) {
    it(`${JSON.stringify(value)} → ${domain}`, () => {
      assert.strictEqual(Headers.addressDomain(value), domain)
    })
  }
})
