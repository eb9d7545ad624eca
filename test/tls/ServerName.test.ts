/**
 * SNI matching as RFC 6125 has it: exact before wildcard, a wildcard for exactly one left-most
 * label, no case, no trailing dot, and nothing for names that are not host names.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ServerName from "../../src/tls/ServerName.ts"

const configured: ReadonlyArray<readonly [string, string]> = [
  ["mail.example.org", "mail"],
  ["*.example.org", "wild-org"],
  ["MX.Example.NET", "mx-net"],
  ["*.hosts.example.net", "wild-hosts"],
  ["a.hosts.example.net", "a-hosts"],
  ["localhost", "local"]
]
const idx = ServerName.index(configured)

describe("ServerName.lookup", () => {
  const cases: ReadonlyArray<readonly [sni: string, expected: string | undefined, match?: ServerName.MatchKind]> = [
    ["mail.example.org", "mail", "exact"],
    ["MAIL.EXAMPLE.ORG", "mail", "exact"],
    ["mail.example.org.", "mail", "exact"],
    ["smtp.example.org", "wild-org", "wildcard"],
    ["Smtp.Example.Org.", "wild-org", "wildcard"],
    ["example.org", undefined],
    ["a.b.example.org", undefined],
    ["mx.example.net", "mx-net", "exact"],
    ["a.hosts.example.net", "a-hosts", "exact"],
    ["b.hosts.example.net", "wild-hosts", "wildcard"],
    ["hosts.example.net", undefined],
    ["localhost", "local", "exact"],
    ["other.test", undefined],
    ["", undefined],
    [".", undefined],
    ["127.0.0.1", undefined],
    ["10.1.2.3", undefined],
    ["::1", undefined],
    ["[::1]", undefined],
    ["*.example.org", undefined],
    ["mail..example.org", undefined],
    ["-mail.example.org", undefined],
    ["mail-.example.org", undefined],
    ["m ail.example.org", undefined],
    ["mail.example.org..", undefined],
    [`${"a".repeat(64)}.example.org`, undefined],
    [`${"a".repeat(63)}.example.org`, "wild-org", "wildcard"],
    [`${"a.".repeat(126)}example.org`, undefined],
    ["mäil.example.org", undefined],
    ["xn--mil-via.example.org", "wild-org", "wildcard"]
  ]
  for (const [sni, expected, match] of cases) {
    it(`${JSON.stringify(sni)} → ${expected ?? "no match"}`, () => {
      const found = ServerName.lookup(idx, sni)
      assert.strictEqual(found?.entry, expected)
      assert.strictEqual(found?.match, match)
    })
  }

  it("the first entry configured for a name keeps it", () => {
    const twice = ServerName.index([["mx.example.org", 1], ["MX.example.org", 2], ["*.example.org", 3], ["*.EXAMPLE.org", 4]])
    assert.deepStrictEqual(ServerName.lookup(twice, "mx.example.org"), { entry: 1, match: "exact" })
    assert.deepStrictEqual(ServerName.lookup(twice, "a.example.org"), { entry: 3, match: "wildcard" })
  })

  it("find works on entries with several names", () => {
    const entries = [{ id: "a", names: ["a.test", "*.a.test"] }, { id: "b", names: ["b.test"] }]
    assert.strictEqual(ServerName.find(entries, (e) => e.names, "x.a.test")?.entry.id, "a")
    assert.strictEqual(ServerName.find(entries, (e) => e.names, "b.test")?.entry.id, "b")
    assert.isUndefined(ServerName.find(entries, (e) => e.names, "c.test"))
  })
})

describe("ServerName.validName", () => {
  const cases: ReadonlyArray<readonly [string, boolean]> = [
    ["mail.example.org", true],
    ["Mail.Example.Org.", true],
    ["localhost", true],
    ["*.example.org", true],
    ["*.org", false],
    ["*", false],
    ["*.*.example.org", false],
    ["a.*.example.org", false],
    ["m*.example.org", false],
    ["127.0.0.1", false],
    ["", false],
    ["mail_01.example.org", true],
    ["mail..example.org", false],
    ["mäil.example.org", false],
    [`${"a".repeat(64)}.org`, false]
  ]
  for (const [name, valid] of cases) {
    it(`${JSON.stringify(name)} is ${valid ? "valid" : "invalid"}`, () => {
      assert.strictEqual(ServerName.validName(name), valid)
    })
  }

  it("invalid configured names are never matched", () => {
    const bad = ServerName.index([["*.org", "x"], ["127.0.0.1", "y"]])
    assert.isUndefined(ServerName.lookup(bad, "example.org"))
    assert.isUndefined(ServerName.lookup(bad, "127.0.0.1"))
  })
})

describe("ServerName.covers", () => {
  const cases: ReadonlyArray<readonly [certificateName: string, configured: string, covered: boolean]> = [
    ["mail.example.org", "mail.example.org", true],
    ["MAIL.example.org", "mail.EXAMPLE.org.", true],
    ["*.example.org", "mail.example.org", true],
    ["*.example.org", "example.org", false],
    ["*.example.org", "a.b.example.org", false],
    ["*.example.org", "*.example.org", true],
    ["mail.example.org", "*.example.org", false],
    ["*.b.example.org", "*.example.org", false],
    ["*.example.org", "*.b.example.org", false],
    ["other.example.org", "mail.example.org", false]
  ]
  for (const [certificateName, name, covered] of cases) {
    it(`${certificateName} ${covered ? "covers" : "does not cover"} ${name}`, () => {
      assert.strictEqual(ServerName.covers(certificateName, name), covered)
    })
  }
})
