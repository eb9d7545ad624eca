import { assert, describe, it } from "@effect/vitest"
import * as Framer from "../../src/session/Framer.ts"

type Ev =
  | readonly ["line", string, Framer.LineFlaw | undefined]
  | readonly ["tooLong"]
  | readonly ["flood"]
  | readonly ["content", string]
  | readonly ["end", number, "lf" | "cr" | undefined]
  | readonly ["tls"]

const bytesOf = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0))
const textOf = (b: Uint8Array): string => {
  let s = ""
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192))
  return s
}

const line = (text: string, flaw?: Framer.LineFlaw): Ev => ["line", text, flaw]
const tooLong: Ev = ["tooLong"]
const flood: Ev = ["flood"]
const tls: Ev = ["tls"]
const content = (text: string): Ev => ["content", text]
const end = (size: number, bare?: "lf" | "cr"): Ev => ["end", size, bare]

const small: Framer.FramerLimits = { maxLineLength: 32, maxDiscard: 80 }
const standard: Framer.FramerLimits = { maxLineLength: 512, maxDiscard: 65536 }

/**
 * Drives a framer as the session does: push, drain `next()`, and switch modes after a clean
 * "DATA" or "BDAT n [LAST]" line. Consecutive Content units are merged (their boundaries depend
 * on the split of the input) and copied (they are only valid until the next push). Checks the
 * memory bounds after every push and every drain.
 */
const drive = (limits: Framer.FramerLimits, pushes: ReadonlyArray<Uint8Array>): Array<Ev> => {
  const framer = Framer.make(limits)
  const out: Array<Ev> = []
  // Content is gathered as byte arrays and joined once: the byte-by-byte runs make many units.
  let pending: Array<Uint8Array> = []
  const flush = () => {
    if (pending.length === 0) return
    const total = pending.reduce((n, b) => n + b.length, 0)
    const joined = new Uint8Array(total)
    let at = 0
    for (const b of pending) {
      joined.set(b, at)
      at += b.length
    }
    out.push(["content", textOf(joined)])
    pending = []
  }
  let inBdat = false
  // Plain comparisons on the hot path; assert only on a violation (millions of pushes).
  const check = (ok: boolean, message: string) => {
    if (!ok) assert.fail(message)
  }
  for (const chunk of pushes) {
    const before = framer.buffered()
    framer.push(chunk)
    const after = framer.buffered()
    check(after <= before + chunk.length, `push held more than it was given: ${after}`)
    check(after <= limits.maxLineLength + chunk.length, `held ${after} after a ${chunk.length}-byte push`)
    for (let u = framer.next(); u !== undefined; u = framer.next()) {
      if (u._tag === "Content") {
        check(u.bytes.length > 0, "empty Content unit")
        pending.push(u.bytes.slice())
        continue
      }
      flush()
      switch (u._tag) {
        case "Line": {
          const text = textOf(u.bytes)
          out.push(["line", text, u.flaw])
          if (u.flaw !== undefined) break
          const bdat = /^BDAT (\d+)( LAST)?$/.exec(text)
          if (text === "DATA") framer.expectData()
          else if (bdat !== null) {
            framer.expectBdat(Number(bdat[1]), !inBdat)
            inBdat = bdat[2] === undefined
          }
          break
        }
        case "ContentEnd":
          out.push(["end", u.size, u.bareLineEnding])
          break
        case "LineTooLong":
          out.push(tooLong)
          break
        case "LineFlood":
          out.push(flood)
          break
        case "TlsRecord":
          out.push(tls)
          break
      }
    }
    const held = framer.buffered()
    if (framer.mode === "command") check(held < limits.maxLineLength, `command mode holds ${held} bytes`)
    else if (framer.mode === "data") check(held <= 2, `DATA holds back ${held} bytes (at most a dot and a CR)`)
    else check(held === 0, `BDAT holds ${held} bytes`)
  }
  flush()
  return out
}

