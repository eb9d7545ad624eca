import { assert, describe, it } from "@effect/vitest"
import * as Network from "../../src/policy/Network.ts"
import * as ProxyProtocol from "../../src/session/ProxyProtocol.ts"

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0))

const concat = (...parts: ReadonlyArray<Uint8Array | ReadonlyArray<number>>): Uint8Array => {
  const out: Array<number> = []
  for (const part of parts) out.push(...part)
  return Uint8Array.from(out)
}

// The v2 signature written out here rather than taken from the module, so a typo there fails.
const signature = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]

const u16 = (n: number): ReadonlyArray<number> => [(n >> 8) & 0xff, n & 0xff]

const v2 = (versionCommand: number, family: number, body: ReadonlyArray<number>, length = body.length): Uint8Array =>
  concat(signature, [versionCommand, family], u16(length), body)

const tlv = (type: number, value: ReadonlyArray<number>): ReadonlyArray<number> => [
  type,
  ...u16(value.length),
  ...value
]

const ipv4Block = [192, 0, 2, 1, 198, 51, 100, 2, ...u16(56324), ...u16(25)]

const ipv6Block = [
  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd,
  ...u16(65535),
  ...u16(587)
]

const mappedBlock = [
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 9,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
  ...u16(1),
  ...u16(2)
]

const tcp4 = {
  version: 2,
  command: "proxy",
  family: "tcp4",
  source: { address: "192.0.2.1", port: 56324 },
  destination: { address: "198.51.100.2", port: 25 }
} as const

const tcp6 = {
  version: 2,
  command: "proxy",
  family: "tcp6",
  source: { address: "2001:db8::1", port: 65535 },
  destination: { address: "2001:db8::abcd", port: 587 }
} as const

const v1Tcp6Longest =
  "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
const v1UnknownLongest =
  "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"

interface ValidCase {
  readonly name: string
  readonly input: Uint8Array
  readonly header: ProxyProtocol.ProxyHeader
}

