import { assert, describe, it } from "@effect/vitest"
import * as Command from "../../src/session/Command.ts"
import { hidesCredentials, redact } from "../../src/session/Session.ts"

const verdictOf = (line: string) => {
  const parsed = Command.parse(line, { smtputf8: false })
  return parsed._tag === "Parsed" ? `${parsed._tag} ${parsed.command._tag}` : `${parsed._tag} ${JSON.stringify(parsed.reply)}`
}

describe("redact: AUTH arguments never reach the log, and the redacted line gets the same reply", () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN ***"],
    ["auth login YWxpY2U=", "auth login ***"],
    ["AUTH PLAIN", "AUTH PLAIN"],
    ["AUTH PLAIN =", "AUTH PLAIN ***"],
    ["AUTH PLAIN\u00a0secret", "AUTH PLAIN***"],
    ["AUTH PL@IN secret", "AUTH PL*** ***"],
    ["AUTH PLAIN a b", "AUTH PLAIN *** ***"],
    ["AUTH", "AUTH"],
    ["AUTHORIZE me", "AUTHORIZE me"],
    ["MAIL FROM:<a@b.test>", "MAIL FROM:<a@b.test>"]
  ]
  for (const [line, logged] of cases) {
    it(JSON.stringify(line), () => {
      assert.strictEqual(redact(line), logged)
      assert.strictEqual(verdictOf(redact(line)), verdictOf(line))
    })
  }
})

describe("hidesCredentials: lines right after an AUTH that are no command", () => {
  it("hides what is no command after AUTH, nothing otherwise", () => {
    assert.isTrue(hidesCredentials(true, "YWxpY2U="))
    assert.isTrue(hidesCredentials(true, "c2VjcmV0IHBhc3N3b3Jk"))
    assert.isFalse(hidesCredentials(true, "MAIL FROM:<a@b.test>"))
    assert.isFalse(hidesCredentials(false, "YWxpY2U="))
    // Hidden or not, such a line gets the unknown-command reply: replay stays exact.
    assert.strictEqual(verdictOf("***"), verdictOf("YWxpY2U="))
  })
})
