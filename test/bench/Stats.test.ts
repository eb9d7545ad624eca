/**
 * The load generator's statistics: bucket boundaries, percentiles against exact nearest-rank
 * percentiles of the same values, merging, counters; the message it sends; and the TLS bench's
 * reading of `openssl speed` and its scenario selection.
 */
import { assert, describe, it } from "@effect/vitest"
import * as TlsBench from "../../bench/tls.ts"
import * as LoadGenerator from "../../src/bench/LoadGenerator.ts"
import * as LoadOptions from "../../src/bench/LoadOptions.ts"
import * as Message from "../../src/bench/Message.ts"
import * as Stats from "../../src/bench/Stats.ts"

/** A small seeded PRNG (mulberry32), so failures reproduce. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const exact = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1] ?? Number.NaN

describe("Stats histogram", () => {
  it("places every value in a bucket whose range holds it", () => {
    const bits = Stats.defaultBits
    const values = [0, 1, 255, 256, 257, 511, 512, 513, 1023, 1024, 65_535, 65_536, 1_000_000, Stats.maxValue]
    for (const v of values) {
      const [low, high] = Stats.bucketRange(bits, Stats.bucketOf(bits, v))
      assert.isTrue(low <= v && v <= high, `${v} in [${low}, ${high}]`)
      assert.isAtMost(high - low, Math.max(0, v / 2 ** (bits - 1)))
    }
    assert.strictEqual(Stats.bucketOf(bits, Stats.maxValue), Stats.make().counts.length - 1)
  })

  it("gives exact percentiles below 2^bits", () => {
    const h = Stats.make()
    for (let v = 1; v <= 100; v++) Stats.record(h, v)
    assert.strictEqual(Stats.percentile(h, 50), 50)
    assert.strictEqual(Stats.percentile(h, 99), 99)
    assert.strictEqual(Stats.percentile(h, 100), 100)
    assert.strictEqual(Stats.percentile(h, 0), 1)
    assert.strictEqual(Stats.mean(h), 50.5)
  })

  it("stays within 0.4% of exact percentiles on spread-out values", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const random = prng(seed)
      const h = Stats.make()
      const values: Array<number> = []
      for (let i = 0; i < 5000; i++) {
        // Log-uniform from 1 µs to 10 s: the range of handshake and message latencies.
        const v = Math.round(Math.exp(random() * Math.log(10_000_000)))
        values.push(v)
        Stats.record(h, v)
      }
      values.sort((a, b) => a - b)
      for (const p of [1, 50, 90, 99, 99.9]) {
        const want = exact(values, p)
        const got = Stats.percentile(h, p)
        assert.isAtMost(Math.abs(got - want), Math.max(0.5, want * 0.004), `seed ${seed} p${p}: ${got} vs ${want}`)
      }
      assert.strictEqual(Stats.percentile(h, 100), values[values.length - 1])
    }
  })

  it("merges to the same histogram as recording everything in one", () => {
    const random = prng(42)
    const all = Stats.make()
    const parts = [Stats.make(), Stats.make(), Stats.make()]
    for (let i = 0; i < 3000; i++) {
      const v = Math.floor(random() * 200_000)
      Stats.record(all, v)
      const part = parts[i % 3]
      if (part !== undefined) Stats.record(part, v)
    }
    const merged = Stats.make()
    for (const part of parts) Stats.merge(merged, part)
    assert.deepStrictEqual(merged, all)
  })

  it("summarizes an empty histogram as zeros and microseconds as milliseconds", () => {
    assert.deepStrictEqual(Stats.summarize(Stats.make()), { count: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 })
    const h = Stats.make()
    Stats.record(h, 1500)
    assert.strictEqual(Stats.summarize(h).max, 1.5)
    assert.isTrue(Number.isNaN(Stats.percentile(Stats.make(), 50)))
  })

  it("adds counters, errors by kind included", () => {
    const a = Stats.emptyCounters()
    a.messages = 3
    a.errors["timeout"] = 1
    const b = Stats.emptyCounters()
    b.messages = 4
    b.errors["timeout"] = 2
    b.errors["5xx RCPT"] = 1
    Stats.addCounters(a, b)
    assert.strictEqual(a.messages, 7)
    assert.deepStrictEqual(a.errors, { timeout: 3, "5xx RCPT": 1 })
    assert.strictEqual(Stats.errorTotal(a), 4)
  })
})

describe("load split and options", () => {
  it("splits connections over threads, never more threads than connections", () => {
    assert.deepStrictEqual(LoadGenerator.split(20, 3), [7, 7, 6])
    assert.deepStrictEqual(LoadGenerator.split(2, 8), [1, 1])
    assert.deepStrictEqual(LoadGenerator.split(5, 1), [5])
  })

  it("parses targets and picks SNI only for names", () => {
    assert.deepStrictEqual(LoadOptions.parseTarget("127.0.0.1:25"), { host: "127.0.0.1", port: 25 })
    assert.deepStrictEqual(LoadOptions.parseTarget("[::1]:465"), { host: "::1", port: 465 })
    assert.deepStrictEqual(LoadOptions.parseTarget("mx.example.org:587"), { host: "mx.example.org", port: 587 })
    assert.isUndefined(LoadOptions.parseTarget("127.0.0.1"))
    assert.isUndefined(LoadOptions.parseTarget("host:70000"))
    assert.isUndefined(LoadOptions.defaultServername("127.0.0.1"))
    assert.isUndefined(LoadOptions.defaultServername("::1"))
    assert.strictEqual(LoadOptions.defaultServername("mx.example.org"), "mx.example.org")
  })
})

describe("Message", () => {
  const decode = (b: Uint8Array) => new TextDecoder().decode(b)

  it("is the requested size, CRLF only, with lines starting with a dot doubled", () => {
    for (const size of [0, 100, 1024, 10_000]) {
      const content = Message.content(size, "a@b.test", "c@d.test")
      assert.isTrue(content.length >= size, `${content.length} >= ${size}`)
      if (size >= 1024) assert.strictEqual(content.length, size)
      assert.isTrue(content.endsWith("\r\n"))
      assert.notMatch(content, /[^\r]\n/)
      const data = decode(Message.dataBytes(size, "a@b.test", "c@d.test"))
      assert.isTrue(data.endsWith("\r\n.\r\n"))
      // Unstuffing what was sent gives back the content.
      assert.strictEqual(data.slice(0, -3).replaceAll("\r\n..", "\r\n."), content)
      if (size >= 10_000) assert.include(data, "\r\n..")
    }
  })

  it("dot-stuffs the first line too", () => {
    assert.strictEqual(Message.dotStuff(".a\r\n.b\r\nc\r\n"), "..a\r\n..b\r\nc\r\n")
  })
})

describe("OpenSSL bound", () => {
  it("reads sign/s and op/s from `openssl speed` and adds one signature and one key exchange", () => {
    const output = [
      "                  sign    verify    sign/s verify/s",
      "rsa 2048 bits 0.000847s 0.000021s   1000.0  47955.6",
      "                              sign    verify    sign/s verify/s",
      " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  40000.0  12555.6",
      "                              op      op/s",
      " 253 bits ecdh (X25519)   0.0000s  20000.0"
    ].join("\n")
    const bound = TlsBench.parseSpeed(output)
    assert.isDefined(bound)
    assert.strictEqual(bound?.ecdsaP256SignPerSec, 40_000)
    assert.strictEqual(bound?.rsa2048SignPerSec, 1000)
    assert.strictEqual(bound?.x25519PerSec, 20_000)
    assert.closeTo(bound?.ecdsaMs ?? 0, 0.025 + 0.05, 1e-9)
    assert.closeTo(bound?.rsaMs ?? 0, 1 + 0.05, 1e-9)
    assert.isUndefined(TlsBench.parseSpeed("openssl: unknown algorithm"))
  })

  it("names every TLS scenario once and selects them by kind, id or prefix", () => {
    const ids = TlsBench.all.map((s) => s.id)
    assert.strictEqual(new Set(ids).size, ids.length)
    assert.strictEqual(TlsBench.selected([]).length, ids.length)
    assert.strictEqual(TlsBench.selected(["tls"]).length, ids.length)
    assert.deepStrictEqual(TlsBench.selected(["tls-starttls-ecdsa-tls13-handshake"]).map((s) => s.id), [
      "tls-starttls-ecdsa-tls13-handshake"
    ])
    assert.isTrue(TlsBench.selected(["tls-implicit"]).every((s) => s.mode === "implicit"))
    assert.isFalse(TlsBench.knows("tls-starttls-ecdsa-tls1"))
    assert.isFalse(TlsBench.knows("throughput"))
  })
})