/** Whole, split in two at every position, and byte by byte: all must give the same events. */
const threeWays = (limits: Framer.FramerLimits, input: string): Array<Ev> => {
  const bytes = bytesOf(input)
  const whole = drive(limits, [bytes])
  for (let k = 0; k <= bytes.length; k++) {
    assert.deepStrictEqual(drive(limits, [bytes.subarray(0, k), bytes.subarray(k)]), whole, `split at ${k}`)
  }
  const single = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1))
  assert.deepStrictEqual(drive(limits, single), whole, "byte by byte")
  return whole
}

interface Vector {
  readonly name: string
  readonly input: string
  readonly expected: ReadonlyArray<Ev>
  readonly limits?: Framer.FramerLimits
}

const runVectors = (vectors: ReadonlyArray<Vector>) => {
  for (const v of vectors) {
    it(v.name, () => {
      assert.deepStrictEqual(threeWays(v.limits ?? small, v.input), v.expected)
    })
  }
}

/** Seeded PRNG (mulberry32) so failures reproduce. */
const prng = (seed: number) => {
  let a = seed >>> 0
  return (n: number): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (((t ^ (t >>> 14)) >>> 0) % n)
  }
}

const randomSplits = (bytes: Uint8Array, rand: (n: number) => number): Array<Uint8Array> => {
  const cuts = Array.from({ length: rand(6) }, () => rand(bytes.length + 1)).sort((a, b) => a - b)
  const parts: Array<Uint8Array> = []
  let from = 0
  for (const c of cuts) {
    parts.push(bytes.subarray(from, c))
    from = c
  }
  parts.push(bytes.subarray(from))
  return parts
}

/** The first bare line ending by position; a CR at the very end is pending, not bare. */
const referenceBare = (s: string): "lf" | "cr" | undefined => {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\n" && s[i - 1] !== "\r") return "lf"
    if (s[i] === "\r" && i + 1 < s.length && s[i + 1] !== "\n") return "cr"
  }
  return undefined
}

/** What a correct client sends for `content`: dot-stuffed, terminated, with a CRLF added if missing. */
const encodeData = (text: string): { readonly wire: string; readonly framed: string } => {
  const framed = text === "" || text.endsWith("\r\n") ? text : text + "\r\n"
  const stuffed = framed.split("\r\n").map((l) => (l.startsWith(".") ? "." + l : l)).join("\r\n")
  return { wire: stuffed + ".\r\n", framed }
}