const v1Valid: ReadonlyArray<ValidCase> = [
  {
    name: "TCP4",
    input: ascii("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n"),
    header: { ...tcp4, version: 1 }
  },
  {
    name: "TCP4 with the extreme addresses and ports",
    input: ascii("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
    header: {
      version: 1,
      command: "proxy",
      family: "tcp4",
      source: { address: "0.0.0.0", port: 0 },
      destination: { address: "255.255.255.255", port: 65535 }
    }
  },
  {
    name: "TCP6, addresses normalized",
    input: ascii("PROXY TCP6 2001:DB8:0:0:0:0:0:1 2001:db8::abcd 65535 587\r\n"),
    header: { ...tcp6, version: 1 }
  },
  {
    name: "TCP6 with IPv4-mapped addresses",
    input: ascii("PROXY TCP6 ::ffff:203.0.113.9 ::1 1 2\r\n"),
    header: {
      version: 1,
      command: "proxy",
      family: "tcp6",
      source: { address: "203.0.113.9", port: 1 },
      destination: { address: "::1", port: 2 }
    }
  },
  {
    name: "TCP6 at its longest (104 bytes)",
    input: ascii(v1Tcp6Longest),
    header: {
      version: 1,
      command: "proxy",
      family: "tcp6",
      source: { address: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", port: 65535 },
      destination: { address: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", port: 65535 }
    }
  },
  {
    name: "UNKNOWN alone",
    input: ascii("PROXY UNKNOWN\r\n"),
    header: { version: 1, command: "proxy", family: "unknown" }
  },
  {
    name: "UNKNOWN at the 107-byte maximum, rest ignored",
    input: ascii(v1UnknownLongest),
    header: { version: 1, command: "proxy", family: "unknown" }
  },
  {
    name: "UNKNOWN followed by anything",
    input: ascii("PROXY UNKNOWN whatever  the\tproxy says\r\n"),
    header: { version: 1, command: "proxy", family: "unknown" }
  }
]

const v2Valid: ReadonlyArray<ValidCase> = [
  { name: "PROXY over TCP/IPv4", input: v2(0x21, 0x11, ipv4Block), header: tcp4 },
  { name: "PROXY over TCP/IPv6", input: v2(0x21, 0x21, ipv6Block), header: tcp6 },
  {
    name: "PROXY over TCP/IPv4 with TLVs",
    input: v2(0x21, 0x11, [
      ...ipv4Block,
      ...tlv(0x01, [...ascii("smtp")]),
      ...tlv(0x04, []),
      ...tlv(0x20, [0x07, 0, 0, 0, 0]),
      ...tlv(0x05, [1, 2, 3, 4, 5, 6, 7, 8])
    ]),
    header: tcp4
  },
  {
    name: "PROXY over TCP/IPv6 with a TLV",
    input: v2(0x21, 0x21, [...ipv6Block, ...tlv(0x02, [...ascii("mx.example")])]),
    header: tcp6
  },
  {
    name: "PROXY over TCP/IPv6 with mapped addresses",
    input: v2(0x21, 0x21, mappedBlock),
    header: {
      version: 2,
      command: "proxy",
      family: "tcp6",
      source: { address: "203.0.113.9", port: 1 },
      destination: { address: "::1", port: 2 }
    }
  },
  { name: "LOCAL, empty", input: v2(0x20, 0x00, []), header: { version: 2, command: "local", family: "unknown" } },
  {
    name: "LOCAL with an address block, which is ignored",
    input: v2(0x20, 0x11, ipv4Block),
    header: { version: 2, command: "local", family: "unknown" }
  },
  {
    name: "LOCAL with an unassigned family, which is ignored",
    input: v2(0x20, 0xff, [1, 2, 3]),
    header: { version: 2, command: "local", family: "unknown" }
  },
  {
    name: "PROXY with AF_UNSPEC",
    input: v2(0x21, 0x00, [9, 9, 9]),
    header: { version: 2, command: "proxy", family: "unknown" }
  },
  {
    name: "PROXY over UDP/IPv4 (skipped)",
    input: v2(0x21, 0x12, ipv4Block),
    header: { version: 2, command: "proxy", family: "unknown" }
  },
  {
    name: "PROXY over UDP/IPv6 with a TLV (skipped)",
    input: v2(0x21, 0x22, [...ipv6Block, ...tlv(0x04, [0, 0])]),
    header: { version: 2, command: "proxy", family: "unknown" }
  },
  {
    name: "PROXY over TCP/IPv4 with transport UNSPEC (skipped)",
    input: v2(0x21, 0x10, ipv4Block),
    header: { version: 2, command: "proxy", family: "unknown" }
  },
  {
    name: "PROXY over a UNIX stream (skipped)",
    input: v2(0x21, 0x31, Array.from({ length: 216 }, (_, i) => i & 0xff)),
    header: { version: 2, command: "proxy", family: "unknown" }
  }
]

const trailing = ascii("EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n")

const expectHeader = (result: ProxyProtocol.ParseResult, header: ProxyProtocol.ProxyHeader, consumed: number) => {
  assert.deepStrictEqual(result, { _tag: "Header", header, consumed })
}

const expectInvalid = (result: ProxyProtocol.ParseResult, reason?: string) => {
  assert.strictEqual(result._tag, "Invalid")
  if (reason !== undefined) assert.include(result._tag === "Invalid" ? result.reason : "", reason)
}

describe("ProxyProtocol.parse: valid headers", () => {
  for (const { header, input, name } of [...v1Valid, ...v2Valid]) {
    describe(`v${header.version} ${name}`, () => {
      it("parses the whole header", () => {
        expectHeader(ProxyProtocol.parse(input), header, input.length)
      })

      it("needs more at every truncation", () => {
        for (let end = 0; end < input.length; end++) {
          assert.deepStrictEqual(ProxyProtocol.parse(input.subarray(0, end)), { _tag: "NeedMore" }, `cut at ${end}`)
        }
      })

      it("keeps the SMTP bytes after the header, at every split point", () => {
        const stream = concat(input, trailing)
        for (let split = 0; split <= stream.length; split++) {
          const first = stream.subarray(0, split)
          const result = ProxyProtocol.parse(first)
          if (split < input.length) {
            assert.deepStrictEqual(result, { _tag: "NeedMore" }, `first part ${split}`)
            expectHeader(ProxyProtocol.parse(concat(first, stream.subarray(split))), header, input.length)
          } else {
            expectHeader(result, header, input.length)
          }
        }
        assert.deepStrictEqual(stream.subarray(input.length), trailing)
      })
    })
  }

  it("v1 maxima are what the spec says", () => {
    assert.strictEqual(v1Tcp6Longest.length, 104)
    assert.strictEqual(v1UnknownLongest.length, ProxyProtocol.v1MaxLength)
  })

  it("accepts a v2 header of the largest possible length", () => {
    const padding = ProxyProtocol.v2MaxLength - ipv4Block.length - 3
    const input = v2(0x21, 0x11, [...ipv4Block, ...tlv(0x04, Array.from({ length: padding }, () => 0))])
    assert.strictEqual(input.length, 16 + 65535)
    expectHeader(ProxyProtocol.parse(concat(input, trailing)), tcp4, input.length)
    assert.deepStrictEqual(ProxyProtocol.parse(input.subarray(0, input.length - 1)), { _tag: "NeedMore" })
  })

  it("exports the v2 signature", () => {
    assert.deepStrictEqual(Array.from(ProxyProtocol.v2Signature), signature)
  })
})

const v1Invalid: ReadonlyArray<readonly [string, string, string]> = [
  ["TCP4 address out of range", "PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n", "source address"],
  ["TCP4 destination not an address", "PROXY TCP4 192.0.2.1 mx.example 1 2\r\n", "destination address"],
  ["TCP4 address with a leading zero", "PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n", "source address"],
  ["TCP4 address with three octets", "PROXY TCP4 192.0.2 198.51.100.2 1 2\r\n", "source address"],
  ["IPv6 address under TCP4", "PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n", "source address"],
  ["IPv4 address under TCP6", "PROXY TCP6 2001:db8::1 198.51.100.2 1 2\r\n", "destination address"],
  ["IPv6 address with a zone", "PROXY TCP6 fe80::1%eth0 2001:db8::2 1 2\r\n", "source address"],
  ["IPv6 address in brackets", "PROXY TCP6 [2001:db8::1] 2001:db8::2 1 2\r\n", "source address"],
  ["source port 65536", "PROXY TCP4 192.0.2.1 198.51.100.2 65536 25\r\n", "source port"],
  ["destination port 65536", "PROXY TCP4 192.0.2.1 198.51.100.2 25 65536\r\n", "destination port"],
  ["negative port", "PROXY TCP4 192.0.2.1 198.51.100.2 -1 25\r\n", "source port"],
  ["port with a leading zero", "PROXY TCP4 192.0.2.1 198.51.100.2 025 25\r\n", "source port"],
  ["port with a sign", "PROXY TCP4 192.0.2.1 198.51.100.2 +25 25\r\n", "source port"],
  ["port in hexadecimal", "PROXY TCP4 192.0.2.1 198.51.100.2 0x19 25\r\n", "source port"],
  ["six-digit port", "PROXY TCP4 192.0.2.1 198.51.100.2 100000 25\r\n", "source port"],
  ["two spaces after PROXY", "PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "single-spaced"],
  ["two spaces between addresses", "PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n", "single-spaced"],
  ["space before CRLF", "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n", "single-spaced"],
  ["tab as a separator", "PROXY TCP4\t192.0.2.1 198.51.100.2 1 2\r\n", "unknown protocol"],
  ["missing port", "PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n", "single-spaced"],
  ["extra field", "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n", "single-spaced"],
  ["no protocol", "PROXY \r\n", "single-spaced"],
  ["unknown protocol", "PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n", "unknown protocol"],
  ["UNKNOWN glued to more text", "PROXY UNKNOWNX\r\n", "unknown protocol"],
  ["lowercase protocol", "PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n", "unknown protocol"],
  ["lowercase keyword", "proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "PROXY"],
  ["mixed-case keyword", "Proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "PROXY"],
  ["leading space", " PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "not a PROXY"],
  ["bare LF", "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", "bare LF"],
  ["CR without LF", "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rEHLO x\r\n", "CR not followed by LF"],
  ["no CRLF in 107 bytes", `PROXY UNKNOWN ${"x".repeat(93)}`, "no CRLF"],
  ["CR as the 107th byte", `PROXY UNKNOWN ${"x".repeat(92)}\r\n`, "no CRLF"],
  ["SMTP instead of a header", "EHLO client.example\r\n", "not a PROXY"],
  ["TLS instead of a header", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "not a PROXY"]
]

describe("ProxyProtocol.parse: invalid v1", () => {
  for (const [name, text, reason] of v1Invalid) {
    it(name, () => {
      expectInvalid(ProxyProtocol.parse(ascii(text)), reason)
      expectInvalid(ProxyProtocol.parse(concat(ascii(text), trailing)), reason)
    })
  }

  it("refuses 107 bytes without CRLF however they arrive, and never waits for more", () => {
    const line = ascii(`PROXY TCP4 ${"1".repeat(200)}`)
    for (let end = 0; end < ProxyProtocol.v1MaxLength; end++) {
      assert.strictEqual(ProxyProtocol.parse(line.subarray(0, end))._tag, "NeedMore", `cut at ${end}`)
    }
    for (let end = ProxyProtocol.v1MaxLength; end <= line.length; end++) {
      expectInvalid(ProxyProtocol.parse(line.subarray(0, end)), "no CRLF")
    }
  })

  it("refuses a wrong keyword from its first differing byte", () => {
    expectInvalid(ProxyProtocol.parse(ascii("p")))
    expectInvalid(ProxyProtocol.parse(ascii("PROXX")))
    expectInvalid(ProxyProtocol.parse(ascii("PROXY\t")))
    expectInvalid(ProxyProtocol.parse(ascii("GET / HTTP/1.1")))
  })
})

describe("ProxyProtocol.parse: invalid v2", () => {
  it("refuses a signature wrong at any byte, as soon as that byte arrives", () => {
    const valid = v2(0x21, 0x11, ipv4Block)
    for (let at = 1; at < 12; at++) {
      const broken = Uint8Array.from(valid)
      broken[at] = (broken[at] ?? 0) ^ 0x20
      expectInvalid(ProxyProtocol.parse(broken), "signature")
      expectInvalid(ProxyProtocol.parse(broken.subarray(0, at + 1)), "signature")
    }
  })

  for (const version of [0x0, 0x1, 0x3, 0xf]) {
    it(`refuses version ${version}`, () => {
      const input = v2((version << 4) | 1, 0x11, ipv4Block)
      expectInvalid(ProxyProtocol.parse(input), "version")
      expectInvalid(ProxyProtocol.parse(input.subarray(0, 13)), "version")
    })
  }

  for (const command of [0x2, 0x3, 0xf]) {
    it(`refuses command ${command}`, () => {
      expectInvalid(ProxyProtocol.parse(v2(0x20 | command, 0x11, ipv4Block)), "command")
    })
  }

  for (const family of [0x41, 0xf1, 0x13, 0x1f]) {
    it(`refuses PROXY with unassigned family/transport 0x${family.toString(16)}`, () => {
      const input = v2(0x21, family, ipv4Block)
      expectInvalid(ProxyProtocol.parse(input), "unassigned address family")
      expectInvalid(ProxyProtocol.parse(input.subarray(0, 14)), "unassigned address family")
    })
  }

  const short: ReadonlyArray<readonly [string, number, number]> = [
    ["IPv4", 0x11, 12],
    ["IPv6", 0x21, 36],
    ["UNIX", 0x31, 216],
    ["UDP/IPv4", 0x12, 12]
  ]
  for (const [name, family, block] of short) {
    it(`refuses a length shorter than the ${name} address block`, () => {
      const input = v2(0x21, family, Array.from({ length: block - 1 }, () => 1))
      expectInvalid(ProxyProtocol.parse(input), "shorter than")
      expectInvalid(ProxyProtocol.parse(input.subarray(0, 16)), "shorter than")
    })
  }

  it("refuses a TLV running past the declared length", () => {
    const body = [...ipv4Block, 0x01, ...u16(5), 1, 2, 3, 4]
    expectInvalid(ProxyProtocol.parse(v2(0x21, 0x11, body)), "overruns")
    expectInvalid(ProxyProtocol.parse(concat(v2(0x21, 0x11, body), [5, 6, 7])), "overruns")
  })

  it("refuses a TLV after a valid one running past the declared length", () => {
    const body = [...ipv4Block, ...tlv(0x04, [0, 0]), 0x02, ...u16(0xffff)]
    expectInvalid(ProxyProtocol.parse(v2(0x21, 0x11, body)), "overruns")
  })

  for (const extra of [1, 2]) {
    it(`refuses ${extra} stray byte(s) where a TLV header should be`, () => {
      const body = [...ipv4Block, ...tlv(0x04, [0]), ...Array.from({ length: extra }, () => 0)]
      expectInvalid(ProxyProtocol.parse(v2(0x21, 0x11, body)), "truncated TLV")
    })
  }

  it("refuses a declared length above the configured limit without waiting for it", () => {
    const input = v2(0x21, 0x11, [...ipv4Block, ...tlv(0x04, Array.from({ length: 100 }, () => 0))])
    expectInvalid(ProxyProtocol.parse(input.subarray(0, 16), { maxV2Length: 64 }), "exceeds the limit of 64")
    expectInvalid(ProxyProtocol.parse(input, { maxV2Length: 64 }), "exceeds the limit")
    expectHeader(ProxyProtocol.parse(input, { maxV2Length: 115 }), tcp4, input.length)
  })
})

describe("ProxyProtocol.decide", () => {
  const trusted = ["10.0.0.0/8", "2001:db8:1::/48", "::1"].map((text) => {
    const parsed = Network.parseNetwork(text)
    if (!parsed.ok) throw new Error(parsed.reason)
    return parsed.network
  })
  const table: ReadonlyArray<readonly [string, boolean]> = [
    ["10.1.2.3", true],
    ["::ffff:10.1.2.3", true],
    ["2001:db8:1:ffff::9", true],
    ["::1", true],
    ["11.1.2.3", false],
    ["2001:db8:2::9", false],
    ["127.0.0.1", false],
    ["not an address", false]
  ]
  for (const [peer, expected] of table) {
    it(`${expected ? "expects" : "does not expect"} a header from ${peer}`, () => {
      assert.strictEqual(ProxyProtocol.decide(peer, trusted), expected)
    })
  }

  it("expects no header when nothing is trusted", () => {
    assert.isFalse(ProxyProtocol.decide("10.1.2.3", []))
  })
})
