import { assert, describe, it } from "@effect/vitest"
import * as Sasl from "../../src/session/Sasl.ts"

const b64 = (text: string): string => Buffer.from(text, "utf8").toString("base64")

describe("Sasl.decodeBase64Text", () => {
  const cases: ReadonlyArray<readonly [string, string, string | undefined]> = [
    ["padded", "YWxpY2U=", "alice"],
    ["two padding characters", "YQ==", "a"],
    ["no padding needed", "YWJj", "abc"],
    ["padding left out", "YWxpY2U", "alice"],
    ["empty", "", ""],
    ["UTF-8", b64("jörg"), "jörg"],
    ["a space inside", "YWxp Y2U=", undefined],
    ["a character outside the alphabet", "YWxp*2U=", undefined],
    ["URL-safe alphabet", "-_-_", undefined],
    ["a lone sixth character", "YWxpY", undefined],
    ["padding in the middle", "YQ==YQ==", undefined],
    ["three padding characters", "Y===", undefined],
    ["invalid UTF-8", Buffer.from([0xff, 0xfe]).toString("base64"), undefined]
  ]
  for (const [name, input, expected] of cases) {
    it(`${name}: ${JSON.stringify(input)}`, () => {
      assert.strictEqual(Sasl.decodeBase64Text(input), expected)
    })
  }
})

describe("Sasl.decode", () => {
  const cases: ReadonlyArray<readonly [string, Sasl.Step, string, Sasl.Decoded]> = [
    ["* cancels", "plain", "*", { outcome: "cancel" }],
    ["* cancels LOGIN too", "login-password", "*", { outcome: "cancel" }],
    ["PLAIN without authzid", "plain", b64("\u0000alice\u0000secret"), { outcome: "answer", user: "alice", password: "secret" }],
    ["PLAIN with authzid equal to the user", "plain", b64("alice\u0000alice\u0000secret"), { outcome: "answer", user: "alice", password: "secret" }],
    ["PLAIN acting as another user", "plain", b64("bob\u0000alice\u0000secret"), { outcome: "malformed" }],
    ["PLAIN without a user", "plain", b64("\u0000\u0000secret"), { outcome: "malformed" }],
    ["PLAIN without a password", "plain", b64("\u0000alice\u0000"), { outcome: "malformed" }],
    ["PLAIN with one NUL", "plain", b64("alice\u0000secret"), { outcome: "malformed" }],
    ["PLAIN with three NULs", "plain", b64("\u0000alice\u0000sec\u0000ret"), { outcome: "malformed" }],
    ["PLAIN = (an empty response)", "plain", "=", { outcome: "malformed" }],
    ["PLAIN not base64", "plain", "not base64!", { outcome: "malformed" }],
    ["PLAIN with a UTF-8 password", "plain", b64("\u0000jörg\u0000pässwörd"), { outcome: "answer", user: "jörg", password: "pässwörd" }],
    ["LOGIN name", "login-username", b64("alice"), { outcome: "answer", user: "alice" }],
    ["LOGIN empty name", "login-username", "=", { outcome: "malformed" }],
    ["LOGIN name with a NUL", "login-username", b64("al\u0000ice"), { outcome: "malformed" }],
    ["LOGIN password", "login-password", b64("secret"), { outcome: "answer", password: "secret" }],
    ["LOGIN empty password", "login-password", "=", { outcome: "malformed" }]
  ]
  for (const [name, step, response, expected] of cases) {
    it(name, () => {
      assert.deepStrictEqual(Sasl.decode(step, response), expected)
    })
  }

  it("the mechanisms, their first steps and challenges", () => {
    assert.deepStrictEqual(Sasl.mechanisms, ["PLAIN", "LOGIN"])
    assert.isTrue(Sasl.isMechanism("LOGIN"))
    assert.isFalse(Sasl.isMechanism("CRAM-MD5"))
    assert.strictEqual(Sasl.firstStep("PLAIN"), "plain")
    assert.strictEqual(Sasl.firstStep("LOGIN"), "login-username")
    assert.strictEqual(Buffer.from(Sasl.challenge("login-username"), "base64").toString(), "Username:")
    assert.strictEqual(Buffer.from(Sasl.challenge("login-password"), "base64").toString(), "Password:")
    assert.strictEqual(Sasl.challenge("plain"), "")
  })
})
