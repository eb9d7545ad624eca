import { assert, describe, it } from "@effect/vitest"
import * as Network from "../../src/policy/Network.ts"

const network = (text: string): Network.Network => {
  const parsed = Network.parseNetwork(text)
  if (!parsed.ok) throw new Error(parsed.reason)
  return parsed.network
}

describe("Network.parseAddress / normalize", () => {
  const canonical: ReadonlyArray<readonly [string, string]> = [
    ["1.2.3.4", "1.2.3.4"],
    ["0.0.0.0", "0.0.0.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["::", "::"],
    ["::1", "::1"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["2001:0db8::0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:0:1:0:0:0", "2001:db8:0:0:1::"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
    ["fe80::", "fe80::"],
    ["::ffff:1.2.3.4", "1.2.3.4"],
    ["::FFFF:0102:0304", "1.2.3.4"],
    ["::1.2.3.4", "::102:304"],
    ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"]
  ]
  for (const [input, expected] of canonical) {
    it(`normalizes ${input} to ${expected}`, () => {
      assert.strictEqual(Network.normalize(input), expected)
    })
  }

  const invalid: ReadonlyArray<string> = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "01.2.3.4",
    "1.2.3.256",
    "1.2.3.-1",
    "1.2.3.4 ",
    " 1.2.3.4",
    "1.2.3.4/32",
    "::g",
    "1::2::3",
    ":1::",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "12345::",
    "fe80::1%eth0",
    "[::1]",
    "::ffff:1.2.3.256",
    "1.2.3.4::",
    "localhost"
  ]
  for (const input of invalid) {
    it(`rejects the address ${JSON.stringify(input)}`, () => {
      const parsed = Network.parseAddress(input)
      assert.isFalse(parsed.ok)
      if (!parsed.ok) assert.include(parsed.reason, JSON.stringify(input))
      assert.isUndefined(Network.normalize(input))
    })
  }

  it("returns mapped addresses as IPv4 values", () => {
    const mapped = Network.parseAddress("::ffff:192.0.2.1")
    const plain = Network.parseAddress("192.0.2.1")
    assert.isTrue(mapped.ok && plain.ok && mapped.address._tag === "Ipv4Address")
    assert.isTrue(mapped.ok && plain.ok && Network.format(mapped.address) === Network.format(plain.address))
  })
})

describe("Network.parseNetwork", () => {
  const valid: ReadonlyArray<readonly [string, string]> = [
    ["10.0.0.0/8", "10.0.0.0/8"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["192.0.2.1", "192.0.2.1/32"],
    ["192.0.2.1/32", "192.0.2.1/32"],
    ["2001:DB8::/32", "2001:db8::/32"],
    ["::/0", "::/0"],
    ["::1", "::1/128"],
    ["fe80::/10", "fe80::/10"],
    ["::ffff:10.0.0.0/104", "10.0.0.0/8"],
    ["::ffff:0:0/96", "0.0.0.0/0"],
    ["::ffff:192.0.2.1", "192.0.2.1/32"]
  ]
  for (const [input, expected] of valid) {
    it(`parses ${input} as ${expected}`, () => {
      const parsed = Network.parseNetwork(input)
      assert.isTrue(parsed.ok)
      if (parsed.ok) assert.strictEqual(Network.formatNetwork(parsed.network), expected)
    })
  }

  const invalid: ReadonlyArray<string> = [
    "",
    "/8",
    "10.0.0.0/",
    "10.0.0.0/33",
    "10.0.0.0/08",
    "10.0.0.0/+8",
    "10.0.0.0/8/8",
    "10.0.0.0/ 8",
    "10.0.0.0/8 ",
    "10.0.0/8",
    "256.0.0.0/8",
    "010.0.0.0/8",
    "::/129",
    "2001:db8::/-1",
    "fe80::1%eth0/64",
    "[2001:db8::]/32",
    "example.com/8"
  ]
  for (const input of invalid) {
    it(`rejects the network ${JSON.stringify(input)}`, () => {
      const parsed = Network.parseNetwork(input)
      assert.isFalse(parsed.ok)
      if (!parsed.ok) assert.include(parsed.reason, JSON.stringify(input))
    })
  }

  it("refuses host bits and names the network that was probably meant", () => {
    const v4 = Network.parseNetwork("10.1.2.3/8")
    assert.include(v4.ok ? "" : v4.reason, "did you mean 10.0.0.0/8?")
    const v6 = Network.parseNetwork("2001:db8::1/32")
    assert.include(v6.ok ? "" : v6.reason, "did you mean 2001:db8::/32?")
  })

  it("parses a list, or reports its first bad entry", () => {
    const good = Network.parseNetworks(["10.0.0.0/8", "::1"])
    assert.deepStrictEqual(good.ok ? good.networks.map(Network.formatNetwork) : [], ["10.0.0.0/8", "::1/128"])
    const bad = Network.parseNetworks(["10.0.0.0/8", "10.0.0.0/40", "nonsense"])
    assert.deepStrictEqual(bad.ok ? undefined : bad.input, "10.0.0.0/40")
  })
})

describe("Network.contains", () => {
  const table: ReadonlyArray<readonly [string, string, boolean]> = [
    ["10.0.0.0/8", "10.0.0.0", true],
    ["10.0.0.0/8", "10.1.2.3", true],
    ["10.0.0.0/8", "10.255.255.255", true],
    ["10.0.0.0/8", "9.255.255.255", false],
    ["10.0.0.0/8", "11.0.0.0", false],
    ["192.168.1.0/24", "192.168.1.77", true],
    ["192.168.1.0/24", "192.168.2.1", false],
    ["172.16.0.0/12", "172.31.255.255", true],
    ["172.16.0.0/12", "172.32.0.0", false],
    ["10.0.0.0/31", "10.0.0.1", true],
    ["10.0.0.0/31", "10.0.0.2", false],
    ["0.0.0.0/0", "1.2.3.4", true],
    ["0.0.0.0/0", "255.255.255.255", true],
    ["0.0.0.0/0", "::1", false],
    ["0.0.0.0/0", "::ffff:1.2.3.4", true],
    ["192.0.2.1/32", "192.0.2.1", true],
    ["192.0.2.1/32", "192.0.2.2", false],
    ["192.0.2.1", "192.0.2.1", true],
    ["192.0.2.1", "192.0.2.0", false],
    ["10.0.0.0/8", "::ffff:10.1.2.3", true],
    ["10.0.0.0/8", "::ffff:a01:203", true],
    ["10.0.0.0/8", "::ffff:11.1.2.3", false],
    ["10.0.0.0/8", "::10.1.2.3", false],
    ["::ffff:10.0.0.0/104", "10.1.2.3", true],
    ["::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true],
    ["::ffff:10.0.0.0/104", "11.1.2.3", false],
    ["2001:db8::/32", "2001:db8::1", true],
    ["2001:db8::/32", "2001:DB8:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF", true],
    ["2001:db8::/32", "2001:db9::", false],
    ["2001:db8::/32", "2001:db7:ffff::", false],
    ["2001:db8::/127", "2001:db8::1", true],
    ["2001:db8::/127", "2001:db8::2", false],
    ["fe80::/10", "fe80::1", true],
    ["fe80::/10", "febf:ffff::1", true],
    ["fe80::/10", "fec0::1", false],
    ["::/0", "::", true],
    ["::/0", "2001:db8::1", true],
    ["::/0", "1.2.3.4", false],
    ["::/0", "::ffff:1.2.3.4", false],
    ["::1/128", "::1", true],
    ["::1/128", "::2", false],
    ["::1", "0:0:0:0:0:0:0:1", true],
    ["::1", "127.0.0.1", false],
    ["127.0.0.0/8", "::1", false]
  ]
  for (const [cidr, ip, expected] of table) {
    it(`${cidr} ${expected ? "contains" : "does not contain"} ${ip}`, () => {
      assert.strictEqual(Network.contains(network(cidr), ip), expected)
      const address = Network.parseAddress(ip)
      assert.isTrue(address.ok)
      if (address.ok) assert.strictEqual(Network.contains(network(cidr), address.address), expected)
    })
  }

  for (const garbage of ["", "10.0.0.1/32", "10.0.0.256", "fe80::1%eth0", "not an address"]) {
    it(`no network contains ${JSON.stringify(garbage)}`, () => {
      assert.isFalse(Network.contains(network("0.0.0.0/0"), garbage))
      assert.isFalse(Network.contains(network("::/0"), garbage))
      assert.isFalse(Network.inNetworks(garbage, [network("0.0.0.0/0"), network("::/0")]))
    })
  }

  it("matches against a list of networks", () => {
    const trusted = [network("10.0.0.0/8"), network("2001:db8::/32"), network("192.0.2.7")]
    assert.isTrue(Network.inNetworks("10.9.9.9", trusted))
    assert.isTrue(Network.inNetworks("::ffff:192.0.2.7", trusted))
    assert.isTrue(Network.inNetworks("2001:db8:1::1", trusted))
    assert.isFalse(Network.inNetworks("192.0.2.8", trusted))
    assert.isFalse(Network.inNetworks("2001:db9::1", trusted))
    assert.isFalse(Network.inNetworks("10.9.9.9", []))
  })

  it("agrees with a bitwise reference on pseudo-random IPv4 addresses and prefixes", () => {
    let seed = 0x2545f491
    const next = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      return seed
    }
    const dotted = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".")
    for (let round = 0; round < 2000; round++) {
      const base = next()
      const prefix = next() % 33
      const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
      const net = network(`${dotted((base & mask) >>> 0)}/${prefix}`)
      const probe = round % 2 === 0 ? next() : ((base & mask) | (next() & ~mask)) >>> 0
      const expected = ((probe & mask) >>> 0) === ((base & mask) >>> 0)
      assert.strictEqual(Network.contains(net, dotted(probe)), expected)
      assert.strictEqual(Network.contains(net, `::ffff:${dotted(probe)}`), expected)
    }
  })
})

describe("Network.matcher", () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["10.0.0.0/8", "10.1.2.3"],
    ["10.0.0.0/8", "11.0.0.0"],
    ["0.0.0.0/0", "::1"],
    ["0.0.0.0/0", "::ffff:1.2.3.4"],
    ["::ffff:10.0.0.0/104", "10.1.2.3"],
    ["10.0.0.0/8", "::10.1.2.3"],
    ["2001:db8::/32", "2001:db8::1"],
    ["2001:db8::/127", "2001:db8::2"],
    ["fe80::/10", "febf:ffff::1"],
    ["fe80::/10", "fec0::1"],
    ["::/0", "1.2.3.4"],
    ["::/0", "::"],
    ["::1", "0:0:0:0:0:0:0:1"],
    ["2001:db8:0:0:8000::/65", "2001:db8::8000:0:0:1"],
    ["2001:db8:0:0:8000::/65", "2001:db8::7fff:0:0:1"],
    ["0.0.0.0/0", "not an address"]
  ]
  for (const [cidr, ip] of cases) {
    it(`agrees with contains: ${cidr} and ${ip}`, () => {
      const find = Network.matcher([network(cidr)])
      assert.strictEqual(find(ip) === 0, Network.contains(network(cidr), ip))
    })
  }

  it("gives the index of the first network that contains the address, -1 for none", () => {
    const find = Network.matcher([network("192.0.2.0/24"), network("10.0.0.0/8"), network("10.1.0.0/16"), network("2001:db8::/32")])
    assert.strictEqual(find("10.1.2.3"), 1)
    assert.strictEqual(find("192.0.2.9"), 0)
    assert.strictEqual(find("2001:db8::5"), 3)
    assert.strictEqual(find("198.51.100.1"), -1)
    assert.strictEqual(Network.matcher([])("10.1.2.3"), -1)
  })

  it("agrees with contains on pseudo-random IPv4 and IPv6 networks and addresses", () => {
    let seed = 0x1b873593
    const next = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      return seed
    }
    const dotted = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".")
    const hex = (words: ReadonlyArray<number>): string =>
      words.flatMap((w) => [(w >>> 16).toString(16), (w & 0xffff).toString(16)]).join(":")
    for (let round = 0; round < 3000; round++) {
      if (round % 2 === 0) {
        const prefix = next() % 33
        const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
        const base = (next() & mask) >>> 0
        const probe = round % 4 === 0 ? next() : ((base & mask) | (next() & ~mask)) >>> 0
        const net = network(`${dotted(base)}/${prefix}`)
        for (const ip of [dotted(probe), `::ffff:${dotted(probe)}`]) {
          assert.strictEqual(Network.matcher([net])(ip) === 0, Network.contains(net, ip), `${dotted(base)}/${prefix} ${ip}`)
        }
      } else {
        const prefix = next() % 129
        const words = [next(), next(), next(), next()].map((w, i) => {
          const bits = Math.min(32, Math.max(0, prefix - i * 32))
          const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
          return (w & mask) >>> 0
        })
        const probeWords = round % 4 === 1 ? [next(), next(), next(), next()] : words.map((w, i) => {
          const bits = Math.min(32, Math.max(0, prefix - i * 32))
          const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
          return ((w & mask) | (next() & ~mask)) >>> 0
        })
        const parsed = Network.parseNetwork(`${hex(words)}/${prefix}`)
        if (!parsed.ok) continue
        const ip = hex(probeWords)
        assert.strictEqual(Network.matcher([parsed.network])(ip) === 0, Network.contains(parsed.network, ip), `${hex(words)}/${prefix} ${ip}`)
      }
    }
  })
})