describe("Framer", () => {
  describe("command lines", () => {
    const max = small.maxLineLength
    const disc = small.maxDiscard
    runVectors([
      { name: "simple", input: "EHLO a.example\r\n", expected: [line("EHLO a.example")] },
      {
        name: "pipelined",
        input: "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nNOOP\r\n",
        expected: [line("MAIL FROM:<a@b>"), line("RCPT TO:<c@d>"), line("RCPT TO:<e@f>"), line("NOOP")]
      },
      { name: "empty line", input: "\r\n\r\nQUIT\r\n", expected: [line(""), line(""), line("QUIT")] },
      { name: "incomplete line waits", input: "NOOP\r\nQUI", expected: [line("NOOP")] },
      { name: "exactly maxLineLength", input: "x".repeat(max - 2) + "\r\nQUIT\r\n", expected: [line("x".repeat(max - 2)), line("QUIT")] },
      { name: "one over maxLineLength", input: "x".repeat(max - 1) + "\r\nQUIT\r\n", expected: [tooLong, line("QUIT")] },
      {
        name: "bare LF line at maxLineLength",
        input: "x".repeat(max - 1) + "\nQUIT\r\n",
        expected: [line("x".repeat(max - 1), "bare-lf"), line("QUIT")]
      },
      { name: "bare LF line one over", input: "x".repeat(max) + "\nQUIT\r\n", expected: [tooLong, line("QUIT")] },
      {
        name: "LineTooLong then good lines continue",
        input: "NOOP\r\n" + "y".repeat(max + 5) + "\r\nRSET\r\nQUIT\r\n",
        expected: [line("NOOP"), tooLong, line("RSET"), line("QUIT")]
      },
      {
        name: "two over-long lines in a row",
        input: "y".repeat(max + 4) + "\r\n" + "z".repeat(max + 9) + "\nQUIT\r\n",
        expected: [tooLong, tooLong, line("QUIT")]
      },
      { name: "discard up to maxDiscard is LineTooLong", input: "y".repeat(disc - 1) + "\r\nQUIT\r\n", expected: [tooLong, line("QUIT")] },
      { name: "one more byte is LineFlood, then nothing", input: "y".repeat(disc) + "\r\nQUIT\r\n", expected: [flood] },
      { name: "LineFlood without any line end", input: "NOOP\r\n" + "y".repeat(disc + 60), expected: [line("NOOP"), flood] },
      { name: "NUL", input: "NO\u0000OP\r\nQUIT\r\n", expected: [line("NO\u0000OP", "nul"), line("QUIT")] },
      { name: "bare CR", input: "NO\rOP\r\nQUIT\r\n", expected: [line("NO\rOP", "bare-cr"), line("QUIT")] },
      { name: "CR CR LF", input: "NOOP\r\r\n", expected: [line("NOOP\r", "bare-cr")] },
      { name: "bare LF ends the line", input: "NOOP\nQUIT\r\n", expected: [line("NOOP", "bare-lf"), line("QUIT")] },
      { name: "lone LF", input: "\n", expected: [line("", "bare-lf")] },
      { name: "bare LF wins over bare CR and NUL", input: "A\u0000\rB\n", expected: [line("A\u0000\rB", "bare-lf")] },
      { name: "bare CR wins over NUL", input: "A\u0000B\rC\r\n", expected: [line("A\u0000B\rC", "bare-cr")] },
      { name: "a rejected DATA line is not a mode switch", input: "DATA\nHELLO\r\n", expected: [line("DATA", "bare-lf"), line("HELLO")] }
    ])

    it("line bytes alias the pushed chunk when not split", () => {
      const framer = Framer.make(standard)
      const chunk = bytesOf("NOOP\r\nQUIT\r\n")
      framer.push(chunk)
      const u = framer.next()
      assert.strictEqual(u?._tag, "Line")
      if (u?._tag === "Line") assert.strictEqual(u.bytes.buffer, chunk.buffer)
    })

    it("a line split across pushes is copied, not aliased to a reused buffer", () => {
      const framer = Framer.make(standard)
      const buffer = bytesOf("EHLO")
      framer.push(buffer)
      assert.isUndefined(framer.next())
      buffer.set(bytesOf(" x\r\n"))
      framer.push(buffer)
      const u = framer.next()
      assert.deepStrictEqual(u?._tag === "Line" ? textOf(u.bytes) : u, "EHLO x")
    })

    const twoMiB = 2 * 1024 * 1024
    const floodInput = bytesOf("EHLO x\r\n" + "A".repeat(twoMiB) + "\r\nQUIT\r\n")
    for (const size of [1, 7, 4096, 65536, floodInput.length]) {
      it(`2 MiB line without CRLF in ${size}-byte pushes: LineFlood, memory bounded`, () => {
        const parts: Array<Uint8Array> = []
        for (let i = 0; i < floodInput.length; i += size) parts.push(floodInput.subarray(i, i + size))
        assert.deepStrictEqual(drive(standard, parts), [line("EHLO x"), flood])
      })
    }

    it("2 MiB line with CRLF under a large maxDiscard: LineTooLong, memory bounded, next line framed", () => {
      const limits = { maxLineLength: 512, maxDiscard: 4 * twoMiB }
      const parts: Array<Uint8Array> = []
      for (let i = 0; i < floodInput.length; i += 65536) parts.push(floodInput.subarray(i, i + 65536))
      assert.deepStrictEqual(drive(limits, parts), [line("EHLO x"), tooLong, line("QUIT")])
      assert.deepStrictEqual(drive(limits, [floodInput]), [line("EHLO x"), tooLong, line("QUIT")])
    })

    it("after LineFlood, next() stays undefined and pushes are not held", () => {
      const framer = Framer.make(small)
      framer.push(bytesOf("z".repeat(small.maxDiscard + 1)))
      assert.deepStrictEqual(framer.next(), { _tag: "LineFlood" })
      assert.isUndefined(framer.next())
      framer.push(bytesOf("QUIT\r\n"))
      assert.isUndefined(framer.next())
      assert.strictEqual(framer.buffered(), 0)
    })

    it("discard drops pipelined plaintext after STARTTLS", () => {
      const framer = Framer.make(standard)
      framer.push(bytesOf("STARTTLS\r\nNOOP\r\nQU"))
      const u = framer.next()
      assert.deepStrictEqual(u?._tag === "Line" ? textOf(u.bytes) : u, "STARTTLS")
      assert.strictEqual(framer.buffered(), 8)
      assert.strictEqual(framer.discard(), 8)
      assert.strictEqual(framer.buffered(), 0)
      assert.isUndefined(framer.next())
      framer.push(bytesOf("EHLO y\r\n"))
      const v = framer.next()
      assert.deepStrictEqual(v?._tag === "Line" ? textOf(v.bytes) : v, "EHLO y")
    })

    it("discard drops a partial line held across pushes", () => {
      const framer = Framer.make(standard)
      framer.push(bytesOf("NO"))
      assert.isUndefined(framer.next())
      assert.strictEqual(framer.buffered(), 2)
      assert.strictEqual(framer.discard(), 2)
      framer.push(bytesOf("OP\r\n"))
      const u = framer.next()
      assert.deepStrictEqual(u?._tag === "Line" ? textOf(u.bytes) : u, "OP")
    })

    it("a push before draining keeps the undrained bytes in order", () => {
      const framer = Framer.make(standard)
      framer.push(bytesOf("A\r\nB\r\n"))
      const a = framer.next()
      framer.push(bytesOf("C\r\n"))
      const rest = [framer.next(), framer.next(), framer.next()]
      assert.deepStrictEqual(
        [a, ...rest].map((u) => (u?._tag === "Line" ? textOf(u.bytes) : u)),
        ["A", "B", "C", undefined]
      )
    })
  })

  describe("DATA", () => {
    const mail = "MAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\n"
    runVectors([
      { name: "empty message", input: "DATA\r\n.\r\nQUIT\r\n", expected: [line("DATA"), end(0), line("QUIT")] },
      {
        name: "simple, the CRLF before the dot is content",
        input: "DATA\r\na\r\n.\r\nQUIT\r\n",
        expected: [line("DATA"), content("a\r\n"), end(3), line("QUIT")]
      },
      {
        name: "empty line only",
        input: "DATA\r\n\r\n.\r\n",
        expected: [line("DATA"), content("\r\n"), end(2)]
      },
      {
        name: "dot-stuffing at the start",
        input: "DATA\r\n..hidden\r\n.\r\n",
        expected: [line("DATA"), content(".hidden\r\n"), end(9)]
      },
      {
        name: "dot-stuffing mid-message",
        input: "DATA\r\na\r\n..b\r\nc\r\n.\r\n",
        expected: [line("DATA"), content("a\r\n.b\r\nc\r\n"), end(10)]
      },
      {
        name: "lines that are just '..'",
        input: "DATA\r\n..\r\nx\r\n..\r\n.\r\n",
        expected: [line("DATA"), content(".\r\nx\r\n.\r\n"), end(9)]
      },
      {
        name: "a lone dot not at a line start",
        input: "DATA\r\na.\r\n .\r\nb. .\r\n.\r\n",
        expected: [line("DATA"), content("a.\r\n .\r\nb. .\r\n"), end(14)]
      },
      {
        name: "unstuffed leading dot (broken client) is dropped",
        input: "DATA\r\n.abc\r\n.\r\n",
        expected: [line("DATA"), content("abc\r\n"), end(5)]
      },
      {
        name: "pipelined DATA, content and QUIT in one push",
        input: "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
        expected: [
          line("MAIL FROM:<a@b>"),
          line("RCPT TO:<c@d>"),
          line("DATA"),
          content("Subject: x\r\n\r\nbody\r\n"),
          end(20),
          line("QUIT")
        ]
      },
      {
        name: "two messages back to back",
        input: "DATA\r\none\r\n.\r\nDATA\r\n.\r\nDATA\r\ntwo\r\n.\r\n",
        expected: [line("DATA"), content("one\r\n"), end(5), line("DATA"), end(0), line("DATA"), content("two\r\n"), end(5)]
      },
      {
        name: "command-looking and over-long lines are content",
        input: "DATA\r\nQUIT\r\n" + "q".repeat(100) + "\r\n.\r\nNOOP\r\n",
        expected: [line("DATA"), content("QUIT\r\n" + "q".repeat(100) + "\r\n"), end(108), line("NOOP")]
      },
      // The smuggling vectors: none ends DATA; the bytes around them stay content.
      {
        name: "smuggling \\n.\\n",
        input: "DATA\r\na\n.\n" + mail + ".\r\nQUIT\r\n",
        expected: [line("DATA"), content("a\n.\n" + mail), end(4 + mail.length, "lf"), line("QUIT")]
      },
      {
        name: "smuggling \\n.\\r\\n",
        input: "DATA\r\na\n.\r\n" + mail + ".\r\nQUIT\r\n",
        expected: [line("DATA"), content("a\n.\r\n" + mail), end(5 + mail.length, "lf"), line("QUIT")]
      },
      {
        name: "smuggling \\r.\\r",
        input: "DATA\r\na\r.\r" + mail + ".\r\nQUIT\r\n",
        expected: [line("DATA"), content("a\r.\r" + mail), end(4 + mail.length, "cr"), line("QUIT")]
      },
      {
        name: "smuggling \\r.\\r\\n",
        input: "DATA\r\na\r.\r\n" + mail + ".\r\nQUIT\r\n",
        expected: [line("DATA"), content("a\r.\r\n" + mail), end(5 + mail.length, "cr"), line("QUIT")]
      },
      {
        name: "smuggling \\r\\n.\\n",
        input: "DATA\r\na\r\n.\n" + mail + ".\r\nQUIT\r\n",
        expected: [line("DATA"), content("a\r\n\n" + mail), end(4 + mail.length, "lf"), line("QUIT")]
      },
      {
        name: "smuggling \\r\\n.\\r",
        input: "DATA\r\na\r\n.\r" + mail + ".\r\nQUIT\r\n",
        expected: [line("DATA"), content("a\r\n\r" + mail), end(4 + mail.length, "cr"), line("QUIT")]
      },
      {
        name: "smuggling right at the start of DATA",
        input: "DATA\r\n.\n" + mail + ".\r\n",
        expected: [line("DATA"), content("\n" + mail), end(1 + mail.length, "lf")]
      },
      {
        name: "the first bare ending is reported (CR before LF)",
        input: "DATA\r\na\rb\nc\r\n.\r\n",
        expected: [line("DATA"), content("a\rb\nc\r\n"), end(7, "cr")]
      },
      {
        name: "the first bare ending is reported (LF before CR)",
        input: "DATA\r\na\nb\rc\r\n.\r\n",
        expected: [line("DATA"), content("a\nb\rc\r\n"), end(7, "lf")]
      },
      {
        name: "CR CR LF dot CRLF: one bare CR, then the real end",
        input: "DATA\r\na\r\r\n.\r\nQUIT\r\n",
        expected: [line("DATA"), content("a\r\r\n"), end(4, "cr"), line("QUIT")]
      }
    ])

    it("content aliases the pushed chunk and comes in as few units as the stuffing allows", () => {
      const framer = Framer.make(standard)
      const chunk = bytesOf("hello\r\nworld\r\n..dot\r\nend\r\n.\r\n")
      framer.expectData()
      framer.push(chunk)
      const units: Array<Framer.Framed> = []
      for (let u = framer.next(); u !== undefined; u = framer.next()) units.push(u)
      assert.deepStrictEqual(units.map((u) => u._tag), ["Content", "Content", "ContentEnd"])
      for (const u of units) if (u._tag === "Content") assert.strictEqual(u.bytes.buffer, chunk.buffer)
      assert.deepStrictEqual(units.map((u) => (u._tag === "Content" ? textOf(u.bytes) : u)), [
        "hello\r\nworld\r\n",
        ".dot\r\nend\r\n",
        { _tag: "ContentEnd", size: 25, bareLineEnding: undefined }
      ])
    })

    it("large content in many chunks: exact output, bounded hold-back, few units", () => {
      const rand = prng(7)
      const lines: Array<string> = []
      for (let i = 0; i < 20000; i++) {
        const lead = rand(10) === 0 ? "." : ""
        lines.push(lead + "x".repeat(rand(90)))
      }
      const { framed, wire } = encodeData(lines.join("\r\n"))
      const input = bytesOf("DATA\r\n" + wire + "QUIT\r\n")
      const expected = [line("DATA"), content(framed), end(framed.length), line("QUIT")]
      for (const size of [1, 777, 65536, input.length]) {
        const parts: Array<Uint8Array> = []
        for (let i = 0; i < input.length; i += size) parts.push(input.subarray(i, i + size))
        assert.deepStrictEqual(drive(standard, parts), expected, `${size}-byte pushes`)
      }
      const framer = Framer.make(standard)
      framer.push(input)
      framer.next()
      framer.expectData()
      let units = 0
      for (let u = framer.next(); u?._tag === "Content"; u = framer.next()) units++
      const stuffed = lines.filter((l) => l.startsWith(".")).length
      assert.isAtMost(units, stuffed + 1)
    })

    it("a partial command line held at a mode switch is read as content", () => {
      const framer = Framer.make(standard)
      framer.push(bytesOf("ab"))
      assert.isUndefined(framer.next())
      framer.expectData()
      framer.push(bytesOf("c\r\n.\r\n"))
      const units = [framer.next(), framer.next(), framer.next()]
      assert.deepStrictEqual(units.map((u) => (u?._tag === "Content" ? textOf(u.bytes) : u)), [
        "abc\r\n",
        { _tag: "ContentEnd", size: 5, bareLineEnding: undefined },
        undefined
      ])
      assert.strictEqual(framer.mode, "command")
    })

    it("property: a correctly stuffed message comes back exactly, ending at the right place", () => {
      const tokens = ["a", ".", "\r", "\n", "\r\n", ".\r\n", "\r\n.", "..", "\r\n.\r"]
      const rand = prng(42)
      for (let run = 0; run < 3000; run++) {
        const text = Array.from({ length: rand(24) }, () => tokens[rand(tokens.length)] ?? "").join("")
        const { framed, wire } = encodeData(text)
        const input = bytesOf("DATA\r\n" + wire + "QUIT\r\n")
        const bare = referenceBare(framed)
        const expected = [line("DATA"), ...(framed === "" ? [] : [content(framed)]), end(framed.length, bare), line("QUIT")]
        assert.deepStrictEqual(drive(standard, randomSplits(input, rand)), expected, JSON.stringify(text))
        if (bare === undefined) assert.notMatch(framed, /\r(?!\n)|(?<!\r)\n/)
      }
    })
  })

  describe("BDAT", () => {
    runVectors([
      { name: "BDAT 0 LAST", input: "BDAT 0 LAST\r\nQUIT\r\n", expected: [line("BDAT 0 LAST"), end(0), line("QUIT")] },
      {
        name: "BDAT 1 LAST with a command in the same push",
        input: "BDAT 1 LAST\r\nxQUIT\r\n",
        expected: [line("BDAT 1 LAST"), content("x"), end(1), line("QUIT")]
      },
      {
        name: "raw bytes: no unstuffing, no terminator",
        input: "BDAT 12 LAST\r\n..a\r\n.\r\nQUIT\r\nNOOP\r\n",
        expected: [line("BDAT 12 LAST"), content("..a\r\n.\r\nQUIT"), end(12), line(""), line("NOOP")]
      },
      {
        name: "chunks add up across BDAT commands",
        input: "BDAT 5\r\nab\r\n.BDAT 3 LAST\r\n\r\nxQUIT\r\n",
        expected: [line("BDAT 5"), content("ab\r\n."), end(5), line("BDAT 3 LAST"), content("\r\nx"), end(8), line("QUIT")]
      },
      {
        name: "a new message resets the count",
        input: "BDAT 2 LAST\r\nabBDAT 3 LAST\r\ncdeQUIT\r\n",
        expected: [line("BDAT 2 LAST"), content("ab"), end(2), line("BDAT 3 LAST"), content("cde"), end(3), line("QUIT")]
      },
      {
        name: "bare LF inside a chunk",
        input: "BDAT 3\r\na\nbBDAT 1 LAST\r\ncQUIT\r\n",
        expected: [line("BDAT 3"), content("a\nb"), end(3, "lf"), line("BDAT 1 LAST"), content("c"), end(4, "lf"), line("QUIT")]
      },
      {
        name: "CRLF split across BDAT chunks is not bare",
        input: "BDAT 2\r\na\rBDAT 2 LAST\r\n\nbQUIT\r\n",
        expected: [line("BDAT 2"), content("a\r"), end(2), line("BDAT 2 LAST"), content("\nb"), end(4), line("QUIT")]
      },
      {
        name: "CR at a chunk end followed by a non-LF is a bare CR",
        input: "BDAT 2\r\na\rBDAT 2 LAST\r\nxbQUIT\r\n",
        expected: [line("BDAT 2"), content("a\r"), end(2), line("BDAT 2 LAST"), content("xb"), end(4, "cr"), line("QUIT")]
      },
      {
        name: "LF at the start of a chunk after a non-CR is bare",
        input: "BDAT 1\r\naBDAT 1 LAST\r\n\nQUIT\r\n",
        expected: [line("BDAT 1"), content("a"), end(1), line("BDAT 1 LAST"), content("\n"), end(2, "lf"), line("QUIT")]
      },
      {
        name: "bare CR inside a chunk",
        input: "BDAT 4 LAST\r\na\r\r\nQUIT\r\n",
        expected: [line("BDAT 4 LAST"), content("a\r\r\n"), end(4, "cr"), line("QUIT")]
      },
      {
        name: "the pending CR does not leak into the next message",
        input: "BDAT 1 LAST\r\n\rBDAT 1 LAST\r\nxQUIT\r\n",
        expected: [line("BDAT 1 LAST"), content("\r"), end(1), line("BDAT 1 LAST"), content("x"), end(1), line("QUIT")]
      }
    ])

    it("rejects a size that is not a non-negative integer", () => {
      const framer = Framer.make(standard)
      assert.throws(() => framer.expectBdat(-1, true))
      assert.throws(() => framer.expectBdat(1.5, true))
      assert.throws(() => framer.expectBdat(Number.NaN, true))
    })

    it("content aliases the pushed chunk", () => {
      const framer = Framer.make(standard)
      const chunk = bytesOf("abcdef")
      framer.expectBdat(4, true)
      framer.push(chunk)
      const u = framer.next()
      assert.strictEqual(u?._tag === "Content" ? u.bytes.buffer : undefined, chunk.buffer)
      assert.deepStrictEqual(framer.next(), { _tag: "ContentEnd", size: 4, bareLineEnding: undefined })
      assert.strictEqual(framer.mode, "command")
      assert.strictEqual(framer.buffered(), 2)
    })

    it("property: random chunking of random messages, bare endings tracked across boundaries", () => {
      const alphabet = ["a", ".", "\r", "\n"]
      const rand = prng(1234)
      for (let run = 0; run < 2000; run++) {
        const chunks = Array.from({ length: 1 + rand(4) }, () =>
          Array.from({ length: rand(6) }, () => alphabet[rand(alphabet.length)] ?? "").join(""))
        let input = ""
        const expected: Array<Ev> = []
        let sofar = ""
        chunks.forEach((c, k) => {
          const cmd = `BDAT ${c.length}${k === chunks.length - 1 ? " LAST" : ""}`
          input += cmd + "\r\n" + c
          sofar += c
          expected.push(line(cmd))
          if (c !== "") expected.push(content(c))
          expected.push(end(sofar.length, referenceBare(sofar)))
        })
        input += "QUIT\r\n"
        expected.push(line("QUIT"))
        assert.deepStrictEqual(drive(standard, randomSplits(bytesOf(input), rand)), expected, JSON.stringify(chunks))
      }
    })
  })
  describe("a TLS record where a command starts", () => {
    /** The first bytes of a real ClientHello: binary, with CR and LF bytes that must not make lines. */
    const clientHello = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\x00\n\x0a\xc0\x2b\r\nQUIT\r\n"
    runVectors([
      { name: "0x16 as the first byte of the connection", input: clientHello, expected: [tls] },
      { name: "0x16 alone", input: "\x16", expected: [tls] },
      { name: "0x16 after a complete line", input: "EHLO x\r\n" + clientHello, expected: [line("EHLO x"), tls] },
      { name: "0x16 after an empty line", input: "\r\n\x16\x03\x01", expected: [line(""), tls] },
      { name: "0x16 after a bare-LF line", input: "NOOP\n\x16\x03", expected: [line("NOOP", "bare-lf"), tls] },
      { name: "0x16 after an over-long line", input: "x".repeat(40) + "\r\n\x16\x03", expected: [tooLong, tls] },
      { name: "0x16 after pipelined commands", input: "NOOP\r\nRSET\r\n\x16NOOP\r\n", expected: [line("NOOP"), line("RSET"), tls] },
      { name: "0x16 inside a line is part of the line", input: "NO\x16OP\r\nQUIT\r\n", expected: [line("NO\x16OP"), line("QUIT")] },
      { name: "0x16 at the end of a line is part of the line", input: "EHLO x\x16\r\nQUIT\r\n", expected: [line("EHLO x\x16"), line("QUIT")] },
      {
        name: "0x16 in DATA content is content; after the content it is a TLS record",
        input: "DATA\r\n\x16\x03\x01\r\n.\r\n\x16\x03",
        expected: [line("DATA"), content("\x16\x03\x01\r\n"), end(5), tls]
      },
      {
        name: "0x16 in a BDAT chunk is content; after the chunk it is a TLS record",
        input: "BDAT 3 LAST\r\n\x16\x03\x01\x16\x03",
        expected: [line("BDAT 3 LAST"), content("\x16\x03\x01"), end(3), tls]
      }
    ])

    it("after TlsRecord, next() stays undefined and pushes are not held", () => {
      const framer = Framer.make(standard)
      framer.push(bytesOf("EHLO x\r\n\x16\x03\x01\x02\x00"))
      const first = framer.next()
      assert.deepStrictEqual(first?._tag === "Line" ? textOf(first.bytes) : first, "EHLO x")
      assert.deepStrictEqual(framer.next(), { _tag: "TlsRecord" })
      assert.strictEqual(framer.buffered(), 0)
      assert.isUndefined(framer.next())
      for (const more of ["NOOP\r\n", "\x16", "QUIT\r\nQUIT\r\n"]) {
        framer.push(bytesOf(more))
        assert.isUndefined(framer.next())
        assert.strictEqual(framer.buffered(), 0)
      }
    })

    it("in every split of the input, the units before the record are the same and nothing follows it", () => {
      const rand = prng(316)
      for (let run = 0; run < 500; run++) {
        const lines = Array.from({ length: rand(4) }, (_, i) => `NOOP ${i}`)
        const input = lines.map((l) => l + "\r\n").join("") + "\x16\x03\x01\r\nNOOP\r\n"
        const expected: Array<Ev> = [...lines.map((l) => line(l)), tls]
        assert.deepStrictEqual(drive(standard, randomSplits(bytesOf(input), rand)), expected, JSON.stringify(input))
      }
    })
  })
})
