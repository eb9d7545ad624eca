import { assert, describe, it } from "@effect/vitest"
import * as Spf from "../../src/policy/Spf.ts"

describe("Spf.isCheckableHelo: which HELO names have an SPF identity (RFC 7208 2.3)", () => {
  const cases: ReadonlyArray<readonly [string, boolean]> = [
    ["mail.example.org", true],
    ["example.org", true],
    ["mail.example.org.", true],
    ["xn--bcher-kva.example", true],
    ["a-b.c-d.example", true],
    ["localhost", false],
    ["[192.0.2.1]", false],
    ["[IPv6:2001:db8::1]", false],
    ["192.0.2.1", false],
    ["", false],
    ["-bad.example", false],
    ["bad-.example", false],
    ["under_score.example", false],
    ["a..b.example", false],
    [`${"a".repeat(64)}.example`, false],
    ["example.c", false]
  ]
  for (const [helo, checkable] of cases) {
    it(`${JSON.stringify(helo)} → ${checkable}`, () => {
      assert.strictEqual(Spf.isCheckableHelo(helo), checkable)
    })
  }
})
