import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import * as Duration from "../../src/config/Duration.ts"

describe("Duration", () => {
  const accepted: ReadonlyArray<readonly [Duration.Input, number]> = [
    [0, 0],
    [250, 250],
    [1.4, 1],
    ["250ms", 250],
    ["250 ms", 250],
    ["10 millis", 10],
    ["300s", 300_000],
    ["30 sec", 30_000],
    ["1 second", 1_000],
    ["1.5s", 1_500],
    ["5m", 300_000],
    ["1 min", 60_000],
    ["10 minutes", 600_000],
    ["1h", 3_600_000],
    ["2 hours", 7_200_000],
    ["1d", 86_400_000],
    ["2 days", 172_800_000],
    [" 5M ", 300_000],
    [".5s", 500]
  ]
  for (const [input, millis] of accepted) {
    it(`decodes ${JSON.stringify(input)} to ${millis} ms`, () => {
      assert.strictEqual(Duration.toMillis(input), millis)
      assert.strictEqual(Schema.decodeUnknownSync(Duration.Millis)(input), millis)
    })
  }

  const refused: ReadonlyArray<unknown> = ["5 parsecs", "300", "", "m", "5 m s", "-5s", -1, Number.NaN, Infinity, true, null]
  for (const input of refused) {
    it(`refuses ${String(input)}`, () => {
      assert.isTrue(Result.isFailure(Schema.decodeUnknownResult(Duration.Millis)(input)))
    })
  }

  it("PositiveMillis refuses zero but accepts one millisecond", () => {
    assert.isTrue(Result.isFailure(Schema.decodeUnknownResult(Duration.PositiveMillis)("0s")))
    assert.isTrue(Result.isFailure(Schema.decodeUnknownResult(Duration.PositiveMillis)(0)))
    assert.strictEqual(Schema.decodeUnknownSync(Duration.PositiveMillis)("1ms"), 1)
  })

  it("encodes to milliseconds that decode to the same value", () => {
    const encoded = Schema.encodeSync(Duration.Millis)(300_000)
    assert.strictEqual(encoded, 300_000)
    assert.strictEqual(Schema.decodeUnknownSync(Duration.Millis)(encoded), 300_000)
  })
})
